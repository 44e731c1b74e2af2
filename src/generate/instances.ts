// Writers of one generated DICOM instance each (CT slice, MR image, Enhanced CT multi-frame, ultrasound
// cine, JPEG ultrasound image). Each builds the header in memory, then streams the pixel data to the file
// frame by frame, so memory stays bounded whatever the instance size.
import { encode as encodeJpeg } from 'jpeg-js';
import { XferError } from '../errors.ts';
import {
  MAX_NATIVE_PIXEL_BYTES,
  TS_EXPLICIT_LE,
  TS_JPEG_BASELINE,
  ds,
  el,
  encapsulatedPixelDataStart,
  encodeDataset,
  fileMeta,
  itemHeader,
  nativePixelDataHeader,
  sequenceDelimiter,
  type Element,
  type Item,
} from './dicom-writer.ts';
import {
  CT_FOV,
  CT_PADDING_SIGNED,
  CT_SIZE,
  MR_COLS,
  MR_ROWS,
  MR_SPACING,
  US_APEX,
  US_COLS,
  US_ROWS,
  renderCtSlice,
  renderMrSlice,
  renderUsFrame,
  type CtPhase,
  type CtStyle,
  type MrContrast,
} from './phantoms.ts';
import { OutFile, toLittleEndian16, writeFramesFile } from './out-file.ts';
import { MB, SOP_CLASS, commonElements, placementOf, sopInstanceUid, type Placement, type WrittenFile } from './placement.ts';
import { hash32, uidFor } from './random.ts';

// ---------------------------------------------------------------------------------------------------------
// CT

export interface CtSliceOptions extends Placement {
  seed: number;
  /** 0-based slice index within the series. */
  index: number;
  /** Slices in the series (the anatomy spans the whole series whatever the count). */
  slices: number;
  phase?: CtPhase;
  style?: CtStyle;
}

/** Length of the torso (mm) that a CT series covers. */
const CT_COVERAGE = 600;

function pixelElements(rows: number, cols: number, style: CtStyle): Element[] {
  const signed = style === 'signed16';
  return [
    el(0x00280002, 'US', 1),
    el(0x00280004, 'CS', 'MONOCHROME2'),
    el(0x00280010, 'US', rows),
    el(0x00280011, 'US', cols),
    el(0x00280100, 'US', 16),
    el(0x00280101, 'US', signed ? 16 : 12),
    el(0x00280102, 'US', signed ? 15 : 11),
    el(0x00280103, 'US', signed ? 1 : 0),
  ];
}

