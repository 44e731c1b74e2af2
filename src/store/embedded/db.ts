// The embedded store's SQLite index: schema as numbered migrations, opened in WAL mode.
import Database from 'better-sqlite3';

export type Db = Database.Database;

/** Schema changes, applied in order; PRAGMA user_version holds how many have run. */
const MIGRATIONS: readonly string[] = [
  // 1: the resource hierarchy, instance files, and the journal of files being adopted.
  `
  CREATE TABLE resources (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    level INTEGER NOT NULL,
    parent INTEGER REFERENCES resources(seq),
    main_tags TEXT NOT NULL,
    patient_tags TEXT,
    last_update INTEGER NOT NULL
  );
  CREATE INDEX resources_parent ON resources(parent);
  CREATE INDEX resources_level ON resources(level, seq);
  CREATE TABLE instances (
    seq INTEGER PRIMARY KEY REFERENCES resources(seq) ON DELETE CASCADE,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    transfer_syntax TEXT,
    sop_class TEXT,
    index_in_series INTEGER,
    received INTEGER NOT NULL
  );
  CREATE TABLE pending_files (
    file TEXT PRIMARY KEY,
    since INTEGER NOT NULL
  );
  `,
];

export function openDb(path: string): Db {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode keeps the database consistent after a process crash and loses nothing committed;
  // only a power loss may roll back the last transactions.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `the index was written by a newer dicom-xfer (schema ${current}, this one knows ${MIGRATIONS.length})`,
    );
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    const sql = MIGRATIONS[v] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
