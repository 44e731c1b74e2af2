// Opening a SQLite database the one way dicom-xfer does: WAL, synchronous NORMAL, foreign keys, a busy
// timeout, and the schema brought up to date by numbered migrations (PRAGMA user_version counts them).
import Database from 'better-sqlite3';

export type Sqlite = Database.Database;

/**
 * Opens `path` and applies the migrations it has not seen, each in its own transaction. Refuses a
 * database written by a newer dicom-xfer (more migrations than this one knows).
 */
export function openSqlite(path: string, migrations: readonly string[]): Sqlite {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode keeps the database consistent after a process crash and loses nothing
    // committed; only a power loss may roll back the last transactions.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const current = db.pragma('user_version', { simple: true }) as number;
    if (current > migrations.length) {
      throw new Error(`${path} was written by a newer dicom-xfer (schema ${current}, this one knows ${migrations.length})`);
    }
    for (let v = current; v < migrations.length; v++) {
      db.transaction(() => {
        db.exec(migrations[v] as string);
        db.pragma(`user_version = ${v + 1}`);
      })();
    }
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}
