// The lock of a node's storage directory when the node runs beside an Orthanc: staging, jobs and peers
// live there, so two dicom-xfer processes must not share it. The file has the embedded store's name,
// so an embedded node and an Orthanc-store node refuse each other's directory too.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';

export const LOCK_FILE = 'dicom-xfer.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Creates the lock file holding this process's pid. Throws when a live process holds it; a lock left by a
 * dead process is taken over.
 */
export function acquireLock(path: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      try {
        writeSync(fd, String(process.pid));
      } finally {
        closeSync(fd);
      }
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = Number.NaN;
      try {
        holder = Number.parseInt(readFileSync(path, 'utf8'), 10);
      } catch {
        // removed meanwhile: try again
      }
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw new Error(`${path}: the storage directory is in use by another dicom-xfer process (pid ${holder})`);
      }
      try {
        unlinkSync(path);
      } catch {
        // another process took it over first; the next attempt decides
      }
    }
  }
  throw new Error(`${path}: cannot take the storage directory's lock`);
}

/** Removes the lock file when this process holds it. */
export function releaseLock(path: string): void {
  try {
    if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
  } catch {
    // already gone
  }
}
