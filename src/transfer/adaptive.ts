// How many buckets a transfer keeps in flight: a goodput hill-climb. On a lossy link each TCP connection
// gets only a share of the bandwidth (CUBIC at 0.5% loss and 40 ms RTT: about 4.5 Mbit/s), so the
// transfer opens more parallel requests while that raises the measured throughput, keeps the best level
// found, backs off on failures, and probes again from time to time as the link changes.

export interface AdaptiveOptions {
  /** Buckets in flight at the start (Transfers.Threads). */
  initial: number;
  /** Never fewer than this. */
  min: number;
  /** Never more than this (Transfers.MaxThreads). */
  max: number;
  /** Shortest measurement window. */
  minWindowMs?: number;
  /** A window also waits for this many completions per bucket in flight (so it sees every worker). */
  completionsPerSlot?: number;
  /** Relative gain that counts as "better" (0.08 = 8%). */
  gain?: number;
  /** Windows spent at the best level before probing upwards again. */
  holdWindows?: number;
}

type Phase = 'climb' | 'hold';

/** Throughput measurement and the decision it leads to, for logs and the job's Content. */
export interface AdaptiveDecision {
  at: number;
  limit: number;
  bytesPerSecond: number;
  phase: Phase;
}

export class AdaptiveConcurrency {
  readonly #o: Required<AdaptiveOptions>;
  #limit: number;
  #phase: Phase = 'climb';
  #windowStart: number;
  #windowBytes = 0;
  #windowCompletions = 0;
  #best = { limit: 0, rate: 0 };
  #holdLeft = 0;
  #lastStepDown = -Infinity;
  readonly history: AdaptiveDecision[] = [];

