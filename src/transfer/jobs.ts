// The two transfer jobs of the protocol, run by the jobs engine: PushTransfer (docs/protocol.md#push-mode:
// plan, create a transaction on the peer, PUT every bucket, commit) and PullTransfer
// (docs/protocol.md#pull-mode: lookup, GET every bucket into a staging area, commit into the local store).
// Both keep their plan and finished buckets in the jobs database, so a pause, a cancel or a restart never
// sends a finished bucket again. Every call is retried with backoff while the job's outage clock allows
// (RetryBudget), and with a peer that lists them (capabilities.ts) the jobs use the extensions: resume,
// dedupe, async-commit, bucket-crc32, bucket-span. How many requests are in flight adapts to the link
// (adaptive.ts), and with bucket-span so does their size (spans.ts).
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 as zlibCrc32 } from 'node:zlib';
import type { Config } from '../config/types.ts';
import { ERRORS, XferError, isXferError } from '../errors.ts';
import type { AnyJobRunner, JobRunContext, JobRunner, JobType } from '../jobs/engine.ts';
import { bucketSize, scheduleBuckets } from '../protocol/buckets.ts';
import { buildChunkPath } from '../protocol/chunk-url.ts';
import { createGzipStream } from '../protocol/compression.ts';
import { bucketPhaseProgress, formatOrthancTimestamp, networkSpeedKBs, toMegabytes } from '../protocol/progress.ts';
import {
  parseLookupAnswer,
  parsePushHandle,
  sortUniqueInstances,
  toWireLookupRequest,
  toWirePushCreate,
  type Bucket,
  type Compression,
  type InstanceInfo,
  type Resource,
} from '../protocol/wire.ts';
import { PeerHttpError, type PeerClient } from '../peers/client.ts';
import type { Store } from '../store/types.ts';
import { isRetryable, realClock, retry, retryOptionsFromConfig, type RetryOptions } from '../util/retry.ts';
import {
  BUCKET_CHECKSUM_STATUS,
  HEADER_ASYNC_COMMIT,
  HEADER_CRC32,
  HEADER_RECEIVED,
  HEADER_WANT_CRC32,
  RECEIVED_VALUE,
  CRC32_MEMBER,
  crc32Hex,
  PeerCapabilities,
  extensionsEnabled,
  peerCapabilities,
} from './capabilities.ts';
import { mapLimit } from '../util/concurrency.ts';
import { AdaptiveConcurrency, GzipLevelChooser, runWithLimit, watchCpu } from './adaptive.ts';
import {
  PULL_KIND,
  PUSH_KIND,
  type PullContent,
  type PullPrivate,
  type PushContent,
  type PushPrivate,
  type TransferContent,
  type TransferJobQuery,
} from './job-kinds.ts';
import { StagingArea, writtenBy } from './staging.ts';
import { waitingText } from './waiting.ts';
import { SPAN_UNIT, SpanQueue, spanLabel, spanSegment, type Span, type SpanQueueOptions } from './spans.ts';

export type { TransferJobQuery };

/** What push and pull share of their run context (each narrows its Content and private state). */
type TransferContext = JobRunContext<TransferJobQuery, TransferContent, unknown>;

/** What the jobs need from the node. */
export interface TransferDeps {
  config: Config;
  store: Store;
  /** The HTTP client of a peer; UnknownResource when the peer is not (or no longer) configured. */
  peer(name: string): { client: PeerClient; url: string };
  /** Told the duration of every bucket moved (the successful attempt), for the latency histogram. */
  observeBucket?: (side: 'send' | 'fetch', seconds: number) => void;
}

/** How a bucket request reports its progress to the requests-in-flight controller. */
interface BucketMeter {
  /** Body bytes moved by this node, as they go. */
  moved(bytes: number): void;
  /** The receiver's count of the bytes it received for the transfer, at its time in ms (receiver-progress). */
  delivered(total: number, at: number): void;
}

/** Instances and bytes that a transfer did not move because the destination held them already. */
interface Skipped {
  count: number;
  bytes: number;
}


/** New transactions a push makes in one run when the peer loses its transaction (404) before giving up. */
const MAX_TRANSACTIONS_PER_RUN = 4;
/** A bucket refused (or fetched) with a wrong checksum is sent again at once this many times. */
const IMMEDIATE_RESENDS = 3;
/**
 * Most small buckets (SPAN_UNIT) a push transaction is cut into: each is a chunk or more in the create
 * body, which the receiver bounds (Transfers.MaxPushInstances × 672 bytes, 64 MiB by default).
 */
const MAX_SPAN_UNITS = 200_000;
/** Instances per `POST /transfers/have`. */
const HAVE_BATCH = 10_000;
/** Delays between two looks at an asynchronous commit. */
const COMMIT_POLL_MIN_MS = 100;
const COMMIT_POLL_MAX_MS = 2000;
/** Seconds a look at an asynchronous commit may wait on the peer for the commit to end. */
const COMMIT_WAIT_S = 20;
/**
 * Bucket bytes one push with gzip may hold in memory at once (its bodies are compressed whole): it caps
 * the buckets in flight, so memory stays flat whatever MaxThreads allows.
 */
const IN_FLIGHT_BYTES = 160 * 1024 * 1024;
/** Decisions of the requests-in-flight controller shown in a job's Content (`Adaptive`). */
const ADAPTIVE_HISTORY = 40;
const round1 = (n: number): number => Math.round(n * 10) / 10;
/** Largest span before the link is measured. */
const FIRST_SPAN_BYTES = 2 * 1024 * 1024;
/** Longest a span should take at the rate each request gets (a bound on what one lost request costs). */
const SPAN_SECONDS = 8;
/** The per-call budget beyond the job's outage budget: the outage clock decides, this only bounds a call. */
const CALL_BUDGET_SLACK_MS = 120_000;

/** Bytes and timings of one run of a job, fed by the bucket streams; the job Content reads it. */
class RunStats {
  wireBytes = 0;
  #firstStart: number | undefined;
  #lastEnd: number | undefined;

  started(): void {
    this.#firstStart ??= Date.now();
  }

  bucketDone(wire: number): void {
    this.wireBytes += wire;
    this.#lastEnd = Date.now();
  }

