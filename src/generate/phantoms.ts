// Synthetic anatomy for the generator: a torso for CT, a head for MR and an echo sector for ultrasound.
// Shapes are ellipses that grow, shrink and drift smoothly with the slice position z in [0, 1]; each
// image row is filled span by span (painter's order), then noise from precomputed tables is added.
// Noise levels are tuned so that gzip compresses the files about as much as it does real images.
import { NOISE_LEN, Rng, bump, noiseTable, wave } from './random.ts';

/** An ellipse in millimetres (x to the patient's left, y posterior), with a value to paint. */
interface Ellipse {
  cx: number;
  cy: number;
  a: number;
  b: number;
  v: number;
}

/** Paints the ellipses onto one row at height y (mm) of a `cols`-wide row whose pixel 0 sits at x0 mm. */
function paintRow(row: Int16Array, shapes: readonly Ellipse[], y: number, x0: number, spacing: number): void {
  const cols = row.length;
  for (const s of shapes) {
    if (s.a <= 0.5 || s.b <= 0.5) continue;
    const dy = (y - s.cy) / s.b;
    if (dy <= -1 || dy >= 1) continue;
    const hw = s.a * Math.sqrt(1 - dy * dy);
    let from = Math.ceil((s.cx - hw - x0) / spacing);
    let to = Math.floor((s.cx + hw - x0) / spacing);
    if (from < 0) from = 0;
    if (to > cols - 1) to = cols - 1;
    if (from <= to) row.fill(s.v, from, to + 1);
  }
}

// ---------------------------------------------------------------------------------------------------------
// CT

/** Contrast phase of a CT series: what enhances (vessels, kidneys, liver). */
export type CtPhase = 'plain' | 'arterial' | 'venous';

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

/** Per-dataset layout of the torso (bowel loop positions and such), drawn once from the seed. */
interface TorsoLayout {
  loops: { cx: number; cy: number; r: number; gas: boolean; phase: number }[];
  ribPhase: number;
  tilt: number;
}

const torsoCache = new Map<number, TorsoLayout>();

function torsoLayout(seed: number): TorsoLayout {
  const hit = torsoCache.get(seed);
  if (hit) return hit;
  const rng = new Rng('torso', seed);
  const loops = [];
  for (let i = 0; i < 14; i++) {
    loops.push({
      cx: rng.range(-90, 90),
      cy: rng.range(-60, 25),
      r: rng.range(9, 20),
      gas: rng.float() < 0.35,
      phase: rng.float(),
    });
  }
  const layout = { loops, ribPhase: rng.float(), tilt: rng.range(-4, 4) };
  if (torsoCache.size > 8) torsoCache.clear();
  torsoCache.set(seed, layout);
  return layout;
}

/** Unit vectors at the rib angles, precomputed with wave() so they are identical everywhere. */
const RIB_ANGLES = [0.06, 0.13, 0.2, 0.3, 0.37, 0.44, 0.56, 0.63, 0.7, 0.8, 0.87, 0.94].map((t) => ({
  c: wave(t + 0.25),
  s: wave(t),
}));

/** What the parts of the torso share at one slice: position, phase, body outline and the list painted. */
interface TorsoSlice {
  z: number;
  layout: TorsoLayout;
  arterial: boolean;
  venous: boolean;
  /** Centre x of the body, and its half axes. */
  bcx: number;
  ba: number;
  bb: number;
  add(cx: number, cy: number, a: number, b: number, v: number): void;
}

/** Body, visceral fat and ribs. */
function bodyWall(t: TorsoSlice): void {
  const { z, layout, bcx, ba, bb, add } = t;
  // Body: subcutaneous fat around muscle and viscera.
  add(bcx, 5, ba, bb, -95);
  add(bcx, 7, ba - 14 - 4 * wave(z * 1.7), bb - 12, 42);
  // Visceral fat around the bowel.
  const fat = bump(0.45, 1.05, 0.15, z);
  if (fat > 0) add(bcx, -8, (ba - 34) * fat, (bb - 40) * fat, -85);
  // Ribs around the chest and upper abdomen, appearing and vanishing as the slices cross them.
  const ribs = 1 - bump(0.62, 1.5, 0.08, z);
  if (ribs > 0) {
    for (let i = 0; i < RIB_ANGLES.length; i++) {
      const on = wave(z * 11 + layout.ribPhase + i * 0.09);
      if (on < 0.15) continue;
      const { c, s } = RIB_ANGLES[i] as { c: number; s: number };
      const k = 0.9 * ribs;
      add(bcx + c * (ba - 22), 7 + s * (bb - 20), 8 * k * on, 5 * k * on, 620);
    }
  }
}

/** Lungs with the heart and mediastinum between them. */
function chest(t: TorsoSlice): void {
  const { z, arterial, venous, bcx, add } = t;
  const lung = bump(-0.2, 0.47, 0.2, z);
  if (lung > 0) {
    add(bcx - 68, -2, 58 * lung, 82 * lung, -860);
    add(bcx + 70, -2, 56 * lung, 80 * lung, -865);
    add(bcx - 55, 40, 30 * lung, 25 * lung, -700); // dependent, denser posterior lung
  }
  const heart = bump(0.1, 0.4, 0.12, z);
  if (heart > 0) {
    add(bcx + 22, -22, 58 * heart, 46 * heart, arterial ? 260 : venous ? 140 : 40);
    add(bcx + 30, -30, 24 * heart, 18 * heart, arterial ? 300 : venous ? 150 : 38); // a chamber
  }
}

