// The benchmark's data set: generated once per preset and seed (deterministic), described by a manifest
// that also holds the data set's gzip level 6 size, and reused by every later run.
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { generateDataset } from '../../src/generate/index.ts';
import { mapLimit } from '../../src/util/concurrency.ts';
import type { DatasetManifest, SetName } from './common.ts';

const MANIFEST = 'wan-manifest.json';

/** Bytes of a file once gzipped at level 6 (one gzip member per file, as a per-instance sender would). */
async function gzipSize(path: string): Promise<number> {
  let n = 0;
  await pipeline(
    createReadStream(path),
    createGzip({ level: 6 }),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        n += chunk.length;
        cb();
      },
    }),
  );
  return n;
}

/** True when every file of the manifest is on disk with its recorded size. */
async function intact(m: DatasetManifest): Promise<boolean> {
  for (const f of m.files) {
    const s = await stat(join(m.dir, f.path)).catch(() => undefined);
    if (!s || s.size !== f.size) return false;
  }
  return true;
}

/**
 * The data set `set`/`seed` under `root` (default bench-output): read from its manifest when it is
 * there and intact, otherwise generated and measured (progress on stderr) and the manifest written last.
 */
export async function prepareDataset(set: SetName, seed: number, root: string): Promise<DatasetManifest> {
  const dir = resolve(root, `wan-${set}-seed${seed}`);
  const manifestPath = join(dir, MANIFEST);
  const known = await readFile(manifestPath, 'utf8')
    .then((t) => JSON.parse(t) as DatasetManifest)
    .catch(() => undefined);
  if (known && known.set === set && known.seed === seed && known.dir === dir && (await intact(known))) return known;

  await mkdir(dir, { recursive: true });
  process.stderr.write(`generating the ${set} data set (seed ${seed}) in ${dir} ...\n`);
  const t0 = performance.now();
  const generated = await generateDataset({ out: dir, seed, preset: set, concurrency: 2 });
  process.stderr.write(
    `  ${generated.files.length} files, ${(generated.totalBytes / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} ` +
      `s; measuring gzip -6 ...\n`,
  );
  const gz = await mapLimit(generated.files, 2, (f) => gzipSize(f.path));
  const manifest: DatasetManifest = {
    set,
    seed,
    dir,
    files: generated.files.map((f) => ({ path: relative(dir, f.path), size: f.size })),
    totalBytes: generated.totalBytes,
    gzip6Bytes: gz.reduce((a, b) => a + b, 0),
  };
  // Written under another name and renamed, so a half-written manifest is never taken for a whole one.
  await writeFile(`${manifestPath}.tmp`, JSON.stringify(manifest, null, 1));
  await rename(`${manifestPath}.tmp`, manifestPath);
  process.stderr.write(
    `  gzip -6: ${(manifest.gzip6Bytes / 1e6).toFixed(1)} MB (${((100 * manifest.gzip6Bytes) / manifest.totalBytes).toFixed(0)}%)\n`,
  );
  return manifest;
}