  speedKBs(): number {
    if (this.#firstStart === undefined || this.#lastEnd === undefined) return 0;
    return networkSpeedKBs(this.wireBytes, this.#lastEnd - this.#firstStart);
  }
}

/**
 * The job's outage clock: how long its calls have been failing without a single success in between.
 * A failed attempt is retried when it started less than RetryBudget after the first of those failures,
 * so the last attempt starts after the budget: the transfer rides over an outage of the link or of the
 * peer that lasts up to RetryBudget, however many buckets were in flight when it began.
 */
class OutageClock {
  readonly budgetMs: number;
  #failingSince: number | undefined;

  constructor(budgetMs: number) {
    this.budgetMs = budgetMs;
  }

  success(): void {
    this.#failingSince = undefined;
  }

  failure(): void {
    this.#failingSince ??= Date.now();
  }

  /** Whether an attempt that started at `attemptStart` (epoch ms) and failed may be tried again. */
  allowsRetry(attemptStart: number): boolean {
    return this.#failingSince === undefined || attemptStart - this.#failingSince < this.budgetMs;
  }
}

/** The peer no longer holds the push transaction (404): the job makes a new one. */
class TransactionGone extends XferError {
  constructor(path: string, cause: unknown) {
    super('UnknownResource', `the peer no longer holds the transaction ${path}`, { cause });
  }
}

/** A bucket whose bytes arrived different from what was sent (extension bucket-crc32): send it again. */
function isChecksumRefusal(e: unknown): boolean {
  return (e instanceof PeerHttpError && e.status === BUCKET_CHECKSUM_STATUS) || e instanceof ChecksumMismatch;
}

/** A pulled bucket whose bytes differ from the CRC-32 the data source announced. */
class ChecksumMismatch extends XferError {
  constructor(what: string) {
    super('CorruptedFile', what);
  }
}

/** A peer's answer carrying Orthanc's CorruptedFile error (a commit refused for bad MD5 or bad data). */
function isRemoteCorruptedFile(e: unknown): boolean {
  return e instanceof PeerHttpError && e.remote?.OrthancStatus === ERRORS.CorruptedFile.status;
}

function isNotFound(e: unknown): boolean {
  return e instanceof PeerHttpError && e.status === 404;
}

function errorText(e: unknown): string {
  if (isXferError(e)) return e.details ?? e.message;
  return e instanceof Error ? e.message : String(e);
}

/** A peer's answer 507: its disk is full (Orthanc's FullStorage). */
function isPeerDiskFull(e: unknown): boolean {
  return e instanceof PeerHttpError && e.status === ERRORS.FullStorage.http;
}

/**
 * `what` failed because of `e`: an XferError keeping e's code (NetworkProtocol for foreign errors); a peer
 * whose disk is full says so in plain words (FullStorage), not as a protocol error.
 */
function describeFailure(what: string, e: unknown): XferError {
  if (isPeerDiskFull(e)) return new XferError('FullStorage', `${what}: the receiver's disk is full (HTTP 507): ${errorText(e)}`, { cause: e });
  const code = isXferError(e) ? e.code : 'NetworkProtocol';
  return new XferError(code, `${what}: ${errorText(e)}`, { cause: e });
}

function totalSize(instances: readonly InstanceInfo[]): number {
  return instances.reduce((s, i) => s + i.Size, 0);
}

/** Headers of the push calls (docs/protocol.md#headers); Orthanc's sender never asks for 100-continue. */
function pushHeaders(q: TransferJobQuery, cookie: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { 'sender-transfer-id': q.SenderTransferID, ...extra };
  if (cookie) h.cookie = cookie;
  return h;
}

/**
 * What both jobs share for one run: the query, the peer's client, the retries (with their outage clock
 * and their trace in the job's Content), the capability probe, and the bucket workers.
 */
class TransferRun {
  readonly ctx: TransferContext;
  readonly q: TransferJobQuery;
  readonly config: Config;
  readonly store: Store;
  readonly client: PeerClient;
  readonly peerUrl: string;
  readonly stats = new RunStats();
  /** The gzip level of this run's bucket bodies (push), chosen from the machine's CPU against the link. */
  readonly gzip = new GzipLevelChooser();
  readonly #observe: TransferDeps['observeBucket'];
  readonly #clock: OutageClock;
  #retries: number;
  /** Content.Waiting is shown (a call waits to be tried again). */
  #waiting = false;

  constructor(ctx: TransferContext, deps: TransferDeps, content: TransferContent) {
    this.ctx = ctx;
    this.q = ctx.query;
    this.config = deps.config;
    this.store = deps.store;
    ctx.setContent(content);
    const peer = deps.peer(this.q.Peer);
    this.client = peer.client;
    this.peerUrl = peer.url;
    this.#observe = deps.observeBucket;
    this.#clock = new OutageClock(deps.config.Transfers.RetryBudget * 1000);
    const before = ctx.content().Retries;
    this.#retries = typeof before === 'number' ? before : 0;
  }

  get threads(): number {
    return this.config.Transfers.Threads;
  }

  /** Counts a retry and shows it in the Content: `Retries`, `LastRetryCause`, `LastRetryTime`. */
  noteRetry(what: string, error: unknown, delayMs: number): void {
    this.#retries++;
    const cause = `${what}: ${errorText(error)}`;
    this.ctx.log.warn({ what, delayMs, err: errorText(error) }, 'retrying a call');
    this.ctx.setContent({ Retries: this.#retries, LastRetryCause: cause, LastRetryTime: formatOrthancTimestamp(Date.now()) });
    // A wait (not an immediate resend) is shown in plain words until a call succeeds again.
    if (delayMs > 0) {
      this.#waiting = true;
      this.ctx.setContent({ Waiting: waitingText(this.q.Peer, error, delayMs), NextTryTime: formatOrthancTimestamp(Date.now() + delayMs) });
    }
  }

  /**
   * Options of the retry primitive for one call: MaxHttpRetries attempts 1 s apart as the plugin, and
   * with RetryBudget, jittered exponential backoff for as long as the job's outage clock is under it.
   */
  #retryOptions(what: string, retryable: (e: unknown) => boolean, attemptStart: () => number): RetryOptions {
    const base = retryOptionsFromConfig(this.config, {
      signal: this.ctx.signal,
      onRetry: (info) => this.noteRetry(what, info.error, info.delayMs),
      retryable,
    });
    if (this.#clock.budgetMs <= 0) return base;
    return {
      ...base,
      budgetMs: this.#clock.budgetMs + CALL_BUDGET_SLACK_MS,
      retryable: (e) => retryable(e) && this.#clock.allowsRetry(attemptStart()),
    };
  }

  /**
   * Runs `fn` with retries (see #retryOptions); `retryable` decides what is worth another attempt
   * (default: transport failures, 408, 429, 5xx). Rejects with the last error unchanged.
   */
  async call<T>(what: string, fn: (signal: AbortSignal | undefined, attempt: number) => Promise<T>, retryable: (e: unknown) => boolean = isRetryable): Promise<T> {
    let started = Date.now();
    return retry(async (attempt, signal) => {
      started = Date.now();
      try {
        const v = await fn(signal, attempt);
        this.#clock.success();
        if (this.#waiting) {
          this.#waiting = false;
          this.ctx.setContent({ Waiting: undefined, NextTryTime: undefined });
        }
        return v;
      } catch (e) {
        if (!signal?.aborted) this.#clock.failure();
        throw e;
      }
    }, this.#retryOptions(what, retryable, () => started));
  }

  /** As call(), but a final failure becomes an XferError saying what failed, after how long, and why. */
  async mustCall<T>(what: string, fn: (signal: AbortSignal | undefined, attempt: number) => Promise<T>, retryable?: (e: unknown) => boolean): Promise<T> {
    const start = Date.now();
    try {
      return await this.call(what, fn, retryable);
    } catch (e) {
      if (this.ctx.signal.aborted) throw e;
      throw this.failure(what, e, start);
    }
  }

  /** The error that fails the job after `what` failed for good. */
  failure(what: string, e: unknown, since: number): XferError {
    const s = Math.round((Date.now() - since) / 1000);
    const tried = s > 0 ? ` (retried for ${s} s)` : '';
    return describeFailure(`${what} on peer "${this.q.Peer}" failed${tried}`, e);
  }

  /** The extensions the peer lists (none when this node's are off, or the peer is an Orthanc). */
  async capabilities(): Promise<PeerCapabilities> {
    const start = Date.now();
    let caps: PeerCapabilities;
    try {
      // An answer that is not JSON is the peer saying it has none, not a failure worth another try.
      caps = await peerCapabilities(this.config, this.client, (fn) =>
        this.call('the capability probe', (signal) => fn(signal), (e) => !(e instanceof PeerHttpError && e.badBody) && isRetryable(e)),
      );
    } catch (e) {
      if (this.ctx.signal.aborted) throw e;
      throw this.failure('the capability probe', e, start);
    }
    if (extensionsEnabled(this.config)) this.ctx.setContent({ PeerExtensions: caps.list() });
    return caps;
  }

  /** Publishes what was skipped: `SkippedInstances`, `SkippedSizeMB` and the exact `SkippedBytes`. */
  publishSkipped(s: Skipped): void {
    this.ctx.setContent({ SkippedInstances: s.count, SkippedSizeMB: toMegabytes(s.bytes), SkippedBytes: s.bytes });
  }

  publishTotals(instances: readonly InstanceInfo[]): void {
    const bytes = totalSize(instances);
    this.ctx.setContent({ TotalInstances: instances.length, TotalSizeMB: toMegabytes(bytes), TotalBytes: bytes });
  }

  /**
   * The plugin's counters of the bucket phase at 0 until it runs (an earlier run's values stay), so that
   * a job that moves nothing (dedupe found everything at the destination) still carries every key the
   * plugin writes: `CompletedHttpQueries`, `NetworkSpeedKBs` and the bytes moved (`sizeKey`).
   */
  publishCounters(sizeKey: 'UploadedSizeMB' | 'DownloadedSizeMB'): void {
    const c = this.ctx.content();
    const zero: Record<string, number> = {};
    for (const k of ['CompletedHttpQueries', 'NetworkSpeedKBs', sizeKey]) if (typeof c[k] !== 'number') zero[k] = 0;
    this.ctx.setContent(zero);
  }

  /**
   * Moves the buckets not done yet, starting with `Threads` requests in flight (docs/protocol.md#concurrency)
   * and adapting that number to the link, each request with its retries; the first failure for good stops new
   * ones. With `spans.join`, consecutive buckets travel together in one request (a span, see spans.ts), sized
   * to what is left and to the link. `work` moves one span and answers its bytes on the wire (0 when it
   * found the span already there), reporting bytes through `meter.moved` as they go; `sizeKey` names the
   * Content key of the bytes moved. With `receiverClock` the throughput is measured from the receiver's
   * counts that `work` reports through `meter.delivered` (extension receiver-progress), not from `moved`.
   */
  async runBuckets(
    buckets: readonly Bucket[],
    sizeKey: 'UploadedSizeMB' | 'DownloadedSizeMB',
    work: (span: Span, signal: AbortSignal | undefined, attempt: number, meter: BucketMeter) => Promise<number>,
    retryable: (e: unknown) => boolean,
    spans: Omit<SpanQueueOptions, 'maxBytes'> & { receiverClock?: boolean } = { join: false },
  ): Promise<void> {
    const { ctx } = this;
    const done = ctx.bucketsDone();
    let completed = done.size;
    const before = ctx.content().BucketRequests;
    let requests = typeof before === 'number' ? before : 0;
    const publish = () => {
      ctx.setProgress(bucketPhaseProgress(completed, buckets.length));
      ctx.setContent({
        TotalBuckets: buckets.length,
        // Buckets done, as the plugin counts its progress; BucketRequests is the requests that moved them.
        CompletedHttpQueries: completed,
        BucketRequests: requests,
        [sizeKey]: toMegabytes(this.stats.wireBytes),
        // Exact, for the dashboard's wire rate (the MB above are rounded).
        WireBytes: this.stats.wireBytes,
        NetworkSpeedKBs: this.stats.speedKBs(),
      });
    };
    publish();
    this.stats.started();
    const pending: number[] = [];
    for (let i = 0; i < buckets.length; i++) if (!done.has(i)) pending.push(i);
    const adaptive = this.#concurrency(buckets, sizeKey, spans.join, spans.receiverClock === true);
    ctx.setContent({ BucketsInFlight: adaptive.limit });
    const meter: BucketMeter = {
      moved: (bytes) => adaptive.progress(bytes),
      delivered: (total, at) => adaptive.delivered(total, at),
    };
    const queue = new SpanQueue(buckets, pending, { ...spans, maxBytes: this.config.Transfers.BucketSize * 1024 });
    const nextSpan = (): Span | undefined => {
      if (queue.empty) {
        adaptive.drained();
        return undefined;
      }
      // Guided self-scheduling: half of an even share of what is left, and no more than one request
      // moves in SPAN_SECONDS at the rate each request gets now. Before the first measurement nothing is
      // known of the link: small spans, so that the first requests end (and are measured) soon even on a
      // slow link.
      const rate = adaptive.rate;
      const perRequest = rate === undefined ? FIRST_SPAN_BYTES : (rate / Math.max(1, adaptive.limit)) * SPAN_SECONDS;
      return queue.next(Math.min(queue.bytesLeft / (2 * Math.max(1, adaptive.limit)), perRequest));
    };
    const one = async (span: Span): Promise<void> => {
      const label = spanLabel(span);
      const start = Date.now();
      let attemptStart = start;
      let wire: number;
      try {
        wire = await this.call(
          label,
          (signal, attempt) => {
            attemptStart = Date.now();
            return work(span, signal, attempt, meter);
          },
          (e) => {
            const again = retryable(e);
            if (again) adaptive.failed();
            return again;
          },
        );
      } catch (e) {
        if (ctx.signal.aborted || e instanceof TransactionGone) throw e;
        throw this.failure(`${label} of ${buckets.length}`, e, start);
      }
      for (let i = span.first; i <= span.last; i++) ctx.markBucketDone(i);
      completed += span.last - span.first + 1;
      if (wire > 0) requests++;
      this.stats.bucketDone(wire);
      if (wire > 0) this.#observe?.(sizeKey === 'UploadedSizeMB' ? 'send' : 'fetch', (Date.now() - attemptStart) / 1000);
      publish();
    };
    const t0 = Date.now();
    await runWithLimit(nextSpan, () => adaptive.limit, one, () => ctx.signal.aborted, (wake) =>
      adaptive.onDecision(() => {
        // The controller's last decisions, [seconds into the run, requests in flight, MB/s measured].
        const recent = adaptive.history.slice(-ADAPTIVE_HISTORY);
        ctx.setContent({
          BucketsInFlight: adaptive.limit,
          Adaptive: recent.map((d) => [round1((d.at - t0) / 1000), d.limit, round1(d.bytesPerSecond / 1e6)]),
        });
        wake();
      }),
    );
    if (ctx.signal.aborted) throw ctx.signal.reason;
  }

  /**
   * The buckets-in-flight controller of this run: from Threads up to MaxThreads as the measured
   * throughput rewards it. A push with gzip to a peer that does not join buckets (an Orthanc peer) has
   * each body compressed whole into memory before it is sent, so it also stays within what
   * IN_FLIGHT_BYTES allows; streamed bodies (none, gzip to a dicom-xfer peer, every pull) take no more
   * memory the more of them run.
   */
  #concurrency(buckets: readonly Bucket[], sizeKey: 'UploadedSizeMB' | 'DownloadedSizeMB', joined: boolean, receiverClock: boolean): AdaptiveConcurrency {
    const T = this.config.Transfers;
    let cap = T.MaxThreads;
    if (sizeKey === 'UploadedSizeMB' && this.q.Compression === 'gzip' && !joined) {
      let largest = 0;
      for (const b of buckets) largest = Math.max(largest, bucketSize(b));
      if (largest > 0) cap = Math.min(cap, Math.floor(IN_FLIGHT_BYTES / largest));
    }
    const max = Math.max(T.Threads, cap);
    // Joined requests start small (FIRST_SPAN_BYTES): as many of them as put the bytes of Threads whole
    // buckets in flight, the plugin's start, so that the link fills as soon and is measured sooner.
    const initial = joined ? Math.min(max, Math.max(T.Threads, Math.ceil((T.Threads * T.BucketSize * 1024) / FIRST_SPAN_BYTES))) : T.Threads;
    return new AdaptiveConcurrency({ initial, min: 1, max, clock: receiverClock ? 'receiver' : 'local' });
  }
}

/** Expands resources on the local store into sorted, distinct instances with size and MD5 (no file read). */
export async function expandLocal(store: Store, resources: readonly Resource[]): Promise<InstanceInfo[]> {
  const ids = new Set<string>();
  for (const r of resources) {
    if (r.Level === 'Instance') {
      await store.instanceInfo(r.ID);
      ids.add(r.ID);
    } else for (const id of await store.listInstances(r.Level, r.ID)) ids.add(id);
  }
  const found = await store.findInstances([...ids]);
  const out: InstanceInfo[] = [];
  for (const id of ids) {
    const i = found.get(id);
    if (!i) throw new XferError('UnknownResource', `Instance ${id} vanished while the transfer was planned`);
    out.push({ ID: i.id, Size: i.size, MD5: i.md5 });
  }
  return sortUniqueInstances(out);
}

/** The concatenated bytes of a bucket, read from the store as one stream. */
function bucketStream(store: Store, bucket: Bucket): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for (const c of bucket) {
      if (c.Size === 0) continue;
      const s = await store.readRange(c.ID, c.Offset, c.Offset + c.Size);
      for await (const piece of s) yield piece as Buffer;
    }
  }
  return Readable.from(gen(), { objectMode: false });
}

/** A bucket body ready to send, and the CRC-32 of its uncompressed payload when `checksum`. */
interface BucketBody {
  /** In memory, or a stream (of `length` bytes; without, chunked). */
  body: Buffer | { stream: Readable; length?: number };
  crc32?: string;
}

/** CRC-32 of a bucket's payload, read from the store (no copy kept). */
async function bucketCrc32(store: Store, bucket: Bucket): Promise<string> {
  let crc = 0;
  for await (const piece of bucketStream(store, bucket)) crc = zlibCrc32(piece as Buffer, crc);
  return crc32Hex(crc);
}

/**
 * The body of a bucket PUT. Without compression it streams from the store (its CRC-32, when asked, read
 * ahead). With gzip, a peer that takes chunked bodies (a dicom-xfer peer listing bucket-span) gets the
 * member as it is compressed: the bytes leave while the rest is still being read, memory stays at a few
 * zlib buffers per request, and the link's pace holds the compression back; its checksum is the member's
 * own trailer (CRC32_MEMBER). Other peers (Orthanc's
 * plugin wants a Content-Length) get the member compressed into memory first, the CRC-32 taken on the
 * way in; their buckets are the plugin's size.
 */
async function bucketBody(
  store: Store,
  bucket: Bucket,
  compression: Compression,
  checksum: boolean,
  gzip: { level: number; chunked: boolean },
): Promise<BucketBody> {
  if (compression === 'none') {
    const length = bucketSize(bucket);
    const crc32 = checksum ? await bucketCrc32(store, bucket) : undefined;
    const body = { stream: bucketStream(store, bucket), length };
    return crc32 ? { body, crc32 } : { body };
  }
  if (gzip.chunked) {
    // The member's trailer is the payload's CRC-32: the receiver checks that (no read ahead).
    const crc32 = checksum ? CRC32_MEMBER : undefined;
    const raw = bucketStream(store, bucket);
    const gz = createGzipStream(gzip.level);
    // A failed read fails the body (the request is cut), rather than ending the member early.
    raw.on('error', (e) => gz.destroy(e));
    gz.on('close', () => raw.destroy());
    const body = { stream: raw.pipe(gz) };
    return crc32 ? { body, crc32 } : { body };
  }
  let crc = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      crc = zlibCrc32(chunk, crc);
      cb(null, chunk);
    },
  });
  const parts: Buffer[] = [];
  let wire = 0;
  await pipeline(bucketStream(store, bucket), tap, createGzipStream(gzip.level), async (source: AsyncIterable<Buffer>) => {
    for await (const p of source) {
      parts.push(p);
      wire += p.length;
    }
  });
  const body = Buffer.concat(parts, wire);
  return checksum ? { body, crc32: crc32Hex(crc) } : { body };
}

