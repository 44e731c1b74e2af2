// What a push and a pull share for one run of their job: the peer's typed client, the retries with the job's
// outage clock and their trace in the job's Content, the capability probe, the published figures, and the
// bucket phase (bucket-phase.ts) moving every bucket not done yet with as many requests in flight as the
// link rewards (adaptive.ts), joined into spans with bucket-span (spans.ts).
import type { ArrivalSink } from '../routing/arrivals.ts';
import type { Config } from '../config/types.ts';
import type { SendTask } from '../destinations/types.ts';
import { ERRORS, XferError, isXferError } from '../errors.ts';
import { PeerHttpError, type PeerClient, type WireGate } from '../peers/client.ts';
import { formatOrthancTimestamp, networkSpeedKBs, toMegabytes } from '../protocol/progress.ts';
import type { Compression, InstanceInfo } from '../protocol/wire.ts';
import type { Store } from '../store/types.ts';
import { isRetryable, retry, retryOptionsFromConfig, type RetryOptions } from '../util/retry.ts';
import { GzipLevelChooser } from './adaptive/gzip-level.ts';
import type { LinkProfileStore } from './adaptive/link-profile.ts';
import { BYTES_PER_MBIT } from './bandwidth/policy.ts';
import type { InFlight, InFlightShare } from './in-flight.ts';
import { BUCKET_CHECKSUM_STATUS, extensionsEnabled, type PeerCapabilities } from './capabilities.ts';
import { PeerApi } from './peer-api.ts';
import { waitingText } from './waiting.ts';

/** What the jobs need from the node. */
export interface TransferDeps {
  config: Config;
  store: Store;
  /** The HTTP client of a peer; UnknownResource when the peer is not (or no longer) configured. */
  peer(name: string): { client: PeerClient; url: string };
  /** Told the duration of every bucket moved (the successful attempt), for the latency histogram. */
  observeBucket?: (side: 'send' | 'fetch', seconds: number) => void;
  /** The node's one budget of requests and bytes in flight, shared by every job and the chunk answers. */
  inFlight: InFlight;
  /** Told of what a pull job stored, from which peer (routing); none when absent. */
  arrivals?: ArrivalSink;
  /** What the links to the peers taught earlier transfers (bucket-phase.ts starts from it); none when absent. */
  linkProfiles?: LinkProfileStore;
}

/** Which way the bytes go: this node pushes them to the peer, or pulls them from it. */
export type Direction = 'push' | 'pull';

/** The Content key of the bytes moved, by direction (the plugin's names). */
export const SIZE_KEY = { push: 'UploadedSizeMB', pull: 'DownloadedSizeMB' } as const satisfies Record<Direction, string>;

/** What a run needs of its job's query. */
export interface RunQuery {
  Peer: string;
  Compression: Compression;
  SenderTransferID: string;
}

/** Instances and bytes that a transfer did not move because the destination held them already. */
export interface Skipped {
  count: number;
  bytes: number;
}

/** The per-call budget beyond the job's outage budget: the outage clock decides, this only bounds a call. */
const CALL_BUDGET_SLACK_MS = 120_000;

