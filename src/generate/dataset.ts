// A whole generated dataset: presets (full, study, small, tiny), the plan that places CT, MR, multi-frame,
// ultrasound and JPEG instances into patients, studies and series, and the run that writes them.
// The same seed and options give the same bytes, in the same paths, on every machine.
import { join } from 'node:path';
import { XferError } from '../errors.ts';
import { writeCtSlice, writeJpegImage, writeMrImage, writeMultiframe, writeUsCine } from './instances.ts';
import {
  makePatient,
  makeSeries,
  makeStudy,
  type InstanceKind,
  type PatientInfo,
  type SeriesInfo,
  type StudyInfo,
  type WrittenFile,
} from './placement.ts';
import type { CtPhase, CtStyle, MrContrast } from './phantoms.ts';

export type PresetName = 'full' | 'study' | 'small' | 'tiny';

/** What a dataset contains. Sizes in MB are 10^6 bytes of pixel data per instance. */
export interface DatasetCounts {
  /** CT series (512x512, about 525 KB per slice); up to three series (phases) share a study. */
  ctSeries: number;
  ctSlices: number;
  /** MR images (about 62 KB each), 25 per series, 4 series per study, 2 studies per patient. */
  mr: number;
  /** Enhanced CT multi-frame instances and the size of each. */
  multiframe: number;
  multiframeMb: number;
  /** RGB ultrasound cines and the size of each. */
  us: number;
  usMb: number;
  /** JPEG baseline ultrasound series and the images in each. */
  jpegSeries: number;
  jpegSlices: number;
}

/**
 * full: about 1 GB (3 CT series of 300 slices, 2,000 MR images, 2 multi-frames of 136 MB, a 138 MB cine,
 * a JPEG series); study: about 210 MB, one typical CT examination (300 slices and a 52 MB multi-frame);
 * small: about 150 MB with the same mix as full; tiny: about 8 MB, every kind, for tests.
 */
export const PRESETS: Record<PresetName, DatasetCounts> = {
  full: { ctSeries: 3, ctSlices: 300, mr: 2000, multiframe: 2, multiframeMb: 136, us: 1, usMb: 138, jpegSeries: 1, jpegSlices: 100 },
  study: { ctSeries: 1, ctSlices: 300, mr: 0, multiframe: 1, multiframeMb: 52, us: 0, usMb: 20, jpegSeries: 0, jpegSlices: 16 },
  small: { ctSeries: 3, ctSlices: 44, mr: 300, multiframe: 2, multiframeMb: 20, us: 1, usMb: 20, jpegSeries: 1, jpegSlices: 16 },
  tiny: { ctSeries: 2, ctSlices: 3, mr: 6, multiframe: 1, multiframeMb: 2, us: 1, usMb: 2, jpegSeries: 1, jpegSlices: 3 },
};

export interface DatasetProgress {
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  /** The file just written. */
  last: GeneratedFile;
}

export interface DatasetOptions extends Partial<DatasetCounts> {
  /** Directory to write into (created if needed; files of the same names are overwritten). */
  out: string;
  /** Any non-negative integer; default 1. */
  seed?: number;
  /** Base counts, overridden by any count given; default 'small'. */
  preset?: PresetName;
  /** Files written at the same time (default 2: one renders while another is written). */
  concurrency?: number;
  onProgress?: (p: DatasetProgress) => void;
}

export interface GeneratedFile {
  /** `out` joined with the file's place in the dataset (absolute when `out` is). */
  path: string;
  size: number;
  kind: InstanceKind;
  sopInstanceUid: string;
  frames: number;
}

export interface DatasetResult {
  files: GeneratedFile[];
  totalBytes: number;
}

/** One file to write: where, and the call that writes it. */
interface Task {
  path: string;
  kind: InstanceKind;
  run: (path: string) => Promise<WrittenFile>;
}

const MAX_COUNT = 1_000_000;
const MAX_MB = 4000;

function checkCount(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > MAX_COUNT) {
    throw new XferError('ParameterOutOfRange', `${name} must be an integer from 0 to ${MAX_COUNT}, not ${v}`);
  }
}

function checkMb(name: string, v: number): void {
  if (!Number.isFinite(v) || v <= 0 || v > MAX_MB) {
    throw new XferError('ParameterOutOfRange', `${name} must be a number of MB above 0 and at most ${MAX_MB}, not ${v}`);
  }
}

