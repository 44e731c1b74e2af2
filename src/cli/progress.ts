// Progress display of long CLI commands (import, transfers): files and bytes done of total, MB, rate and
// ETA, drawn as a cli-progress bar on a terminal, as a plain line at most every few seconds otherwise.
// `StatusBars` shows several items whose figures someone else computes (jobs followed on a node).
import cliProgress from 'cli-progress';

export const MB = 1_000_000;
/** Least time between two plain progress lines (non-TTY output), so logs stay readable. */
export const LINE_INTERVAL_MS = 2_000;

/** How progress is shown: a redrawn bar, periodic plain lines, or nothing. */
export type ProgressMode = 'bar' | 'lines' | 'none';

/** One consistent reading of a progress counter; rates are averages since the start. */
export interface ProgressSnapshot {
  filesDone: number;
  totalFiles: number;
  bytesDone: number;
  totalBytes: number;
  elapsedMs: number;
  /** Average bytes per second since start (0 before any time has passed). */
  bytesPerSecond: number;
  /** Seconds left at the average rate; undefined while the rate is unknown. */
  etaSeconds: number | undefined;
}

export interface ProgressOptions {
  /** Word in front of the bar and the lines, e.g. "import". */
  label: string;
  totalFiles?: number;
  totalBytes?: number;
  /** Where to draw (default process.stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Default: 'bar' when the stream is a TTY, 'lines' otherwise; 'none' when quiet. A bar draws only on a TTY. */
  mode?: ProgressMode;
  quiet?: boolean;
  /** Least time between plain lines (default LINE_INTERVAL_MS). */
  lineIntervalMs?: number;
}

/** The mode a command should use: nothing when quiet, a bar on a terminal, lines otherwise. */
export function progressMode(stream: { isTTY?: boolean }, quiet = false): ProgressMode {
  if (quiet) return 'none';
  return stream.isTTY === true ? 'bar' : 'lines';
}

function megabytes(bytes: number): string {
  const mb = bytes / MB;
  return mb < 10 ? mb.toFixed(2) : mb < 1000 ? mb.toFixed(1) : mb.toFixed(0);
}

/** "12.3 MB" (decimal megabytes, as network rates are usually quoted). */
export function formatMB(bytes: number): string {
  return `${megabytes(bytes)} MB`;
}

/** "4.56 MB/s". */
export function formatRate(bytesPerSecond: number): string {
  return `${formatMB(bytesPerSecond)}/s`;
}

/** "42s", "3m07s", "1h02m"; "?" when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A snapshot in one short line (fits a terminal with the bar): "120/239 files  20.1/45.3 MB  9.87 MB/s  ETA 2s". */
export function describeProgress(s: ProgressSnapshot): string {
  const parts: string[] = [];
  if (s.totalFiles > 0) parts.push(`${s.filesDone}/${s.totalFiles} files`);
  parts.push(s.totalBytes > 0 ? `${megabytes(s.bytesDone)}/${formatMB(s.totalBytes)}` : formatMB(s.bytesDone));
  parts.push(formatRate(s.bytesPerSecond));
  parts.push(`ETA ${formatDuration(s.etaSeconds)}`);
  return parts.join('  ');
}

/**
 * Counts files and bytes of one command and shows them. Feed it from the data as it moves
 * (`addBytes` from the stream, `fileDone` when an answer arrives); read `snapshot()` for summaries.
 * `stop()` ends the display (idempotent) and must be called before printing anything else.
 */
export class Progress {
  readonly mode: ProgressMode;
  readonly #label: string;
  readonly #stream: NodeJS.WritableStream;
  readonly #lineIntervalMs: number;
  readonly #start = Date.now();
  #filesDone = 0;
  #bytesDone = 0;
  #totalFiles: number;
  #totalBytes: number;
  #bar: cliProgress.SingleBar | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastLine = '';
  #stopped = false;