/** Bytes and timings of one run of a job, fed by the bucket streams; the job Content reads it. */
export class RunStats {
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
export class TransactionGone extends XferError {
  constructor(path: string, cause: unknown) {
    super('UnknownResource', `the peer no longer holds the transaction ${path}`, { cause });
  }
}

/** A pulled bucket whose bytes differ from the CRC-32 the data source announced. */
export class ChecksumMismatch extends XferError {
  constructor(what: string) {
    super('CorruptedFile', what);
  }
}

/** A bucket whose bytes arrived different from what was sent (extension bucket-crc32): send it again. */
export function isChecksumRefusal(e: unknown): boolean {
  return (e instanceof PeerHttpError && e.status === BUCKET_CHECKSUM_STATUS) || e instanceof ChecksumMismatch;
}

/** A peer's answer carrying Orthanc's CorruptedFile error (a commit refused for bad MD5 or bad data). */
export function isRemoteCorruptedFile(e: unknown): boolean {
  return e instanceof PeerHttpError && e.remote?.OrthancStatus === ERRORS.CorruptedFile.status;
}

export function isNotFound(e: unknown): boolean {
  return e instanceof PeerHttpError && e.status === 404;
}

export function errorText(e: unknown): string {
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
export function describeFailure(what: string, e: unknown): XferError {
  if (isPeerDiskFull(e))
    return new XferError('FullStorage', `${what}: the receiver's disk is full (HTTP 507): ${errorText(e)}`, { cause: e });
  const code = isXferError(e) ? e.code : 'NetworkProtocol';
  return new XferError(code, `${what}: ${errorText(e)}`, { cause: e });
}

export function totalSize(instances: readonly InstanceInfo[]): number {
  return instances.reduce((s, i) => s + i.Size, 0);
}

/**
 * What both jobs share for one run: the query, the peer's client, the retries (with their outage clock
 * and their trace in the job's Content), the capability probe, and the figures they publish.
 */
export class TransferRun {
  readonly ctx: SendTask<unknown>;
  readonly q: RunQuery;
  readonly config: Config;
  readonly store: Store;
  /** The peer's side of the protocol. */
  readonly api: PeerApi;
  readonly peerUrl: string;
  readonly stats = new RunStats();
  /** The gzip level of this run's bucket bodies (push), chosen from the machine's CPU against the link. */
  readonly gzip = new GzipLevelChooser();
  readonly observe: TransferDeps['observeBucket'];
  /** The node's in-flight budget as this run meets it: shared fairly with the node's other runs. */
  readonly inFlight: InFlightShare;
  /** The bandwidth policy as the peer's client meets it (none without a policy). */
  readonly #wire: WireGate | undefined;
  readonly linkProfiles: LinkProfileStore | undefined;
  readonly #clock: OutageClock;
  #retries: number;
  /** Content.Waiting is shown (a call waits to be tried again). */
  #waiting = false;

  constructor(ctx: SendTask<unknown>, deps: TransferDeps, q: RunQuery, content: Record<string, unknown>) {
    this.ctx = ctx;
    this.q = q;
    this.config = deps.config;
    this.store = deps.store;
    if (Object.keys(content).length > 0) ctx.setContent(content);
    const peer = deps.peer(q.Peer);
    this.api = new PeerApi(peer.client, q.SenderTransferID);
    this.peerUrl = peer.url;
    this.#wire = peer.client.wire;
    this.showRateLimit();
    this.observe = deps.observeBucket;
    this.inFlight = deps.inFlight.share(this);
    this.linkProfiles = deps.linkProfiles;
    this.#clock = new OutageClock(deps.config.Transfers.RetryBudget * 1000);
    const before = ctx.content().Retries;
    this.#retries = typeof before === 'number' ? before : 0;
  }

  /** Bytes per second the bandwidth policy allows this transfer now (the peer's and the node's limits); undefined = none. */
  rateCeiling(): number | undefined {
    const mbps = this.#wire?.limitMbps();
    return mbps === undefined ? undefined : mbps * BYTES_PER_MBIT;
  }

  /** Content.RateLimit: the Mbit/s in force for this transfer, absent when none; kept current as calls start. */
  showRateLimit(): void {
    const mbps = this.#wire?.limitMbps();
    if (this.ctx.content().RateLimit !== mbps) this.ctx.setContent({ RateLimit: mbps });
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
   * Shows (a reason) or clears (undefined) a wait for room in the node's in-flight budget, in Content.Waiting;
   * a retry's wait, shown by noteRetry, is left to the call that ends it.
   */
  readonly showBudgetWait = (reason: string | undefined): void => {
    if (reason !== undefined) this.ctx.setContent({ Waiting: reason });
    else if (!this.#waiting) this.ctx.setContent({ Waiting: undefined });
  };

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
  async call<T>(
    what: string,
    fn: (signal: AbortSignal | undefined, attempt: number) => Promise<T>,
    retryable: (e: unknown) => boolean = isRetryable,
  ): Promise<T> {
    let started = Date.now();
    return retry(
      async (attempt, signal) => {
        started = Date.now();
        this.showRateLimit();
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
      },
      this.#retryOptions(what, retryable, () => started),
    );
  }

  /** As call(), but a final failure becomes an XferError saying what failed, after how long, and why. */
  async mustCall<T>(
    what: string,
    fn: (signal: AbortSignal | undefined, attempt: number) => Promise<T>,
    retryable?: (e: unknown) => boolean,
  ): Promise<T> {
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
      caps = await this.api.capabilities(this.config, (fn) =>
        this.call(
          'the capability probe',
          (signal) => fn(signal),
          (e) => !(e instanceof PeerHttpError && e.badBody) && isRetryable(e),
        ),
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
   * plugin writes: `CompletedHttpQueries`, `NetworkSpeedKBs` and the bytes moved (SIZE_KEY).
   */
  publishCounters(direction: Direction): void {
    const c = this.ctx.content();
    const zero: Record<string, number> = {};
    for (const k of ['CompletedHttpQueries', 'NetworkSpeedKBs', SIZE_KEY[direction]]) if (typeof c[k] !== 'number') zero[k] = 0;
    this.ctx.setContent(zero);
  }
}
