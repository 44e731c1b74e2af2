// What the DICOM header parser gives the rest of dicom-xfer: identifying UIDs, Orthanc's main DICOM
// tags per level (names as Orthanc writes them, values decoded to UTF-8), and where the header ends.

export type Level = 'Patient' | 'Study' | 'Series' | 'Instance';

export const LEVELS: readonly Level[] = ['Patient', 'Study', 'Series', 'Instance'];

/** Orthanc's main DICOM tags of one level: tag name (e.g. "PatientName") to its string value. */
export type MainTags = Record<string, string>;

export interface DicomHeader {
  /** Transfer syntax UID of the data set, from the file meta information (or the one detected). */
  transferSyntaxUid: string;
  sopClassUid: string | undefined;
  /** PatientID as Orthanc uses it for hashing ("" when absent). */
  patientId: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  /** Main DICOM tags per level, as Orthanc shows them in `MainDicomTags`. */
  mainTags: Record<Level, MainTags>;
  /** Byte offset of the Pixel Data element in the file, when the parse reached it. */
  pixelDataOffset: number | undefined;
}

/** Orthanc identifiers of an instance and of its parents. */
export interface OrthancIds {
  patient: string;
  study: string;
  series: string;
  instance: string;
}
