// Prometheus metrics of a node at Orthanc's path, GET /tools/metrics-prometheus: the plugin's
// orthanc_transfers_* figures (docs/protocol.md#metrics, with a DELETE counted as aborted, not committed) and
// dicom-xfer's own dicom_xfer_* figures, read from the counters the transfer modules already keep, which the
// composition root hands in (the peers, the transfers server, the jobs engine, the bucket latencies).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobsEngine, JobState } from '../jobs/engine.ts';
import { JOB_TYPES } from '../jobs/store.ts';
import type { Peers } from '../peers/peers.ts';
import { route, type RouteInfo } from '../server/http.ts';
import type { InFlight } from '../transfer/in-flight.ts';
import type { TransfersServer } from '../transfer/server-routes.ts';
import type { BucketLatency } from './buckets.ts';
import { Throughput, type ByteTotals } from './throughput.ts';

export const METRICS_PATH = '/tools/metrics-prometheus';

const JOB_STATES: readonly JobState[] = ['Pending', 'Running', 'Paused', 'Success', 'Failure'];

/** The counters of the transfers server that the metrics read. */
export type ServerCounters = Pick<TransfersServer, 'receiver' | 'chunks'>;

/** What the metrics of a node are read from. */
export interface MetricsSources {
  peers: Peers;
  server: ServerCounters;
  engine: JobsEngine;
  /** The bucket latencies, fed by the jobs and the HTTP server. */
  latency: BucketLatency;
  /** The node's in-flight budget (requests and bytes of every job and chunk answer). */
  inFlight: Pick<InFlight, 'counters'>;
}

type Registers = Registry[];

/** Every byte the node moved for transfers so far: peer calls, plus pushes received and chunks served. */
function byteTotals(peers: Peers, server: ServerCounters): ByteTotals {
  let sent = 0;
  let received = 0;
  for (const name of peers.names()) {
    const s = peers.stats(name);
    if (!s) continue;
    sent += s.bytesSent;
    received += s.bytesReceived;
  }
  received += server.receiver.counters.wireBytes;
  sent += server.chunks.counters.bytes;
  return { sent, received };
}

/**
 * Follows one cumulative figure per job (Retries, SkippedInstances of the job Content) and adds what each
 * job gained to a counter, so the counter only grows. A value that went down is a run that counts from 0
 * again: all of it is new.
 */
class JobFigure {
  readonly #last = new Map<string, number>();
  readonly #key: string;
  readonly #counter: Counter;

  constructor(key: string, counter: Counter) {
    this.#key = key;
    this.#counter = counter;
  }

  see(id: string, content: Record<string, unknown>): void {
    const v = content[this.#key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return;
    const before = this.#last.get(id) ?? 0;
    // A smaller value is a new run of the job counting from 0 again.
    const gained = v >= before ? v - before : v;
    this.#last.set(id, v);
    if (gained > 0) this.#counter.inc(gained);
  }

  /** A job left the engine. */
  forget(id: string): void {
    this.#last.delete(id);
  }
}

/** Sets a counter to a cumulative value read elsewhere (prom-client counters only grow by inc). */
function setCounter(c: Counter, value: number, labels?: Record<string, string>): void {
  if (labels) c.inc(labels, Math.max(0, value));
  else c.inc(Math.max(0, value));
}

/** A gauge set, at each scrape, to what `read` returns. */
function gaugeOf(registers: Registers, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/** A counter set, at each scrape, to the cumulative value `read` returns. */
function counterOf(registers: Registers, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      setCounter(this, read());
    },
  });
}

