// The jobs database: every job with its query, public content, durable private state, and the buckets
// it has finished, so that a restart resumes where it stopped. Schema as numbered migrations.
import { openSqlite, type Sqlite } from '../util/sqlite.ts';

export type JobsDb = Sqlite;

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
  return openSqlite(path, MIGRATIONS);
}
