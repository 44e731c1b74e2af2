// The lock of a node's storage directory: one dicom-xfer process per directory, whichever store it uses.
// An OS file lock (SQLite's fcntl locks), so that the kernel releases it when the process dies, however.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** The file whose exclusive SQLite lock is the directory's lock. */
export const LOCK_FILE = 'dicom-xfer-lock.sqlite';

/**
 * The holder's pid, for people and for the message of a refused start. Earlier versions locked the
 * directory with this file alone; it is only informative now (a pid left in it after a crash or a
 * reboot, possibly reused by another process, blocks nothing). Being written while the lock is held, it
 * also keeps an earlier version from starting on a directory that a live node of this version holds.
 */
export const PID_FILE = 'dicom-xfer.lock';

export interface DirLock {
  /** Releases the lock and removes the pid file; idempotent. */
  release(): void;
}

function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

/**
 * Takes the lock of `dir` (which must exist) for the life of this process, or until release(). Throws,
 * saying so, when another process (or another store of this process) holds it.
 */
export function lockDirectory(dir: string): DirLock {
  const path = join(dir, LOCK_FILE);
  const pidPath = join(dir, PID_FILE);
  // No busy wait: a directory in use is refused at once.
  const db = new Database(path, { timeout: 0 });
  try {
    // In exclusive locking mode SQLite keeps the lock of its first write until the connection closes;
    // without a journal no other file is made and nothing is left to recover after a kill.
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = OFF');
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, since TEXT NOT NULL)');
    db.transaction(() => {
      db.exec('DELETE FROM holder');
      db.prepare('INSERT INTO holder (pid, since) VALUES (?, ?)').run(process.pid, new Date().toISOString());
    })();
  } catch (e) {
    db.close();
    if (!isBusy(e)) throw e;
    let pid = Number.NaN;
    try {
      pid = Number.parseInt(readFileSync(pidPath, 'utf8'), 10);
    } catch {
      // no pid file: the holder is still starting, or it was removed by hand
    }
    if (pid === process.pid) throw new Error(`${dir}: the storage directory is already open in this process`);
    const holder = Number.isInteger(pid) && pid > 0 ? ` (pid ${pid})` : '';
    throw new Error(`${dir}: the storage directory is in use by another dicom-xfer process${holder}`);
  }
  writeFileSync(pidPath, String(process.pid));
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      try {
        if (readFileSync(pidPath, 'utf8') === String(process.pid)) unlinkSync(pidPath);
      } catch {
        // already gone
      }
      db.close();
    },
  };
}