/** The counts a dataset will have: the preset's, with any given count in place of the preset's. */
export function resolveCounts(opts: Partial<DatasetCounts> & { preset?: PresetName }): DatasetCounts {
  const presetName = opts.preset ?? 'small';
  const preset = PRESETS[presetName];
  if (!preset) throw new XferError('ParameterOutOfRange', `unknown preset "${String(presetName)}" (full, study, small, tiny)`);
  const c: DatasetCounts = { ...preset };
  for (const key of Object.keys(preset) as (keyof DatasetCounts)[]) {
    const v = opts[key];
    if (v !== undefined) c[key] = v;
  }
  for (const key of ['ctSeries', 'ctSlices', 'mr', 'multiframe', 'us', 'jpegSeries', 'jpegSlices'] as const) {
    checkCount(key, c[key]);
  }
  checkMb('multiframeMb', c.multiframeMb);
  checkMb('usMb', c.usMb);
  return c;
}

const CT_PHASES: { phase: CtPhase; description: string }[] = [
  { phase: 'plain', description: 'AXIAL NON-CONTRAST' },
  { phase: 'arterial', description: 'AXIAL ARTERIAL' },
  { phase: 'venous', description: 'AXIAL PORTAL VENOUS' },
];
const MR_CONTRASTS: MrContrast[] = ['T1', 'T2', 'FLAIR', 'PD'];
const MR_PER_SERIES = 25;
const MR_SERIES_PER_STUDY = 4;
const MR_STUDIES_PER_PATIENT = 2;

function n4(i: number): string {
  return String(i).padStart(4, '0');
}

function n2(i: number): string {
  return String(i).padStart(2, '0');
}

/** What the planning steps share: the seed, the tasks so far, and the next patient (numbered in order). */
interface Plan {
  seed: number;
  tasks: Task[];
  newPatient(): PatientInfo;
}

/** CT: a patient per study of up to three contrast phases; studies alternate scanner styles. */
function planCt(p: Plan, c: DatasetCounts): void {
  const { seed } = p;
  let ctStudy: StudyInfo | undefined;
  let ctPatient: PatientInfo | undefined;
  for (let s = 0; s < c.ctSeries; s++) {
    const studyNumber = Math.floor(s / 3);
    if (s % 3 === 0 || !ctStudy || !ctPatient) {
      ctPatient = p.newPatient();
      ctStudy = makeStudy(seed, ctPatient, 0, 'CT CHEST ABDOMEN PELVIS');
    }
    const { phase, description } = CT_PHASES[s % 3] as (typeof CT_PHASES)[number];
    const style: CtStyle = studyNumber % 2 === 0 ? 'unsigned12' : 'signed16';
    // Series 1 would be the scout of a real scanner; the axial series follow it.
    const seriesNumber = (s % 3) + 2;
    const placement = { patient: ctPatient, study: ctStudy, series: makeSeries(ctStudy, seriesNumber, description) };
    for (let i = 0; i < c.ctSlices; i++) {
      p.tasks.push({
        path: join('ct', `study${n2(studyNumber + 1)}`, `series${n2(seriesNumber)}`, `IM${n4(i + 1)}.dcm`),
        kind: 'ct',
        run: (path) => writeCtSlice(path, { seed, ...placement, index: i, slices: c.ctSlices, phase, style }),
      });
    }
  }
}

/** Enhanced CT volumes: one patient, one study, a series per volume. */
function planMultiframe(p: Plan, c: DatasetCounts): void {
  if (c.multiframe <= 0) return;
  const { seed } = p;
  const patient = p.newPatient();
  const study = makeStudy(seed, patient, 0, 'CT THORAX ABDOMEN VOLUME');
  for (let m = 0; m < c.multiframe; m++) {
    const phase: CtPhase = m % 2 === 0 ? 'venous' : 'arterial';
    const series = makeSeries(study, m + 1, `ENHANCED CT ${phase.toUpperCase()}`);
    p.tasks.push({
      path: join('multiframe', `MF${n4(m + 1)}.dcm`),
      kind: 'multiframe',
      run: (path) => writeMultiframe(path, { seed, patient, study, series, megabytes: c.multiframeMb, phase }),
    });
  }
}

/** Echocardiography: cines in series 1, JPEG stills in the following series, all in one study. */
function planEcho(p: Plan, c: DatasetCounts): void {
  if (c.us <= 0 && c.jpegSeries <= 0) return;
  const { seed } = p;
  const patient = p.newPatient();
  const study = makeStudy(seed, patient, 0, 'US ECHOCARDIOGRAM');
  if (c.us > 0) {
    const series = makeSeries(study, 1, 'CINE 4CH');
    for (let u = 0; u < c.us; u++) {
      p.tasks.push({
        path: join('us', `CINE${n4(u + 1)}.dcm`),
        kind: 'us',
        run: (path) => writeUsCine(path, { seed, patient, study, series, megabytes: c.usMb, instanceNumber: u + 1 }),
      });
    }
  }
  for (let j = 0; j < c.jpegSeries; j++) {
    const series = makeSeries(study, j + 2, `STILLS ${j + 1}`);
    for (let i = 0; i < c.jpegSlices; i++) {
      p.tasks.push({
        path: join('jpeg', `series${n2(j + 1)}`, `IM${n4(i + 1)}.dcm`),
        kind: 'jpeg',
        run: (path) => writeJpegImage(path, { seed, patient, study, series, index: i }),
      });
    }
  }
}