/** The plugin's names (docs/protocol.md#metrics); gauges, as Orthanc publishes them. */
function orthancGauges(registers: Registers, server: ServerCounters): void {
  const gauge = (name: string, help: string, read: () => number) => gaugeOf(registers, name, help, read);
  const { receiver } = server;
  gauge(
    'orthanc_transfers_used_cache_size',
    'Bytes in the sender instance cache (dicom-xfer reads ranges straight from the store: always 0).',
    () => 0,
  );
  gauge('orthanc_transfers_cache_hit_count', 'Sender cache hits (no instance cache in dicom-xfer: always 0).', () => 0);
  gauge('orthanc_transfers_cache_miss_count', 'Sender cache misses (no instance cache in dicom-xfer: always 0).', () => 0);
  gauge(
    'orthanc_transfers_available_push_count',
    'Push transactions that can still be created without evicting one.',
    () => receiver.available,
  );
  gauge('orthanc_transfers_created_push_count', 'Push transactions created.', () => receiver.counters.created);
  gauge(
    'orthanc_transfers_committed_push_count',
    'Push transactions committed successfully (a DELETE is not counted here, unlike the plugin).',
    () => receiver.counters.committed,
  );
  gauge(
    'orthanc_transfers_aborted_push_count',
    'Push transactions ended without a commit: discarded by DELETE, evicted, expired when idle, or whose commit failed.',
    () => {
      const c = receiver.counters;
      return c.discarded + c.evicted + c.expired + c.failedCommits;
    },
  );
  gauge(
    'orthanc_transfers_push_total_received_bytes_count',
    'Declared bytes of the push transactions that reached their commit.',
    () => receiver.counters.receivedBytes,
  );
  gauge(
    'orthanc_transfers_push_total_time_spent_in_reception_ms',
    'Sum over commits of the time from creation to commit, in ms.',
    () => receiver.counters.receptionMs,
  );
  gauge(
    'orthanc_transfers_push_total_time_spent_in_commit_ms',
    'Sum of the durations of successful commits, in ms.',
    () => receiver.counters.commitMs,
  );
}

/** dicom-xfer's figures of each peer: bytes, calls, failures, round-trip time. */
function peerMetrics(registers: Registers, peers: Peers): void {
  const perPeer = (name: string, help: string, pick: (s: NonNullable<ReturnType<Peers['stats']>>) => number) =>
    new Counter({
      name,
      help,
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const peer of peers.names()) {
          const s = peers.stats(peer);
          if (s) setCounter(this, pick(s), { peer });
        }
      },
    });
  perPeer('dicom_xfer_peer_sent_bytes_total', 'Request body bytes sent to each peer.', (s) => s.bytesSent);
  perPeer('dicom_xfer_peer_received_bytes_total', 'Answer body bytes received from each peer.', (s) => s.bytesReceived);
  perPeer('dicom_xfer_peer_requests_total', 'Calls made to each peer.', (s) => s.requests);
  perPeer('dicom_xfer_peer_failures_total', 'Calls to each peer that failed (non-200, transport error, timeout).', (s) => s.failures);
  new Gauge({
    name: 'dicom_xfer_peer_rtt_seconds',
    help: 'Round-trip time of the last call without a body to each peer (to the answer headers).',
    labelNames: ['peer'],
    registers,
    collect() {
      this.reset();
      for (const peer of peers.names()) {
        const rtt = peers.stats(peer)?.lastRttMs;
        if (rtt !== undefined) this.set({ peer }, rtt / 1000);
      }
    },
  });
}

/** dicom-xfer's figures of the push receiver and the chunk server. */
function serverMetrics(registers: Registers, server: ServerCounters): void {
  const counter = (name: string, help: string, read: () => number) => counterOf(registers, name, help, read);
  const { receiver, chunks } = server;
  counter(
    'dicom_xfer_push_received_wire_bytes_total',
    'Bucket bytes received by the push receiver, as sent (compressed when gzip).',
    () => receiver.counters.wireBytes,
  );
  counter(
    'dicom_xfer_push_received_bucket_bytes_total',
    'Uncompressed bucket bytes written by the push receiver.',
    () => receiver.counters.bucketBytes,
  );
  counter(
    'dicom_xfer_push_refused_creates_total',
    'Push transactions refused at creation (no room: every held one active, or not enough disk).',
    () => receiver.counters.refused,
  );
  gaugeOf(
    registers,
    'dicom_xfer_push_waiting_creates',
    'Push creates waiting their turn for room (Transfers.PushAdmissionWait).',
    () => receiver.waiting,
  );
  counter(
    'dicom_xfer_push_waited_creates_total',
    'Push creates that waited for room among Transfers.MaxPushTransactions.',
    () => receiver.counters.waitedCreates,
  );
  counter(
    'dicom_xfer_push_checksum_refusals_total',
    'Buckets refused because their MD5 did not match (corrupted in flight; the sender sends them again).',
    () => receiver.counters.checksumRefusals,
  );
  counter('dicom_xfer_push_received_buckets_total', 'Buckets written completely by the push receiver.', () => receiver.counters.buckets);
  counter('dicom_xfer_chunk_requests_total', 'Chunk answers started by the data source (pull mode).', () => chunks.counters.requests);
  counter('dicom_xfer_chunk_served_bytes_total', 'Uncompressed bytes read from the store for chunk answers.', () => chunks.counters.bytes);
  const gauge = (name: string, help: string, read: () => number) => gaugeOf(registers, name, help, read);
  gauge(
    'dicom_xfer_chunk_gzip_level',
    "The gzip level of chunk answers now (chosen from this machine's CPU against the link).",
    () => chunks.gzip.level,
  );
  gauge('dicom_xfer_push_transactions', 'Push transactions held now by the receiver.', () => receiver.held);
}

