// Figures a transfer job publishes (docs/protocol.md#job-content, #job-progress): progress fraction, rounded
// MB/KB, network speed, and Orthanc's timestamp format. The plugin computes several of them in 32-bit floats;
// Math.fround reproduces that so the numbers match an Orthanc peer's to the unit.

const MB = 1024 * 1024;
const KB = 1024;

/**
 * Bytes to whole MiB, rounded to nearest (halves up), as the plugin's TotalSizeMB, UploadedSizeMB and
 * DownloadedSizeMB: the byte count goes through a float first, as in the plugin. 4118738 -> 4.
 */
export function toMegabytes(bytes: number): number {
  return Math.round(Math.fround(bytes) / MB);
}

/** Bytes to whole KiB, rounded to nearest, as the plugin's KB conversion (2048 -> 2, 500 -> 0). */
export function toKilobytes(bytes: number): number {
  return Math.round(Math.fround(bytes) / KB);
}

/**
 * NetworkSpeedKBs: bytes moved by successful bucket queries x 1000 / (1024 x whole milliseconds from
 * the workers' start to the last completion), truncated to an integer; 0 under 10 ms.
 */
export function networkSpeedKBs(bytes: number, elapsedMs: number): number {
  const ms = Math.trunc(elapsedMs);
  if (!(ms >= 10)) return 0;
  return Math.trunc(Math.fround((bytes * 1000) / (1024 * ms)));
}

/**
 * Progress fraction while buckets move (push or pull): (1 + completed) / (2 + total), in float, where
 * the 1 and the 2 stand for the first step (create or lookup) and the commit. It stays at this value
 * during the commit; the job reports 0 before the bucket phase and 1 on success.
 */
export function bucketPhaseProgress(completedBuckets: number, totalBuckets: number): number {
  return Math.fround(Math.fround(1 + completedBuckets) / Math.fround(2 + totalBuckets));
}

/** The job's integer `Progress` (percent) for a fraction p: round(100 p), as Orthanc's core formats it. */
export function progressPercent(p: number): number {
  return Math.round(Math.fround(100 * Math.fround(p)));
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/**
 * Orthanc's timestamp `YYYYMMDDTHHMMSS.ffffff` in UTC, from epoch milliseconds (fractions of a
 * millisecond give the microseconds) or a Date. Like Orthanc's formatter, the fraction is left out when
 * it is exactly zero.
 */
export function formatOrthancTimestamp(time: Date | number): string {
  const epochMs = typeof time === 'number' ? time : time.getTime();
  // Microseconds since the epoch stay exact in a double until the year 2255.
  const epochMicros = Math.round(epochMs * 1000);
  const micros = ((epochMicros % 1e6) + 1e6) % 1e6;
  const d = new Date((epochMicros - micros) / 1000);
  const base =
    pad(d.getUTCFullYear(), 4) +
    pad(d.getUTCMonth() + 1, 2) +
    pad(d.getUTCDate(), 2) +
    'T' +
    pad(d.getUTCHours(), 2) +
    pad(d.getUTCMinutes(), 2) +
    pad(d.getUTCSeconds(), 2);
  return micros === 0 ? base : `${base}.${pad(micros, 6)}`;
}

/** Epoch milliseconds (with microseconds as the fraction) of an Orthanc timestamp; undefined if malformed. */
export function parseOrthancTimestamp(s: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:[.,](\d{1,9}))?$/.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, se, frac] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(se));
  if (Number.isNaN(ms)) return undefined;
  const fraction = frac ? Number(`0.${frac}`) * 1000 : 0;
  return ms + fraction;
}
