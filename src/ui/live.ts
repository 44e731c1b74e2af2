// Live job data for the dashboard: Server-Sent Events fed by the jobs engine's events (a job's JSON when
// it changes, at most a few times a second per job) and a short per-second history of each running job.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { JobsEngine } from '../jobs/engine.ts';
import type { Throughput } from '../metrics/throughput.ts';

/** One point of a job's history. */
export interface JobPoint {
  /** Epoch milliseconds. */
  t: number;
  /** Percent, as the job JSON's Progress. */
  progress: number;
  /** Buckets done and in all (CompletedHttpQueries, TotalBuckets). */
  buckets: number;
  totalBuckets: number;
  /** Bytes moved so far, estimated from the buckets done and the total size. */
  bytes: number;
  /** The job's own average rate (NetworkSpeedKBs). */
  speedKBs: number;
  retries: number;
}

/** Points kept per job: an hour at one a second. */
const MAX_POINTS = 3600;
/** Least time between two "job" events of the same job. */
const THROTTLE_MS = 250;
/** A comment line this often keeps idle connections (and proxies) from timing out. */
const HEARTBEAT_MS = 15_000;

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** The history point of a job described by `j` (Orthanc's job JSON). */
export function pointOf(j: Record<string, unknown>, t = Date.now()): JobPoint {
  const c = (j.Content ?? {}) as Record<string, unknown>;
  const buckets = num(c.CompletedHttpQueries);
  const totalBuckets = num(c.TotalBuckets);
  // Exact when the Content has TotalBytes; else from Orthanc's rounded TotalSizeMB.
  const totalBytes = typeof c.TotalBytes === 'number' ? c.TotalBytes : num(c.TotalSizeMB) * 1024 * 1024;
  return {
    t,
    progress: num(j.Progress),
    buckets,
    totalBuckets,
    bytes: totalBuckets > 0 ? Math.round((Math.min(buckets, totalBuckets) / totalBuckets) * totalBytes) : 0,
    speedKBs: num(c.NetworkSpeedKBs),
    retries: num(c.Retries),
  };
}

export class LiveJobs {
  readonly #engine: JobsEngine;
  readonly #throughput: Throughput | undefined;
  readonly #history = new Map<string, JobPoint[]>();
  readonly #clients = new Set<FastifyReply>();
  /** Jobs whose "job" event waits for the throttle. */
  readonly #due = new Map<string, NodeJS.Timeout>();
  readonly #lastSent = new Map<string, number>();
  readonly #sampler: NodeJS.Timeout;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #onChange = (id: string) => this.#send(id, true);
  readonly #onProgress = (id: string) => this.#send(id, false);

  constructor(engine: JobsEngine, throughput?: Throughput) {
    this.#engine = engine;
    this.#throughput = throughput;
    engine.on('change', this.#onChange);
    engine.on('progress', this.#onProgress);
    this.#sampler = setInterval(() => this.#sample(), 1000);
    this.#sampler.unref();
    this.#heartbeat = setInterval(() => this.#beat(), HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  /** The history of a job, oldest first (empty when it never ran while the node was up). */
  history(id: string): JobPoint[] {
    return this.#history.get(id) ?? [];
  }

  /** Answers GET /ui/api/events: the stream stays open until the client leaves or the node stops. */
  open(req: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    // The client waits this long before reconnecting after a cut.
    res.write('retry: 2000\n\n');
    const jobs = this.#engine.list().map((id) => this.#engine.describe(id));
    res.write(`event: jobs\ndata: ${JSON.stringify(jobs)}\n\n`);
    this.#clients.add(reply);
    const drop = () => this.#clients.delete(reply);
    req.raw.on('close', drop);
    res.on('close', drop);
  }

  #write(event: string, data: unknown): void {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const c of this.#clients) {
      if (!c.raw.writableEnded) c.raw.write(text);
    }
  }

  #send(id: string, now: boolean): void {
    if (this.#clients.size === 0) return;
    const last = this.#lastSent.get(id) ?? 0;
    const wait = THROTTLE_MS - (Date.now() - last);
    if (!now && wait > 0) {
      if (!this.#due.has(id))
        this.#due.set(
          id,
          setTimeout(() => this.#flush(id), wait),
        );
      return;
    }
    this.#flush(id);
  }

  #flush(id: string): void {
    clearTimeout(this.#due.get(id));
    this.#due.delete(id);
    this.#lastSent.set(id, Date.now());
    if (!this.#engine.has(id)) {
      this.#write('removed', { ID: id });
      return;
    }
    this.#write('job', this.#engine.describe(id));
  }

  #sample(): void {
    const t = Date.now();
    const known = new Set(this.#engine.list());
    for (const id of this.#history.keys()) if (!known.has(id)) this.#history.delete(id);
    for (const id of known) {
      if (this.#engine.state(id) !== 'Running') continue;
      let h = this.#history.get(id);
      if (!h) {
        h = [];
        this.#history.set(id, h);
      }
      h.push(pointOf(this.#engine.describe(id), t));
      if (h.length > MAX_POINTS) h.splice(0, h.length - MAX_POINTS);
    }
    if (this.#throughput && this.#clients.size > 0) this.#write('throughput', { t, ...this.#throughput.now() });
  }

  #beat(): void {
    for (const c of this.#clients) if (!c.raw.writableEnded) c.raw.write(': keep-alive\n\n');
  }

  /** Ends every open stream (before the HTTP server closes: it waits for open connections). */
  endStreams(): void {
    for (const c of this.#clients) c.raw.end();
    this.#clients.clear();
  }

  close(): void {
    this.endStreams();
    this.#engine.off('change', this.#onChange);
    this.#engine.off('progress', this.#onProgress);
    clearInterval(this.#sampler);
    clearInterval(this.#heartbeat);
    for (const t of this.#due.values()) clearTimeout(t);
    this.#due.clear();
  }
}