type PushContext = JobRunContext<TransferJobQuery, PushContent, PushPrivate>;
type PullContext = JobRunContext<TransferJobQuery, PullContent, PullPrivate>;

export class PushTransferJob implements JobRunner<TransferJobQuery, PushContent, PushPrivate> {
  readonly kind = PUSH_KIND;
  readonly #deps: TransferDeps;

  constructor(deps: TransferDeps) {
    this.#deps = deps;
  }

  async run(ctx: PushContext): Promise<void> {
    const q = ctx.query;
    const r = new TransferRun(ctx, this.#deps, { Compression: q.Compression, Peer: q.Peer, Resources: q.Resources });
    let state = ctx.loadPrivate();
    if (!state) {
      ctx.setProgress(0);
      // An Orthanc store that is down is waited for (DatabaseUnavailable is retryable), as a peer is.
      state = { instances: await r.call('listing what to send in the store', () => expandLocal(this.#deps.store, q.Resources)) };
      ctx.savePrivate(state);
    }
    r.publishTotals(state.instances);
    r.publishCounters('UploadedSizeMB');
    if (state.skipped) r.publishSkipped(state.skipped);
    const caps = await r.capabilities();

    // A transaction made by an earlier run (before a pause or a restart) may hold more than this node
    // knows: with resume, the receiver says which buckets it has.
    let resuming = state.path !== undefined;
    for (let made = 0; ; ) {
      if (!state.path) {
        if (made >= MAX_TRANSACTIONS_PER_RUN) {
          throw new XferError('NetworkProtocol', `peer "${q.Peer}" lost ${made} transactions of this transfer in a row; giving up`);
        }
        made++;
        state = await this.#open(r, caps, state);
        if (!state.path) {
          // The peer holds everything already: nothing to send, no transaction.
          ctx.setProgress(1);
          return;
        }
        resuming = false;
      } else if (resuming && caps.has('resume')) {
        resuming = false;
        const held = await this.#heldBuckets(r, state.path, state.cookie);
        if (held === undefined) {
          state = this.#forget(ctx, state);
          continue;
        }
        for (const i of held) ctx.markBucketDone(i);
      }
      if (!(await this.#sendBuckets(r, caps, state))) {
        state = this.#forget(ctx, state);
        continue;
      }
      if (!(await this.#commit(r, caps, state))) {
        state = this.#forget(ctx, state);
        continue;
      }
      ctx.setProgress(1);
      return;
    }
  }

  /** Drops a transaction the peer lost; the next round makes a new one. */
  #forget(ctx: PushContext, state: PushPrivate): PushPrivate {
    ctx.log.warn({ path: state.path }, 'the peer no longer holds the transaction: a new one is made');
    const { path: _path, cookie: _cookie, ...rest } = state;
    ctx.clearBucketsDone();
    ctx.savePrivate(rest);
    return rest;
  }

  /**
   * Plans and creates a transaction: with dedupe, only the instances the peer lacks (none at all: the
   * state comes back without a path); the buckets of docs/protocol.md#bucket-scheduling;
   * `POST /transfers/push`.
   */
  async #open(r: TransferRun, caps: PeerCapabilities, state: PushPrivate): Promise<PushPrivate> {
    const { ctx, q } = r;
    let sent = state.instances;
    if (caps.has('dedupe')) {
      const held = await peerHolds(r, state.instances);
      sent = state.instances.filter((i) => !held.has(i.ID));
      const skipped = { count: state.instances.length - sent.length, bytes: totalSize(state.instances) - totalSize(sent) };
      r.publishSkipped(skipped);
      state = { ...state, skipped };
    }
    ctx.clearBucketsDone();
    if (sent.length === 0) {
      ctx.savePrivate(state);
      return state;
    }
    // With bucket-span the transaction is cut into small buckets, and the requests join them as the link
    // allows; past MAX_SPAN_UNITS of them (a create body too large for the receiver), the plugin's buckets.
    const g = r.config.Transfers.BucketSize * 1024;
    const small = caps.has('bucket-span') && totalSize(sent) / SPAN_UNIT <= MAX_SPAN_UNITS;
    const buckets = scheduleBuckets(sent, { bucketSize: small ? Math.min(g, SPAN_UNIT) : g });
    const create = toWirePushCreate({ Instances: sent, Buckets: buckets, Compression: q.Compression });
    const answer = await r.mustCall('creating the transaction', (signal) =>
      r.client.json({
        method: 'POST',
        path: '/transfers/push',
        headers: pushHeaders(q, undefined, { 'content-type': 'application/json' }),
        body: JSON.stringify(create),
        timeoutMs: r.config.Transfers.PeerCommitTimeout * 1000,
        signal,
      }),
    );
    const handle = parsePushHandle(answer.body);
    const next: PushPrivate = { ...state, sent, buckets, path: handle.Path, ...(answer.cookie ? { cookie: answer.cookie } : {}) };
    ctx.savePrivate(next);
    return next;
  }

  /** The buckets the peer's transaction holds (extension resume); undefined when it is gone (404). */
  async #heldBuckets(r: TransferRun, path: string, cookie: string | undefined): Promise<Set<number> | undefined> {
    try {
      const a = await r.call('asking which buckets the transaction holds', (signal) =>
        r.client.json({ method: 'GET', path: `${path}/buckets`, headers: pushHeaders(r.q, cookie), signal }),
      );
      return bucketIndexes(a.body);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      if (r.ctx.signal.aborted) throw e;
      throw r.failure('asking which buckets the transaction holds', e, Date.now());
    }
  }

  /**
   * PUTs the buckets not done (docs/protocol.md#push-mode, step 4). With bucket-crc32 each carries its
   * checksum, and a bucket refused for it is sent again at once; with resume, a bucket is first looked up on
   * the receiver before it is sent again (its earlier attempt may have arrived). Answers false when the peer
   * lost the transaction; a bucket failing for good discards the transaction and fails the job
   * (docs/protocol.md#push-mode, step 6).
   */
  async #sendBuckets(r: TransferRun, caps: PeerCapabilities, state: PushPrivate): Promise<boolean> {
    const { ctx, q, store } = r;
    const path = state.path as string;
    const cookie = state.cookie;
    const buckets = state.buckets ?? [];
    const checksum = caps.has('bucket-crc32');
    // A dicom-xfer peer that joins buckets also takes a body without a Content-Length.
    const spans = caps.has('bucket-span');
    // The receiver says how many bytes arrived: the throughput is measured from that.
    const receiverClock = caps.has('receiver-progress');
    const put = async (span: Span, signal: AbortSignal | undefined, attempt: number, meter: BucketMeter): Promise<number> => {
      if (attempt > 1 && caps.has('resume')) {
        const answer = await r.client
          .json({ method: 'GET', path: `${path}/buckets`, headers: pushHeaders(q, cookie), signal })
          .catch((e: unknown) => {
            throw isNotFound(e) ? new TransactionGone(path, e) : e;
          });
        const held = bucketIndexes(answer.body);
        let all = true;
        for (let i = span.first; i <= span.last && all; i++) all = held.has(i);
        if (all) return 0;
      }
      const target = `${path}/${spanSegment(span)}`;
      const label = spanLabel(span);
      const level = r.gzip.level;
      if (q.Compression === 'gzip') ctx.setContent({ GzipLevel: level });
      const gzip = { level, chunked: spans };
      for (let resend = 0; ; resend++) {
        // A streamed body cannot be replayed: a bucket sent again is read again.
        const { body, crc32 } = await bucketBody(store, span.chunks, q.Compression, checksum, gzip);
        const extra: Record<string, string> = { 'content-type': 'application/octet-stream' };
        if (crc32) extra[HEADER_CRC32] = crc32;
        let sent = 0;
        const onBodyBytes = (n: number): void => {
          sent += n;
          meter.moved(n);
        };
        try {
          const answer = await r.client.buffer({ method: 'PUT', path: target, headers: pushHeaders(q, cookie, extra), body, signal, onBodyBytes });
          if (receiverClock) {
            const value = answer.headers[HEADER_RECEIVED];
            const m = typeof value === 'string' ? RECEIVED_VALUE.exec(value) : null;
            if (m) meter.delivered(Number(m[1]), Number(m[2]));
          }
          return sent;
        } catch (e) {
          if (isNotFound(e)) throw new TransactionGone(path, e);
          if (!isChecksumRefusal(e) || resend >= IMMEDIATE_RESENDS) throw e;
          r.noteRetry(label, e, 0);
        }
      }
    };
    const stopCpu = q.Compression === 'gzip' ? watchCpu(r.gzip, () => true) : undefined;
    try {
      await r.runBuckets(buckets, 'UploadedSizeMB', put, (e) => isChecksumRefusal(e) || isRetryable(e), { join: spans, receiverClock });
      return true;
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      if (e instanceof TransactionGone) return false;
      await this.#discard(r.ctx, r.client, path, cookie);
      throw e;
    } finally {
      stopCpu?.();
    }
  }

  /**
   * Commits the transaction (docs/protocol.md#push-mode, step 5); with async-commit, the commit answers at
   * once and is followed to its end. Answers false when the transaction is gone and the peer does not hold
   * every instance (a new transaction is needed).
   */
  async #commit(r: TransferRun, caps: PeerCapabilities, state: PushPrivate): Promise<boolean> {
    const sent = state.sent ?? state.instances;
    if (caps.has('async-commit')) return this.#commitAsync(r, caps, state, sent);
    const { q } = r;
    const path = state.path as string;
    const start = Date.now();
    // An attempt whose answer never came (cut connection, timeout) may have committed all the same.
    let outcomeUnknown = false;
    try {
      await r.call(
        'the commit',
        async (signal) => {
          try {
            return await r.client.json({
              method: 'POST',
              path: `${path}/commit`,
              headers: pushHeaders(q, state.cookie),
              body: '',
              timeoutMs: r.config.Transfers.PeerCommitTimeout * 1000,
              signal,
            });
          } catch (e) {
            if (!(e instanceof PeerHttpError)) outcomeUnknown = true;
            throw e;
          }
        },
        // A commit refused for bad data (CorruptedFile) fails the same way every time, and the receiver
        // may have dropped the transaction: another attempt would only hide the reason behind a 404.
        (e) => !isRemoteCorruptedFile(e) && isRetryable(e),
      );
      return true;
    } catch (e) {
      if (r.ctx.signal.aborted) throw e;
      // The transaction is gone after an attempt whose answer was lost: the receiver may well have
      // committed it (then removed it). The instances themselves tell.
      if (outcomeUnknown && isNotFound(e) && (await this.#storedAtPeer(r, caps, sent))) {
        r.ctx.log.warn({ path }, 'the commit answer was lost, but the peer holds every instance: the transfer is complete');
        return true;
      }
      throw r.failure('the commit', e, start);
    }
  }

  /**
   * The asynchronous commit (extension async-commit): `POST {path}/commit` with HEADER_ASYNC_COMMIT answers
   * `{"State"}` at once, then `GET {path}/state` until Success or Failure. A retried POST whose first
   * answer was lost gets the recorded outcome (nothing is committed twice); a transaction found Open (the
   * receiver restarted during the commit) is committed again; one that is gone is checked instance by
   * instance. Bounded by PeerCommitTimeout (when not 0).
   */
  async #commitAsync(r: TransferRun, caps: PeerCapabilities, state: PushPrivate, sent: readonly InstanceInfo[]): Promise<boolean> {
    const { ctx, q } = r;
    const path = state.path as string;
    const start = Date.now();
    const limitMs = r.config.Transfers.PeerCommitTimeout * 1000;
    const post = () =>
      r.call('the commit', (signal) =>
        r.client.json({
          method: 'POST',
          path: `${path}/commit`,
          headers: pushHeaders(q, state.cookie, { [HEADER_ASYNC_COMMIT]: '1' }),
          body: '',
          signal,
        }),
      );
    // Long poll: the peer answers when the commit ends (or after COMMIT_WAIT_S), so its end is known at once.
    const look = () =>
      r.call('following the commit', (signal) =>
        r.client.json({
          method: 'GET',
          path: `${path}/state?wait=${COMMIT_WAIT_S}`,
          headers: pushHeaders(q, state.cookie),
          timeoutMs: (COMMIT_WAIT_S + 30) * 1000,
          signal,
        }),
      );
    let delay = COMMIT_POLL_MIN_MS;
    let answer: unknown;
    /** When the commit first found the receiver's disk full. */
    let fullSince: number | undefined;
    try {
      answer = (await post()).body;
      for (let polls = 0; polls < 1_000_000; polls++) {
        const s = commitState(answer);
        if (s.State === 'Success') return true;
        if (s.State === 'Failure') {
          throw new XferError('CorruptedFile', `the peer "${q.Peer}" refused the commit: ${s.Details ?? 'no details'}`);
        }
        if (limitMs > 0 && Date.now() - start > limitMs) {
          throw new XferError('Timeout', `the peer "${q.Peer}" did not finish the commit within ${limitMs / 1000} s (PeerCommitTimeout)`);
        }
        const asked = Date.now();
        answer = (await look()).body;
        // A peer that answers at once although the commit runs (no long poll): wait before asking again.
        if (commitState(answer).State === 'Committing' && Date.now() - asked < COMMIT_POLL_MIN_MS) {
          await realClock.sleep(delay, ctx.signal);
          delay = Math.min(COMMIT_POLL_MAX_MS, delay * 2);
        }
        const open = commitState(answer);
        if (open.State === 'Open' && open.LastCommitStatus === ERRORS.FullStorage.http) {
          // The commit found the receiver's disk full and the transaction is kept: commit again after a
          // pause while the job's outage budget lasts (someone may free space), else fail saying why.
          const full = new XferError('FullStorage', `the receiver's disk is full: ${open.LastCommitDetails ?? 'no details'}`);
          if (fullSince === undefined) fullSince = Date.now();
          if (Date.now() - fullSince >= r.config.Transfers.RetryBudget * 1000) throw full;
          r.noteRetry('the commit', full, delay);
          await realClock.sleep(delay, ctx.signal);
          delay = Math.min(COMMIT_POLL_MAX_MS, delay * 2);
          answer = (await post()).body;
          continue;
        }
        // Open: the receiver restarted during the commit and reloaded the transaction intact.
        if (open.State === 'Open') answer = (await post()).body;
      }
      throw new XferError('Timeout', 'the commit did not end');
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      if (isNotFound(e)) {
        // Gone without a recorded outcome: committed long ago (or during a crash), or dropped.
        if (await this.#storedAtPeer(r, caps, sent)) return true;
        return false;
      }
      if (isXferError(e) && (e.code === 'CorruptedFile' || e.code === 'Timeout') && !(e instanceof PeerHttpError)) throw e;
      if (isXferError(e, 'FullStorage') && !(e instanceof PeerHttpError)) throw r.failure('the commit', e, start);
      throw r.failure('the commit', e, start);
    }
  }

  /**
   * Whether the peer stores every instance with its MD5: through `POST /transfers/have` with dedupe, else
   * Orthanc's `/instances/{id}/attachments/dicom/md5`.
   */
  async #storedAtPeer(r: TransferRun, caps: PeerCapabilities, instances: readonly InstanceInfo[]): Promise<boolean> {
    try {
      if (caps.has('dedupe')) {
        const held = await peerHolds(r, instances);
        return instances.every((i) => held.has(i.ID));
      }
      await mapLimit(instances, r.threads, async (i) => {
        const a = await r.client.buffer({ method: 'GET', path: `/instances/${i.ID}/attachments/dicom/md5`, signal: r.ctx.signal });
        if (a.body.toString('utf8').trim() !== i.MD5) throw new XferError('CorruptedFile', `instance ${i.ID} differs at the peer`);
      });
      return true;
    } catch {
      return false;
    }
  }

  /** DELETE of the transaction, best effort with few retries (the job is failing or canceled). */
  async #discard(ctx: TransferContext, client: PeerClient, path: string, cookie: string | undefined): Promise<void> {
    const q = ctx.query;
    const T = this.#deps.config.Transfers;
    await retry(
      (_a, signal) => client.buffer({ method: 'DELETE', path, headers: pushHeaders(q, cookie), signal }),
      retryOptionsFromConfig({ Transfers: { ...T, RetryBudget: Math.min(T.RetryBudget, 10) } }),
    ).catch((e: unknown) => ctx.log.warn({ err: String(e), path }, 'could not discard the remote transaction'));
  }

