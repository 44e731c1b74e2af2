// The bucket phase of a push or a pull: every bucket not done yet moved with its retries, starting with
// Threads requests in flight (docs/protocol.md#concurrency) and adapting that number to the link
// (adaptive.ts), or where the last transfer to the same peer settled (its link profile); with bucket-span,
// consecutive buckets travel together in one request (a span, spans.ts) sized to what is left and to the
// link. Each finished bucket is recorded in the job, so a later run never moves it again; the job's Content
// shows the plugin's counters as they go. At its end the phase records what the link taught it.
import { bucketSize } from '../protocol/buckets.ts';
import { bucketPhaseProgress, toMegabytes } from '../protocol/progress.ts';
import type { Bucket } from '../protocol/wire.ts';
import { clamp } from './adaptive/common.ts';
import { AdaptiveConcurrency } from './adaptive/controller.ts';
import { LINK_PROFILE_VERSION, type LinkKey, type LinkProfile } from './adaptive/link-profile.ts';
import { LevelCap } from './bandwidth/level-cap.ts';
import { runWithLimit } from './adaptive/pool.ts';
import type { InFlightSeat } from './in-flight.ts';
import { type Direction, SIZE_KEY, TransactionGone, type TransferRun } from './run.ts';
import { SpanQueue, spanLabel, type Span, type SpanQueueOptions } from './spans.ts';

/** How a bucket request reports its progress to the requests-in-flight controller. */
export interface BucketMeter {
  /** Body bytes moved by this node, as they go. */
  moved(bytes: number): void;
  /** The receiver's count of the bytes it received for the transfer, at its time in ms (receiver-progress). */
  delivered(total: number, at: number): void;
}

/**
 * Moves one span and answers its bytes on the wire (0 when it found the span already there), reporting
 * bytes through `meter.moved` as they go.
 */
export type SpanWork = (span: Span, signal: AbortSignal | undefined, attempt: number, meter: BucketMeter) => Promise<number>;

export interface BucketPhaseOptions extends Omit<SpanQueueOptions, 'maxBytes'> {
  /** The throughput is measured from the receiver's counts that the work reports (receiver-progress). */
  receiverClock?: boolean;
  /**
   * Each request holds its whole body in memory before it is sent (a gzip body for a peer that wants a
   * Content-Length, a body read once for its CRC-32): the requests in flight stay within IN_FLIGHT_BYTES.
   */
  bodiesInMemory?: boolean;
}

/**
 * Bucket bytes one job may hold in memory at once when its bodies are built whole: it caps the requests in
 * flight, so memory stays flat whatever MaxThreads allows.
 */
const IN_FLIGHT_BYTES = 160 * 1024 * 1024;
/** Decisions of the requests-in-flight controller shown in a job's Content (`Adaptive`). */
const ADAPTIVE_HISTORY = 40;
const round1 = (n: number): number => Math.round(n * 10) / 10;
/** Largest span before the link is measured. */
const FIRST_SPAN_BYTES = 2 * 1024 * 1024;
/** Decisions a phase that did not finish must have made before its profile of the link is worth keeping. */
const PROFILE_MIN_DECISIONS = 3;
/** Longest a span should take at the rate each request gets (a bound on what one lost request costs). */
const SPAN_SECONDS = 8;

/** One bucket phase: its buckets, its controller and its counters. */
class BucketPhase {
  readonly #r: TransferRun;
  readonly #buckets: readonly Bucket[];
  readonly #direction: Direction;
  readonly #work: SpanWork;
  readonly #retryable: (e: unknown) => boolean;
  readonly #adaptive: AdaptiveConcurrency;
  readonly #meter: BucketMeter;
  /** The link's profile the phase started from, if any. */
  readonly #profile: LinkProfile | undefined;
  /** Largest span handed out (recorded in the link's profile). */
  #spanBytes = 0;
  #completed: number;
  #requests: number;