/** Writes one 512x512 CT slice (CT Image Storage, explicit VR little endian) of about 525 KB. */
export async function writeCtSlice(path: string, o: CtSliceOptions): Promise<WrittenFile> {
  const h = placementOf(o.seed, 'ct', o, 'CT CHEST ABDOMEN PELVIS', 'AXIAL 2.0 SOFT TISSUE');
  const phase = o.phase ?? 'plain';
  const style = o.style ?? 'unsigned12';
  const instanceNumber = o.index + 1;
  const uid = sopInstanceUid(h.series, instanceNumber);
  const spacing = CT_COVERAGE / Math.max(1, o.slices);
  const zmm = -40 - o.index * spacing;
  const pixelSpacing = ds(CT_FOV / CT_SIZE);
  const corner = ds(-CT_FOV / 2 + CT_FOV / CT_SIZE / 2);
  const kernelHash = hash32('kernel', h.series.uid);
  const elements: Element[] = [
    ...commonElements(h, SOP_CLASS.ct, uid, 'CT', instanceNumber, style === 'signed16' ? 'XFER CT 64' : 'XFER CT 128'),
    el(0x00080008, 'CS', ['ORIGINAL', 'PRIMARY', 'AXIAL']),
    el(0x00080022, 'DA', h.study.date),
    el(0x00080032, 'TM', h.series.time),
    el(0x00180015, 'CS', 'CHEST'),
    el(0x00180050, 'DS', ds(Math.min(spacing, 5), 3)),
    el(0x00180060, 'DS', '120'),
    el(0x00181100, 'DS', ds(CT_FOV)),
    el(0x00181151, 'IS', String(180 + (kernelHash % 200))),
    el(0x00181210, 'SH', phase === 'plain' ? 'B30f' : 'B31f'),
    el(0x00185100, 'CS', 'HFS'),
    el(0x00200012, 'IS', '1'),
    el(0x00200032, 'DS', [corner, corner, ds(zmm, 3)]),
    el(0x00200037, 'DS', ['1', '0', '0', '0', '1', '0']),
    el(0x00200052, 'UI', h.series.frameOfReferenceUid),
    el(0x00201040, 'LO', ''),
    el(0x00201041, 'DS', ds(zmm, 3)),
    ...pixelElements(CT_SIZE, CT_SIZE, style),
    el(0x00280030, 'DS', [pixelSpacing, pixelSpacing]),
    el(0x00281050, 'DS', ['40', '-600']),
    el(0x00281051, 'DS', ['400', '1500']),
    el(0x00281052, 'DS', '-1024'),
    el(0x00281053, 'DS', '1'),
    el(0x00281054, 'LO', 'HU'),
  ];
  if (style === 'signed16') elements.push(el(0x00280120, 'SS', CT_PADDING_SIGNED));
  const frameBytes = CT_SIZE * CT_SIZE * 2;
  const head = Buffer.concat([
    fileMeta(SOP_CLASS.ct, uid, TS_EXPLICIT_LE),
    encodeDataset(elements),
    nativePixelDataHeader('OW', frameBytes),
  ]);
  const z = o.slices > 1 ? o.index / (o.slices - 1) : 0.5;
  const size = await writeFramesFile(path, head, 1, frameBytes, (_f, into) => {
    renderCtSlice(new Int16Array(into.buffer, into.byteOffset, CT_SIZE * CT_SIZE), {
      seed: o.seed,
      z,
      phase,
      style,
      noiseKey: h.series.uid,
    });
    toLittleEndian16(into);
  });
  return { path, size, kind: 'ct', sopInstanceUid: uid, frames: 1 };
}

// ---------------------------------------------------------------------------------------------------------
// MR

export interface MrImageOptions extends Placement {
  seed: number;
  index: number;
  slices: number;
  contrast?: MrContrast;
}

const MR_TIMING: Record<MrContrast, { tr: string; te: string; ti?: string; seq: string[]; etl: string }> = {
  T1: { tr: '550', te: '12', seq: ['SE'], etl: '1' },
  T2: { tr: '4200', te: '95', seq: ['SE'], etl: '15' },
  FLAIR: { tr: '9000', te: '110', ti: '2500', seq: ['SE', 'IR'], etl: '16' },
  PD: { tr: '3000', te: '15', seq: ['SE'], etl: '8' },
};

