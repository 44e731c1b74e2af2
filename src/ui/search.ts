// The dashboard's store search: studies whose patient name or ID, or accession number, contains a text,
// in a date range, with a series of a modality; a page of them with their series, and how many match.
// It asks the store's /tools/find, so it works the same on the embedded store and on an Orthanc store.
import { EmbeddedStore } from '../store/embedded/store.ts';
import { parseFindRequest } from '../store/find.ts';
import { OrthancStore } from '../store/orthanc/store.ts';
import type { Store } from '../store/types.ts';

export interface StudySearch {
  /** Part of the patient name or ID, or of the accession number (any case; spaces match anything, '^' too). */
  text?: string;
  /** Study dates, inclusive, as YYYYMMDD. */
  from?: string;
  to?: string;
  /** A modality one of the study's series has (any case). */
  modality?: string;
  /** Studies on the page (default 50). */
  limit?: number;
  /** Studies skipped before the page (default 0). */
  offset?: number;
}

export interface FoundSeries {
  ID: string;
  Modality: string;
  SeriesDescription: string;
  SeriesNumber: string;
  Instances: number;
}

export interface FoundStudy {
  ID: string;
  ParentPatient: string;
  PatientName: string;
  PatientID: string;
  PatientBirthDate: string;
  StudyDate: string;
  StudyDescription: string;
  AccessionNumber: string;
  Modalities: string[];
  Instances: number;
  Series: FoundSeries[];
}

export interface SearchAnswer {
  /** How many studies match (at most MAX_MATCHES; `Capped` says when there are more). */
  Total: number;
  Capped: boolean;
  Offset: number;
  Limit: number;
  /** The page: newest study date first. */
  Studies: FoundStudy[];
}

/** What the search needs of a store: Orthanc's /tools/find answer, and the series of a study. */
export interface StudySource {
  find(body: Record<string, unknown>): Promise<unknown>;
  seriesOf(studyId: string): Promise<unknown>;
}

export const DEFAULT_LIMIT = 50;
/** Matches read to sort and count them: beyond this, the search asks for a narrower query. */
export const MAX_MATCHES = 5000;

export function studySource(store: Store): StudySource | undefined {
  if (store instanceof EmbeddedStore) {
    return {
      find: (body) => store.find(parseFindRequest(body)),
      seriesOf: async (id) => (await store.childrenOf('Study', id)) ?? [],
    };
  }
  if (store instanceof OrthancStore) {
    return { find: (body) => store.find(body), seriesOf: (id) => store.getJson(`/studies/${id}/series`) };
  }
  return undefined;
}

type Resource = Record<string, unknown>;

function tags(o: Resource, key: string): Record<string, string> {
  const v = o[key];
  return v !== null && typeof v === 'object' ? (v as Record<string, string>) : {};
}

function list(v: unknown): Resource[] {
  return Array.isArray(v) ? v.filter((x): x is Resource => typeof x === 'object' && x !== null) : [];
}

/** The text as a wildcard: anywhere in the value, its words in order with anything between them. */
function containing(text: string): string {
  const words = text.split(/[\s^]+/).filter((w) => w !== '');
  return `*${words.join('*')}*`;
}

/** The studies of the source that match `s`: the page asked for, newest study date first, and the count. */
export async function searchStudies(source: StudySource, s: StudySearch): Promise<SearchAnswer> {
  const limit = s.limit ?? DEFAULT_LIMIT;
  const offset = s.offset ?? 0;
  const base: Record<string, string> = {};
  if (s.from || s.to) base.StudyDate = `${s.from ?? ''}-${s.to ?? ''}`;
  if (s.modality) base.ModalitiesInStudy = s.modality.trim().toUpperCase();
  const text = s.text?.trim();
  // One query per tag the text may be in (find ANDs its constraints); their answers are joined.
  const queries = text ? ['PatientName', 'PatientID', 'AccessionNumber'].map((k) => ({ ...base, [k]: containing(text) })) : [base];
  const byId = new Map<string, Resource>();
  let capped = false;
  for (const Query of queries) {
    const found = list(await source.find({ Level: 'Study', Query, Expand: true, Limit: MAX_MATCHES + 1 }));
    if (found.length > MAX_MATCHES) capped = true;
    for (const st of found.slice(0, MAX_MATCHES)) byId.set(String(st.ID), st);
  }
  const date = (st: Resource) => tags(st, 'MainDicomTags').StudyDate ?? '';
  const all = [...byId.values()].sort((a, b) => date(b).localeCompare(date(a)) || String(a.ID).localeCompare(String(b.ID)));
  const page = all.slice(offset, offset + limit);
  const studies: FoundStudy[] = [];
  for (const study of page) {
    const id = String(study.ID);
    const st = tags(study, 'MainDicomTags');
    const pt = tags(study, 'PatientMainDicomTags');
    const series: FoundSeries[] = list(await source.seriesOf(id)).map((se) => {
      const t = tags(se, 'MainDicomTags');
      return {
        ID: String(se.ID),
        Modality: t.Modality ?? '',
        SeriesDescription: t.SeriesDescription ?? '',
        SeriesNumber: t.SeriesNumber ?? '',
        Instances: Array.isArray(se.Instances) ? se.Instances.length : 0,
      };
    });
    studies.push({
      ID: id,
      ParentPatient: String(study.ParentPatient ?? ''),
      PatientName: pt.PatientName ?? '',
      PatientID: pt.PatientID ?? '',
      PatientBirthDate: pt.PatientBirthDate ?? '',
      StudyDate: st.StudyDate ?? '',
      StudyDescription: st.StudyDescription ?? '',
      AccessionNumber: st.AccessionNumber ?? '',
      Modalities: [...new Set(series.map((x) => x.Modality).filter((m) => m !== ''))].sort(),
      Instances: series.reduce((n, x) => n + x.Instances, 0),
      Series: series.sort((a, b) => Number(a.SeriesNumber || 0) - Number(b.SeriesNumber || 0)),
    });
  }
  return { Total: all.length, Capped: capped, Offset: offset, Limit: limit, Studies: studies };
}