  constructor(opts: AdaptiveOptions, now: number = Date.now()) {
    this.#o = {
      minWindowMs: 2000,
      completionsPerSlot: 2,
      gain: 0.08,
      holdWindows: 8,
      ...opts,
    };
    this.#o.min = Math.max(1, Math.min(this.#o.min, this.#o.max));
    this.#limit = clamp(opts.initial, this.#o.min, this.#o.max);
    this.#windowStart = now;
  }

  /** Buckets that may be in flight now. */
  get limit(): number {
    return this.#limit;
  }

  /** A bucket finished: `bytes` moved on the wire. */
  completed(bytes: number, now: number = Date.now()): void {
    this.#windowBytes += bytes;
    this.#windowCompletions++;
    this.#maybeDecide(now);
  }

  /** A bucket failed (a retry follows): too many in flight may be the cause, so step down at once. */
  failed(now: number = Date.now()): void {
    // One step down per window: a burst of failures from one outage is one signal, not many.
    if (now - this.#lastStepDown >= this.#o.minWindowMs) {
      this.#lastStepDown = now;
      this.#limit = Math.max(this.#o.min, Math.floor(this.#limit * 0.7));
      this.#phase = 'hold';
      this.#holdLeft = this.#o.holdWindows;
      this.#best = { limit: this.#limit, rate: 0 };
      this.#resetWindow(now);
    }
  }

  #resetWindow(now: number): void {
    this.#windowStart = now;
    this.#windowBytes = 0;
    this.#windowCompletions = 0;
  }

  #maybeDecide(now: number): void {
    const elapsed = now - this.#windowStart;
    if (elapsed < this.#o.minWindowMs) return;
    if (this.#windowCompletions < this.#limit * this.#o.completionsPerSlot) return;
    const rate = (this.#windowBytes * 1000) / elapsed;
    const o = this.#o;
    if (this.#phase === 'climb') {
      if (rate > this.#best.rate * (1 + o.gain)) {
        // Better than anything so far: remember it and try more.
        this.#best = { limit: this.#limit, rate };
        const next = clamp(Math.ceil(this.#limit * 1.5), o.min, o.max);
        if (next === this.#limit) this.#enterHold();
        else this.#limit = next;
      } else {
        // More parallelism did not pay: go back to the best level and stay there a while.
        this.#limit = this.#best.limit || this.#limit;
        this.#enterHold();
      }
    } else {
      // Holding: track the level's current rate so that a later probe compares with today's link.
      this.#best = { limit: this.#limit, rate: Math.max(rate, this.#best.limit === this.#limit ? this.#best.rate * 0.9 : 0) };
      if (--this.#holdLeft <= 0) {
        this.#phase = 'climb';
        const next = clamp(Math.ceil(this.#limit * 1.25), o.min, o.max);
        if (next !== this.#limit) this.#limit = next;
        else this.#enterHold();
      }
    }
    this.history.push({ at: now, limit: this.#limit, bytesPerSecond: rate, phase: this.#phase });
    if (this.history.length > 200) this.history.shift();
    this.#resetWindow(now);
  }

  #enterHold(): void {
    this.#phase = 'hold';
    this.#holdLeft = this.#o.holdWindows;
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, n));
}

/**
 * Runs `work` on every item with at most `limit()` in flight, re-reading the limit as items finish, so a
 * controller can raise or lower it while the run goes on. The first failure stops new items; the ones
 * in flight finish; then the failure is thrown. `stop()` true also stops new items (a pause).
 */
export async function runWithLimit<T>(
  items: readonly T[],
  limit: () => number,
  work: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  let next = 0;
  let active = 0;
  let failure: { error: unknown } | undefined;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (failure === undefined && !stop() && next < items.length && active < Math.max(1, limit())) {
        const item = items[next++] as T;
        active++;
        work(item).then(
          () => {
            active--;
            pump();
          },
          (error: unknown) => {
            active--;
            failure ??= { error };
            pump();
          },
        );
      }
      if (active === 0 && (failure !== undefined || stop() || next >= items.length)) resolve();
    };
    pump();
  });
  if (failure) throw failure.error;
}

export interface GzipLevelOptions {
  /** Level at the start. */
  initial?: number;
  /** Lowest and highest levels used (a single gzip member at any level, so any peer reads it). */
  min?: number;
  max?: number;
  /** Shortest window between two decisions. */
  windowMs?: number;
  /** Busy share above which the level goes down (a share above `lower` + 0.25 takes two steps). */
  lower?: number;
  /** Busy share below which the level goes up. */
  raise?: number;
}

/**
 * The gzip level of a transfer, chosen from where the time goes: when compressing takes a large share
 * of the time (the CPU, not the link, limits the transfer) the level goes down; when it takes little
 * (the link is the limit and the CPU has room), it goes up, so that fewer bytes cross the link.
 * `record(busyMs, totalMs)` feeds it: for a sender, the time spent compressing a bucket and the time the
 * bucket took in all; for a data source, the process' CPU time and the wall time times the cores.
 */
export class AdaptiveGzipLevel {
  readonly #min: number;
  readonly #max: number;
  readonly #windowMs: number;
  readonly #lower: number;
  readonly #raise: number;
  #level: number;
  #busy = 0;
  #total = 0;
  #windowStart: number;

  constructor(opts: GzipLevelOptions = {}, now: number = Date.now()) {
    this.#min = opts.min ?? 1;
    this.#max = opts.max ?? 6;
    this.#windowMs = opts.windowMs ?? 1500;
    this.#lower = opts.lower ?? 0.5;
    this.#raise = opts.raise ?? 0.25;
    this.#level = clamp(opts.initial ?? 3, this.#min, this.#max);
    this.#windowStart = now;
  }

  get level(): number {
    return this.#level;
  }

  record(busyMs: number, totalMs: number, now: number = Date.now()): void {
    this.#busy += Math.max(0, busyMs);
    this.#total += Math.max(0, totalMs);
    if (now - this.#windowStart < this.#windowMs || this.#total <= 0) return;
    const share = this.#busy / this.#total;
    if (share > this.#lower + 0.25) this.#level = clamp(this.#level - 2, this.#min, this.#max);
    else if (share > this.#lower) this.#level = clamp(this.#level - 1, this.#min, this.#max);
    else if (share < this.#raise) this.#level = clamp(this.#level + 1, this.#min, this.#max);
    this.#busy = 0;
    this.#total = 0;
    this.#windowStart = now;
  }
}
