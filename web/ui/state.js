// What the pages share: the jobs as last seen (with a short record of their bytes for a live rate), the
// node's overview and throughput, and a change notification that pages subscribe to.
import * as api from './api.js';
import { toast } from './dom.js';

/** A job's total size in bytes: exact when its Content has TotalBytes, else from the rounded TotalSizeMB. */
export function totalBytes(job) {
  const c = job.Content ?? {};
  if (typeof c.TotalBytes === 'number') return c.TotalBytes;
  return typeof c.TotalSizeMB === 'number' ? c.TotalSizeMB * 1024 * 1024 : undefined;
}

/** The size as shown: "< 1 MB" when Orthanc's rounded MB says 0 of a job that has instances. */
export function sizeText(job, bytesFormat) {
  const c = job.Content ?? {};
  const t = totalBytes(job);
  if (t === undefined) return '–';
  if (t === 0 && typeof c.TotalBytes !== 'number' && (c.TotalInstances ?? 0) > 0) return '< 1 MB';
  return bytesFormat(t);
}

/** Bytes of a job moved so far, estimated from its buckets done and its total size (its Content). */
export function jobBytes(job) {
  const c = job.Content ?? {};
  const total = totalBytes(job) ?? 0;
  const buckets = c.TotalBuckets ?? 0;
  if (job.State === 'Success') return total;
  return buckets > 0 ? (Math.min(c.CompletedHttpQueries ?? 0, buckets) / buckets) * total : 0;
}

/** Bytes of a job that went over the network so far in its current run (Content.WireBytes, exact). */
export function wireBytes(job) {
  const c = job.Content ?? {};
  if (typeof c.WireBytes === 'number') return c.WireBytes;
  const mb = c.UploadedSizeMB ?? c.DownloadedSizeMB;
  return typeof mb === 'number' ? mb * 1024 * 1024 : 0;
}

/** What every page shares: the jobs as last seen, their recent rate, the node's overview. */
export const state = {
  jobs: new Map(),
  /** Job ID -> [{t, bytes}] over the last seconds, for a rate that follows the job closely. */
  samples: new Map(),
  /** Job ID -> what it moves ({PatientName, StudyDescription, StudyDate, ...}). */
  about: new Map(),
  overview: undefined,
  /** [{t, sent, received}] of the node, one a second. */
  throughput: [],
  connected: false,
};

const listeners = new Set();

/** Calls `fn(kind, data)` on every change ('jobs', 'job', 'throughput', 'overview'); answers the unsubscriber. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function emit(kind, data) {
  for (const fn of listeners) {
    try {
      fn(kind, data);
    } catch (e) {
      console.error(e);
    }
  }
}

function sample(job) {
  const now = Date.now();
  let s = state.samples.get(job.ID);
  if (!s) {
    s = [];
    state.samples.set(job.ID, s);
  }
  s.push({ t: now, bytes: jobBytes(job), wire: wireBytes(job) });
  while (s.length > 2 && now - s[0].t > 10_000) s.shift();
}

/** Bytes/s of `key` ('bytes' or 'wire') over the job's last 5 s of samples; undefined before 1.5 s of them. */
function recentRate(job, key) {
  const s = state.samples.get(job.ID) ?? [];
  const last = s[s.length - 1];
  const first = s.find((p) => last && last.t - p.t <= 5000);
  if (last && first && last.t - first.t >= 1500) return Math.max(0, (last[key] - first[key]) / ((last.t - first.t) / 1000));
  return undefined;
}

/**
 * The job's data rate: DICOM bytes (as stored, before compression) moved per second over the last few
 * seconds, or its average since the start before that. The same figure on the row and the job page.
 */
export function jobRate(job) {
  if (job.State !== 'Running') return 0;
  const r = recentRate(job, 'bytes');
  if (r !== undefined) return r;
  const secs = job.EffectiveRuntime ?? 0;
  return secs > 0 ? jobBytes(job) / secs : 0;
}

/**
 * The job's wire rate: bytes on the network (compressed when gzip) per second over the last few seconds,
 * or the job's own average (NetworkSpeedKBs) before that; what the header's rate adds up.
 */
export function wireRate(job) {
  if (job.State !== 'Running') return 0;
  const r = recentRate(job, 'wire');
  if (r !== undefined) return r;
  return (job.Content?.NetworkSpeedKBs ?? 0) * 1024;
}

/** What a job moves (patient, study, date), from /ui/api/jobs/{id}/about: undefined until known. */
const aboutAsked = new Map();
export function aboutOf(job) {
  const known = state.about.get(job.ID);
  if (known) return known;
  const asked = aboutAsked.get(job.ID);
  // Asked again after a while: a pull's study may be found later (on the peer, then here).
  if (asked !== undefined && Date.now() - asked < 15_000) return undefined;
  aboutAsked.set(job.ID, Date.now());
  api
    .get(`/ui/api/jobs/${encodeURIComponent(job.ID)}/about`)
    .then((a) => {
      state.about.set(job.ID, a);
      emit('about', job.ID);
    })
    .catch(() => undefined);
  return undefined;
}

export function setJob(job) {
  state.jobs.set(job.ID, job);
  sample(job);
}

export function setJobs(list) {
  const seen = new Set();
  for (const j of list) {
    if (j && typeof j === 'object' && j.ID) {
      setJob(j);
      seen.add(j.ID);
    }
  }
  for (const id of [...state.jobs.keys()]) if (!seen.has(id)) state.jobs.delete(id);
  emit('jobs');
}

/** Fetches every job again (after an action, or when events cannot be had). */
export async function refreshJobs() {
  try {
    setJobs(await api.get('/jobs?expand'));
  } catch (e) {
    toast(`Cannot read the jobs: ${e.message}`, 'error');
  }
}

export async function refreshOverview() {
  try {
    state.overview = await api.get('/ui/api/overview');
    if (state.throughput.length === 0) state.throughput = state.overview.ThroughputHistory ?? [];
    document.getElementById('node-name').textContent = state.overview.Name;
    document.title = `dicom-xfer · ${state.overview.Name}`;
    emit('overview');
  } catch (e) {
    toast(`Cannot reach the node: ${e.message}`, 'error');
  }
}
