// Deterministic randomness for the data generator: a seeded PRNG, hashes that turn (seed, labels) into
// UIDs and sub-seeds, smooth functions built from + and * only, and precomputed noise tables.
// Everything here gives the same numbers on every machine: no Math.sin/exp/log, only IEEE-exact operations.
import { createHash } from 'node:crypto';

/** SHA-256 of the parts, joined by a separator no label contains. */
function digest(parts: readonly (string | number)[]): Buffer {
  return createHash('sha256').update(parts.map(String).join('\u001f')).digest();
}

/** A DICOM UID under the 2.25 root (UUID-derived arc): "2.25." + the decimal of 128 bits of SHA-256(parts). */
export function uidFor(...parts: (string | number)[]): string {
  const d = digest(parts);
  const n = (d.readBigUInt64BE(0) << 64n) | d.readBigUInt64BE(8);
  return `2.25.${n.toString()}`;
}

/** A 32-bit unsigned integer derived from the parts (for picking names, dates, offsets). */
export function hash32(...parts: (string | number)[]): number {
  return digest(parts).readUInt32BE(0);
}

/**
 * xoshiro128**: a small, fast PRNG on 32-bit integer operations, so identical on every platform.
 * Seeded from SHA-256 of the given parts (never all-zero state).
 */
export class Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  constructor(...parts: (string | number)[]) {
    const d = digest(parts);
    this.#s0 = d.readUInt32LE(0);
    this.#s1 = d.readUInt32LE(4);
    this.#s2 = d.readUInt32LE(8);
    this.#s3 = d.readUInt32LE(12) | 1;
  }

  /** Next 32-bit unsigned integer. */
  u32(): number {
    const s1 = this.#s1;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return r;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Approximately standard normal (Irwin-Hall sum of four uniforms, rescaled to unit variance). */
  gauss(): number {
    return (this.float() + this.float() + this.float() + this.float() - 2) * 1.7320508075688772;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** sin(2πt), from a polynomial after range reduction: deterministic across machines, error below 1e-7. */
export function wave(t: number): number {
  let x = t - Math.floor(t);
  if (x >= 0.5) x -= 1;
  if (x > 0.25) x = 0.5 - x;
  else if (x < -0.25) x = -0.5 - x;
  const y = 2 * Math.PI * x;
  const y2 = y * y;
  return y * (1 - (y2 / 6) * (1 - (y2 / 20) * (1 - (y2 / 42) * (1 - (y2 / 72) * (1 - y2 / 110)))));
}

/** 0 below e0, 1 above e1, a smooth cubic in between. */
export function smoothstep(e0: number, e1: number, x: number): number {
  const t = Math.min(1, Math.max(0, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
}

/** A window that is 0 outside [a, b], 1 in its middle, with smooth edges of width w. */
export function bump(a: number, b: number, w: number, x: number): number {
  return smoothstep(a, a + w, x) * (1 - smoothstep(b - w, b, x));
}

/** Length of noise tables: rows read them at random offsets, so it must exceed deflate's 32 KiB window. */
export const NOISE_LEN = 1 << 20;
/** Extra entries past NOISE_LEN so a row of up to this many samples can start at any offset. */
export const NOISE_PAD = 2048;

const noiseCache = new Map<string, Int16Array>();

/**
 * A table of NOISE_LEN + NOISE_PAD rounded normal samples of standard deviation `sigma`, from (seed, name).
 * Cached (a few tables of 2 MiB each); callers must not modify it.
 */
export function noiseTable(seed: number, name: string, sigma: number): Int16Array {
  const key = `${seed}/${name}/${sigma}`;
  const hit = noiseCache.get(key);
  if (hit) return hit;
  const rng = new Rng('noise', seed, name);
  const t = new Int16Array(NOISE_LEN + NOISE_PAD);
  for (let i = 0; i < t.length; i++) t[i] = Math.round(sigma * rng.gauss());
  if (noiseCache.size > 16) noiseCache.clear();
  noiseCache.set(key, t);
  return t;
}