/** Writes one 192x160 16-bit MR image (MR Image Storage) of about 62 KB. */
export async function writeMrImage(path: string, o: MrImageOptions): Promise<WrittenFile> {
  const contrast = o.contrast ?? 'T1';
  const h = placementOf(o.seed, 'mr', o, 'MR BRAIN', `AX ${contrast}`);
  const instanceNumber = o.index + 1;
  const uid = sopInstanceUid(h.series, instanceNumber);
  const thickness = 5;
  const gap = 1;
  const zmm = -30 + o.index * (thickness + gap);
  const timing = MR_TIMING[contrast];
  const elements: Element[] = [
    ...commonElements(h, SOP_CLASS.mr, uid, 'MR', instanceNumber, 'XFER MR 1.5T'),
    el(0x00080008, 'CS', ['ORIGINAL', 'PRIMARY', 'M', 'ND']),
    el(0x00080022, 'DA', h.study.date),
    el(0x00080032, 'TM', h.series.time),
    el(0x00180015, 'CS', 'HEAD'),
    el(0x00180020, 'CS', timing.seq),
    el(0x00180021, 'CS', ['SK', 'SP']),
    el(0x00180022, 'CS', 'PFP'),
    el(0x00180023, 'CS', '2D'),
    el(0x00180050, 'DS', String(thickness)),
    el(0x00180080, 'DS', timing.tr),
    el(0x00180081, 'DS', timing.te),
    ...(timing.ti ? [el(0x00180082, 'DS', timing.ti)] : []),
    el(0x00180083, 'DS', '1'),
    el(0x00180084, 'DS', '63.68'),
    el(0x00180085, 'SH', '1H'),
    el(0x00180087, 'DS', '1.5'),
    el(0x00180088, 'DS', String(thickness + gap)),
    el(0x00180091, 'IS', timing.etl),
    el(0x00181314, 'DS', contrast === 'T1' ? '90' : '150'),
    el(0x00185100, 'CS', 'HFS'),
    el(0x00200012, 'IS', '1'),
    el(0x00200032, 'DS', [ds((-MR_COLS / 2) * MR_SPACING), ds((-MR_ROWS / 2) * MR_SPACING), ds(zmm, 3)]),
    el(0x00200037, 'DS', ['1', '0', '0', '0', '1', '0']),
    el(0x00200052, 'UI', h.series.frameOfReferenceUid),
    el(0x00201040, 'LO', ''),
    el(0x00201041, 'DS', ds(zmm, 3)),
    ...pixelElements(MR_ROWS, MR_COLS, 'unsigned12'),
    el(0x00280030, 'DS', [ds(MR_SPACING), ds(MR_SPACING)]),
    el(0x00281050, 'DS', contrast === 'T2' ? '700' : '550'),
    el(0x00281051, 'DS', contrast === 'T2' ? '1400' : '1100'),
  ];
  const frameBytes = MR_ROWS * MR_COLS * 2;
  const head = Buffer.concat([
    fileMeta(SOP_CLASS.mr, uid, TS_EXPLICIT_LE),
    encodeDataset(elements),
    nativePixelDataHeader('OW', frameBytes),
  ]);
  const z = o.slices > 1 ? o.index / (o.slices - 1) : 0.5;
  const size = await writeFramesFile(path, head, 1, frameBytes, (_f, into) => {
    renderMrSlice(new Uint16Array(into.buffer, into.byteOffset, MR_ROWS * MR_COLS), {
      seed: o.seed,
      z,
      contrast,
      noiseKey: h.series.uid,
    });
    toLittleEndian16(into);
  });
  return { path, size, kind: 'mr', sopInstanceUid: uid, frames: 1 };
}

// ---------------------------------------------------------------------------------------------------------
// Enhanced CT multi-frame

export interface MultiframeOptions extends Placement {
  seed: number;
  /** Number of 512x512 16-bit frames; default from `megabytes`. */
  frames?: number;
  /** Approximate size of the pixel data in MB (10^6 bytes); used when `frames` is absent. Default 136. */
  megabytes?: number;
  phase?: CtPhase;
  instanceNumber?: number;
}

/** Frames needed for about `megabytes` of pixel data, at least one. */
export function framesFor(megabytes: number, frameBytes: number): number {
  if (!Number.isFinite(megabytes) || megabytes <= 0) {
    throw new XferError('ParameterOutOfRange', `size must be a positive number of MB, not ${megabytes}`);
  }
  return Math.max(1, Math.round((megabytes * MB) / frameBytes));
}

function checkFrames(frames: number, frameBytes: number): void {
  if (!Number.isInteger(frames) || frames < 1) {
    throw new XferError('ParameterOutOfRange', `frame count must be a positive integer, not ${frames}`);
  }
  if (frames * frameBytes > MAX_NATIVE_PIXEL_BYTES) {
    throw new XferError('ParameterOutOfRange', `${frames} frames exceed the 4 GB limit of native pixel data`);
  }
}