  constructor(opts: ProgressOptions) {
    const stream = opts.stream ?? process.stderr;
    this.#stream = stream;
    this.#label = opts.label;
    this.#totalFiles = opts.totalFiles ?? 0;
    this.#totalBytes = opts.totalBytes ?? 0;
    this.#lineIntervalMs = opts.lineIntervalMs ?? LINE_INTERVAL_MS;
    this.mode = opts.quiet ? 'none' : (opts.mode ?? progressMode(stream));
    if (this.mode === 'bar') {
      this.#bar = new cliProgress.SingleBar(
        {
          stream,
          format: `${this.#label} [{bar}] {percentage}%  {detail}`,
          barsize: 16,
          barCompleteChar: '\u2588',
          barIncompleteChar: '\u2591',
          hideCursor: true,
          clearOnComplete: false,
          linewrap: true,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(this.#barTotal(), 0, { detail: describeProgress(this.snapshot()) });
    } else if (this.mode === 'lines') {
      // unref: a pending line must never keep the process alive after the work is done
      this.#timer = setInterval(() => this.#printLine(), this.#lineIntervalMs);
      this.#timer.unref();
    }
  }

  /** Bytes moved (negative to take back the bytes of a failed attempt that will be sent again). */
  addBytes(n: number): void {
    this.#bytesDone += n;
    this.#redraw();
  }

  /** One more file finished, whatever its outcome. */
  fileDone(): void {
    this.#filesDone += 1;
    this.#redraw();
  }

  /** Changes the totals while running (e.g. when a listing grows). */
  setTotals(totals: { files?: number; bytes?: number }): void {
    if (totals.files !== undefined) this.#totalFiles = totals.files;
    if (totals.bytes !== undefined) this.#totalBytes = totals.bytes;
    this.#bar?.setTotal(this.#barTotal());
    this.#redraw();
  }

  snapshot(): ProgressSnapshot {
    const elapsedMs = Date.now() - this.#start;
    const bytesPerSecond = elapsedMs > 0 ? (this.#bytesDone * 1000) / elapsedMs : 0;
    let etaSeconds: number | undefined;
    if (this.#totalBytes > 0 && bytesPerSecond > 0) {
      etaSeconds = Math.max(0, this.#totalBytes - this.#bytesDone) / bytesPerSecond;
    } else if (this.#totalFiles > 0 && this.#filesDone > 0) {
      etaSeconds = ((this.#totalFiles - this.#filesDone) * elapsedMs) / this.#filesDone / 1000;
    }
    return {
      filesDone: this.#filesDone,
      totalFiles: this.#totalFiles,
      bytesDone: this.#bytesDone,
      totalBytes: this.#totalBytes,
      elapsedMs,
      bytesPerSecond,
      etaSeconds,
    };
  }

  /** Ends the display: the bar is drawn one last time and the cursor comes back; lines stop. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#bar) {
      this.#bar.update(this.#barValue(), { detail: describeProgress(this.snapshot()) });
      this.#bar.stop();
    }
  }

  // The bar follows bytes when their total is known (smoother on big files), files otherwise.
  #barTotal(): number {
    return this.#totalBytes > 0 ? this.#totalBytes : Math.max(this.#totalFiles, 1);
  }

  #barValue(): number {
    return this.#totalBytes > 0 ? Math.min(this.#bytesDone, this.#totalBytes) : this.#filesDone;
  }

  #redraw(): void {
    // cli-progress throttles to its fps itself; lines are printed by the timer only
    if (this.#bar && !this.#stopped) this.#bar.update(this.#barValue(), { detail: describeProgress(this.snapshot()) });
  }

  #printLine(): void {
    if (this.#stopped) return;
    const s = this.snapshot();
    const line = `${this.#label}: ${describeProgress(s)}`;
    // a line identical in counts to the previous one says nothing new
    const key = `${s.filesDone}/${s.bytesDone}`;
    if (key === this.#lastLine) return;
    this.#lastLine = key;
    this.#stream.write(`${line}\n`);
  }
}

export interface StatusBarsOptions {
  /** Where to draw (default process.stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Default: 'bar' on a TTY, 'lines' otherwise; 'none' when quiet. */
  mode?: ProgressMode;
  quiet?: boolean;
  /** Least time between two plain lines of one item (default LINE_INTERVAL_MS). */
  lineIntervalMs?: number;
}

interface StatusItem {
  label: string;
  percent: number;
  detail: string;
  bar?: cliProgress.SingleBar;
  /** Text of the last plain line printed, and when. */
  printed?: string;
  printedAt: number;
}

/**
 * One bar per item (a job), each with a percentage and a free detail text computed by the caller
 * (e.g. from a job's JSON). On a terminal the bars are redrawn in place; otherwise an item's line is
 * printed at once when it first appears, then at most every `lineIntervalMs` when its text changed.
 * `stop()` ends the display (idempotent) and must be called before printing anything else.
 */
export class StatusBars {
  readonly mode: ProgressMode;
  readonly #stream: NodeJS.WritableStream;
  readonly #lineIntervalMs: number;
  readonly #items = new Map<string, StatusItem>();
  #multi: cliProgress.MultiBar | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: StatusBarsOptions = {}) {
    const stream = opts.stream ?? process.stderr;
    this.#stream = stream;
    this.#lineIntervalMs = opts.lineIntervalMs ?? LINE_INTERVAL_MS;
    this.mode = opts.quiet ? 'none' : (opts.mode ?? progressMode(stream));
    if (this.mode === 'bar') {
      this.#multi = new cliProgress.MultiBar(
        {
          stream,
          format: '{label} [{bar}] {percentage}%  {detail}',
          barsize: 16,
          barCompleteChar: '\u2588',
          barIncompleteChar: '\u2591',
          hideCursor: true,
          clearOnComplete: false,
          linewrap: false,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
    } else if (this.mode === 'lines') {
      // unref: a pending line must never keep the process alive after the work is done
      this.#timer = setInterval(() => this.#printLines(), Math.max(100, Math.floor(this.#lineIntervalMs / 4)));
      this.#timer.unref();
    }
  }

  /** Shows item `key` (created on first call) at `percent` (0-100, clamped) with `detail` after the bar. */
  update(key: string, label: string, percent: number, detail: string): void {
    if (this.#stopped) return;
    const p = Number.isFinite(percent) ? Math.min(100, Math.max(0, Math.round(percent))) : 0;
    let item = this.#items.get(key);
    if (!item) {
      item = { label, percent: p, detail, printedAt: 0 };
      this.#items.set(key, item);
      if (this.#multi) item.bar = this.#multi.create(100, p, { label, detail });
      else if (this.mode === 'lines') this.#printItem(item);
      return;
    }
    item.label = label;
    item.percent = p;
    item.detail = detail;
    item.bar?.update(p, { label, detail });
  }

  /** Ends the display: bars are drawn one last time and the cursor comes back; lines stop. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#multi) {
      for (const item of this.#items.values()) item.bar?.update(item.percent, { label: item.label, detail: item.detail });
      this.#multi.stop();
    }
  }

  #lineOf(item: StatusItem): string {
    return `${item.label}: ${item.percent}%  ${item.detail}`;
  }

  #printItem(item: StatusItem): void {
    const line = this.#lineOf(item);
    item.printed = line;
    item.printedAt = Date.now();
    this.#stream.write(`${line}\n`);
  }

  #printLines(): void {
    if (this.#stopped) return;
    const now = Date.now();
    for (const item of this.#items.values()) {
      // a line identical to the previous one of the same item says nothing new
      if (this.#lineOf(item) === item.printed) continue;
      if (now - item.printedAt >= this.#lineIntervalMs) this.#printItem(item);
    }
  }
}
