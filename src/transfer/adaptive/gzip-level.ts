// The codec and level of the bodies a node compresses (push bodies, chunk answers), chosen from the machine's
// CPU against the link: zstd with a peer that lists it, else gzip; the level down while the cores are
// saturated, up while they have room for the next level.
import type { Compression } from '../../protocol/wire.ts';
import { ZSTD_MAX_PAYLOAD } from '../../protocol/zstd.ts';
import { clamp, HISTORY } from './common.ts';
import type { CpuShare } from './cpu.ts';

/** The codecs a node compresses with: gzip with any peer, zstd with a dicom-xfer peer that lists it. */
export type Codec = 'gzip' | 'zstd';

/**
 * CPU time per raw byte at each gzip level (1 to 9), relative to level 1: zlib's deflate on this
 * project's generated data set (CT, MR, multi-frame, ultrasound and JPEG series) on an AMD EPYC core
 * moved 62, 54, 48, 50, 35, 33 MB/s at levels 1 to 6; 7 to 9 are estimates, slower still.
 */
const GZIP_COST = [1, 1, 1.16, 1.29, 1.25, 1.76, 1.87, 2.4, 3.5, 4.5];
/**
 * The same for zstd (levels 1 to 9, relative to its level 1): on the project's real DICOM files one core
 * moved 649, 542, 379, 301, 207, 174, 164, 145, 133 MB/s, writing 41.5% of the input at level 1, 39.7% at 2
 * and 38.1% at 9, where gzip moved 106 MB/s at level 1 for 45.7% and 63 MB/s at level 6 for 44.3%. On the
 * generated `small` set of bench:wan (noisy pixels, 4 MiB pieces) level 1 wrote 46.6% at 400 MB/s, level 2
 * 42.1% at 350 MB/s; levels below 1 wrote over 60%. So zstd starts at 1, under half the bytes at the least
 * CPU, which is where a link faster than the cores keeps it (loopback, a LAN: the cores make the bodies and
 * take them apart on both sides), and climbs while the cores have room, as a slow link leaves them.
 */
const ZSTD_COST = [1, 1, 1.2, 1.71, 2.16, 3.1, 3.7, 4.0, 4.5, 4.9];

/** Each codec's cost table and levels: gzip up to the plugin's level, zstd up to where it stops paying. */
const CODECS: Record<Codec, { cost: number[]; min: number; initial: number; max: number }> = {
  gzip: { cost: GZIP_COST, min: 1, initial: 1, max: 6 },
  zstd: { cost: ZSTD_COST, min: 1, initial: 1, max: 9 },
};

/**
 * The compression a transfer puts on the wire: none when asked for none; otherwise ("gzip", the plugin's
 * "compress", or "zstd") zstd when the peer lists the extension and the largest body's payload
 * (`largest`: its bucket size allows) fits in one zstd body, and gzip, which any peer reads, when not.
 */
export function wireCompression(requested: Compression, peerListsZstd: boolean, largest = 0): Compression {
  if (requested === 'none') return 'none';
  return peerListsZstd && largest <= ZSTD_MAX_PAYLOAD ? 'zstd' : 'gzip';
}

/** Why a transfer that asked for zstd uses gzip with `peer` (a job's CompressionNote). */
export function zstdFallbackNote(peer: string, peerListsZstd: boolean): string {
  return `zstd is not used with peer "${peer}" (${peerListsZstd ? 'BucketSize over 32 MiB' : 'it does not list the extension'}): gzip`;
}

export interface GzipLevelOptions {
  /** The codec whose level is chosen (gzip by default); its table of costs and levels. */
  codec?: Codec;
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
  #codec: Codec;
  #cost: number[];
  #min: number;
  #max: number;
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
    this.#codec = opts.codec ?? 'gzip';
    const c = CODECS[this.#codec];
    this.#cost = c.cost;
    this.#min = clamp(opts.min ?? c.min, 1, 9);
    this.#max = clamp(opts.max ?? c.max, this.#min, 9);
    this.#windowMs = opts.windowMs ?? 2000;
    this.#saturated = opts.saturated ?? 0.95;
    this.#headroom = opts.headroom ?? 0.9;
    this.#level = clamp(opts.initial ?? c.initial, this.#min, this.#max);
    this.#windowStart = now;
  }

  get level(): number {
    return this.#level;
  }

  get codec(): Codec {
    return this.#codec;
  }

  /** What the bodies are compressed with now (what a link profile keeps). */
  choice(): { codec: Codec; level: number } {
    return { codec: this.#codec, level: this.#level };
  }

  /**
   * Chooses the level of `codec` from now on (a transfer learns its codec once it knows its peer): another
   * codec starts again at its first level, within its own range.
   */
  useCodec(codec: Codec): void {
    if (codec === this.#codec) return;
    const c = CODECS[codec];
    this.#codec = codec;
    this.#cost = c.cost;
    this.#min = c.min;
    this.#max = c.max;
    this.#level = c.initial;
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
      const extra = own * ((this.#cost[this.#level + 1] ?? 1) / (this.#cost[this.#level] ?? 1) - 1);
      if (busy + extra / this.#cores <= this.#headroom) this.#level++;
    }
    if (this.#level !== before) {
      this.history.push({ at: now, level: this.#level, busy });
      // A chunk server lives as long as the node: its changes are not all kept.
      if (this.history.length > HISTORY) this.history.shift();
    }
  }
}