  constructor(
    r: TransferRun,
    buckets: readonly Bucket[],
    direction: Direction,
    work: SpanWork,
    retryable: (e: unknown) => boolean,
    o: BucketPhaseOptions,
    profile: LinkProfile | undefined,
  ) {
    this.#r = r;
    this.#profile = profile;
    this.#buckets = buckets;
    this.#direction = direction;
    this.#work = work;
    this.#retryable = retryable;
    this.#completed = r.ctx.bucketsDone().size;
    const before = r.ctx.content().BucketRequests;
    this.#requests = typeof before === 'number' ? before : 0;
    this.#adaptive = concurrency(r, buckets, o, profile);
    const adaptive = this.#adaptive;
    this.#meter = { moved: (bytes) => adaptive.progress(bytes), delivered: (total, at) => adaptive.delivered(total, at) };
  }

  /** The job's progress and the plugin's counters (and ours) as they stand. */
  publish(): void {
    const { ctx, stats } = this.#r;
    ctx.setProgress(bucketPhaseProgress(this.#completed, this.#buckets.length));
    ctx.setContent({
      TotalBuckets: this.#buckets.length,
      // Buckets done, as the plugin counts its progress; BucketRequests is the requests that moved them.
      CompletedHttpQueries: this.#completed,
      BucketRequests: this.#requests,
      [SIZE_KEY[this.#direction]]: toMegabytes(stats.wireBytes),
      // Exact, for the dashboard's wire rate (the MB above are rounded).
      WireBytes: stats.wireBytes,
      NetworkSpeedKBs: stats.speedKBs(),
    });
  }

  async run(o: BucketPhaseOptions): Promise<void> {
    const { ctx } = this.#r;
    this.publish();
    this.#r.stats.started();
    const done = ctx.bucketsDone();
    const pending: number[] = [];
    for (let i = 0; i < this.#buckets.length; i++) if (!done.has(i)) pending.push(i);
    const adaptive = this.#adaptive;
    const profile = this.#profile;
    // Where the controller starts, and from what: a link profile (with its age) or the configuration.
    const AdaptiveStart = profile
      ? {
          BucketsInFlight: adaptive.limit,
          Source: 'profile',
          ProfileRateMBs: round1(profile.bytesPerSecond / 1e6),
          ProfileAgeSeconds: Math.round((Date.now() - profile.measuredAt) / 1000),
          ...rttField(startRtt(this.#r, profile)),
        }
      : { BucketsInFlight: adaptive.limit, Source: 'configuration', ...rttField(startRtt(this.#r, profile)) };
    ctx.setContent({ BucketsInFlight: adaptive.limit, AdaptiveStart });
    const queue = new SpanQueue(this.#buckets, pending, { ...o, maxBytes: this.#r.config.Transfers.BucketSize * 1024 });
    const t0 = Date.now();
    const wire0 = this.#r.stats.wireBytes;
    let finished = false;
    try {
      await this.#runAll(queue, t0);
      finished = !ctx.signal.aborted;
    } finally {
      await this.#remember(finished, t0, wire0);
    }
    if (ctx.signal.aborted) throw ctx.signal.reason;
  }

  /** Every span of `queue` moved, as many at once as the controller says. */
  async #runAll(queue: SpanQueue, t0: number): Promise<void> {
    const { ctx } = this.#r;
    const adaptive = this.#adaptive;
    // Under a bandwidth limit, no more requests than the level that reached it (bandwidth/level-cap.ts).
    const cap = new LevelCap(() => this.#r.rateCeiling());
    // The node's running jobs share one ceiling of requests in flight (in-flight.ts): each its fair part.
    const seat = this.#r.inFlight.seat();
    try {
      await runWithLimit(
        () => this.#nextSpan(queue),
        () => seat.level(cap.of(adaptive.limit)),
        (span) => this.#move(span),
        () => ctx.signal.aborted,
        (wake) => this.#watch(adaptive, cap, seat, t0, wake),
      );
    } finally {
      seat.leave();
    }
  }

  /** Wakes the runner after each decision of the controller (published in Content) and when the seat grows. */
  #watch(adaptive: AdaptiveConcurrency, cap: LevelCap, seat: InFlightSeat, t0: number, wake: () => void): () => void {
    const { ctx } = this.#r;
    const offRaise = seat.onRaise(wake);
    const offDecision = adaptive.onDecision(() => {
      cap.observe(adaptive.limit, adaptive.rate);
      // The controller's last decisions, [seconds into the run, requests in flight, MB/s measured].
      const recent = adaptive.history.slice(-ADAPTIVE_HISTORY);
      ctx.setContent({
        BucketsInFlight: adaptive.limit,
        Adaptive: recent.map((d) => [round1((d.at - t0) / 1000), d.limit, round1(d.bytesPerSecond / 1e6)]),
      });
      wake();
    });
    return () => {
      offRaise();
      offDecision();
    };
  }

  /**
   * Records what the link taught this phase in the node's link profiles: after a finished phase, or one cut
   * short (a pause, a failure) that measured a few windows. Never fails the job.
   */
  async #remember(finished: boolean, t0: number, wire0: number): Promise<void> {
    const r = this.#r;
    const store = r.linkProfiles;
    const adaptive = this.#adaptive;
    if (!store || (!finished && adaptive.history.length < PROFILE_MIN_DECISIONS)) return;
    const now = Date.now();
    // Without a measurement (a phase too short for a window), the phase's own average.
    const moved = r.stats.wireBytes - wire0;
    const settled =
      adaptive.settled(now) ?? (now > t0 && moved > 0 ? { limit: adaptive.limit, rate: (moved * 1000) / (now - t0) } : undefined);
    if (!settled || !(settled.rate > 0)) return;
    const gzip = r.q.Compression === 'gzip' && this.#direction === 'push';
    const profile: LinkProfile = {
      version: LINK_PROFILE_VERSION,
      ...linkKey(r, this.#direction),
      requestsInFlight: settled.limit,
      bytesPerSecond: settled.rate,
      windows: Math.min(1_000_000, adaptive.history.length + (this.#profile?.windows ?? 0)),
      spanBytes: this.#spanBytes,
      compression: gzip ? { codec: 'gzip', level: r.gzip.level } : { codec: r.q.Compression },
      // This run's own measure of the link's delay (its small calls), none when it made none.
      rttMs: r.api.rttMs ?? null,
      measuredAt: now,
    };
    try {
      await store.put(profile);
      r.ctx.setContent({
        LinkProfile: {
          BucketsInFlight: profile.requestsInFlight,
          RateMBs: round1(profile.bytesPerSecond / 1e6),
          ...rttField(profile.rttMs ?? undefined),
        },
      });
    } catch (e) {
      r.ctx.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'could not record the link profile');
    }
  }

  /**
   * Guided self-scheduling: half of an even share of what is left, and no more than one request moves in
   * SPAN_SECONDS at the rate each request gets now. Before the first measurement nothing is known of the
   * link: small spans, so that the first requests end (and are measured) soon even on a slow link.
   */
  #nextSpan(queue: SpanQueue): Span | undefined {
    const adaptive = this.#adaptive;
    if (queue.empty) {
      adaptive.drained();
      return undefined;
    }
    const rate = adaptive.rate;
    const perRequest = rate === undefined ? FIRST_SPAN_BYTES : (rate / Math.max(1, adaptive.limit)) * SPAN_SECONDS;
    const span = queue.next(Math.min(queue.bytesLeft / (2 * Math.max(1, adaptive.limit)), perRequest));
    if (span) this.#spanBytes = Math.max(this.#spanBytes, span.bytes);
    return span;
  }

  /** Moves one span with its retries; the first failure for good stops new ones. */
  async #move(span: Span): Promise<void> {
    const r = this.#r;
    const label = spanLabel(span);
    const start = Date.now();
    let attemptStart = start;
    let wire: number;
    try {
      wire = await r.call(
        label,
        // Each attempt (not the waits between them) holds the span's share of the node's in-flight budget.
        (signal, attempt) =>
          r.inFlight.run(
            span.bytes,
            signal,
            () => {
              attemptStart = Date.now();
              return this.#work(span, signal, attempt, this.#meter);
            },
            r.showBudgetWait,
          ),
        (e) => {
          const again = this.#retryable(e);
          if (again) this.#adaptive.failed();
          return again;
        },
      );
    } catch (e) {
      if (r.ctx.signal.aborted || e instanceof TransactionGone) throw e;
      throw r.failure(`${label} of ${this.#buckets.length}`, e, start);
    }
    for (let i = span.first; i <= span.last; i++) await r.ctx.markBucketDone(i);
    this.#completed += span.last - span.first + 1;
    if (wire > 0) this.#requests++;
    r.stats.bucketDone(wire);
    if (wire > 0) r.observe?.(this.#direction === 'push' ? 'send' : 'fetch', (Date.now() - attemptStart) / 1000);
    this.publish();
  }
}

/**
 * The buckets-in-flight controller of a phase: from Threads up to MaxThreads as the measured throughput
 * rewards it, or from the level of the link's profile (within the same bounds), holding it. When each
 * request holds its body whole in memory, it also stays within what IN_FLIGHT_BYTES allows; streamed
 * bodies (gzip to a dicom-xfer peer, every pull) take no more memory the more of them run.
 */
function concurrency(
  r: TransferRun,
  buckets: readonly Bucket[],
  o: BucketPhaseOptions,
  profile: LinkProfile | undefined,
): AdaptiveConcurrency {
  const T = r.config.Transfers;
  let cap = T.MaxThreads;
  if (o.bodiesInMemory) {
    let largest = o.join ? T.BucketSize * 1024 : 0;
    for (const b of buckets) largest = Math.max(largest, bucketSize(b));
    if (largest > 0) cap = Math.min(cap, Math.floor(IN_FLIGHT_BYTES / largest));
  }
  const max = Math.max(T.Threads, cap);
  const clock = o.receiverClock ? 'receiver' : 'local';
  // The link's delay sets how long the slow start's windows last (a few round trips).
  const rtt = startRtt(r, profile);
  const rttMs = rtt === undefined ? {} : { rttMs: rtt };
  if (profile) {
    const initial = clamp(profile.requestsInFlight, Math.min(T.Threads, max), max);
    // A level that was measured is held; one that a short transfer only averaged is climbed from.
    const knownRate = profile.windows > 0 ? { knownRate: profile.bytesPerSecond } : {};
    return new AdaptiveConcurrency({ initial, min: 1, max, clock, ...knownRate, ...rttMs });
  }
  // Joined requests start small (FIRST_SPAN_BYTES): as many of them as put the bytes of Threads whole
  // buckets in flight, the plugin's start, so that the link fills as soon and is measured sooner.
  const initial = o.join ? Math.min(max, Math.max(T.Threads, Math.ceil((T.Threads * T.BucketSize * 1024) / FIRST_SPAN_BYTES))) : T.Threads;
  return new AdaptiveConcurrency({ initial, min: 1, max, clock, ...rttMs });
}

/**
 * The link's round-trip time a phase starts with: what this run's first calls measured (the lookup, the
 * create), else what the link's profile recorded; undefined when neither knows.
 */
function startRtt(r: TransferRun, profile: LinkProfile | undefined): number | undefined {
  return r.api.rttMs ?? profile?.rttMs ?? undefined;
}

/** `{ RttMs }` for a job's Content (ms, one decimal), or nothing when the time is not known. */
function rttField(ms: number | undefined): { RttMs?: number } {
  return ms === undefined ? {} : { RttMs: round1(ms) };
}

function linkKey(r: TransferRun, direction: Direction): LinkKey {
  return { peer: r.q.Peer, url: r.peerUrl, direction };
}

/** The link's profile for this peer and direction, if the node keeps one; a store that fails is only logged. */
async function linkProfileOf(r: TransferRun, direction: Direction): Promise<LinkProfile | undefined> {
  const store = r.linkProfiles;
  if (!store) return undefined;
  try {
    return await store.get(linkKey(r, direction));
  } catch (e) {
    r.ctx.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'could not read the link profile');
    return undefined;
  }
}

/**
 * Moves the buckets not done yet in `direction`; `work` moves one span (see SpanWork), `retryable` says
 * which of its failures are worth another attempt.
 */
export async function runBuckets(
  r: TransferRun,
  buckets: readonly Bucket[],
  direction: Direction,
  work: SpanWork,
  retryable: (e: unknown) => boolean,
  o: BucketPhaseOptions = { join: false },
): Promise<void> {
  const profile = await linkProfileOf(r, direction);
  // The compression level recorded in the profile is not where a push starts: it is the level at the
  // transfer's end, where the CPU has room (few requests left), and a push that started at gzip 6 from it
  // on a busy 2-core machine was bound by its own CPU at half the link's rate. The chooser starts low.
  const phase = new BucketPhase(r, buckets, direction, work, retryable, o, profile);
  // A job of higher Priority may stop the phase (jobs/preemption.ts): what is confirmed stays done.
  return r.ctx.preemptible ? r.ctx.preemptible(() => phase.run(o)) : phase.run(o);
}
