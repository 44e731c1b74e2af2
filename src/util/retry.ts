// The one retry primitive of dicom-xfer: every outgoing call (peer HTTP, store calls over the network)
// goes through `retry()`, with an attempts limit and/or a time budget, fixed or jittered backoff, one
// predicate saying what is worth another try, an AbortSignal that stops the waiting, and a callback per retry.
import { XferError } from '../errors.ts';
import { whenAborted } from './abort.ts';

/** How long to wait before retry number `retry` (1 for the first retry). */
export type Backoff =
  /** The same delay every time: the plugin's 1 s between MaxHttpRetries attempts. */
  | { kind: 'fixed'; delayMs: number }
  /**
   * "Full jitter": a uniformly random delay in [0, min(capMs, baseMs * 2^(retry-1))], so that many
   * workers failing together do not come back together.
   */
  | { kind: 'exponential'; baseMs: number; capMs: number };

/** Time as the retry loop sees it; tests may pass a fake one that advances instantly. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason as soon as `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export interface RetryInfo {
  /** The attempt that just failed, 1 for the first. */
  attempt: number;
  error: unknown;
  /** How long the loop now waits before the next attempt. */
  delayMs: number;
}

export interface RetryOptions {
  /**
   * Most attempts in all, the first one included (so MaxHttpRetries + 1). Defaults to 1 without a
   * budget and to no limit with one. Infinity without a budget means `minAttempts`: a loop is always bounded.
   */
  maxAttempts?: number;
  /**
   * Milliseconds, counted from the start of the first attempt, after which no new attempt starts: a retry
   * whose delay would end past the budget is not made. At least `minAttempts` are made whatever the budget.
   */
  budgetMs?: number;
  /** Attempts made even when the budget is spent (so the plugin's MaxHttpRetries still holds). Default 1. */
  minAttempts?: number;
  /** Default: fixed 1 s, as the plugin. */
  backoff?: Backoff;
  /** Whether an error is worth another attempt. Default: `isRetryable`. */
  retryable?: (error: unknown) => boolean;
  /**
   * Stops everything: an attempt is not started and a wait ends at once when it aborts; the promise then
   * rejects with the signal's reason. The signal is also handed to each attempt so it can abort a call.
   */
  signal?: AbortSignal;
  /** Called before each wait, e.g. so a job counts and shows its retries. Exceptions in it are ignored. */
  onRetry?: (info: RetryInfo) => void;
  clock?: Clock;
  /** A random number in [0, 1) for the jitter; default Math.random. */
  random?: () => number;
}

/** The real clock: Date.now and timers (a pending wait keeps the process alive, as the call it retries). */
export const realClock: Clock = {
  now: () => Date.now(),
  sleep(ms, signal) {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const timer = setTimeout(() => {
        unwatch?.();
        resolve();
      }, ms);
      // Through the signal's shared listener: many buckets of one job may wait at once.
      const unwatch = signal
        ? whenAborted(signal, () => {
            clearTimeout(timer);
            reject(abortReason(signal));
          })
        : undefined;
    });
  },
};

function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new XferError('CanceledJob', 'the operation was aborted');
}

/** The delay before retry number `retry` (1-based) under `backoff`. */
export function backoffDelay(backoff: Backoff, retry: number, random: () => number = Math.random): number {
  if (backoff.kind === 'fixed') return Math.max(0, backoff.delayMs);
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(retry - 1, 52));
  return Math.max(0, Math.floor(random() * ceiling));
}

/**
 * Runs `fn` until it resolves, a failure is not retryable, or the limits are reached; then rejects with
 * the last error (unchanged, so callers still branch on its code). `fn` receives the attempt number
 * (1-based) and the signal.
 */
