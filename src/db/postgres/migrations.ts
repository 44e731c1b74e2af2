// The schema of dicom-xfer in PostgreSQL as numbered migrations, applied at start under a transaction-level
// advisory lock, so that several nodes starting at once apply each one exactly once and all see one schema.
import type pg from 'pg';
import { inTransaction, SCHEMA } from './pool.ts';

/** The key of pg_advisory_xact_lock that serialises the migrations of every node on a database. */
const MIGRATION_LOCK_KEY = 0x6478_0000;

/** A schema change; `sql` runs in the migrations' transaction, with the search path on SCHEMA. */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'jobs and their finished buckets; link profiles',
    sql: `
    CREATE TABLE jobs (
      seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      type TEXT NOT NULL,
      state TEXT NOT NULL,
      priority INTEGER NOT NULL,
      query TEXT NOT NULL,
      content TEXT NOT NULL,
      progress DOUBLE PRECISION NOT NULL,
      private TEXT,
      creation_time BIGINT NOT NULL,
      completion_time BIGINT,
      runtime_ms BIGINT NOT NULL DEFAULT 0,
      error_code TEXT,
      error_details TEXT
    );
    CREATE INDEX jobs_pending ON jobs (priority DESC, seq) WHERE state = 'Pending';
    CREATE INDEX jobs_finished ON jobs (completion_time DESC, seq DESC) WHERE state IN ('Success', 'Failure');
    CREATE TABLE job_buckets (
      job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      idx INTEGER NOT NULL,
      PRIMARY KEY (job, idx)
    );
    CREATE TABLE link_profiles (
      peer TEXT NOT NULL,
      url TEXT NOT NULL,
      direction TEXT NOT NULL,
      profile TEXT NOT NULL,
      measured_at BIGINT NOT NULL,
      PRIMARY KEY (peer, url, direction)
    );
    `,
  },
  {
    version: 2,
    description: "the embedded store's index: resources, instances, the journal of files",
    sql: `
    CREATE TABLE resources (
      seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      level SMALLINT NOT NULL,
      parent BIGINT REFERENCES resources(seq),
      main_tags TEXT NOT NULL,
      patient_tags TEXT,
      last_update BIGINT NOT NULL
    );
    CREATE INDEX resources_parent ON resources (parent);
    CREATE INDEX resources_level ON resources (level, seq);
    CREATE TABLE instances (
      seq BIGINT PRIMARY KEY REFERENCES resources(seq) ON DELETE CASCADE,
      file TEXT NOT NULL,
      size BIGINT NOT NULL,
      md5 TEXT NOT NULL,
      transfer_syntax TEXT,
      sop_class TEXT,
      index_in_series INTEGER,
      received BIGINT NOT NULL
    );
    CREATE INDEX instances_file ON instances (file);
    CREATE TABLE pending_files (
      file TEXT PRIMARY KEY,
      since BIGINT NOT NULL
    );
    `,
  },
  {
    version: 3,
    description: 'push transactions being received, their buckets, the outcomes of their commits',
    sql: `
    CREATE TABLE push_transactions (
      id TEXT PRIMARY KEY,
      manifest TEXT NOT NULL,
      last_activity BIGINT NOT NULL,
      refused BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE push_buckets (
      tx TEXT NOT NULL REFERENCES push_transactions(id) ON DELETE CASCADE,
      idx INTEGER NOT NULL,
      PRIMARY KEY (tx, idx)
    );
    CREATE TABLE push_outcomes (
      id TEXT PRIMARY KEY,
      outcome TEXT NOT NULL,
      at BIGINT NOT NULL
    );
    CREATE INDEX push_outcomes_at ON push_outcomes (at);
    `,
  },
];

/**
 * Brings the database's schema up to `migrations` (by default every one this version knows), in one
 * transaction that holds the migration lock: a node that starts while another migrates waits, then finds
 * the work done. Refuses a database migrated by a newer dicom-xfer. Answers the versions it applied.
 */
export async function migrate(pool: pg.Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  return inTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
    await client.query(`SET LOCAL search_path = ${SCHEMA}, public`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_versions (
         version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
    );
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_versions')).rows.map((r) => r.version));
    const newest = Math.max(0, ...done);
    const known = Math.max(0, ...migrations.map((m) => m.version));
    if (newest > known) {
      throw new Error(`the PostgreSQL schema ${SCHEMA} was written by a newer dicom-xfer (version ${newest}, this one knows ${known})`);
    }
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_versions (version, description) VALUES ($1, $2)', [m.version, m.description]);
      applied.push(m.version);
    }
    return applied;
  });
}
