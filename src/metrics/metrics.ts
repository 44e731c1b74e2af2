// Prometheus metrics of a node at Orthanc's path, GET /tools/metrics-prometheus: the plugin's
// orthanc_transfers_* figures (docs/protocol.md#metrics, with a DELETE counted as aborted, not committed) and
// dicom-xfer's own dicom_xfer_* figures, read from the counters the transfer modules already keep.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobsEngine, JobState } from '../jobs/engine.ts';
import type { Peers } from '../peers/peers.ts';
import { getPeers } from '../peers/routes.ts';
import type { NodeContext, NodeModule } from '../server/app.ts';
import { route } from '../server/http.ts';
import { getJobs } from '../transfer/client-routes.ts';
import { transfersServerOf } from '../transfer/server-routes.ts';
import { Throughput, type ByteTotals } from './throughput.ts';

export const METRICS_PATH = '/tools/metrics-prometheus';

const JOB_STATES: readonly JobState[] = ['Pending', 'Running', 'Paused', 'Success', 'Failure'];

/** Where a bucket's latency was measured. */
export type BucketSide =
  /** This node PUT a bucket to a peer (push sender): from the request to the end of the answer. */
  | 'send'
  /** This node GET a chunk from a peer (pull receiver): from the request to the last byte. */
  | 'fetch'
  /** A peer PUT a bucket here (push receiver): from the request to the answer sent. */
  | 'receive'
  /** A peer GET a chunk here (data source): from the request to the last byte sent. */
  | 'serve';

/** Seconds: a bucket is typically 4 MiB, from a LAN (tens of ms) to a slow WAN (a minute). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];


/** The metrics of one node, for other modules (the dashboard reads the throughput). */
export interface NodeMetrics {
  registry: Registry;
  throughput: Throughput;
  /** Records one bucket's latency (for a jobs-engine hook that knows its buckets better than HTTP does). */
  observeBucket(side: BucketSide, seconds: number): void;
}

const byContext = new WeakMap<NodeContext, NodeMetrics>();

/** The metrics of the node whose context is `ctx`, when metricsModule is registered on it. */
export function metricsOf(ctx: NodeContext): NodeMetrics | undefined {
  return byContext.get(ctx);
}

