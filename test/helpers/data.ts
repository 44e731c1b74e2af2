// Where the tests find the shared data beside the repository (real DICOM files, the plugin's captured
// exchanges), and the skip reason of a test whose data is not there (a fresh clone with nothing beside it).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The shared folder: DICOM_XFER_SHARED, else ../shared beside the repository. */
export const SHARED = process.env.DICOM_XFER_SHARED || resolve(import.meta.dirname, '..', '..', '..', 'shared');

/** The real DICOM files: DICOM_XFER_TESTDATA, else testdata/real-dicom in the shared folder. */
export const REAL_DICOM = process.env.DICOM_XFER_TESTDATA || join(SHARED, 'testdata', 'real-dicom');

/** Exchanges of the Transfers Accelerator plugin captured on the wire (protocol/CAPTURES.md). */
export const CAPTURES = join(SHARED, 'protocol', 'captures');

/**
 * The skip reason (for node:test's `skip`) when one of `paths` is missing, else false. Usage:
 * `describe('...', { skip: needs(REAL_DICOM) }, () => ...)`.
 */
export function needs(...paths: string[]): string | false {
  const missing = paths.find((p) => !existsSync(p));
  return missing === undefined ? false : `needs the shared test data at ${missing} (set DICOM_XFER_TESTDATA or DICOM_XFER_SHARED)`;
}
