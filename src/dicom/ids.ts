// Orthanc's identifiers of patients, studies, series and instances: the SHA-1 of the identifying UIDs,
// written as 40 lowercase hex digits in 5 groups of 8 joined by '-'.
import { createHash } from 'node:crypto';
import type { DicomHeader, OrthancIds } from './types.ts';

/** Orthanc's identifier of a string: its SHA-1 (of the UTF-8 bytes) as "xxxxxxxx-xxxxxxxx-...". */
export function orthancHash(s: string): string {
  const hex = createHash('sha1').update(s, 'utf8').digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 16)}-${hex.slice(16, 24)}-${hex.slice(24, 32)}-${hex.slice(32, 40)}`;
}

/**
 * The Orthanc identifiers of an instance and its parents: SHA-1 of PatientID; of
 * PatientID|StudyInstanceUID; of ...|SeriesInstanceUID; of ...|SOPInstanceUID.
 */
export function orthancIds(
  header: Pick<DicomHeader, 'patientId' | 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid'>,
): OrthancIds {
  const study = `${header.patientId}|${header.studyInstanceUid}`;
  const series = `${study}|${header.seriesInstanceUid}`;
  return {
    patient: orthancHash(header.patientId),
    study: orthancHash(study),
    series: orthancHash(series),
    instance: orthancHash(`${series}|${header.sopInstanceUid}`),
  };
}

const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/;

/** Whether `s` has the exact shape of an Orthanc identifier (44 characters, lowercase hex). */
export function isOrthancId(s: unknown): s is string {
  return typeof s === 'string' && s.length === 44 && ID_RE.test(s);
}
