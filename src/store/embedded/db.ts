// The embedded store's SQLite index: schema as numbered migrations, opened in WAL mode.
import { openSqlite, type Sqlite } from '../../util/sqlite.ts';

export type Db = Sqlite;

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
  return openSqlite(path, MIGRATIONS);
}
