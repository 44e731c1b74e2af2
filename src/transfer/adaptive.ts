// How many buckets a transfer keeps in flight: a goodput hill-climb on bytes as they move. On a lossy
// link each TCP connection gets only a share of the bandwidth (CUBIC at 0.5% loss and 40 ms RTT: about
// 4.5 Mbit/s), so the transfer doubles its parallel requests while that raises the measured throughput,
// returns to the best level once it stops paying, backs off on failures, and probes upwards from time to
// time as the link changes. Windows are timed (not counted in completions), so a slow link with large
// buckets is measured as quickly as a fast one.

export interface AdaptiveOptions {
  /** Buckets in flight at the start (Transfers.Threads). */
  initial: number;
  /** Never fewer than this. */
  min: number;
  /** Never more than this (Transfers.MaxThreads). */
  max: number;
  /** Length of one measurement window. */
  windowMs?: number;
  /** Time after a change before the next window opens (new requests ramp up first). */
  settleMs?: number;
  /** Relative gain that counts as "better" (0.1 = 10%). */
  gain?: number;
  /** Windows spent at the best level before probing upwards again. */
  holdWindows?: number;
}

type Phase = 'climb' | 'probe' | 'hold';

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
  /** When the current window opens (after the settle time of the last change). */
  #windowStart: number;
  #windowBytes = 0;
  #best = { limit: 0, rate: 0 };
  #holdLeft = 0;
  #lastStepDown = -Infinity;
  #lastRate: number | undefined;
  readonly #listeners = new Set<() => void>();
  readonly history: AdaptiveDecision[] = [];

  constructor(opts: AdaptiveOptions, now: number = Date.now()) {
    this.#o = {
      windowMs: 2000,
      settleMs: 1000,
      gain: 0.1,
      holdWindows: 6,
      ...opts,
    };
    this.#o.min = Math.max(1, Math.min(this.#o.min, this.#o.max));
    this.#limit = clamp(opts.initial, this.#o.min, this.#o.max);
    this.#windowStart = now + this.#o.settleMs;
  }

  /** Buckets that may be in flight now. */
  get limit(): number {
    return this.#limit;
  }

  /** Bytes per second of the last measurement window (undefined before the first). */
  get rate(): number | undefined {
    return this.#lastRate;
  }

  /** Calls `fn` whenever the limit changes (a runner then starts more requests at once); answers the unsubscribe. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** `bytes` moved on the wire (while a bucket is under way, or all at once when it ends). */
  progress(bytes: number, now: number = Date.now()): void {
    if (now < this.#windowStart) return;
    this.#windowBytes += bytes;
    this.#maybeDecide(now);
  }

  /** A bucket failed (a retry follows): too many in flight may be the cause, so step down at once. */
  failed(now: number = Date.now()): void {
    // One step down per window: a burst of failures from one outage is one signal, not many.
    if (now - this.#lastStepDown >= this.#o.windowMs) {
      this.#lastStepDown = now;
      this.#best = { limit: Math.max(this.#o.min, Math.floor(this.#limit * 0.7)), rate: 0 };
      this.#enterHold();
      this.#set(this.#best.limit, now);
    }
  }

  #set(limit: number, now: number): void {
    const changed = limit !== this.#limit;
    this.#limit = limit;
    this.#windowStart = now + (changed ? this.#o.settleMs : 0);
    this.#windowBytes = 0;
    if (changed) for (const fn of this.#listeners) fn();
  }

  #maybeDecide(now: number): void {
    const elapsed = now - this.#windowStart;
    if (elapsed < this.#o.windowMs) return;
    const rate = (this.#windowBytes * 1000) / elapsed;
    this.#lastRate = rate;
    const o = this.#o;
    let next = this.#limit;
    if (this.#phase === 'climb' || this.#phase === 'probe') {
      if (rate > this.#best.rate * (1 + o.gain)) {
        // Better than the best so far: keep it and try more (doubling at first, gentler when probing).
        this.#best = { limit: this.#limit, rate };
        next = clamp(this.#phase === 'climb' ? this.#limit * 2 : Math.max(this.#limit + 1, Math.ceil(this.#limit * 1.25)), o.min, o.max);
        if (next === this.#limit) this.#enterHold();
      } else {
        // More parallelism did not pay: back to the best level, and stay there a while.
        if (this.#best.limit > 0) next = this.#best.limit;
        if (this.#best.limit === this.#limit) this.#best.rate = rate;
        this.#enterHold();
      }
    } else {
      // Holding: follow the level's current rate, so that a later probe compares with today's link.
      if (this.#limit === this.#best.limit) this.#best.rate = rate;
      if (--this.#holdLeft <= 0) {
        next = clamp(Math.max(this.#limit + 1, Math.ceil(this.#limit * 1.25)), o.min, o.max);
        if (next !== this.#limit) this.#phase = 'probe';
        else this.#enterHold();
      }
    }
    this.history.push({ at: now, limit: next, bytesPerSecond: rate, phase: this.#phase });
    if (this.history.length > 200) this.history.shift();
    this.#set(next, now);
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
 * Runs `work` on every item with at most `limit()` in flight, re-reading the limit as items finish and
 * whenever `subscribe`'s callback fires (a controller raised it), so the run follows a changing limit.
 * `items` is a list, or a function that hands out the next item (undefined: none left) at the moment a
 * slot frees, so that what it hands out can depend on the state of the run. The first failure stops new
 * items; the ones in flight finish; then the failure is thrown. `stop()` true also stops new items (a pause).
 */
export async function runWithLimit<T>(
  items: readonly T[] | (() => T | undefined),
  limit: () => number,
  work: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
  subscribe?: (wake: () => void) => () => void,
): Promise<void> {
  let at = 0;
  const take: () => T | undefined = typeof items === 'function' ? items : () => (at < items.length ? items[at++] : undefined);
  let exhausted = false;
  let active = 0;
  let failure: { error: unknown } | undefined;
  let unsubscribe: (() => void) | undefined;
  try {
    await new Promise<void>((resolve) => {
      const pump = (): void => {
        while (failure === undefined && !stop() && !exhausted && active < Math.max(1, limit())) {
          const item = take();
          if (item === undefined) {
            exhausted = true;
            break;
          }
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
        if (active === 0 && (failure !== undefined || stop() || exhausted)) resolve();
      };
      unsubscribe = subscribe?.(pump);
      pump();
    });
  } finally {
    unsubscribe?.();
  }
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