/**
 * Writes one Enhanced CT Image Storage instance: `frames` 512x512 signed 16-bit axial frames through the
 * torso, with shared and per-frame functional groups. Pixel data is streamed; memory stays a few MB.
 */
export async function writeMultiframe(path: string, o: MultiframeOptions): Promise<WrittenFile> {
  const frameBytes = CT_SIZE * CT_SIZE * 2;
  const frames = o.frames ?? framesFor(o.megabytes ?? 136, frameBytes);
  checkFrames(frames, frameBytes);
  const h = placementOf(o.seed, `multiframe-${frames}`, o, 'CT CHEST ABDOMEN PELVIS', 'ENHANCED CT VOLUME');
  const phase = o.phase ?? 'venous';
  const instanceNumber = o.instanceNumber ?? 1;
  const uid = sopInstanceUid(h.series, instanceNumber);
  const spacing = CT_COVERAGE / frames;
  const pixelSpacing = ds(CT_FOV / CT_SIZE);
  const corner = ds(-CT_FOV / 2 + CT_FOV / CT_SIZE / 2);
  const thickness = ds(Math.min(spacing, 5), 3);
  const dimensionUid = uidFor('dimension-organization', h.series.uid);
  const perFrame: Item[] = [];
  for (let f = 0; f < frames; f++) {
    const zmm = -40 - f * spacing;
    perFrame.push([
      el(0x00209111, 'SQ', [[el(0x00209056, 'SH', '1'), el(0x00209057, 'UL', f + 1), el(0x00209157, 'UL', [1, f + 1])]]),
      el(0x00209113, 'SQ', [[el(0x00200032, 'DS', [corner, corner, ds(zmm, 3)])]]),
    ]);
  }
  const shared: Item = [
    el(0x00189329, 'SQ', [[el(0x00089007, 'CS', ['ORIGINAL', 'PRIMARY', 'AXIAL', 'NONE'])]]),
    el(0x00209116, 'SQ', [[el(0x00200037, 'DS', ['1', '0', '0', '0', '1', '0'])]]),
    el(0x00289110, 'SQ', [[el(0x00180050, 'DS', thickness), el(0x00280030, 'DS', [pixelSpacing, pixelSpacing])]]),
    el(0x00289132, 'SQ', [[el(0x00281050, 'DS', '40'), el(0x00281051, 'DS', '400')]]),
    el(0x00289145, 'SQ', [[el(0x00281052, 'DS', '-1024'), el(0x00281053, 'DS', '1'), el(0x00281054, 'LO', 'HU')]]),
  ];
  const elements: Element[] = [
    ...commonElements(h, SOP_CLASS.enhancedCt, uid, 'CT', instanceNumber, 'XFER CT 256'),
    el(0x00080008, 'CS', ['ORIGINAL', 'PRIMARY', 'AXIAL', 'NONE']),
    el(0x0008002a, 'DT', `${h.study.date}${h.series.time}`),
    el(0x00089205, 'CS', 'MONOCHROME'),
    el(0x00089206, 'CS', 'VOLUME'),
    el(0x00089207, 'CS', 'NONE'),
    el(0x00180015, 'CS', 'CHEST'),
    el(0x00189004, 'CS', 'PRODUCT'),
    el(0x00185100, 'CS', 'HFS'),
    el(0x00200052, 'UI', h.series.frameOfReferenceUid),
    el(0x00201040, 'LO', ''),
    el(0x00209221, 'SQ', [[el(0x00209164, 'UI', dimensionUid)]]),
    el(0x00209222, 'SQ', [
      [el(0x00209164, 'UI', dimensionUid), el(0x00209165, 'AT', 0x00209056), el(0x00209167, 'AT', 0x00209111)],
      [el(0x00209164, 'UI', dimensionUid), el(0x00209165, 'AT', 0x00209057), el(0x00209167, 'AT', 0x00209111)],
    ]),
    el(0x00280008, 'IS', String(frames)),
    ...pixelElements(CT_SIZE, CT_SIZE, 'signed16'),
    el(0x00280120, 'SS', CT_PADDING_SIGNED),
    el(0x00280301, 'CS', 'NO'),
    el(0x00282110, 'CS', '00'),
    el(0x20500020, 'CS', 'IDENTITY'),
    el(0x52009229, 'SQ', [shared]),
    el(0x52009230, 'SQ', perFrame),
  ];
  const head = Buffer.concat([
    fileMeta(SOP_CLASS.enhancedCt, uid, TS_EXPLICIT_LE),
    encodeDataset(elements),
    nativePixelDataHeader('OW', frames * frameBytes),
  ]);
  const size = await writeFramesFile(path, head, frames, frameBytes, (f, into) => {
    renderCtSlice(new Int16Array(into.buffer, into.byteOffset, CT_SIZE * CT_SIZE), {
      seed: o.seed,
      z: frames > 1 ? f / (frames - 1) : 0.5,
      phase,
      style: 'signed16',
      noiseKey: h.series.uid,
    });
    toLittleEndian16(into);
  });
  return { path, size, kind: 'multiframe', sopInstanceUid: uid, frames };
}