export async function retry<T>(fn: (attempt: number, signal: AbortSignal | undefined) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const clock = opts.clock ?? realClock;
  const backoff = opts.backoff ?? { kind: 'fixed', delayMs: 1000 };
  const retryable = opts.retryable ?? isRetryable;
  const random = opts.random ?? Math.random;
  const maxAttempts = opts.maxAttempts ?? (opts.budgetMs !== undefined ? Infinity : 1);
  const minAttempts = Math.min(opts.minAttempts ?? 1, maxAttempts);
  const { signal } = opts;
  const start = clock.now();
  // Bounded by maxAttempts or by the budget (every iteration either returns, throws, or waits on the clock).
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw abortReason(signal);
    try {
      return await fn(attempt, signal);
    } catch (error) {
      if (signal?.aborted) throw abortReason(signal);
      if (attempt >= maxAttempts || !retryable(error)) throw error;
      let delayMs = backoffDelay(backoff, attempt, random);
      const hint = retryAfterMs(error);
      if (hint !== undefined) delayMs = Math.max(delayMs, hint);
      if (attempt >= minAttempts && opts.budgetMs !== undefined) {
        if (clock.now() + delayMs - start > opts.budgetMs) throw error;
      } else if (attempt >= minAttempts && !Number.isFinite(maxAttempts)) {
        throw error; // neither a finite count nor a budget: never loop forever
      }
      try {
        opts.onRetry?.({ attempt, error, delayMs });
      } catch {
        // A failing progress callback must not change the outcome of the call.
      }
      await clock.sleep(delayMs, signal);
    }
  }
}

/**
 * The retry options the plugin's settings give: MaxHttpRetries + 1 attempts 1 s apart; with RetryBudget
 * (dicom-xfer extension) > 0, further attempts with jittered exponential backoff (0.5 s doubling up to 30 s)
 * until RetryBudget seconds have passed since the first attempt.
 */
export function retryOptionsFromConfig(
  config: { Transfers: { MaxHttpRetries: number; RetryBudget: number } },
  extra: Pick<RetryOptions, 'signal' | 'onRetry' | 'clock' | 'retryable'> = {},
): RetryOptions {
  const { MaxHttpRetries, RetryBudget } = config.Transfers;
  if (RetryBudget > 0) {
    return {
      ...extra,
      minAttempts: MaxHttpRetries + 1,
      budgetMs: RetryBudget * 1000,
      backoff: { kind: 'exponential', baseMs: 500, capMs: 30_000 },
    };
  }
  return { ...extra, maxAttempts: MaxHttpRetries + 1, backoff: { kind: 'fixed', delayMs: 1000 } };
}

// ---- what is worth retrying -------------------------------------------------------------------------------

/** Socket and DNS failures that may well not happen again, and undici's own transient failures. */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/** HTTP statuses after which the same request may succeed: timeouts, throttling and server-side trouble. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** The remote HTTP status an error carries (a `status` number on it), if any. */
function statusOf(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const s = (e as { status?: unknown }).status;
  return typeof s === 'number' ? s : undefined;
}

/** A `retryAfterMs` hint on the error (from a Retry-After header), if any. */
function retryAfterMs(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const v = (e as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** The first string `code` found along the error's `cause` chain (at most 8 deep). */
export function systemCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let depth = 0; depth < 8 && typeof cur === 'object' && cur !== null; depth++) {
    const code = (cur as { code?: unknown }).code;
    // XferError's `code` is an Orthanc error name, not a system code: look beneath it.
    if (typeof code === 'string' && !(cur instanceof XferError)) return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The default retry predicate. Retryable: transport failures (ECONNREFUSED, ECONNRESET, timeouts...),
 * HTTP 408, 429 and 5xx, an answer whose body could not be read as expected (`badBody`), and XferErrors
 * whose table entry says so. Not retryable: other statuses (4xx, and non-200 successes such as 201 or 204,
 * which will not change), TLS and certificate failures, aborts, and everything else.
 */
export function isRetryable(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  if ((e as { name?: unknown }).name === 'AbortError') return false;
  if ((e as { badBody?: unknown }).badBody === true) return true;
  const status = statusOf(e);
  if (status !== undefined) return isRetryableStatus(status);
  // NetworkProtocol is how transport failures reach callers: what lies beneath decides. Other codes
  // (Timeout, CorruptedFile, ...) say in the error table whether they are worth another try.
  if (e instanceof XferError && e.code !== 'NetworkProtocol') return e.retryable;
  const code = systemCode(e);
  if (code !== undefined) return TRANSIENT_CODES.has(code);
  return e instanceof XferError ? e.retryable : false;
}
