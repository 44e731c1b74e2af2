// The job store of one node: the SQLite database of src/jobs/db.ts (jobs.sqlite). Each method is one
// statement or one transaction; they run synchronously and answer settled promises.
import type Database from 'better-sqlite3';
import { z } from 'zod';
import type { JobsDb } from './db.ts';
import {
  checkJobRow,
  JobRecordSchema,
  type JobRecord,
  type JobStore,
  type JobType,
  type JobUpdate,
  type NewJob,
  type RecoveredJobs,
} from './store.ts';

const BucketRow = z.object({ idx: z.number().int().nonnegative() });

export class SqliteJobStore implements JobStore {
  readonly #db: JobsDb;
  /** Statements prepared once: a push writes a row per bucket, and preparing cost more than the write. */
  readonly #statements = new Map<string, Database.Statement>();

  constructor(db: JobsDb) {
    this.#db = db;
  }

  #stmt(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  async recover(): Promise<RecoveredJobs> {
    return this.#db.transaction((): RecoveredJobs => {
      this.#stmt("UPDATE jobs SET state = 'Pending' WHERE state = 'Running'").run();
      const out: RecoveredJobs = { jobs: [], ignored: [] };
      for (const raw of this.#stmt('SELECT * FROM jobs ORDER BY seq').all()) {
        const loaded = checkJobRow(raw);
        if (loaded) out.jobs.push(loaded);
        else {
          const cols = (raw ?? {}) as Record<string, unknown>;
          out.ignored.push({ seq: cols['seq'], id: cols['id'] });
        }
      }
      return out;
    })();
  }

  async add(job: NewJob): Promise<JobRecord> {
    const info = this.#stmt(
      `INSERT INTO jobs (id, type, state, priority, query, content, progress, creation_time)
         VALUES (?, ?, 'Pending', ?, ?, ?, 0, ?)`,
    ).run(job.id, job.type, job.priority, job.query, job.content, job.creation_time);
    return JobRecordSchema.parse(this.#stmt('SELECT * FROM jobs WHERE seq = ?').get(info.lastInsertRowid));
  }

  async claimNext(types: readonly JobType[]): Promise<JobRecord | undefined> {
    if (types.length === 0) return undefined;
    const marks = types.map(() => '?').join(', ');
    return this.#db.transaction((): JobRecord | undefined => {
      const raw = this.#stmt(`SELECT * FROM jobs WHERE state = 'Pending' AND type IN (${marks}) ORDER BY priority DESC, seq LIMIT 1`).get(
        ...types,
      );
      if (raw === undefined) return undefined;
      // A damaged row is claimed with its unusable columns replaced (the engine fails it at its start).
      const row = checkJobRow(raw)?.record;
      if (!row) return undefined;
      this.#stmt("UPDATE jobs SET state = 'Running' WHERE id = ?").run(row.id);
      return { ...row, state: 'Running' };
    })();
  }

  async update(id: string, u: JobUpdate, opts: { clearBuckets?: boolean } = {}): Promise<void> {
    this.#db.transaction(() => {
      this.#stmt(
        `UPDATE jobs SET state = ?, priority = ?, content = ?, progress = ?, private = ?, completion_time = ?,
           runtime_ms = ?, error_code = ?, error_details = ? WHERE id = ?`,
      ).run(u.state, u.priority, u.content, u.progress, u.private, u.completion_time, u.runtime_ms, u.error_code, u.error_details, id);
      if (opts.clearBuckets) this.#stmt('DELETE FROM job_buckets WHERE job = ?').run(id);
    })();
  }

  async savePrivate(id: string, json: string | null): Promise<void> {
    this.#stmt('UPDATE jobs SET private = ? WHERE id = ?').run(json, id);
  }

  async bucketsDone(id: string): Promise<Set<number>> {
    const rows = this.#stmt('SELECT idx FROM job_buckets WHERE job = ?').all(id);
    return new Set(rows.map((r) => BucketRow.parse(r).idx));
  }

  async markBucketDone(id: string, index: number): Promise<void> {
    this.#stmt('INSERT OR IGNORE INTO job_buckets (job, idx) VALUES (?, ?)').run(id, index);
  }

  async clearBuckets(id: string): Promise<void> {
    this.#stmt('DELETE FROM job_buckets WHERE job = ?').run(id);
  }

  async trimHistory(keep: number): Promise<string[]> {
    return this.#db.transaction((): string[] => {
      const rows = this.#stmt(
        `SELECT id FROM jobs WHERE state IN ('Success', 'Failure')
           ORDER BY completion_time DESC, seq DESC LIMIT -1 OFFSET ?`,
      ).all(Math.max(0, keep));
      const ids = rows.map((r) => z.object({ id: z.string() }).parse(r).id);
      const del = this.#stmt('DELETE FROM jobs WHERE id = ?');
      for (const id of ids) del.run(id);
      return ids;
    })();
  }
}
