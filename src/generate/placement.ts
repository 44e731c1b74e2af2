// Who and where a generated instance is: patients, studies and series derived from the seed, and the
// elements every generated instance carries (SOP common, patient, study, series, equipment).
import { el, type Element } from './dicom-writer.ts';
import { hash32, uidFor } from './random.ts';

export type InstanceKind = 'ct' | 'mr' | 'multiframe' | 'us' | 'jpeg';

export const SOP_CLASS = {
  ct: '1.2.840.10008.5.1.4.1.1.2',
  enhancedCt: '1.2.840.10008.5.1.4.1.1.2.1',
  mr: '1.2.840.10008.5.1.4.1.1.4',
  usMultiframe: '1.2.840.10008.5.1.4.1.1.3.1',
  us: '1.2.840.10008.5.1.4.1.1.6.1',
} as const;

/** One megabyte as the generator's size flags count it (decimal, like file sizes shown by most tools). */
export const MB = 1_000_000;

export interface PatientInfo {
  id: string;
  /** DICOM PN, e.g. "WEBER^ANNA". */
  name: string;
  /** YYYYMMDD */
  birthDate: string;
  sex: 'M' | 'F';
}

export interface StudyInfo {
  uid: string;
  /** StudyID (SH, at most 16 characters). */
  id: string;
  /** YYYYMMDD */
  date: string;
  /** HHMMSS */
  time: string;
  accession: string;
  description: string;
  /** Patient's age at the study, DICOM AS ("052Y"). */
  patientAge: string;
}

export interface SeriesInfo {
  uid: string;
  number: number;
  description: string;
  frameOfReferenceUid: string;
  /** HHMMSS */
  time: string;
}

/** Where an instance belongs. Writers derive any missing level from the seed (and, for multi-frames, the size). */
export interface Placement {
  patient?: PatientInfo;
  study?: StudyInfo;
  series?: SeriesInfo;
}

/** A file the generator wrote. */
export interface WrittenFile {
  path: string;
  /** Bytes on disk. */
  size: number;
  kind: InstanceKind;
  sopInstanceUid: string;
  /** Number of frames (1 for single-frame instances). */
  frames: number;
}

// ---------------------------------------------------------------------------------------------------------
// Patients, studies, series

const LAST_NAMES = [
  'ALBERS',
  'BRANDT',
  'CARVALHO',
  'DUBOIS',
  'EKSTROM',
  'FONTAINE',
  'GARCIA',
  'HOLM',
  'IVANOVA',
  'JANSSEN',
  'KOWALSKI',
  'LAMBERT',
  'MORENO',
  'NIELSEN',
  'OKAFOR',
  'PETERS',
  'QUINN',
  'ROSSI',
  'SATO',
  'TANAKA',
  'UNGER',
  'VARGA',
  'WEBER',
  'XU',
  'YILMAZ',
  'ZIMMER',
];
const FIRST_NAMES_F = ['ANNA', 'BEATRIZ', 'CLARA', 'DANA', 'ELENA', 'FATIMA', 'GRETA', 'HANA', 'INES', 'JULIA'];
const FIRST_NAMES_M = ['ADAM', 'BRUNO', 'CARLOS', 'DAVID', 'EMIL', 'FELIX', 'GEORG', 'HUGO', 'IVAN', 'JONAS'];