/** Every byte the node moved for transfers so far: peer calls, plus pushes received and chunks served. */
function byteTotals(app: FastifyInstance, peers: Peers): ByteTotals {
  let sent = 0;
  let received = 0;
  for (const name of peers.names()) {
    const s = peers.stats(name);
    if (!s) continue;
    sent += s.bytesSent;
    received += s.bytesReceived;
  }
  const server = transfersServerOf(app);
  if (server) {
    received += server.receiver.counters.wireBytes;
    sent += server.chunks.counters.bytes;
  }
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

function buildMetrics(app: FastifyInstance, peers: Peers, engine: JobsEngine): { metrics: NodeMetrics; close(): void } {
  const registry = new Registry();
  const registers = [registry];
  const server = () => transfersServerOf(app);
  const throughput = new Throughput(() => byteTotals(app, peers));

  // ---- the plugin's names (docs/protocol.md#metrics); gauges, as Orthanc publishes them -------------------
  const orthancGauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  orthancGauge('orthanc_transfers_used_cache_size', 'Bytes in the sender instance cache (dicom-xfer reads ranges straight from the store: always 0).', () => 0);
  orthancGauge('orthanc_transfers_cache_hit_count', 'Sender cache hits (no instance cache in dicom-xfer: always 0).', () => 0);
  orthancGauge('orthanc_transfers_cache_miss_count', 'Sender cache misses (no instance cache in dicom-xfer: always 0).', () => 0);
  orthancGauge('orthanc_transfers_available_push_count', 'Push transactions that can still be created without evicting one.', () => server()?.receiver.available ?? 0);
  orthancGauge('orthanc_transfers_created_push_count', 'Push transactions created.', () => server()?.receiver.counters.created ?? 0);
  orthancGauge('orthanc_transfers_committed_push_count', 'Push transactions committed successfully (a DELETE is not counted here, unlike the plugin).', () => server()?.receiver.counters.committed ?? 0);
  orthancGauge(
    'orthanc_transfers_aborted_push_count',
    'Push transactions ended without a commit: discarded by DELETE, evicted, expired when idle, or whose commit failed.',
    () => {
      const c = server()?.receiver.counters;
      return c ? c.discarded + c.evicted + c.expired + c.failedCommits : 0;
    },
  );
  orthancGauge('orthanc_transfers_push_total_received_bytes_count', 'Declared bytes of the push transactions that reached their commit.', () => server()?.receiver.counters.receivedBytes ?? 0);
  orthancGauge('orthanc_transfers_push_total_time_spent_in_reception_ms', 'Sum over commits of the time from creation to commit, in ms.', () => server()?.receiver.counters.receptionMs ?? 0);
  orthancGauge('orthanc_transfers_push_total_time_spent_in_commit_ms', 'Sum of the durations of successful commits, in ms.', () => server()?.receiver.counters.commitMs ?? 0);

  // ---- dicom-xfer's own ---------------------------------------------------------------------------
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

  const serverCounter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        setCounter(this, read());
      },
    });
  serverCounter('dicom_xfer_push_received_wire_bytes_total', 'Bucket bytes received by the push receiver, as sent (compressed when gzip).', () => server()?.receiver.counters.wireBytes ?? 0);
  serverCounter('dicom_xfer_push_received_bucket_bytes_total', 'Uncompressed bucket bytes written by the push receiver.', () => server()?.receiver.counters.bucketBytes ?? 0);
  serverCounter('dicom_xfer_push_refused_creates_total', 'Push transactions refused at creation (no room: every held one active, or not enough disk).', () => server()?.receiver.counters.refused ?? 0);
  serverCounter('dicom_xfer_push_checksum_refusals_total', 'Buckets refused because their MD5 did not match (corrupted in flight; the sender sends them again).', () => server()?.receiver.counters.checksumRefusals ?? 0);
  serverCounter('dicom_xfer_push_received_buckets_total', 'Buckets written completely by the push receiver.', () => server()?.receiver.counters.buckets ?? 0);
  serverCounter('dicom_xfer_chunk_requests_total', 'Chunk answers started by the data source (pull mode).', () => server()?.chunks.counters.requests ?? 0);
  serverCounter('dicom_xfer_chunk_served_bytes_total', 'Uncompressed bytes read from the store for chunk answers.', () => server()?.chunks.counters.bytes ?? 0);
  new Gauge({
    name: 'dicom_xfer_chunk_gzip_level',
    help: 'The gzip level of chunk answers now (chosen from this machine\'s CPU against the link).',
    registers,
    collect() {
      const chunks = server()?.chunks;
      if (chunks) this.set(chunks.gzip.level);
    },
  });
  new Gauge({
    name: 'dicom_xfer_push_transactions',
    help: 'Push transactions held now by the receiver.',
    registers,
    collect() {
      this.set(server()?.receiver.held ?? 0);
    },
  });

  const latency = new Histogram({
    name: 'dicom_xfer_bucket_duration_seconds',
    help: 'Time to move one bucket, by side: send (PUT to a peer), fetch (GET from a peer), receive (PUT here), serve (GET here).',
    labelNames: ['side'],
    buckets: LATENCY_BUCKETS,
    registers,
  });

  const retries = new Counter({ name: 'dicom_xfer_retries_total', help: 'Calls retried by transfer jobs (from the jobs\' Retries).', registers });
  const skipped = new Counter({
    name: 'dicom_xfer_skipped_instances_total',
    help: 'Instances a transfer job did not send because the peer already had them (from the jobs\' SkippedInstances).',
    registers,
  });
  const finished = new Counter({
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
      for (const type of ['PushTransfer', 'PullTransfer', 'RemotePullTransfer']) for (const state of JOB_STATES) this.set({ type, state }, 0);
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
  collectDefaultMetrics({ register: registry, prefix: 'dicom_xfer_' });

  // Job figures follow the engine's events; a job's Content is read when it changes.
  const figures = [new JobFigure('Retries', retries), new JobFigure('SkippedInstances', skipped)];
  const states = new Map<string, string>();
  const look = (id: string) => {
    if (!engine.has(id)) {
      for (const f of figures) f.forget(id);
      states.delete(id);
      return;
    }
    const j = engine.describe(id);
    const content = (j.Content ?? {}) as Record<string, unknown>;
    const state = String(j.State);
    const before = states.get(id);
    if (before !== state) {
      states.set(id, state);
      if ((state === 'Success' || state === 'Failure') && before !== undefined) finished.inc({ type: String(j.Type), state });
    }
    // A send in pull mode mirrors the peer's figures: the retries and skips are the peer's, not ours.
    if (j.Type !== 'RemotePullTransfer') for (const f of figures) f.see(id, content);
  };
  for (const id of engine.list()) states.set(id, engine.state(id));
  engine.on('change', look);
  engine.on('progress', look);

  // Bucket latency on the server side: fastify knows when a bucket PUT or a chunk answer is done.
  app.addHook('onResponse', async (req, reply) => {
    if (reply.statusCode !== 200) return;
    const url = req.routeOptions.url;
    if (req.method === 'PUT' && url === '/transfers/push/:tx/:index') latency.observe({ side: 'receive' }, reply.elapsedTime / 1000);
    else if (req.method === 'GET' && url === '/transfers/chunks/:ids') latency.observe({ side: 'serve' }, reply.elapsedTime / 1000);
  });

  const metrics: NodeMetrics = {
    registry,
    throughput,
    observeBucket: (side, seconds) => latency.observe({ side }, seconds),
  };
  const close = () => {
    engine.off('change', look);
    engine.off('progress', look);
    throughput.stop();
  };
  return { metrics, close };
}


/** Another server's metrics served at the same path (Orthanc's, behind `--proxy`): its text, or undefined. */
export type ForeignMetrics = (req: FastifyRequest) => Promise<string | undefined>;
const foreignMetrics = new WeakMap<FastifyInstance, ForeignMetrics>();

/** Has GET /tools/metrics-prometheus append what `fn` answers (families this node also writes left out). */
export function setForeignMetrics(app: FastifyInstance, fn: ForeignMetrics): void {
  foreignMetrics.set(app, fn);
}

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
 * The metrics module: GET /tools/metrics-prometheus in Prometheus' text format. It must come after the
 * peers and both transfers modules in the node's module list (it reads their counters). Behind `--proxy`
 * Orthanc's own metrics follow this node's, at the path where Orthanc serves them.
 */
export const metricsModule: NodeModule = (app, ctx, routes) => {
  const { metrics, close } = buildMetrics(app, getPeers(ctx), getJobs(ctx));
  byContext.set(ctx, metrics);
  route(
    app,
    METRICS_PATH,
    {
      GET: async (req, reply) => {
        let text = await metrics.registry.metrics();
        const foreign = foreignMetrics.get(app);
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
  return async () => {
    close();
    byContext.delete(ctx);
  };
};
