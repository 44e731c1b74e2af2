// The generator's public API: whole datasets (generateDataset) and single instances (write*), for the
// `dicom-xfer generate` command, tests and benchmarks.
export {
  PRESETS,
  describeDataset,
  generateDataset,
  resolveCounts,
  type DatasetCounts,
  type DatasetOptions,
  type DatasetProgress,
  type DatasetResult,
  type GeneratedFile,
  type PresetName,
} from './dataset.ts';
export {
  framesFor,
  writeCtSlice,
  writeJpegImage,
  writeMrImage,
  writeMultiframe,
  writeUsCine,
  type CtSliceOptions,
  type JpegImageOptions,
  type MrImageOptions,
  type MultiframeOptions,
  type UsCineOptions,
} from './instances.ts';
export {
  MB,
  SOP_CLASS,
  makePatient,
  makeSeries,
  makeStudy,
  type InstanceKind,
  type PatientInfo,
  type Placement,
  type SeriesInfo,
  type StudyInfo,
  type WrittenFile,
} from './placement.ts';
export type { CtPhase, CtStyle, MrContrast } from './phantoms.ts';
export { TS_EXPLICIT_LE, TS_JPEG_BASELINE } from './dicom-writer.ts';
