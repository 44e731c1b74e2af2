// The gzip level of the bodies a node compresses (push bodies, chunk answers), chosen from the machine's
// CPU against the link: down while the cores are saturated, up while they have room for the next level.
import { clamp, HISTORY } from './common.ts';
import type { CpuShare } from './cpu.ts';

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
