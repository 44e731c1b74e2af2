// How many buckets a transfer keeps in flight: a goodput hill-climb on bytes as they move. On a lossy
// link each TCP connection gets only a share of the bandwidth (CUBIC at 0.5% loss and 40 ms RTT: about
// 4.5 Mbit/s), so the transfer doubles its parallel requests while that raises the measured throughput
// (a slow start on short windows), returns to the best level once it stops paying, backs off on failures,
// and probes upwards from time to time as the link changes. A level that measured well is left only on two
// windows that say so, never on one noisy window. A transfer to a peer whose link is known (its link
// profile) starts at the level that link settled on, holding it. Windows are timed (not counted in
// completions), so a slow link with large buckets is measured as quickly as a fast one.
import { clamp, HISTORY } from './common.ts';

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
  /**
   * The rate (bytes/s) that `initial` reached on an earlier transfer over the same link (its link profile):
   * the controller starts holding that level, with that rate as the level's known rate, instead of climbing.
   */
  knownRate?: number;
  /**
   * The link's round-trip time in ms, when known (the transfer's first calls, or its link profile): the slow
   * start's windows then last a few round trips (CLIMB_WINDOW_RTTS), never less than the fixed fifth of
   * `windowMs` used without it, so that a long link is not judged on windows shorter than its round trips.
   * The figure is an upper bound (it holds the peer's time to answer, and a new connection's set-up), so it
   * only ever lengthens the windows.
   */
  rttMs?: number;
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
  readonly #o: Required<Omit<AdaptiveOptions, 'knownRate' | 'rttMs'>>;
  /** The slow start's window and settle time (ms). */
  readonly #climbWindowMs: number;
  readonly #climbSettleMs: number;
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
  /** Step-downs on failures in a row, each within FAILURE_MEMORY_WINDOWS windows of the one before. */
  #failures = 0;
  /** Windows measured at the level in force since it was set. */
  #windows = 0;
  /** Holding: windows in a row that found another level clearly better than this one. */
  #worse = 0;
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
    const rtt = opts.rttMs !== undefined && Number.isFinite(opts.rttMs) && opts.rttMs >= 0 ? opts.rttMs : undefined;
    const { windowMs, settleMs } = this.#o;
    this.#climbWindowMs = rtt === undefined ? windowMs * 0.2 : clamp(CLIMB_WINDOW_RTTS * rtt, windowMs * 0.2, windowMs);
    // New requests need a round trip or two before their bytes flow (a connection, TCP's own slow start).
    this.#climbSettleMs = rtt === undefined ? settleMs / 4 : clamp(CLIMB_SETTLE_RTTS * rtt, settleMs / 4, settleMs);
    this.#windowStart = now + this.#o.settleMs;
    const known = opts.knownRate;
    if (known !== undefined && Number.isFinite(known) && known > 0) {
      // The link's profile: this level moved `known` bytes/s. It counts as one window of the level, so that
      // the first window measured here is averaged with it rather than taken alone.
      this.#rates.set(this.#limit, { rate: known, at: now });
      this.#lastRate = known;
      this.#enterHold();
      // A level from another transfer may be stale (the link, the load of either machine): the first probe
      // comes after two windows that confirm it, not after a full hold.
      this.#holdLeft = Math.min(this.#holdLeft, PROFILE_HOLD_WINDOWS);
    }
  }

  /** Where the run stands: the phase, and the level it settled on with that level's measured rate. */
  get phase(): Phase {
    return this.#phase;
  }

  /**
   * The level this run settled on and its rate (undefined before any measurement): of the levels measured
   * lately, the highest whose rate is within the noise (`gain`) of the best one, since too few requests cost
   * more than a few too many, and a noisy window (or a noise-driven step down) must not pass on a low level
   * to the next transfer. Without any measured level, the level in force with the last window's rate.
   */
  settled(now: number = Date.now()): { limit: number; rate: number } | undefined {
    let best = 0;
    for (const r of this.#rates.values()) if (now - r.at <= RATE_MEMORY_MS) best = Math.max(best, r.rate);
    let found: { limit: number; rate: number } | undefined;
    for (const [limit, r] of this.#rates) {
      if (now - r.at > RATE_MEMORY_MS || r.rate < best * (1 - this.#o.gain)) continue;
      if (!found || limit > found.limit) found = { limit, rate: r.rate };
    }
    if (found) return found;
    return this.#lastRate === undefined ? undefined : { limit: this.#limit, rate: this.#lastRate };
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

  /**
   * A bucket failed (a retry follows): too many in flight may be the cause, so step down at once. One
   * failure leaves what was measured (a lost connection says little of the link's rate); failures that
   * persist, window after window, mean the link changed, and every rate measured before is forgotten.
   */
  failed(now: number = Date.now()): void {
    // One step down per window: a burst of failures from one outage is one signal, not many.
    if (now - this.#lastStepDown >= this.#o.windowMs) {
      this.#failures = now - this.#lastStepDown <= FAILURE_MEMORY_WINDOWS * this.#o.windowMs ? this.#failures + 1 : 1;
      this.#lastStepDown = now;
      if (this.#failures >= 2) this.#rates.clear();
      this.#enterHold();
      this.#set(Math.max(this.#o.min, Math.floor(this.#limit * 0.7)), now);
    }
  }

  #set(limit: number, now: number): void {
    const changed = limit !== this.#limit;
    this.#limit = limit;
    if (changed) {
      this.#windows = 0;
      this.#worse = 0;
    }
    // A new level is measured once its new requests are under way; the same level at once.
    // The first climb (a slow start) moves on shorter windows: a level that is too low costs the most, and
    // doubling on a link limited per connection shows as a near doubling of the rate, plain through the noise.
    const settle = this.#phase === 'climb' ? this.#climbSettleMs : this.#o.settleMs;
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

  /**
   * How long a window lasts: shorter during the first climb, as short as a few round trips of answers
   * allow (with the receiver's clock a window closes at the first sample after it).
   */
  #windowLength(): number {
    return this.#phase === 'climb' ? this.#climbWindowMs : this.#o.windowMs;
  }

  #decide(rate: number, now: number): void {
    this.#lastRate = rate;
    this.#windows++;
    // A level's rate is the mean of its last two windows: one window on a lossy link is noisy.
    const before = this.#rates.get(this.#limit);
    const mine = before && now - before.at <= RATE_MEMORY_MS ? (before.rate + rate) / 2 : rate;
    this.#rates.set(this.#limit, { rate: mine, at: now });
    const other = this.#bestOther(this.#limit, now);
    const next = this.#phase === 'hold' ? this.#holding(mine, other) : this.#stepping(mine, other);
    if (next !== this.#limit) this.#from = this.#limit;
    this.history.push({ at: now, limit: next, bytesPerSecond: rate, phase: this.#phase });
    if (this.history.length > HISTORY) this.history.shift();
    this.#set(next, now);
  }

  /** Climbing or probing: the next level after a window at this one measured `mine`. */
  #stepping(mine: number, other: { limit: number; rate: number } | undefined): number {
    const o = this.#o;
    const climb = this.#phase === 'climb';
    if (!other || mine > other.rate * (1 + o.gain)) {
      // Better than every other level: try more (doubling at first, gentler when probing).
      const next = clamp(climb ? this.#limit * 2 : Math.max(this.#limit + 1, Math.ceil(this.#limit * 1.25)), o.min, o.max);
      if (next === this.#limit) this.#enterHold();
      return next;
    }
    if (climb) {
      // The slow start stops at its first step that does not pay clearly. It keeps that step unless it
      // measured clearly worse: too few requests cost the most (a lossy link gives each connection a small
      // share; on goodloss a return from 32 to 16 on a noisy window cost a third of the rate for seconds),
      // too many cost a few retransmissions.
      this.#enterHold();
      return mine >= other.rate * (1 - o.gain) ? this.#limit : other.limit;
    }
    // A probe is judged on two windows: one window that measures lower is as likely noise as the link.
    if (!climb && this.#windows < 2) return this.#limit;
    // More parallelism did not pay: back to the level this step came from (a tie when probing favours
    // fewer requests), or to a level that measured clearly better; stay a while.
    this.#enterHold();
    return other.rate > mine * (1 + o.gain) ? other.limit : Math.min(this.#from || this.#limit, this.#limit);
  }

  /** Holding: stay, go to a level that measures clearly better two windows in a row, or probe upwards. */
  #holding(mine: number, other: { limit: number; rate: number } | undefined): number {
    const o = this.#o;
    // Fewer requests must measure better by twice the margin: too few cost the most, and a lower level's
    // rate may rest on one high window (the first after a doubling, while new connections fill their buffers).
    const margin = other && other.limit < this.#limit ? 2 * o.gain : o.gain;
    if (other && other.rate > mine * (1 + margin) && other.limit < this.#limit * 4) {
      // Holding at a level that now measures clearly worse than another: there, if the next window agrees.
      return ++this.#worse >= 2 ? other.limit : this.#limit;
    }
    this.#worse = 0;
    if (--this.#holdLeft > 0) return this.#limit;
    const next = clamp(Math.max(this.#limit + 1, Math.ceil(this.#limit * 1.25)), o.min, o.max);
    if (next !== this.#limit) this.#phase = 'probe';
    else this.#enterHold();
    return next;
  }

  #enterHold(): void {
    this.#phase = 'hold';
    this.#holdLeft = this.#o.holdWindows;
  }
}

/**
 * Round trips in one window of the slow start when the link's RTT is known: the answers of a few round trips.
 * Up to 100 ms the fixed fifth of a window (300 ms) is longer and stays, so that a figure inflated by a
 * connection's set-up (a push to a 40 ms link measured some 90 ms) does not slow the climb where it was right.
 */
const CLIMB_WINDOW_RTTS = 3;
/** Round trips a new level of the slow start settles before its window opens (at least settleMs / 4). */
const CLIMB_SETTLE_RTTS = 2;
/** How long a level's measured rate is trusted when compared with the level in force. */
const RATE_MEMORY_MS = 30_000;
/** Windows a start from a link profile holds its level before it probes upwards. */
const PROFILE_HOLD_WINDOWS = 2;
/** Failures whose step-downs come within this many windows of each other persist: the rates measured go. */
const FAILURE_MEMORY_WINDOWS = 3;