/** The node's in-flight budget: what it holds now, what waits for room, and how many requests waited. */
function inFlightMetrics(registers: Registers, inFlight: Pick<InFlight, 'counters'>): void {
  const gauge = (name: string, help: string, read: () => number) => gaugeOf(registers, name, help, read);
  gauge(
    'dicom_xfer_in_flight_requests',
    'Requests (bucket PUTs and GETs, chunk answers) holding a share of the in-flight budget now.',
    () => inFlight.counters.requests,
  );
  gauge('dicom_xfer_in_flight_bytes', 'Bytes those requests hold in the in-flight budget now.', () => inFlight.counters.bytes);
  gauge('dicom_xfer_in_flight_waiting', 'Requests waiting for room in the in-flight budget now.', () => inFlight.counters.waiting);
  counterOf(
    registers,
    'dicom_xfer_in_flight_waits_total',
    'Requests that waited for room in the in-flight budget (Transfers.MaxRequestsInFlight, Transfers.MaxInFlightSize).',
    () => inFlight.counters.waited,
  );
}

/**
 * The jobs' figures: jobs by type and state, running jobs, and counters that follow the engine's events
 * (retries, skipped instances, jobs finished); a job's Content is read when it changes.
 */
class JobMetrics {
  readonly #engine: JobsEngine;
  readonly #figures: JobFigure[];
  readonly #finished: Counter;
  readonly #states = new Map<string, string>();
  readonly #look = (id: string) => this.#see(id);