function pick<T>(list: readonly T[], h: number): T {
  return list[h % list.length] as T;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function dicomDate(daysSince2015: number): string {
  const d = new Date(Date.UTC(2015, 0, 1) + daysSince2015 * 86_400_000);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}`;
}

/** HHMMSS from seconds after midnight. */
function dicomTime(seconds: number): string {
  const s = Math.floor(seconds) % 86_400;
  return `${pad(Math.floor(s / 3600), 2)}${pad(Math.floor(s / 60) % 60, 2)}${pad(s % 60, 2)}`;
}

function timeSeconds(tm: string): number {
  return Number(tm.slice(0, 2)) * 3600 + Number(tm.slice(2, 4)) * 60 + Number(tm.slice(4, 6));
}

/** The patient number `index` of a dataset: name, ID, sex and birth date derived from (seed, index). */
export function makePatient(seed: number, index: number): PatientInfo {
  const h = hash32('patient', seed, index);
  const sex = h & 1 ? 'F' : 'M';
  const first = pick(sex === 'F' ? FIRST_NAMES_F : FIRST_NAMES_M, h >>> 8);
  const last = pick(LAST_NAMES, h >>> 16);
  const birthDays = -((h >>> 4) % 22_000) - 7000; // born 1925 to 1995
  return {
    id: `DX${pad(seed % 100_000, 5)}${pad(index + 1, 4)}`,
    name: `${last}^${first}`,
    birthDate: dicomDate(birthDays),
    sex,
  };
}

/** Study number `index` of a patient, on a date after 2015 derived from the seed. */
export function makeStudy(seed: number, patient: PatientInfo, index: number, description: string): StudyInfo {
  const h = hash32('study', seed, patient.id, index);
  const days = (h % 3000) + index * 40;
  const date = dicomDate(days);
  const birth = Date.UTC(Number(patient.birthDate.slice(0, 4)), 0, 1);
  const at = Date.UTC(2015, 0, 1) + days * 86_400_000;
  const age = Math.floor((at - birth) / (365.25 * 86_400_000));
  return {
    uid: uidFor('study', seed, patient.id, index),
    id: `S${pad(h % 100_000, 5)}`,
    date,
    time: dicomTime(7 * 3600 + ((h >>> 12) % (11 * 3600))),
    accession: `A${pad(seed % 10_000, 4)}${pad((h >>> 3) % 1_000_000, 6)}`,
    description,
    patientAge: `${pad(Math.min(999, Math.max(0, age)), 3)}Y`,
  };
}

/** Series number `number` (1-based) of a study. */
export function makeSeries(study: StudyInfo, number: number, description: string): SeriesInfo {
  return {
    uid: uidFor('series', study.uid, number),
    number,
    description,
    frameOfReferenceUid: uidFor('frame-of-reference', study.uid),
    time: dicomTime(timeSeconds(study.time) + number * 97),
  };
}

/**
 * The patient, study and series of an instance: those given, the rest derived from (seed, key), so that
 * instances written without a placement but with different keys (e.g. sizes) do not collide.
 */
export function placementOf(seed: number, key: string, p: Placement, studyDescription: string, seriesDescription: string) {
  const patient = p.patient ?? makePatient(seed, 10_000 + (hash32(key) % 1_000_000));
  const study = p.study ?? makeStudy(seed, patient, 0, studyDescription);
  const series = p.series ?? makeSeries(study, 1, seriesDescription);
  return { patient, study, series };
}

/** Elements every generated instance carries: SOP common, patient, study, series, equipment. */
export function commonElements(
  h: { patient: PatientInfo; study: StudyInfo; series: SeriesInfo },
  sopClassUid: string,
  sopInstanceUid: string,
  modality: string,
  instanceNumber: number,
  model: string,
): Element[] {
  const contentTime = dicomTime(timeSeconds(h.series.time) + instanceNumber);
  return [
    el(0x00080005, 'CS', 'ISO_IR 100'),
    el(0x00080012, 'DA', h.study.date),
    el(0x00080013, 'TM', contentTime),
    el(0x00080016, 'UI', sopClassUid),
    el(0x00080018, 'UI', sopInstanceUid),
    el(0x00080020, 'DA', h.study.date),
    el(0x00080021, 'DA', h.study.date),
    el(0x00080023, 'DA', h.study.date),
    el(0x00080030, 'TM', h.study.time),
    el(0x00080031, 'TM', h.series.time),
    el(0x00080033, 'TM', contentTime),
    el(0x00080050, 'SH', h.study.accession),
    el(0x00080060, 'CS', modality),
    el(0x00080070, 'LO', 'DICOM-XFER'),
    el(0x00080080, 'LO', 'SYNTHETIC GENERAL HOSPITAL'),
    el(0x00080090, 'PN', 'REFERRING^DOCTOR'),
    el(0x00081030, 'LO', h.study.description),
    el(0x0008103e, 'LO', h.series.description),
    el(0x00081090, 'LO', model),
    el(0x00100010, 'PN', h.patient.name),
    el(0x00100020, 'LO', h.patient.id),
    el(0x00100030, 'DA', h.patient.birthDate),
    el(0x00100040, 'CS', h.patient.sex),
    el(0x00101010, 'AS', h.study.patientAge),
    el(0x00181020, 'LO', 'dicom-xfer generate 1'),
    el(0x0020000d, 'UI', h.study.uid),
    el(0x0020000e, 'UI', h.series.uid),
    el(0x00200010, 'SH', h.study.id),
    el(0x00200011, 'IS', String(h.series.number)),
    el(0x00200013, 'IS', String(instanceNumber)),
  ];
}

/** The SOP Instance UID of instance `instanceNumber` of a series. */
export function sopInstanceUid(series: SeriesInfo, instanceNumber: number): string {
  return uidFor('sop', series.uid, instanceNumber);
}
