// Figures as people read them: sizes, rates, durations, DICOM dates, job states and errors in plain words.

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 1536 -> "1.5 KB" (binary multiples, as Orthanc's MB). */
export function bytes(n) {
  if (!Number.isFinite(n) || n < 0) return '–';
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${UNITS[i]}`;
}

/** 1, "study", "studies" -> "1 study"; 2 -> "2 studies". */
export function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Bytes per second -> "12.3 MB/s". */
export function rate(bps) {
  if (!Number.isFinite(bps) || bps <= 0) return '0 B/s';
  return `${bytes(bps)}/s`;
}

/** Seconds -> "1 h 02 min", "3 min 05 s", "12 s". */
export function duration(s) {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 10) return `${(Math.round(s * 10) / 10).toFixed(1)} s`;
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

/** Orthanc's timestamp "20240131T101500.123456" (UTC) -> epoch milliseconds, or NaN. */
export function parseOrthancTime(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d+))?$/.exec(s ?? '');
  if (!m) return NaN;
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6], ms);
}

/** Epoch ms -> local "2024-01-31 10:15:00". */
export function localTime(ms) {
  if (!Number.isFinite(ms)) return '–';
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** DICOM date "20240131" -> "2024-01-31". */
export function dicomDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(s ?? '');
  return m ? `${m[1]}-${m[2]}-${m[3]}` : s || '–';
}

/** DICOM person name "DOE^JOHN" -> "DOE, JOHN". */
export function personName(s) {
  if (!s) return '(no name)';
  const [family, given, middle] = s.split('^');
  return [family, [given, middle].filter(Boolean).join(' ')].filter(Boolean).join(', ');
}

/** "PushTransfer" -> "Push". */
export function jobKind(type) {
  return type === 'PushTransfer' ? 'Push' : type === 'PullTransfer' ? 'Pull' : type;
}

/** What an Orthanc error code means for the person watching the transfer. */
const PLAIN = {
  9: 'The connection with the peer failed (it is down, unreachable, or closed the connection).',
  16: 'The peer did not answer in time.',
  17: 'Something the transfer needs was not found (a resource, the peer, or its transaction).',
  20: 'The data arrived damaged: a checksum did not match. Nothing was stored.',
  15: 'The peer answered with something it should not have (a bad document).',
  19: 'The destination has no room left on its disk.',
  29: 'The peer refused the credentials (check Username and Password of the peer).',
  37: 'Canceled by a user.',
  45: 'The peer refused access (check RemoteAccessAllowed and its credentials).',
  6: 'The job could not do this in its current state.',
  [-1]: 'An unexpected error happened inside dicom-xfer.',
};

/** Why a job that is not finished waits (its Content.Waiting), or undefined. */
export function waitingText(job) {
  if (!job || job.State === 'Success' || job.State === 'Failure') return undefined;
  const w = job.Content?.Waiting;
  return typeof w === 'string' && w !== '' ? w : undefined;
}

/** "DOE, JOHN · BRAIN MRI · 2024-01-31": what a job moves, from its about document. */
export function aboutText(about) {
  if (!about) return '';
  const parts = [];
  if (about.PatientName || about.PatientID) parts.push(about.PatientName ? personName(about.PatientName) : about.PatientID);
  if (about.StudyDescription) parts.push(about.StudyDescription);
  if (about.StudyDate) parts.push(dicomDate(about.StudyDate));
  if (about.MoreResources > 0) parts.push(`+${about.MoreResources} more`);
  return parts.join(' · ');
}

/** A failed job's error as a sentence, with the details the node gave. */
export function plainError(job) {
  if (job?.State !== 'Failure') return undefined;
  const base = PLAIN[job.ErrorCode] ?? `${job.ErrorDescription || 'The transfer failed'}.`;
  return { sentence: base, details: job.ErrorDetails || '', code: `${job.ErrorDescription} (${job.ErrorCode})` };
}