  /** A cancelled push discards its transaction on the peer (the plugin leaks it). */
  async cancelled(ctx: PushContext): Promise<void> {
    const state = ctx.loadPrivate();
    if (!state?.path) return;
    try {
      const { client } = this.#deps.peer(ctx.query.Peer);
      await this.#discard(ctx, client, state.path, state.cookie);
    } catch (e) {
      ctx.log.warn({ err: String(e) }, 'could not discard the remote transaction');
    }
  }
}

/** The bucket indexes of a `GET {path}/buckets` answer (`{"Buckets":[...]}`); a bad answer lists none. */
function bucketIndexes(body: unknown): Set<number> {
  const list = (body as { Buckets?: unknown } | null)?.Buckets;
  const out = new Set<number>();
  if (Array.isArray(list)) for (const v of list) if (Number.isSafeInteger(v) && (v as number) >= 0) out.add(v as number);
  return out;
}

/**
 * The `{"State", "Details"}` of an asynchronous commit answer (with, for a transaction open again after a
 * commit that found the disk full, `LastCommitStatus` 507 and its details); anything else counts as still
 * running.
 */
function commitState(body: unknown): { State: string; Details?: string; LastCommitStatus?: number; LastCommitDetails?: string } {
  const o = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const s: { State: string; Details?: string; LastCommitStatus?: number; LastCommitDetails?: string } = {
    State: typeof o.State === 'string' ? o.State : 'Committing',
  };
  if (typeof o.Details === 'string') s.Details = o.Details;
  if (typeof o.LastCommitStatus === 'number') s.LastCommitStatus = o.LastCommitStatus;
  if (typeof o.LastCommitDetails === 'string') s.LastCommitDetails = o.LastCommitDetails;
  return s;
}

