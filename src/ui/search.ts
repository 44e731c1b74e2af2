// The dashboard's store search over the embedded store: studies whose patient name or ID contains a text,
// in a date range, with a series of a modality; each with its series, grouped by the page per patient.
import type { EmbeddedStore } from '../store/embedded/store.ts';

export interface StudySearch {
  /** Part of the patient name or ID, or of the accession number (any case; '^' in names reads as a space). */
  text?: string;
  /** Study dates, inclusive, as YYYYMMDD. */
  from?: string;
  to?: string;
  /** A modality one of the study's series has (any case). */
  modality?: string;
  /** Most studies answered (default 200). */
  limit?: number;
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

const DEFAULT_LIMIT = 200;

function tags(o: Record<string, unknown>, key: string): Record<string, string> {
  const v = o[key];
  return v !== null && typeof v === 'object' ? (v as Record<string, string>) : {};
}

function norm(s: string): string {
  return s.replace(/\^/g, ' ').replace(/\s+/g, ' ').trim().toLowerCase();
}

/** The studies of `store` that match `s`, newest study date first, at most `s.limit`. */
export function searchStudies(store: EmbeddedStore, s: StudySearch): FoundStudy[] {
  const limit = s.limit ?? DEFAULT_LIMIT;
  const text = s.text ? norm(s.text) : undefined;
  const modality = s.modality?.trim().toUpperCase();
  const out: FoundStudy[] = [];
  for (const id of store.listResources('Study')) {
    const study = store.getResource('Study', id);
    if (!study) continue;
    const st = tags(study, 'MainDicomTags');
    const pt = tags(study, 'PatientMainDicomTags');
    const date = st.StudyDate ?? '';
    if (s.from && !(date >= s.from)) continue;
    if (s.to && !(date !== '' && date <= s.to)) continue;
    if (text && ![pt.PatientName, pt.PatientID, st.AccessionNumber].some((v) => v !== undefined && norm(v).includes(text))) continue;
    const series: FoundSeries[] = (store.childrenOf('Study', id) ?? []).map((se) => {
      const t = tags(se, 'MainDicomTags');
      return {
        ID: String(se.ID),
        Modality: t.Modality ?? '',
        SeriesDescription: t.SeriesDescription ?? '',
        SeriesNumber: t.SeriesNumber ?? '',
        Instances: Array.isArray(se.Instances) ? se.Instances.length : 0,
      };
    });
    const modalities = [...new Set(series.map((x) => x.Modality).filter((m) => m !== ''))].sort();
    if (modality && !modalities.some((m) => m.toUpperCase() === modality)) continue;
    out.push({
      ID: id,
      ParentPatient: String(study.ParentPatient ?? ''),
      PatientName: pt.PatientName ?? '',
      PatientID: pt.PatientID ?? '',
      PatientBirthDate: pt.PatientBirthDate ?? '',
      StudyDate: date,
      StudyDescription: st.StudyDescription ?? '',
      AccessionNumber: st.AccessionNumber ?? '',
      Modalities: modalities,
      Instances: series.reduce((n, x) => n + x.Instances, 0),
      Series: series.sort((a, b) => Number(a.SeriesNumber || 0) - Number(b.SeriesNumber || 0)),
    });
  }
  out.sort((a, b) => (a.StudyDate < b.StudyDate ? 1 : a.StudyDate > b.StudyDate ? -1 : 0));
  return out.slice(0, limit);
}