// ---------------------------------------------------------------------------------------------------------
// Ultrasound

const US_FPS = 30;

function usRegion(): Item {
  return [
    el(0x00186012, 'US', 1), // sector
    el(0x00186014, 'US', 1), // tissue
    el(0x00186016, 'UL', 2),
    el(0x00186018, 'UL', 0),
    el(0x0018601a, 'UL', 0),
    el(0x0018601c, 'UL', US_COLS - 1),
    el(0x0018601e, 'UL', US_ROWS - 1),
    el(0x00186020, 'SL', US_APEX.x), // the sector's apex, above the image
    el(0x00186022, 'SL', US_APEX.y),
    el(0x00186024, 'US', 3), // cm
    el(0x00186026, 'US', 3),
    el(0x0018602c, 'FD', 0.035),
    el(0x0018602e, 'FD', 0.035),
  ];
}

function usElements(): Element[] {
  return [
    el(0x00180015, 'CS', 'HEART'),
    el(0x00181088, 'IS', '66'),
    el(0x00186011, 'SQ', [usRegion()]),
    el(0x00280002, 'US', 3),
    el(0x00280006, 'US', 0),
    el(0x00280010, 'US', US_ROWS),
    el(0x00280011, 'US', US_COLS),
    el(0x00280100, 'US', 8),
    el(0x00280101, 'US', 8),
    el(0x00280102, 'US', 7),
    el(0x00280103, 'US', 0),
  ];
}

export interface UsCineOptions extends Placement {
  seed: number;
  /** Number of 640x480 RGB frames; default from `megabytes`. */
  frames?: number;
  /** Approximate size of the pixel data in MB (10^6 bytes); used when `frames` is absent. Default 138. */
  megabytes?: number;
  instanceNumber?: number;
}

