// Synthetic anatomy for the generator: a torso for CT, a head for MR and an echo sector for ultrasound.
// Shapes are ellipses that grow, shrink and drift smoothly with the slice position z in [0, 1]; each
// image row is filled span by span (painter's order), then noise from precomputed tables is added.
// Noise levels are tuned so that gzip compresses the files about as much as it does real images.
import { paintRow, type Ellipse } from './ellipses.ts';
import { NOISE_LEN, Rng, bump, noiseTable, wave } from './random.ts';
import { torsoLayout, torsoShapes, type CtPhase } from './torso.ts';

// ---------------------------------------------------------------------------------------------------------
// CT

export type { CtPhase } from './torso.ts';

/**
 * How a scanner stores CT values. Both use RescaleIntercept -1024 (stored = HU + 1024):
 * 'unsigned12': BitsStored 12, unsigned, 0 outside the reconstruction circle (Siemens/Philips-like);
 * 'signed16': BitsStored 16, signed, PixelPaddingValue -2000 outside the circle (GE-like).
 */
export type CtStyle = 'unsigned12' | 'signed16';

export const CT_SIZE = 512;
/** Reconstruction field of view (mm); pixel spacing is CT_FOV / CT_SIZE. */
export const CT_FOV = 400;
export const CT_PADDING_SIGNED = -2000;

/** Standard deviation (HU) of quantum noise inside the body and in the air around it. */
const CT_NOISE_BODY = 28;
const CT_NOISE_AIR = 8;

/** Row of HU values where the patient table is (a thin curved carbon shell below the patient). */
const TABLE_Y = 128;
const TABLE_HALF_WIDTH = 190;

export interface CtSliceParams {
  seed: number;
  /** Slice position in [0, 1] through the torso. */
  z: number;
  phase: CtPhase;
  style: CtStyle;
  /** Distinguishes slices that share z (e.g. another series) so their noise differs. */
  noiseKey: string;
}

/**
 * Renders one 512x512 CT slice as stored values (HU + 1024, clamped to the style's range) into `out`
 * (Int16Array view of the pixel bytes, little endian host). Writes every pixel.
 */
