// A small time-series chart drawn by hand on a canvas: one or more lines over time, an area under the
// first, a labelled value axis and time ticks, sharp on high-density screens and redrawn on resize.

const css = (name, fallback) => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

/**
 * A chart in `canvas`. `series` is [{label, color (a CSS variable name), points: [{t, v}]}]; `format`
 * writes a value for the axis; the axis goes at least up to `minMax`, to a round number (of 1024s with
 * `binary`). Call `draw()` after changing the points.
 */
export class TimeChart {
  constructor(canvas, { format = String, series = [], minMax = 1, binary = false, empty = 'Waiting for data…' } = {}) {
    this.empty = empty;
    this.minMax = minMax;
    this.binary = binary;
    this.canvas = canvas;
    this.format = format;
    this.series = series;
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(canvas);
  }

  dispose() {
    this.resize.disconnect();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const hgt = c.clientHeight;
    if (w === 0 || hgt === 0) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const fg = css('--muted', '#667');
    const grid = css('--grid', '#ddd');
    g.font = '11px system-ui, sans-serif';

    const all = this.series.flatMap((s) => s.points);
    const pad = { l: 64, r: 10, t: 10, b: 22 };
    const pw = w - pad.l - pad.r;
    const ph = hgt - pad.t - pad.b;
    if (all.length < 2) {
      g.fillStyle = fg;
      g.textAlign = 'center';
      g.fillText(this.empty, w / 2, hgt / 2);
      return;
    }
    const t0 = Math.min(...all.map((p) => p.t));
    const t1 = Math.max(...all.map((p) => p.t), t0 + 1000);
    const vmax = niceMax(Math.max(...all.map((p) => p.v), this.minMax), this.binary);
    const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * pw;
    const y = (v) => pad.t + ph - (v / vmax) * ph;

    // Value grid and labels.
    g.strokeStyle = grid;
    g.fillStyle = fg;
    g.lineWidth = 1;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = (vmax * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath();
      g.moveTo(pad.l, yy);
      g.lineTo(w - pad.r, yy);
      g.stroke();
      g.fillText(this.format(v), pad.l - 6, yy);
    }
    // Time ticks: seconds before now (or before the last point).
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const span = (t1 - t0) / 1000;
    const step = niceStep(span / 5);
    for (let s = 0; s <= span; s += step) {
      const xx = x(t1 - s * 1000);
      g.fillText(s === 0 ? 'now' : `-${fmtSpan(s)}`, xx, pad.t + ph + 5);
    }

    this.series.forEach((s, i) => {
      if (s.points.length < 2) return;
      const color = css(s.color, '#1f6feb');
      g.beginPath();
      s.points.forEach((p, j) => {
        if (j === 0) g.moveTo(x(p.t), y(p.v));
        else g.lineTo(x(p.t), y(p.v));
      });
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.lineJoin = 'round';
      g.stroke();
      if (i === 0) {
        g.lineTo(x(s.points[s.points.length - 1].t), y(0));
        g.lineTo(x(s.points[0].t), y(0));
        g.closePath();
        g.globalAlpha = 0.15;
        g.fillStyle = color;
        g.fill();
        g.globalAlpha = 1;
      }
    });
  }
}

/** A round top for the axis: 1, 2, 2.5, 5 x a power of ten of the value's unit (powers of 1024 when `binary`). */
function niceMax(v, binary) {
  const unit = binary ? 1024 ** Math.max(0, Math.floor(Math.log(v) / Math.log(1024))) : 1;
  const x = v / unit;
  const e = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (x <= m * e) return m * e * unit;
  return 10 * e * unit;
}

function niceStep(s) {
  for (const c of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]) if (s <= c) return c;
  return 7200;
}

function fmtSpan(s) {
  return s >= 3600 ? `${s / 3600} h` : s >= 60 ? `${s / 60} min` : `${s} s`;
}