  constructor(registers: Registers, engine: JobsEngine) {
    this.#engine = engine;
    const retries = new Counter({
      name: 'dicom_xfer_retries_total',
      help: "Calls retried by transfer jobs (from the jobs' Retries).",
      registers,
    });
    const skipped = new Counter({
      name: 'dicom_xfer_skipped_instances_total',
      help: "Instances a transfer job did not send because the peer already had them (from the jobs' SkippedInstances).",
      registers,
    });
    this.#figures = [new JobFigure('Retries', retries), new JobFigure('SkippedInstances', skipped)];
    this.#finished = new Counter({
      name: 'dicom_xfer_jobs_finished_total',
      help: 'Jobs that ended, by type and final state.',
      labelNames: ['type', 'state'],
      registers,
    });
    new Gauge({
      name: 'dicom_xfer_jobs',
      help: 'Jobs known to the engine, by type and state.',
      labelNames: ['type', 'state'],
      registers,
      collect() {
        this.reset();
        // Every job type the engine runs (C-STORE jobs to a modality too) is published, at zero when it has none.
        for (const type of JOB_TYPES) for (const state of JOB_STATES) this.set({ type, state }, 0);
        for (const id of engine.list()) {
          const j = engine.describe(id);
          this.inc({ type: String(j.Type), state: String(j.State) });
        }
      },
    });
    new Gauge({
      name: 'dicom_xfer_jobs_active',
      help: 'Jobs running now.',
      registers,
      collect() {
        this.set(engine.list().filter((id) => engine.state(id) === 'Running').length);
      },
    });
    for (const id of engine.list()) this.#states.set(id, engine.state(id));
    engine.on('change', this.#look);
    engine.on('progress', this.#look);
  }

  #see(id: string): void {
    const engine = this.#engine;
    if (!engine.has(id)) {
      for (const f of this.#figures) f.forget(id);
      this.#states.delete(id);
      return;
    }
    const j = engine.describe(id);
    const content = (j.Content ?? {}) as Record<string, unknown>;
    const state = String(j.State);
    const before = this.#states.get(id);
    if (before !== state) {
      this.#states.set(id, state);
      if ((state === 'Success' || state === 'Failure') && before !== undefined) this.#finished.inc({ type: String(j.Type), state });
    }
    // A send in pull mode mirrors the peer's figures: the retries and skips are the peer's, not ours.
    if (j.Type !== 'RemotePullTransfer') for (const f of this.#figures) f.see(id, content);
  }

  close(): void {
    this.#engine.off('change', this.#look);
    this.#engine.off('progress', this.#look);
  }
}

/** The metrics of one node: its registry and its throughput (which the dashboard shows too). */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly throughput: Throughput;
  readonly #jobs: JobMetrics;

  constructor(sources: MetricsSources) {
    const { peers, server } = sources;
    const registers = [this.registry];
    this.throughput = new Throughput(() => byteTotals(peers, server));
    orthancGauges(registers, server);
    peerMetrics(registers, peers);
    serverMetrics(registers, server);
    inFlightMetrics(registers, sources.inFlight);
    this.registry.registerMetric(sources.latency.histogram);
    this.#jobs = new JobMetrics(registers, sources.engine);
    const throughput = this.throughput;
    new Gauge({
      name: 'dicom_xfer_throughput_bytes_per_second',
      help: 'Transfer bytes per second over the last seconds, by direction (peer calls, pushes received, chunks served).',
      labelNames: ['direction'],
      registers,
      collect() {
        const now = throughput.now();
        this.set({ direction: 'sent' }, now.sent);
        this.set({ direction: 'received' }, now.received);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'dicom_xfer_' });
  }

  /** Stops following the jobs and sampling the throughput. */
  close(): void {
    this.#jobs.close();
    this.throughput.stop();
  }
}

/** Another server's metrics served at the same path (Orthanc's, behind `--proxy`): its text, or undefined. */
export type ForeignMetrics = (req: FastifyRequest) => Promise<string | undefined>;

/** The metric family a line of Prometheus' text format speaks of (the name of a sample, HELP or TYPE). */
function familyOf(line: string): string | undefined {
  const m = /^(?:# (?:HELP|TYPE) )?([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
  return m?.[1];
}

/**
 * `theirs` (another server's exposition) without the families `ours` names too, so that the two texts
 * together stay valid: a family appears once. Comments other than HELP and TYPE are dropped.
 */
export function foreignFamilies(theirs: string, ours: ReadonlySet<string>): string {
  const kept: string[] = [];
  for (const line of theirs.split('\n')) {
    const t = line.trim();
    if (t === '' || (t.startsWith('#') && !/^# (HELP|TYPE) /.test(t))) continue;
    const name = familyOf(t);
    if (name === undefined) continue;
    const family = name.replace(/_(bucket|sum|count|total|created)$/, '');
    if (ours.has(name) || ours.has(family)) continue;
    kept.push(t);
  }
  return kept.length > 0 ? `${kept.join('\n')}\n` : '';
}

/**
 * GET /tools/metrics-prometheus in Prometheus' text format. With `foreign` (Orthanc's metrics behind
 * `--proxy`), what it answers follows this node's, at the path where Orthanc serves them.
 */
export function registerMetricsRoutes(app: FastifyInstance, metrics: NodeMetrics, routes: RouteInfo[], foreign?: ForeignMetrics): void {
  route(
    app,
    METRICS_PATH,
    {
      GET: async (req, reply) => {
        let text = await metrics.registry.metrics();
        const theirs = foreign ? await foreign(req) : undefined;
        if (theirs !== undefined) {
          const ours = new Set(metrics.registry.getMetricsAsArray().map((m) => m.name));
          text = `${text.endsWith('\n') ? text : `${text}\n`}${foreignFamilies(theirs, ours)}`;
        }
        return reply.code(200).header('Content-Type', metrics.registry.contentType).header('Cache-Control', 'no-store').send(text);
      },
    },
    routes,
  );
}
