// Ellipses the phantoms are painted with: each image row is filled span by span, in painter's order.

/** An ellipse in millimetres (x to the patient's left, y posterior), with a value to paint. */
export interface Ellipse {
  cx: number;
  cy: number;
  a: number;
  b: number;
  v: number;
}

/** Paints the ellipses onto one row at height y (mm) of a `cols`-wide row whose pixel 0 sits at x0 mm. */
export function paintRow(row: Int16Array, shapes: readonly Ellipse[], y: number, x0: number, spacing: number): void {
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