/** Writes one Ultrasound Multi-frame Image Storage instance: an RGB cardiac cine at 30 frames/s, streamed. */
export async function writeUsCine(path: string, o: UsCineOptions): Promise<WrittenFile> {
  const frameBytes = US_COLS * US_ROWS * 3;
  const frames = o.frames ?? framesFor(o.megabytes ?? 138, frameBytes);
  checkFrames(frames, frameBytes);
  const h = placementOf(o.seed, `us-${frames}`, o, 'US ECHOCARDIOGRAM', 'CINE');
  const instanceNumber = o.instanceNumber ?? 1;
  const uid = sopInstanceUid(h.series, instanceNumber);
  const elements: Element[] = [
    ...commonElements(h, SOP_CLASS.usMultiframe, uid, 'US', instanceNumber, 'XFER US C5'),
    el(0x00080008, 'CS', ['ORIGINAL', 'PRIMARY']),
    el(0x00082144, 'IS', String(US_FPS)),
    el(0x00180040, 'IS', String(US_FPS)),
    el(0x00181063, 'DS', ds(1000 / US_FPS, 3)),
    el(0x00081070, 'PN', 'SONOGRAPHER^ONE'),
    ...usElements(),
    el(0x00280004, 'CS', 'RGB'),
    el(0x00280008, 'IS', String(frames)),
    el(0x00280009, 'AT', 0x00181063),
    el(0x00282110, 'CS', '00'),
  ];
  let pixelBytes = frames * frameBytes;
  const odd = pixelBytes % 2 === 1;
  if (odd) pixelBytes += 1;
  const head = Buffer.concat([
    fileMeta(SOP_CLASS.usMultiframe, uid, TS_EXPLICIT_LE),
    encodeDataset(elements),
    nativePixelDataHeader('OB', pixelBytes),
  ]);
  const label = `${h.patient.id} ${h.study.date} C5 H4.0MHZ`;
  const size = await writeFramesFile(
    path,
    head,
    frames,
    frameBytes,
    (f, into) => renderUsFrame(into, 3, { seed: o.seed, frame: f, fps: US_FPS, noiseKey: h.series.uid, label }),
    odd ? Buffer.alloc(1) : undefined,
  );
  return { path, size, kind: 'us', sopInstanceUid: uid, frames };
}

export interface JpegImageOptions extends Placement {
  seed: number;
  /** 0-based index within the series. */
  index: number;
  /** JPEG quality (1 to 100), default 90. */
  quality?: number;
}

/**
 * Writes one Ultrasound Image Storage instance compressed as JPEG baseline (1.2.840.10008.1.2.4.50): a
 * 640x480 colour frame encoded by jpeg-js (YCbCr, no subsampling: YBR_FULL), one fragment.
 */
export async function writeJpegImage(path: string, o: JpegImageOptions): Promise<WrittenFile> {
  const h = placementOf(o.seed, 'jpeg', o, 'US ECHOCARDIOGRAM', 'STILLS');
  const instanceNumber = o.index + 1;
  const uid = sopInstanceUid(h.series, instanceNumber);
  const quality = o.quality ?? 95;
  const rgba = new Uint8Array(US_COLS * US_ROWS * 4);
  const label = `${h.patient.id} ${h.study.date} C5 H4.0MHZ`;
  // Stills are taken at different moments of the beat.
  renderUsFrame(rgba, 4, { seed: o.seed, frame: o.index * 7, fps: US_FPS, noiseKey: h.series.uid, label });
  const jpeg = encodeJpeg({ data: rgba, width: US_COLS, height: US_ROWS }, quality).data;
  const ratio = (US_COLS * US_ROWS * 3) / jpeg.length;
  const elements: Element[] = [
    ...commonElements(h, SOP_CLASS.us, uid, 'US', instanceNumber, 'XFER US C5'),
    el(0x00080008, 'CS', ['ORIGINAL', 'PRIMARY']),
    el(0x00081070, 'PN', 'SONOGRAPHER^ONE'),
    ...usElements(),
    el(0x00280004, 'CS', 'YBR_FULL'),
    el(0x00282110, 'CS', '01'),
    el(0x00282112, 'DS', ds(ratio, 2)),
    el(0x00282114, 'CS', 'ISO_10918_1'),
  ];
  const fragment = jpeg.length % 2 ? Buffer.concat([jpeg, Buffer.alloc(1)]) : jpeg;
  const out = await OutFile.create(path);
  try {
    await out.write(
      Buffer.concat([
        fileMeta(SOP_CLASS.us, uid, TS_JPEG_BASELINE),
        encodeDataset(elements),
        encapsulatedPixelDataStart(),
        itemHeader(fragment.length),
        fragment,
        sequenceDelimiter(),
      ]),
    );
    await out.close();
  } catch (e) {
    await out.discard();
    throw e;
  }
  return { path, size: out.size, kind: 'jpeg', sopInstanceUid: uid, frames: 1 };
}
