// A token bucket that paces bytes onto the wire: tokens accrue at the rate read from a function at each
// refill (so a schedule's change applies within one period), up to a small burst; waiters are served
// first come, first served, each holding only a count, and a waiter whose signal aborts leaves at once.
import { whenAborted } from '../../util/abort.ts';

/** Timers the bucket sleeps with: the platform's, or a test's own with a clock it moves by hand. */
export interface BucketTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const PLATFORM_TIMERS: BucketTimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface TokenBucketOptions {
  /** Bytes per second allowed now; undefined (or 0) means no limit. Read at every refill. */
  rate: () => number | undefined;
  /** Milliseconds since any origin (Date.now by default). */
  now?: () => number;
  timers?: BucketTimers;
  /** The burst, as milliseconds of the rate (default BURST_MS). */
  burstMs?: number;
}

/** The burst, as milliseconds of the rate: small, so that the rate holds on every short window too. */
export const BURST_MS = 100;
/**
 * Longest sleep while someone waits: the rate is read again at least this often, so a change of limit
 * (a schedule's boundary) applies within it even when the bucket owes a long wait at the old rate.
 */
export const PERIOD_MS = 100;

interface Waiter {
  bytes: number;
  resolve(): void;
  reject(reason: unknown): void;
  unwatch: (() => void) | undefined;
}

/** What a bucket has counted since it was made. */
export interface BucketCounts {
  /** Every byte that took or was charged tokens. */
  bytes: number;
  /** The bytes that had to wait for their tokens. */
  throttledBytes: number;
}

export class TokenBucket {
  readonly #rate: () => number | undefined;
  readonly #now: () => number;
  readonly #timers: BucketTimers;
  readonly #burstMs: number;
  /** Tokens (bytes) available; below 0 when a grant larger than the balance was made (a debt). */
  #tokens = 0;
  #last: number;
  #limited = false;
  readonly #queue: Waiter[] = [];
  #timer: unknown;
  readonly counts: BucketCounts = { bytes: 0, throttledBytes: 0 };

  constructor(o: TokenBucketOptions) {
    this.#rate = o.rate;
    this.#now = o.now ?? Date.now;
    this.#timers = o.timers ?? PLATFORM_TIMERS;
    this.#burstMs = o.burstMs ?? BURST_MS;
    this.#last = this.#now();
  }

  /** Bytes per second in force now; undefined when there is no limit. */
  rate(): number | undefined {
    const r = this.#rate();
    return r !== undefined && r > 0 && Number.isFinite(r) ? r : undefined;
  }

  /** Waiters in the queue. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Takes `bytes` tokens: undefined when they are granted at once, else a promise that resolves when they
   * are (in the order asked) or rejects with the signal's reason when it aborts first.
   */
  take(bytes: number, signal?: AbortSignal): Promise<void> | undefined {
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.counts.bytes += bytes;
    const rate = this.#refill();
    if (this.#queue.length === 0 && (rate === undefined || this.#tokens > 0)) {
      if (rate !== undefined) this.#tokens -= bytes;
      return undefined;
    }
    this.counts.throttledBytes += bytes;
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { bytes, resolve, reject, unwatch: undefined };
      if (signal) w.unwatch = whenAborted(signal, () => this.#leave(w, signal.reason));
      this.#queue.push(w);
      this.#schedule(rate);
    });
  }

  /** Counts `bytes` that go without waiting (small control calls): they take tokens, the next waiter pays. */
  charge(bytes: number): void {
    this.counts.bytes += bytes;
    if (this.#refill() !== undefined) this.#tokens -= bytes;
  }

  /** Serves the waiters whose tokens have accrued (the timer calls it; a test calls it after moving its clock). */
  pump(): void {
    this.#timer = undefined;
    const rate = this.#refill();
    while (this.#queue.length > 0 && (rate === undefined || this.#tokens > 0)) {
      const w = this.#queue.shift() as Waiter;
      if (rate !== undefined) this.#tokens -= w.bytes;
      w.unwatch?.();
      w.resolve();
    }
    if (this.#queue.length > 0) this.#schedule(rate);
  }

  /** Tokens accrued since the last refill, capped at the burst; answers the rate in force. */
  #refill(): number | undefined {
    const now = this.#now();
    const rate = this.rate();
    const elapsed = Math.max(0, now - this.#last);
    this.#last = now;
    if (rate === undefined) {
      this.#limited = false;
      this.#tokens = 0;
      return undefined;
    }
    const burst = (rate * this.#burstMs) / 1000;
    // A limit that starts now starts with a full burst, as an idle bucket would have.
    this.#tokens = this.#limited ? Math.min(burst, this.#tokens + (elapsed * rate) / 1000) : burst;
    this.#limited = true;
    return rate;
  }

  #schedule(rate: number | undefined): void {
    if (this.#timer !== undefined) return;
    const ms = rate === undefined ? 0 : Math.min(PERIOD_MS, Math.ceil(((1 - this.#tokens) * 1000) / rate));
    this.#timer = this.#timers.set(() => this.pump(), Math.max(1, ms));
  }

  #leave(w: Waiter, reason: unknown): void {
    const i = this.#queue.indexOf(w);
    if (i < 0) return;
    this.#queue.splice(i, 1);
    w.reject(reason);
    if (this.#queue.length === 0 && this.#timer !== undefined) {
      this.#timers.clear(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Fails every waiter (the node stops). */
  close(reason: unknown): void {
    if (this.#timer !== undefined) this.#timers.clear(this.#timer);
    this.#timer = undefined;
    for (const w of this.#queue.splice(0)) {
      w.unwatch?.();
      w.reject(reason);
    }
  }
}