/** The IDs among `instances` that the peer holds with the same MD5 (extension dedupe), in batches. */
async function peerHolds(r: TransferRun, instances: readonly InstanceInfo[]): Promise<Set<string>> {
  const held = new Set<string>();
  for (let at = 0; at < instances.length; at += HAVE_BATCH) {
    const batch = instances.slice(at, at + HAVE_BATCH).map((i) => ({ ID: i.ID, MD5: i.MD5 }));
    const a = await r.mustCall('asking which instances the peer holds', (signal) =>
      r.client.json({
        method: 'POST',
        path: '/transfers/have',
        headers: { 'content-type': 'application/json', 'sender-transfer-id': r.q.SenderTransferID },
        body: JSON.stringify(batch),
        signal,
      }),
    );
    const ids = (a.body as { Instances?: unknown } | null)?.Instances;
    const asked = new Set(batch.map((i) => i.ID));
    if (Array.isArray(ids)) for (const id of ids) if (typeof id === 'string' && asked.has(id)) held.add(id);
  }
  return held;
}

export class PullTransferJob implements JobRunner<TransferJobQuery, PullContent, PullPrivate> {
  readonly kind = PULL_KIND;
  readonly #deps: TransferDeps;

  constructor(deps: TransferDeps) {
    this.#deps = deps;
  }

