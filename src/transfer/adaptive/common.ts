// Small helpers the adaptive controllers share: bounds, and how much history each keeps.

/** Decisions (or changes of level) each controller keeps in its history. */
export const HISTORY = 200;

export function clamp(n: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, n));
}
