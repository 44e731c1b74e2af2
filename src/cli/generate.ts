// `dicom-xfer generate`: writes a deterministic set of realistic DICOM files (CT, MR, multi-frame,
// ultrasound cine, JPEG) for tests and benchmarks. Progress and a summary go to stderr.
import { type Command, Option } from 'commander';
import { isXferError, XferError } from '../errors.ts';
import { generateDataset, PRESETS, resolveCounts, type DatasetCounts, type InstanceKind, type PresetName } from '../generate/index.ts';

interface GenerateFlags {
  out: string;
  seed?: string;
  preset: PresetName;
  ctSeries?: string;
  ctSlices?: string;
  mr?: string;
  multiframe?: string;
  multiframeMb?: string;
  us?: string;
  usMb?: string;
  jpegSeries?: string;
  jpegSlices?: string;
  quiet?: boolean;
}

function integer(flag: string, v: string): number {
  if (!/^\d{1,15}$/.test(v)) throw new XferError('ParameterOutOfRange', `--${flag} needs a non-negative integer, not "${v}"`);
  return Number(v);
}

function megabytes(flag: string, v: string): number {
  if (!/^\d{1,6}(\.\d+)?$/.test(v)) throw new XferError('ParameterOutOfRange', `--${flag} needs a number of MB, not "${v}"`);
  return Number(v);
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** The counts from the preset and the flags given (flags win). */
function countsFromFlags(f: GenerateFlags): DatasetCounts {
  const given: Partial<DatasetCounts> = {};
  if (f.ctSeries !== undefined) given.ctSeries = integer('ct-series', f.ctSeries);
  if (f.ctSlices !== undefined) given.ctSlices = integer('ct-slices', f.ctSlices);
  if (f.mr !== undefined) given.mr = integer('mr', f.mr);
  if (f.multiframe !== undefined) given.multiframe = integer('multiframe', f.multiframe);
  if (f.multiframeMb !== undefined) given.multiframeMb = megabytes('multiframe-mb', f.multiframeMb);
  if (f.us !== undefined) given.us = integer('us', f.us);
  if (f.usMb !== undefined) given.usMb = megabytes('us-mb', f.usMb);
  if (f.jpegSeries !== undefined) given.jpegSeries = integer('jpeg-series', f.jpegSeries);
  if (f.jpegSlices !== undefined) given.jpegSlices = integer('jpeg-slices', f.jpegSlices);
  return resolveCounts({ preset: f.preset, ...given });
}

async function run(f: GenerateFlags): Promise<void> {
  const counts = countsFromFlags(f);
  const seed = f.seed === undefined ? 1 : integer('seed', f.seed);
  const started = Date.now();
  const tty = process.stderr.isTTY === true && !f.quiet;
  let lastDraw = 0;
  const result = await generateDataset({
    out: f.out,
    seed,
    ...counts,
    onProgress: tty
      ? (p) => {
          const now = Date.now();
          if (now - lastDraw < 200 && p.filesDone < p.filesTotal) return;
          lastDraw = now;
          process.stderr.write(`\rgenerate: ${p.filesDone}/${p.filesTotal} files, ${mb(p.bytesDone)}   `);
        }
      : undefined,
  });
  if (f.quiet) return;
  if (tty) process.stderr.write('\n');
  const byKind = new Map<InstanceKind, { files: number; bytes: number }>();
  for (const file of result.files) {
    const k = byKind.get(file.kind) ?? { files: 0, bytes: 0 };
    k.files++;
    k.bytes += file.size;
    byKind.set(file.kind, k);
  }
  const parts = [...byKind].map(([kind, k]) => `${kind} ${k.files} (${mb(k.bytes)})`);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stderr.write(
    `generate: wrote ${result.files.length} file${result.files.length === 1 ? '' : 's'}, ${mb(result.totalBytes)}, to ${f.out} in ` +
      `${seconds} s` +
      (parts.length ? `: ${parts.join(', ')}` : '') +
      '\n',
  );
}

export function registerGenerate(program: Command): void {
  const p = PRESETS;
  program
    .command('generate')
    .description('Write a deterministic set of realistic DICOM files (same seed and flags, same bytes).')
    .requiredOption('--out <dir>', 'directory to write into (created if needed)')
    .option('--seed <n>', 'seed of everything random (default 1)')
    .addOption(
      new Option('--preset <name>', `base counts: full (~1 GB), study (~210 MB), small (~150 MB), tiny (~8 MB)`)
        .choices(['full', 'study', 'small', 'tiny'])
        .default('small'),
    )
    .option('--ct-series <n>', `CT series, 512x512 16-bit (full: ${p.full.ctSeries})`)
    .option('--ct-slices <n>', `slices per CT series, ~525 KB each (full: ${p.full.ctSlices})`)
    .option('--mr <n>', `MR images, ~62 KB each (full: ${p.full.mr})`)
    .option('--multiframe <n>', `Enhanced CT multi-frame instances (full: ${p.full.multiframe})`)
    .option('--multiframe-mb <mb>', `size of each multi-frame instance (full: ${p.full.multiframeMb})`)
    .option('--us <n>', `RGB ultrasound cines (full: ${p.full.us})`)
    .option('--us-mb <mb>', `size of each cine (full: ${p.full.usMb})`)
    .option('--jpeg-series <n>', `JPEG baseline series (full: ${p.full.jpegSeries})`)
    .option('--jpeg-slices <n>', `images per JPEG series (full: ${p.full.jpegSlices})`)
    .option('--quiet', 'print nothing')
    .action(async (flags: GenerateFlags) => {
      try {
        await run(flags);
      } catch (e) {
        const message = isXferError(e) ? e.message : e instanceof Error ? e.message : String(e);
        process.stderr.write(`generate: ${message}\n`);
        process.exitCode = isXferError(e, 'ParameterOutOfRange') ? 2 : 1;
      }
    });
}