  async run(ctx: PullContext): Promise<void> {
    const { config, store } = this.#deps;
    const q = ctx.query;
    const content: PullContent = { Compression: q.Compression, Peer: q.Peer, Resources: q.Resources };
    if (q.Originator !== undefined) content.Originator = q.Originator;
    const r = new TransferRun(ctx, this.#deps, content);

    let state = ctx.loadPrivate();
    let area: StagingArea;
    if (!state) ctx.setProgress(0);
    const caps = await r.capabilities();
    if (!state) {
      const instances = await this.#lookup(r);
      // Unlike the plugin, an empty pull too says what it moved: nothing.
      r.publishTotals(instances);
      r.publishCounters('DownloadedSizeMB');
      if (instances.length === 0) {
        ctx.setProgress(1);
        return;
      }
      // What the local store already holds with the same MD5 is not fetched again (works with any source).
      let fetched = instances;
      let skipped: Skipped | undefined;
      if (extensionsEnabled(config)) {
        const found = await store.findInstances(instances.map((i) => i.ID));
        fetched = instances.filter((i) => found.get(i.ID)?.md5 !== i.MD5);
        skipped = { count: instances.length - fetched.length, bytes: totalSize(instances) - totalSize(fetched) };
        r.publishSkipped(skipped);
      }
      if (fetched.length === 0) {
        ctx.setProgress(1);
        return;
      }
      // A source with bucket-span serves ranges cheaply: small buckets, joined into requests as the link allows.
      const g = config.Transfers.BucketSize * 1024;
      const buckets = scheduleBuckets(fetched, {
        bucketSize: caps.has('bucket-span') ? Math.min(g, SPAN_UNIT) : g,
        pullBaseUrl: r.peerUrl,
        compression: q.Compression,
      });
      const staging = join(store.stagingRoot(), 'pull', ctx.id);
      area = await StagingArea.create(staging, fetched);
      state = { instances, fetched, buckets, staging, ...(skipped ? { skipped } : {}) };
      ctx.savePrivate(state);
    } else {
      area = await StagingArea.open(state.staging, state.fetched ?? state.instances, writtenBy(state.buckets, ctx.bucketsDone()));
      r.publishTotals(state.instances);
      r.publishCounters('DownloadedSizeMB');
      if (state.skipped) r.publishSkipped(state.skipped);
    }
    // The store makes ready for the commit while the buckets come.
    void store.prepareFiles?.((state.fetched ?? state.instances).length);
    const checksum = caps.has('bucket-crc32');
    const gunzip = q.Compression === 'gzip';

    const fetch = async (span: Span, signal: AbortSignal | undefined, moved: (n: number) => void): Promise<number> => {
      const bucket = span.chunks;
      for (let refetch = 0; ; refetch++) {
        let wire = 0;
        const res = await r.client.stream({
          method: 'GET',
          path: buildChunkPath(bucket, q.Compression),
          headers: checksum ? { [HEADER_WANT_CRC32]: '2' } : undefined,
          signal,
          onBodyBytes: (n) => {
            wire += n;
            moved(n);
          },
        });
        const announced = checksum ? res.headers[HEADER_CRC32] : undefined;
        try {
          // Checked as it is written: a damaged bucket is fetched again and its bytes overwritten.
          await area.writeBucket(bucket, res.body, {
            gunzip,
            ...(signal ? { signal } : {}),
            ...(typeof announced === 'string' ? { crc32: announced } : {}),
          });
          return wire;
        } catch (e) {
          if (!(isXferError(e) && e.http === BUCKET_CHECKSUM_STATUS)) throw e;
          const label = spanLabel(span);
          const mismatch = new ChecksumMismatch(`${label}: ${e.details ?? e.message}`);
          if (refetch >= IMMEDIATE_RESENDS) throw mismatch;
          r.noteRetry(label, mismatch, 0);
        }
      }
    };

    const { buckets } = state;
    const sizes = new Map((state.fetched ?? state.instances).map((i) => [i.ID, i.Size]));
    try {
      await r.runBuckets(buckets, 'DownloadedSizeMB', (span, signal, _attempt, meter) => fetch(span, signal, meter.moved), (e) => isChecksumRefusal(e) || isRetryable(e), {
        join: caps.has('bucket-span'),
        pull: { sizeOf: (id) => sizes.get(id), compression: q.Compression },
      });
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      await area.remove();
      throw e;
    }
    try {
      const staged = await area.staged();
      // An Orthanc store that is down (or too slow) keeps the staged files: the commit is made again.
      await r.call('storing the instances', () => store.commitStaged(staged), (e) => isXferError(e, 'DatabaseUnavailable') || isXferError(e, 'Timeout'));
    } finally {
      await area.remove();
    }
    ctx.setProgress(1);
  }

  /**
   * `POST /transfers/lookup` on the peer (docs/protocol.md#pull-mode, step 2): its instances, sorted and
   * distinct.
   */
  async #lookup(r: TransferRun): Promise<InstanceInfo[]> {
    const { q } = r;
    const answer = await r.mustCall('the lookup', (signal) =>
      r.client.json({
        method: 'POST',
        path: '/transfers/lookup',
        headers: { 'content-type': 'application/json', 'sender-transfer-id': q.SenderTransferID },
        body: JSON.stringify(toWireLookupRequest(q.Resources)),
        signal,
      }),
    );
    let lookup;
    try {
      lookup = parseLookupAnswer(answer.body);
    } catch (e) {
      throw describeFailure(`peer "${q.Peer}" answered the lookup with a bad document`, e);
    }
    if (q.Originator !== undefined && lookup.Originator !== q.Originator) {
      throw new XferError(
        'NetworkProtocol',
        `peer "${q.Peer}" is not the server that asked for this pull (its Originator differs): check RemoteSelf`,
      );
    }
    return sortUniqueInstances(lookup.Instances);
  }

  /** A cancelled pull drops its staging area. */
  async cancelled(ctx: PullContext): Promise<void> {
    const state = ctx.loadPrivate();
    if (state) await StagingArea.discard(state.staging);
  }
}

export function transferRunners(deps: TransferDeps): (type: JobType) => AnyJobRunner {
  const push = new PushTransferJob(deps);
  const pull = new PullTransferJob(deps);
  return (type) => (type === 'PushTransfer' ? push : pull);
}

/** A fresh SenderTransferID when the query has none (docs/protocol.md#headers). */
export function senderTransferId(given: string | undefined): string {
  return given && given.length > 0 ? given : randomUUID();
}
