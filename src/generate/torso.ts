// The CT phantom's anatomy: the torso's organs as ellipses that grow, shrink and drift with the slice
// position z, and enhance with the contrast phase.
import type { Ellipse } from './ellipses.ts';
import { Rng, bump, wave } from './random.ts';

/** Contrast phase of a CT series: what enhances (vessels, kidneys, liver). */
export type CtPhase = 'plain' | 'arterial' | 'venous';

/** Per-dataset layout of the torso (bowel loop positions and such), drawn once from the seed. */
export interface TorsoLayout {
  loops: { cx: number; cy: number; r: number; gas: boolean; phase: number }[];
  ribPhase: number;
  tilt: number;
}

const torsoCache = new Map<number, TorsoLayout>();

export function torsoLayout(seed: number): TorsoLayout {
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
export function torsoShapes(z: number, phase: CtPhase, layout: TorsoLayout): Ellipse[] {
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