export function renderCtSlice(out: Int16Array, p: CtSliceParams): void {
  const n = CT_SIZE;
  const spacing = CT_FOV / n;
  const x0 = -CT_FOV / 2 + spacing / 2;
  const shapes = torsoShapes(p.z, p.phase, torsoLayout(p.seed));
  const body = shapes[0] as Ellipse;
  const noiseBody = noiseTable(p.seed, 'ct-body', CT_NOISE_BODY);
  const noiseAir = noiseTable(p.seed, 'ct-air', CT_NOISE_AIR);
  const rng = new Rng('ct-slice', p.seed, p.noiseKey, p.z);
  const row = new Int16Array(n);
  const signed = p.style === 'signed16';
  const pad = signed ? CT_PADDING_SIGNED : 0;
  const max = signed ? 3071 + 1024 : 4095;
  const r2 = (CT_FOV / 2) * (CT_FOV / 2);
  for (let j = 0; j < n; j++) {
    const y = x0 + j * spacing;
    // Reconstruction circle: air inside, padding outside.
    const inside = r2 - y * y;
    const hw = inside > 0 ? Math.sqrt(inside) : -1;
    const fovFrom = hw < 0 ? n : Math.max(0, Math.ceil((-hw - x0) / spacing));
    const fovTo = hw < 0 ? -1 : Math.min(n - 1, Math.floor((hw - x0) / spacing));
    row.fill(-1000);
    if (y > TABLE_Y && y < TABLE_Y + 7) {
      const curve = (y - TABLE_Y) * 4;
      const from = Math.max(0, Math.ceil((-TABLE_HALF_WIDTH + curve - x0) / spacing));
      const to = Math.min(n - 1, Math.floor((TABLE_HALF_WIDTH - curve - x0) / spacing));
      if (from <= to) row.fill(y < TABLE_Y + 2 || y > TABLE_Y + 5 ? 180 : -600, from, to + 1);
    }
    paintRow(row, shapes, y, x0, spacing);
    // Where the body is on this row: it gets the stronger noise.
    let bFrom = n;
    let bTo = -1;
    const dy = (y - body.cy) / body.b;
    if (dy > -1 && dy < 1) {
      const bw = body.a * Math.sqrt(1 - dy * dy);
      bFrom = Math.max(0, Math.ceil((body.cx - bw - x0) / spacing));
      bTo = Math.min(n - 1, Math.floor((body.cx + bw - x0) / spacing));
    }
    const o = j * n;
    const offBody = rng.u32() & (NOISE_LEN - 1);
    const offAir = rng.u32() & (NOISE_LEN - 1);
    for (let i = 0; i < n; i++) {
      if (i < fovFrom || i > fovTo) {
        out[o + i] = pad;
        continue;
      }
      const noise = i >= bFrom && i <= bTo ? (noiseBody[offBody + i] as number) : (noiseAir[offAir + i] as number);
      let v = (row[i] as number) + 1024 + noise;
      if (v < 0) v = 0;
      else if (v > max) v = max;
      out[o + i] = v;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// MR

/** MR contrast of a series: decides the signal of each tissue. */
export type MrContrast = 'T1' | 'T2' | 'FLAIR' | 'PD';

export const MR_ROWS = 192;
export const MR_COLS = 160;
/** Pixel spacing (mm) of the MR images. */
export const MR_SPACING = 1.2;

const MR_SIGNAL: Record<MrContrast, { fat: number; bone: number; csf: number; gm: number; wm: number; eye: number }> = {
  T1: { fat: 1150, bone: 60, csf: 160, gm: 560, wm: 760, eye: 140 },
  T2: { fat: 820, bone: 45, csf: 1500, gm: 880, wm: 600, eye: 1400 },
  FLAIR: { fat: 700, bone: 40, csf: 110, gm: 760, wm: 540, eye: 120 },
  PD: { fat: 1000, bone: 50, csf: 1050, gm: 950, wm: 790, eye: 980 },
};

const MR_NOISE_TISSUE = 18;
const MR_NOISE_BACKGROUND = 9;

export interface MrSliceParams {
  seed: number;
  /** Slice position in [0, 1]: 0 at the skull base (eyes), 1 at the vertex. */
  z: number;
  contrast: MrContrast;
  noiseKey: string;
}

/** Renders one 192x160 MR slice (unsigned, 12 bits stored) into `out`. Writes every pixel. */
export function renderMrSlice(out: Uint16Array, p: MrSliceParams): void {
  const rows = MR_ROWS;
  const cols = MR_COLS;
  const sp = MR_SPACING;
  const x0 = (-cols / 2 + 0.5) * sp;
  const y0 = (-rows / 2 + 0.5) * sp;
  const s = MR_SIGNAL[p.contrast];
  const z = p.z;
  // The head narrows towards the vertex.
  const k = Math.sqrt(Math.max(0.05, 1 - ((z - 0.3) / 0.85) * ((z - 0.3) / 0.85)));
  const shapes: Ellipse[] = [];
  const add = (cx: number, cy: number, a: number, b: number, v: number) => shapes.push({ cx, cy, a, b, v });
  add(0, 0, 74 * k, 94 * k, s.fat); // scalp
  add(0, 0, 69 * k, 89 * k, s.bone); // skull
  add(0, 0, 64 * k, 84 * k, s.csf); // subarachnoid CSF
  add(0, 0, 61 * k, 81 * k, s.gm); // cortex
  add(0, 2, 47 * k, 66 * k, s.wm); // white matter
  const ventricles = bump(0.35, 0.75, 0.1, z);
  if (ventricles > 0) {
    add(-9, -6, 6 * ventricles, 24 * ventricles, s.csf);
    add(9, -6, 6 * ventricles, 24 * ventricles, s.csf);
    add(0, 24, 14 * ventricles, 6 * ventricles, s.csf);
  }
  const deepGray = bump(0.3, 0.6, 0.08, z);
  if (deepGray > 0) for (const side of [-1, 1]) add(side * 20, 2, 7 * deepGray, 12 * deepGray, s.gm);
  const eyes = bump(-0.2, 0.2, 0.1, z);
  if (eyes > 0) {
    for (const side of [-1, 1]) {
      add(side * 32, -78, 13 * eyes, 13 * eyes, s.fat);
      add(side * 32, -80, 11 * eyes, 11 * eyes, s.eye);
    }
  }
  const noiseT = noiseTable(p.seed, 'mr-tissue', MR_NOISE_TISSUE);
  const noiseB = noiseTable(p.seed, 'mr-bg', MR_NOISE_BACKGROUND);
  const rng = new Rng('mr-slice', p.seed, p.noiseKey, p.z);
  const row = new Int16Array(cols);
  for (let j = 0; j < rows; j++) {
    const y = y0 + j * sp;
    row.fill(0);
    paintRow(row, shapes, y, x0, sp);
    // Receive-coil shading: brighter near the posterior coil elements.
    const shade = 0.82 + 0.18 * ((j / rows) * (j / rows));
    const offT = rng.u32() & (NOISE_LEN - 1);
    const offB = rng.u32() & (NOISE_LEN - 1);
    const o = j * cols;
    for (let i = 0; i < cols; i++) {
      const base = row[i] as number;
      let v: number;
      if (base === 0) {
        // Magnitude images: background noise is positive (Rayleigh-like).
        const nb = noiseB[offB + i] as number;
        v = nb < 0 ? -nb : nb;
      } else {
        const lateral = 1 - 0.1 * (((i - cols / 2) / cols) * ((i - cols / 2) / cols));
        v = Math.round(base * shade * lateral) + (noiseT[offT + i] as number);
      }
      out[o + i] = v < 0 ? 0 : Math.min(v, 4095);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Ultrasound

export const US_COLS = 640;
export const US_ROWS = 480;

/** Sector geometry: apex above the image, opening ±SECTOR_TAN in slope, depth from R_MIN to R_MAX px. */
const APEX_X = 320;
const APEX_Y = -20;
/** Where the probe is, in pixels (above the first row). */
export const US_APEX = { x: APEX_X, y: APEX_Y } as const;
const SECTOR_TAN = 0.8;
const R_MIN = 40;
const R_MAX = 450;

interface SectorRow {
  from: number;
  to: number;
}

let sectorRows: SectorRow[] | undefined;

/** Which columns of each row lie in the sector (computed once). */
function sector(): SectorRow[] {
  if (sectorRows) return sectorRows;
  const rows: SectorRow[] = [];
  for (let y = 0; y < US_ROWS; y++) {
    const dy = y - APEX_Y;
    let from = US_COLS;
    let to = -1;
    for (let x = 0; x < US_COLS; x++) {
      const dx = x - APEX_X;
      const r2 = dx * dx + dy * dy;
      if (Math.abs(dx) <= dy * SECTOR_TAN && r2 >= R_MIN * R_MIN && r2 <= R_MAX * R_MAX) {
        if (x < from) from = x;
        to = x;
      }
    }
    rows.push({ from, to });
  }
  sectorRows = rows;
  return rows;
}

/** An apical four-chamber view at time t (s): chambers (dark) inside walls (bright), in pixels. */
function heartShapes(t: number): Ellipse[] {
  const beat = wave(t * 1.1);
  const sys = 0.5 + 0.5 * beat; // 1 at end-diastole, 0 at end-systole
  const shapes: Ellipse[] = [];
  const add = (cx: number, cy: number, a: number, b: number, v: number) => shapes.push({ cx, cy, a, b, v });
  // Echo levels in hundredths: pericardium, myocardium, blood, valve leaflets.
  add(322, 245, 205, 215, 190);
  add(322, 245, 192, 203, 105);
  const ventricles = 0.85 + 0.15 * sys;
  const atria = 1.05 - 0.12 * sys;
  add(252, 170, 42 * ventricles, 80 * ventricles, 8); // right ventricle
  add(388, 165, 48 * ventricles, 92 * ventricles, 8); // left ventricle
  add(262, 335, 40 * atria, 40 * atria, 9); // right atrium
  add(384, 335, 45 * atria, 42 * atria, 9); // left atrium
  add(252 + 4 * beat, 262, 22, 3, 160); // tricuspid leaflets
  add(390 - 4 * beat, 264, 26, 3, 160); // mitral leaflets
  return shapes;
}

/** A speckle table: Rayleigh-like amplitudes (mean about 1.25) times 90, smoothed laterally. */
const speckleCache = new Map<number, Uint16Array>();

function speckleTable(seed: number): Uint16Array {
  const hit = speckleCache.get(seed);
  if (hit) return hit;
  const rng = new Rng('speckle', seed);
  const n = NOISE_LEN + 2048;
  const raw = new Float64Array(n + 3);
  for (let i = 0; i < raw.length; i++) {
    const a = rng.gauss();
    const b = rng.gauss();
    raw[i] = Math.sqrt(a * a + b * b);
  }
  const t = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const v = ((raw[i] as number) + 2 * (raw[i + 1] as number) + (raw[i + 2] as number)) / 4;
    t[i] = Math.round(v * 90);
  }
  if (speckleCache.size > 8) speckleCache.clear();
  speckleCache.set(seed, t);
  return t;
}

/** 5x7 blocks standing for the characters of the on-screen annotation (a fixed pseudo-font). */
function glyphBit(ch: number, gx: number, gy: number): boolean {
  let h = Math.imul(ch, 0x9e3779b1) ^ Math.imul(gx * 8 + gy + 1, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 13;
  return (h & 3) !== 0 && gx < 5 && gy < 7;
}

/** The scanner's colour map: a faintly warm grey, as many ultrasound displays use. */
const TINT_R = Uint8Array.from({ length: 256 }, (_, v) => v);
const TINT_G = Uint8Array.from({ length: 256 }, (_, v) => Math.round(v * 0.93));
const TINT_B = Uint8Array.from({ length: 256 }, (_, v) => Math.round(v * 0.82));

export interface UsFrameParams {
  seed: number;
  /** Frame index within the cine; the anatomy moves with it (a heart beating about once a second). */
  frame: number;
  /** Frames per second, so that the beat looks right whatever the frame count. */
  fps: number;
  noiseKey: string;
  /** Annotation text burnt into the top-left corner (ASCII). */
  label: string;
}

/**
 * Renders one 640x480 ultrasound frame into `out`, `stride` bytes per pixel (3: RGB, 4: RGBA with alpha
 * 255). Black background, a grey sector of speckle, a grey bar, depth ticks, a green ECG trace.
 * Writes every byte.
 */
export function renderUsFrame(out: Uint8Array, stride: 3 | 4, p: UsFrameParams): void {
  const rows = sector();
  const speckle = speckleTable(p.seed);
  const rng = new Rng('us-frame', p.seed, p.noiseKey, p.frame);
  const t = p.frame / p.fps;
  const shapes = heartShapes(t);
  const echoRow = new Int16Array(US_COLS);
  const rowBuf = new Uint8Array(US_COLS);
  for (let y = 0; y < US_ROWS; y++) {
    rowBuf.fill(0);
    const r = rows[y] as SectorRow;
    if (r.from <= r.to) {
      const dy = y - APEX_Y;
      const off = rng.u32() & (NOISE_LEN - 1);
      echoRow.fill(80);
      paintRow(echoRow, shapes, y, 0, 1);
      for (let x = r.from; x <= r.to; x++) {
        const dx = x - APEX_X;
        const rr = Math.sqrt(dx * dx + dy * dy);
        if (rr < R_MIN || rr > R_MAX) continue;
        // Echogenicity of the tissue, a bright near field, attenuation with depth, times the speckle.
        let echo = (echoRow[x] as number) / 100;
        if (rr < 90) echo += 0.8 * (1 - rr / 90);
        const gain = 1.2 - 0.5 * (rr / R_MAX);
        let v = (echo * gain * (speckle[off + x] as number)) | 0;
        if (v > 255) v = 255;
        rowBuf[x] = v;
      }
      // Depth ticks every 40 px along the right edge of the sector.
      if (y % 40 === 0 && r.to + 8 < US_COLS) rowBuf.fill(200, r.to + 4, r.to + 8);
    }
    // Grey bar on the left.
    if (y >= 80 && y < 336) rowBuf.fill(335 - y, 16, 28);
    const o = y * US_COLS * stride;
    for (let x = 0; x < US_COLS; x++) {
      const v = rowBuf[x] as number;
      const q = o + x * stride;
      out[q] = TINT_R[v] as number;
      out[q + 1] = TINT_G[v] as number;
      out[q + 2] = TINT_B[v] as number;
      if (stride === 4) out[q + 3] = 255;
    }
  }
  drawText(out, stride, p.label, 40, 12);
  drawEcg(out, stride, t);
}

function putPixel(out: Uint8Array, stride: number, x: number, y: number, r: number, g: number, b: number): void {
  if (x < 0 || y < 0 || x >= US_COLS || y >= US_ROWS) return;
  const q = (y * US_COLS + x) * stride;
  out[q] = r;
  out[q + 1] = g;
  out[q + 2] = b;
}

function drawText(out: Uint8Array, stride: number, text: string, x0: number, y0: number): void {
  for (let c = 0; c < text.length; c++) {
    const ch = text.charCodeAt(c);
    if (ch === 32) continue;
    for (let gy = 0; gy < 7; gy++) {
      for (let gx = 0; gx < 5; gx++) {
        if (glyphBit(ch, gx, gy)) putPixel(out, stride, x0 + c * 7 + gx, y0 + gy, 230, 230, 230);
      }
    }
  }
}

/** A green ECG trace along the bottom (a 2-second sweep) with the cursor at the current time. */
function drawEcg(out: Uint8Array, stride: number, t: number): void {
  const base = 455;
  let prev = base;
  for (let x = 60; x < 580; x++) {
    const phase = ((x - 60) / 520) * 2.2;
    const f = phase - Math.floor(phase);
    // P wave, QRS spike, T wave of one beat.
    const y = base - 4 * bumpTri(f, 0.1, 0.05) - 18 * bumpTri(f, 0.3, 0.015) + 6 * bumpTri(f, 0.33, 0.015) - 6 * bumpTri(f, 0.55, 0.07);
    const yi = Math.round(y);
    const lo = Math.min(prev, yi);
    const hi = Math.max(prev, yi);
    for (let yy = lo; yy <= hi; yy++) putPixel(out, stride, x, yy, 40, 220, 60);
    prev = yi;
  }
  const sweep = t / 2;
  const cursor = 60 + Math.floor((sweep - Math.floor(sweep)) * 520);
  for (let yy = base - 22; yy < base + 6; yy++) putPixel(out, stride, cursor, yy, 230, 230, 60);
}

function bumpTri(f: number, c: number, w: number): number {
  const d = Math.abs(f - c) / w;
  return d >= 1 ? 0 : 1 - d;
}
