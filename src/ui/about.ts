// What a job moves, as people name it: the patient, the study's description and date, read from the
// local store (embedded, or the Orthanc of an Orthanc store) and, for a pull whose data has not arrived
// yet, from the peer's Orthanc REST API. The dashboard shows it on job rows and job pages.
import type { Level } from '../dicom/types.ts';
import type { Peers } from '../peers/peers.ts';
import type { Resource } from '../protocol/wire.ts';
import { embeddedApiOf } from '../api/orthanc-api.ts';
import { OrthancStore } from '../store/orthanc/store.ts';
import type { Store } from '../store/types.ts';

export interface JobAbout {
  PatientName: string | null;
  PatientID: string | null;
  StudyDescription: string | null;
  StudyDate: string | null;
  /** Resources of the job beyond the first (the one described). */
  MoreResources: number;
  /** Where the description was read. */
  From: 'store' | 'peer';
}

type Get = (level: Level, id: string) => Promise<Record<string, unknown> | undefined>;

const PATH: Record<Level, string> = { Patient: 'patients', Study: 'studies', Series: 'series', Instance: 'instances' };
/** Longest wait for one look-up: the dashboard must not hang on a slow peer. */
const LOOKUP_TIMEOUT_MS = 5000;
const ORTHANC_ID = /^[0-9a-f]{8}(-[0-9a-f]{8}){4}$/;

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function text(o: Record<string, unknown>, key: string): string | null {
  const v = o[key];
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/** The resource getter of the local store: the embedded index, or the Orthanc's REST API through the store's client. */
export function storeGetter(store: Store): Get {
  const embedded = embeddedApiOf(store);
  if (embedded) return async (level, id) => (await embedded.getResource(level, id)) as Record<string, unknown> | undefined;
  if (!(store instanceof OrthancStore)) return async () => undefined;
  return async (level, id) => {
    try {
      return obj(await store.getJson(`/${PATH[level]}/${id}`, AbortSignal.timeout(LOOKUP_TIMEOUT_MS)));
    } catch {
      return undefined;
    }
  };
}

/** The resource getter of a peer (its Orthanc REST API). */
export function peerGetter(peers: Peers, name: string): Get {
  return async (level, id) => {
    if (!peers.get(name)) return undefined;
    try {
      const a = await peers.client(name).json({ method: 'GET', path: `/${PATH[level]}/${id}`, timeoutMs: LOOKUP_TIMEOUT_MS });
      return obj(a.body);
    } catch {
      return undefined;
    }
  };
}

/** Describes the first of `resources` through the first getter that knows it; undefined when none does. */
export async function describeResources(
  resources: readonly Resource[],
  getters: readonly Get[],
): Promise<(Omit<JobAbout, 'From'> & { From: number }) | undefined> {
  const first = resources[0];
  if (!first || !ORTHANC_ID.test(first.ID)) return undefined;
  for (let g = 0; g < getters.length; g++) {
    const get = getters[g] as Get;
    try {
      let level: Level = first.Level;
      let r = await get(level, first.ID);
      // Up to the study: an instance's series, a series' study.
      for (let up = 0; r && up < 2 && (level === 'Instance' || level === 'Series'); up++) {
        const parent = level === 'Instance' ? text(r, 'ParentSeries') : text(r, 'ParentStudy');
        level = level === 'Instance' ? 'Series' : 'Study';
        r = parent ? await get(level, parent) : undefined;
      }
      if (!r) continue;
      const main = obj(r.MainDicomTags);
      const patient = level === 'Patient' ? main : obj(r.PatientMainDicomTags);
      const studies = Array.isArray(r.Studies) ? r.Studies.length : 0;
      return {
        PatientName: text(patient, 'PatientName'),
        PatientID: text(patient, 'PatientID'),
        StudyDescription:
          level === 'Patient' ? (studies > 0 ? `${studies} ${studies === 1 ? 'study' : 'studies'}` : null) : text(main, 'StudyDescription'),
        StudyDate: level === 'Patient' ? null : text(main, 'StudyDate'),
        MoreResources: resources.length - 1,
        From: g,
      };
    } catch {
      // This source cannot say (down, not JSON): try the next.
    }
  }
  return undefined;
}