/** Upper abdomen: liver, spleen, stomach with a gas bubble; kidneys, enhancing cortex with darker medulla. */
function upperAbdomen(t: TorsoSlice): void {
  const { z, arterial, venous, bcx, add } = t;
  const liver = bump(0.3, 0.64, 0.1, z);
  if (liver > 0) {
    add(bcx - 52, 0, 88 * liver, 76 * liver, arterial ? 72 : venous ? 112 : 58);
    add(bcx - 40, 10, 10 * liver, 8 * liver, arterial ? 160 : venous ? 170 : 40); // portal vein
  }
  const spleen = bump(0.34, 0.56, 0.08, z);
  if (spleen > 0) add(bcx + 88, 28, 30 * spleen, 46 * spleen, arterial ? 90 : venous ? 120 : 50);
  const stomach = bump(0.32, 0.52, 0.08, z);
  if (stomach > 0) {
    add(bcx + 52, -34, 42 * stomach, 30 * stomach, 12);
    add(bcx + 52, -54, 22 * stomach, 9 * stomach, -960);
  }
  const kidney = bump(0.5, 0.74, 0.08, z);
  if (kidney > 0) {
    for (const side of [-1, 1]) {
      add(bcx + side * 72, 48, 25 * kidney, 38 * kidney, arterial ? 190 : venous ? 160 : 32);
      add(bcx + side * 70, 48, 12 * kidney, 20 * kidney, arterial ? 60 : venous ? 150 : 30);
    }
  }
}

/** Bowel loops drifting with z; the pelvis: iliac wings, then femoral heads, the bladder between them. */
function lowerAbdomen(t: TorsoSlice): void {
  const { z, layout, bcx, add } = t;
  const bowel = bump(0.52, 0.98, 0.1, z);
  if (bowel > 0) {
    for (const l of layout.loops) {
      const on = wave(z * 3 + l.phase);
      if (on < 0.2) continue;
      const r = l.r * on * bowel;
      add(bcx + l.cx + 12 * wave(z * 2 + l.phase), l.cy + 8 * wave(z * 1.5 + l.phase), r, r * 0.8, l.gas ? -930 : 28);
    }
  }
  const pelvis = bump(0.74, 1.3, 0.08, z);
  if (pelvis > 0) {
    for (const side of [-1, 1]) {
      add(bcx + side * (92 - 20 * z), 38, 20 * pelvis, 46 * pelvis, 520);
      add(bcx + side * (92 - 20 * z), 38, 12 * pelvis, 36 * pelvis, 230);
    }
  }
  const femur = bump(0.9, 1.3, 0.05, z);
  if (femur > 0) for (const side of [-1, 1]) add(bcx + side * 85, 10, 24 * femur, 24 * femur, 480);
  const bladder = bump(0.84, 1.3, 0.08, z);
  if (bladder > 0) add(bcx, -28, 46 * bladder, 34 * bladder, 9);
}

/** Aorta (then iliac arteries), spine with canal and posterior elements. */
function vesselsAndSpine(t: TorsoSlice): void {
  const { z, arterial, venous, bcx, add } = t;
  const aorta = 1 - bump(0.8, 1.5, 0.06, z);
  const ahu = arterial ? 330 : venous ? 165 : 45;
  if (aorta > 0) add(bcx + 6, 34 - 14 * bump(-1, 0.25, 0.2, z), 12 * aorta, 12 * aorta, ahu);
  const iliac = bump(0.8, 1.3, 0.06, z);
  if (iliac > 0) for (const side of [-1, 1]) add(bcx + side * 30 * (1 + z - 0.8), 30, 7, 7, ahu);
  add(bcx, 62, 23 + 4 * z, 19, 680);
  add(bcx, 62, 18 + 4 * z, 15, 240);
  add(bcx, 96, 28, 11, 560);
  add(bcx, 84, 8, 7, 25);
}

/** The torso's ellipses at position z (0 = lung apex, 1 = pelvis), painted in this order. */
function torsoShapes(z: number, phase: CtPhase, layout: TorsoLayout): Ellipse[] {
  const shapes: Ellipse[] = [];
  const breath = wave(z * 1.3 + 0.1);
  // The body is wider at the abdomen than at the apex.
  const t: TorsoSlice = {
    z,
    layout,
    arterial: phase === 'arterial',
    venous: phase === 'venous',
    ba: 150 + 22 * bump(0.15, 1.1, 0.5, z) + 4 * breath,
    bb: 105 + 12 * bump(0.3, 1.1, 0.4, z) + 3 * wave(z * 2.1),
    bcx: layout.tilt * (z - 0.5),
    add: (cx, cy, a, b, v) => {
      shapes.push({ cx, cy, a, b, v });
    },
  };
  bodyWall(t);
  chest(t);
  upperAbdomen(t);
  lowerAbdomen(t);
  vesselsAndSpine(t);
  return shapes;
}

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
    const y = base - 4 * bumpTri(f, 0.1, 0.05) - 18 * bumpTri(f, 0.3, 0.015) + 6 * bumpTri(f, 0.33, 0.015)
      - 6 * bumpTri(f, 0.55, 0.07);
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
