// The jobs database: every job with its query, public content, durable private state, and the buckets
// it has finished, so that a restart resumes where it stopped. Schema as numbered migrations.
import Database from 'better-sqlite3';

export type JobsDb = Database.Database;

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    query TEXT NOT NULL,
    content TEXT NOT NULL,
    progress REAL NOT NULL,
    private TEXT,
    creation_time INTEGER NOT NULL,
    completion_time INTEGER,
    runtime_ms INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_details TEXT
  );
  CREATE INDEX jobs_state ON jobs(state);
  CREATE TABLE job_buckets (
    job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    PRIMARY KEY (job, idx)
  ) WITHOUT ROWID;
  `,
];

export function openJobsDb(path: string): JobsDb {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`${path} was written by a newer dicom-xfer (schema ${current})`);
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}
