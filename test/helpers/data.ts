// Where the tests find the shared data beside the repository (real DICOM files, the plugin's captured
// exchanges), and the skip reason of a test whose data is not there (a fresh clone with nothing beside it),
// counted in the runner's summary.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe as nodeDescribe, test, type SuiteFn, type TestOptions } from 'node:test';

/** The shared folder: DICOM_XFER_SHARED, else ../shared beside the repository. */
export const SHARED = process.env.DICOM_XFER_SHARED || resolve(import.meta.dirname, '..', '..', '..', 'shared');

/** The real DICOM files: DICOM_XFER_TESTDATA, else testdata/real-dicom in the shared folder. */
export const REAL_DICOM = process.env.DICOM_XFER_TESTDATA || join(SHARED, 'testdata', 'real-dicom');

/** Folders of generated DICOM per preset, made once per test process. */
const generated = new Map<'tiny' | 'small', Promise<string>>();

/**
 * A folder of DICOM files from the project's generator (as `dicom-xfer generate --preset <preset>`, seed 1):
 * made once per test process in a temporary folder, removed when the process exits.
 */
export function generatedDicom(preset: 'tiny' | 'small' = 'tiny'): Promise<string> {
  let made = generated.get(preset);
  if (made === undefined) {
    made = (async () => {
      const dir = await mkdtemp(join(tmpdir(), `dx-generated-${preset}-`));
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
      // Loaded here, not at the top: most tests that import this file never generate anything.
      const { generateDataset } = await import('../../src/generate/index.ts');
      await generateDataset({ out: dir, preset, seed: 1 });
      return dir;
    })();
    generated.set(preset, made);
  }
  return made;
}

/**
 * The real DICOM files when they are there, else generated ones (`preset`): for the tests that need some
 * real-looking DICOM, not these particular files, so that they run on a fresh clone too.
 */
export async function someDicom(preset: 'tiny' | 'small' = 'tiny'): Promise<string> {
  return existsSync(REAL_DICOM) ? REAL_DICOM : generatedDicom(preset);
}

/**
 * One series: the real Brainix FLAIR (22 MR images of about 170 KB) when the real files are there, else
 * a generated MR series (6 images of about 62 KB), for the tests that send "a series".
 */
export async function someSeries(): Promise<string> {
  return existsSync(REAL_DICOM)
    ? join(REAL_DICOM, 'Brainix', 'Flair')
    : join(await generatedDicom('tiny'), 'mr', 'DX000010004', 'study1', 'series01');
}

/** Exchanges of the Transfers Accelerator plugin captured on the wire (protocol/CAPTURES.md). */
export const CAPTURES = join(SHARED, 'protocol', 'captures');

/**
 * The skip reason (for node:test's `skip`) when one of `paths` is missing, else false. Usage:
 * `describe('...', { skip: needs(REAL_DICOM) }, () => ...)`, with the describe of this file.
 */
export function needs(...paths: string[]): string | false {
  const missing = paths.find((p) => !existsSync(p));
  return missing === undefined ? false : `needs the shared test data at ${missing} (set DICOM_XFER_TESTDATA or DICOM_XFER_SHARED)`;
}

/**
 * node:test's `describe`, except that a suite skipped by its `skip` option (say, `skip: needs(REAL_DICOM)`)
 * still counts in the runner's summary: node reports a skipped suite as "skipped 0", so a fresh clone would
 * not show what did not run. Here the skipped suite holds one skipped test named after it, with the reason.
 */
export function describe(name: string, options: TestOptions, fn: SuiteFn): Promise<void>;
export function describe(name: string, fn: SuiteFn): Promise<void>;
export function describe(name: string, a: TestOptions | SuiteFn, b?: SuiteFn): Promise<void> {
  const [options, fn] = typeof a === 'function' ? [{}, a] : [a, b];
  if (!options.skip) return nodeDescribe(name, options, fn);
  const reason = typeof options.skip === 'string' ? options.skip : 'skipped';
  return nodeDescribe(name, { ...options, skip: false }, () => {
    test(`${name}: all its tests`, { skip: reason }, () => {});
  });
}

/** Every regular file under `dir`, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** listFiles, for tests that build their cases from the files when the module loads. */
export function listFilesSync(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listFilesSync(p));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}
