// How many buckets a transfer keeps in flight: a goodput hill-climb on bytes as they move. On a lossy
// link each TCP connection gets only a share of the bandwidth (CUBIC at 0.5% loss and 40 ms RTT: about
// 4.5 Mbit/s), so the transfer doubles its parallel requests while that raises the measured throughput,
// returns to the best level once it stops paying, backs off on failures, and probes upwards from time to
// time as the link changes. Windows are timed (not counted in completions), so a slow link with large
// buckets is measured as quickly as a fast one. The gzip level of the bodies a node compresses is chosen
// here too, from the machine's CPU against the link.

import { cpus } from 'node:os';

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
  /**
   * Where the rate is measured. 'local' (default): the bytes `progress` reports, as this node moves them.
   * 'receiver': the receiver's own count of the bytes it received, with its clock, as `delivered` reports
   * them; `progress` is then ignored. A pusher hands its bytes to kernel send buffers that hold megabytes
   * per connection, so its own count runs ahead of the link by whatever those buffers took, most of all
   * right after it opens more requests: counted locally, every step up looks like a gain.
   */
  clock?: 'local' | 'receiver';
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
  /** Rate measured at each level (averaged over its recent windows), and when: the map the climb reads. */
  readonly #rates = new Map<number, { rate: number; at: number }>();
  #holdLeft = 0;
  /** The level before the last change: where a step up that did not pay returns to. */
  #from = 0;
  #lastStepDown = -Infinity;
  #lastRate: number | undefined;
  #drained = false;
  /** Receiver clock: the first sample of the current window, and the last sample seen. */
  #windowSample: { total: number; at: number } | undefined;
  #lastSample: { total: number; at: number } | undefined;
  readonly #listeners = new Set<() => void>();
  readonly history: AdaptiveDecision[] = [];

  constructor(opts: AdaptiveOptions, now: number = Date.now()) {
    this.#o = {
      windowMs: 1500,
      settleMs: 700,
      gain: 0.1,
      holdWindows: 6,
      clock: 'local',
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

  /** Calls `fn` after every decision (the limit may have changed: a runner then starts more requests at once); answers the unsubscribe. */
  onDecision(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * No work is left to start: the requests in flight are the last ones, fewer and fewer, so what is
   * measured from now on says nothing of the level. Decisions stop.
   */
  drained(): void {
    this.#drained = true;
  }

  /** `bytes` moved on the wire (while a bucket is under way, or all at once when it ends). */
  progress(bytes: number, now: number = Date.now()): void {
    if (now < this.#windowStart || this.#drained || this.#o.clock === 'receiver') return;
    this.#windowBytes += bytes;
    const elapsed = now - this.#windowStart;
    if (elapsed >= this.#windowLength()) this.#decide((this.#windowBytes * 1000) / elapsed, now);
  }

  /**
   * The receiver's count of the bytes it has received for this transfer (`total`, cumulative) at its own
   * time `at` (ms, any origin): a sample of the bytes that really crossed the link. The window opens at
   * the first sample after the settle time and closes at the first sample a window's length (in the
   * receiver's time) later; the rate is the difference of the two. A count or a time that goes back (the
   * receiver restarted) starts the window again.
   */
  delivered(total: number, at: number, now: number = Date.now()): void {
    if (this.#o.clock !== 'receiver' || this.#drained || !Number.isFinite(total) || !Number.isFinite(at)) return;
    const last = this.#lastSample;
    this.#lastSample = { total, at };
    if (last && (total < last.total || at < last.at)) this.#windowSample = undefined;
    if (now < this.#windowStart) return;
    const first = this.#windowSample;
    if (!first) {
      this.#windowSample = { total, at };
      return;
    }
    const elapsed = at - first.at;
    if (elapsed >= this.#windowLength()) this.#decide(((total - first.total) * 1000) / elapsed, now);
  }

  /** A bucket failed (a retry follows): too many in flight may be the cause, so step down at once. */
  failed(now: number = Date.now()): void {
    // One step down per window: a burst of failures from one outage is one signal, not many.
    if (now - this.#lastStepDown >= this.#o.windowMs) {
      this.#lastStepDown = now;
      // What was measured before the failures says nothing of the link now.
      this.#rates.clear();
      this.#enterHold();
      this.#set(Math.max(this.#o.min, Math.floor(this.#limit * 0.7)), now);
    }
  }

  #set(limit: number, now: number): void {
    const changed = limit !== this.#limit;
    this.#limit = limit;
    // A new level is measured once its new requests are under way; the same level at once.
    // The first climb moves on shorter windows: a level that is too low costs the most, and doubling
    // on a link limited per connection shows as a near doubling of the rate, plain through the noise.
    const settle = this.#phase === 'climb' ? this.#o.settleMs / 2 : this.#o.settleMs;
    this.#windowStart = now + (changed ? settle : 0);
    this.#windowBytes = 0;
    // The same level goes on measuring from the sample that closed the window; a new one from the first
    // sample after its settle time.
    this.#windowSample = changed ? undefined : this.#lastSample;
    for (const fn of this.#listeners) fn();
  }

  /** The level with the highest recent rate other than `except`, if any. */
  #bestOther(except: number, now: number): { limit: number; rate: number } | undefined {
    let best: { limit: number; rate: number } | undefined;
    for (const [limit, r] of this.#rates) {
      if (limit === except || now - r.at > RATE_MEMORY_MS) continue;
      if (!best || r.rate > best.rate) best = { limit, rate: r.rate };
    }
    return best;
  }

  /** How long a window lasts: shorter during the first climb. */
  #windowLength(): number {
    return this.#phase === 'climb' ? this.#o.windowMs * 0.4 : this.#o.windowMs;
  }

  #decide(rate: number, now: number): void {
    this.#lastRate = rate;
    const o = this.#o;
    // A level's rate is the mean of its last two windows: one window on a lossy link is noisy.
    const before = this.#rates.get(this.#limit);
    const mine = before && now - before.at <= RATE_MEMORY_MS ? (before.rate + rate) / 2 : rate;
    this.#rates.set(this.#limit, { rate: mine, at: now });
    const other = this.#bestOther(this.#limit, now);
    let next = this.#limit;
    if (this.#phase === 'climb' || this.#phase === 'probe') {
      if (!other || mine > other.rate * (1 + o.gain)) {
        // Better than every other level: try more (doubling at first, gentler when probing).
        next = clamp(this.#phase === 'climb' ? this.#limit * 2 : Math.max(this.#limit + 1, Math.ceil(this.#limit * 1.25)), o.min, o.max);
        if (next === this.#limit) this.#enterHold();
      } else if (this.#phase === 'climb' && mine >= other.rate) {
        // The first climb's step up did not pay clearly, but measures no worse: stay. Too few requests
        // cost the most (a lossy link gives each connection a small share), a few more cost little.
        this.#enterHold();
      } else {
        // More parallelism did not pay: back to the level this step came from (a tie when probing
        // favours fewer requests), or to a level that measured clearly better; stay a while.
        next = other.rate > mine * (1 + o.gain) ? other.limit : Math.min(this.#from, this.#limit);
        this.#enterHold();
      }
    } else if (other && other.rate > mine * (1 + o.gain) && other.limit < this.#limit * 4) {
      // Holding at a level that now measures clearly worse than another: go there.
      next = other.limit;
    } else if (--this.#holdLeft <= 0) {
      next = clamp(Math.max(this.#limit + 1, Math.ceil(this.#limit * 1.25)), o.min, o.max);
      if (next !== this.#limit) this.#phase = 'probe';
      else this.#enterHold();
    }
    if (next !== this.#limit) this.#from = this.#limit;
    this.history.push({ at: now, limit: next, bytesPerSecond: rate, phase: this.#phase });
    if (this.history.length > HISTORY) this.history.shift();
    this.#set(next, now);
  }

  #enterHold(): void {
    this.#phase = 'hold';
    this.#holdLeft = this.#o.holdWindows;
  }
}

/** Decisions each controller keeps in its history. */
const HISTORY = 200;

/** How long a level's measured rate is trusted when compared with the level in force. */
const RATE_MEMORY_MS = 30_000;

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

/** How busy the machine and this process were between two samples of a CpuMeter. */
export interface CpuShare {
  /** Share of all the machine's cores that were busy, whatever the process (0 to 1). */
  busy: number;
  /** This process' CPU, in cores (1.5: one core and a half busy). */
  own: number;
  /** Cores of the machine. */
  cores: number;
}

/** Samples the machine's CPU times (os.cpus) and this process' (process.cpuUsage), as shares since the last sample. */
export class CpuMeter {
  #last: { idle: number; total: number; own: number; at: number; cores: number } | undefined;

  #read(): { idle: number; total: number; own: number; at: number; cores: number } {
    let idle = 0;
    let total = 0;
    const all = cpus();
    for (const c of all) {
      idle += c.times.idle;
      total += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq;
    }
    const u = process.cpuUsage();
    return { idle, total, own: (u.user + u.system) / 1000, at: performance.now(), cores: Math.max(1, all.length) };
  }

  /** The shares since the previous call; undefined on the first call or when no time has passed. */
  sample(): CpuShare | undefined {
    const now = this.#read();
    const last = this.#last;
    this.#last = now;
    if (!last || now.total <= last.total || now.at <= last.at) return undefined;
    const busy = 1 - (now.idle - last.idle) / (now.total - last.total);
    return { busy: clamp(busy, 0, 1), own: Math.max(0, (now.own - last.own) / (now.at - last.at)), cores: now.cores };
  }
}

/**
 * CPU time per raw byte at each gzip level (1 to 9), relative to level 1: zlib's deflate on this
 * project's generated data set (CT, MR, multi-frame, ultrasound and JPEG series) on an AMD EPYC core
 * moved 62, 54, 48, 50, 35, 33 MB/s at levels 1 to 6; 7 to 9 are estimates, slower still.
 */
const GZIP_COST = [1, 1, 1.16, 1.29, 1.25, 1.76, 1.87, 2.4, 3.5, 4.5];

export interface GzipLevelOptions {
  /** Level at the start. */
  initial?: number;
  /** Lowest and highest levels used (a single gzip member at any level, so any peer reads it). */
  min?: number;
  max?: number;
  /** Shortest time between two decisions. */
  windowMs?: number;
  /** Share of the machine's CPU busy at or above which the level goes down. */
  saturated?: number;
  /** The level goes up only when the machine's CPU, with that level's extra cost, stays under this share. */
  headroom?: number;
}

/**
 * The gzip level of the bodies a node compresses, chosen from the machine's CPU against the link.
 * Compressing harder saves few bytes (level 6 writes about 3% less than level 1 on DICOM pixel data)
 * and costs about twice the CPU, so the level goes up only while the link, not the CPU, is the limit:
 * when the machine's cores are saturated (by this node's compression, by a receiver on the same host,
 * by anything else) the bodies cannot be made fast enough to fill the link, and the level goes down a
 * step; when they have room for the next level's extra cost (this process' own CPU, scaled by the
 * level's relative cost), it goes up a step. Requests in flight run on the thread pool, so several
 * bodies compress at once on all the cores.
 */
export class GzipLevelChooser {
  readonly #min: number;
  readonly #max: number;
  readonly #windowMs: number;
  readonly #saturated: number;
  readonly #headroom: number;
  #level: number;
  #busy = 0;
  #own = 0;
  #samples = 0;
  #cores = 1;
  #windowStart: number;
  /** The last changes of level (at most HISTORY), with the machine's busy share that led to each. */
  readonly history: { at: number; level: number; busy: number }[] = [];

  constructor(opts: GzipLevelOptions = {}, now: number = Date.now()) {
    this.#min = clamp(opts.min ?? 1, 1, 9);
    this.#max = clamp(opts.max ?? 6, this.#min, 9);
    this.#windowMs = opts.windowMs ?? 2000;
    this.#saturated = opts.saturated ?? 0.95;
    this.#headroom = opts.headroom ?? 0.9;
    this.#level = clamp(opts.initial ?? 1, this.#min, this.#max);
    this.#windowStart = now;
  }

  get level(): number {
    return this.#level;
  }

  /** A CPU sample taken while this chooser's bodies were being compressed. */
  observe(cpu: CpuShare, now: number = Date.now()): void {
    this.#busy += cpu.busy;
    this.#own += cpu.own;
    this.#cores = cpu.cores;
    this.#samples++;
    if (now - this.#windowStart < this.#windowMs) return;
    const busy = this.#busy / this.#samples;
    const own = this.#own / this.#samples;
    this.#busy = 0;
    this.#own = 0;
    this.#samples = 0;
    this.#windowStart = now;
    const before = this.#level;
    if (busy >= this.#saturated) {
      this.#level = Math.max(this.#min, this.#level - 1);
    } else if (this.#level < this.#max) {
      const extra = own * ((GZIP_COST[this.#level + 1] ?? 1) / (GZIP_COST[this.#level] ?? 1) - 1);
      if (busy + extra / this.#cores <= this.#headroom) this.#level++;
    }
    if (this.#level !== before) {
      this.history.push({ at: now, level: this.#level, busy });
      // A chunk server lives as long as the node: its changes are not all kept.
      if (this.history.length > HISTORY) this.history.shift();
    }
  }
}

/**
 * Samples the CPU once a second while `active()` says bodies are being compressed, and feeds `chooser`.
 * Answers the function that stops it.
 */
export function watchCpu(chooser: GzipLevelChooser, active: () => boolean, everyMs = 1000): () => void {
  const meter = new CpuMeter();
  meter.sample();
  const timer = setInterval(() => {
    const s = meter.sample();
    if (s && active()) chooser.observe(s);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