/** MR brain: series of 25 slices, four contrasts per study, two studies per patient. */
function planMr(p: Plan, c: DatasetCounts): void {
  const { seed } = p;
  const mrSeriesCount = Math.ceil(c.mr / MR_PER_SERIES);
  let mrPatient: PatientInfo | undefined;
  let mrStudy: StudyInfo | undefined;
  for (let s = 0; s < mrSeriesCount; s++) {
    const studyIndex = Math.floor(s / MR_SERIES_PER_STUDY);
    const seriesInStudy = s % MR_SERIES_PER_STUDY;
    if (seriesInStudy === 0) {
      if (studyIndex % MR_STUDIES_PER_PATIENT === 0 || !mrPatient) mrPatient = p.newPatient();
      mrStudy = makeStudy(seed, mrPatient, studyIndex % MR_STUDIES_PER_PATIENT, 'MR BRAIN');
    }
    const patient = mrPatient as PatientInfo;
    const study = mrStudy as StudyInfo;
    const contrast = MR_CONTRASTS[seriesInStudy % MR_CONTRASTS.length] as MrContrast;
    const series: SeriesInfo = makeSeries(study, seriesInStudy + 1, `AX ${contrast}`);
    const slices = Math.min(MR_PER_SERIES, c.mr - s * MR_PER_SERIES);
    for (let i = 0; i < slices; i++) {
      p.tasks.push({
        path: join(
          'mr',
          patient.id,
          `study${(studyIndex % MR_STUDIES_PER_PATIENT) + 1}`,
          `series${n2(seriesInStudy + 1)}`,
          `IM${n4(i + 1)}.dcm`,
        ),
        kind: 'mr',
        run: (path) => writeMrImage(path, { seed, patient, study, series, index: i, slices, contrast }),
      });
    }
  }
}

/**
 * Places every instance in a patient, study and series, and names its file. Pure: no I/O. Patients are
 * numbered in the order of the steps (CT, volumes, echo, MR), which the generated bytes depend on.
 */
function plan(seed: number, c: DatasetCounts): Task[] {
  let patientIndex = 0;
  const p: Plan = { seed, tasks: [], newPatient: () => makePatient(seed, patientIndex++) };
  planCt(p, c);
  planMultiframe(p, c);
  planEcho(p, c);
  planMr(p, c);
  return p.tasks;
}

/** The counts a dataset will have and its number of files, without writing anything. */
export function describeDataset(opts: Partial<DatasetCounts> & { preset?: PresetName; seed?: number }): {
  counts: DatasetCounts;
  files: number;
} {
  const counts = resolveCounts(opts);
  return { counts, files: plan(opts.seed ?? 1, counts).length };
}

/**
 * Writes a dataset under `opts.out`. Deterministic: the same seed and counts give the same files with
 * the same bytes. Rejects with XferError ParameterOutOfRange on bad counts, CannotWriteFile on I/O errors.
 */
export async function generateDataset(opts: DatasetOptions): Promise<DatasetResult> {
  const seed = opts.seed ?? 1;
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new XferError('ParameterOutOfRange', `seed must be a non-negative integer, not ${seed}`);
  }
  const counts = resolveCounts(opts);
  const tasks = plan(seed, counts);
  const files: GeneratedFile[] = new Array<GeneratedFile>(tasks.length);
  const workers = Math.max(1, Math.min(8, opts.concurrency ?? 2));
  let next = 0;
  let done = 0;
  let bytes = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < tasks.length) {
      const i = next++;
      const task = tasks[i] as Task;
      try {
        const w = await task.run(join(opts.out, task.path));
        const f: GeneratedFile = { path: w.path, size: w.size, kind: w.kind, sopInstanceUid: w.sopInstanceUid, frames: w.frames };
        files[i] = f;
        done++;
        bytes += f.size;
        opts.onProgress?.({ filesDone: done, filesTotal: tasks.length, bytesDone: bytes, last: f });
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, () => worker()));
  if (failure !== undefined) throw failure;
  return { files, totalBytes: bytes };
}
