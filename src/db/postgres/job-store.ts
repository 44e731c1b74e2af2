// The job store on PostgreSQL: the jobs and their finished buckets in the tables of migration 1. A claim
// takes its row with FOR UPDATE SKIP LOCKED, so several nodes claiming at once never take the same job.
import type pg from 'pg';
import { z } from 'zod';
import {
  checkJobRow,
  JobRecordSchema,
  type JobRecord,
  type JobStore,
  type JobType,
  type JobUpdate,
  type NewJob,
  type RecoveredJobs,
} from '../../jobs/store.ts';
import { inTransaction } from './pool.ts';

const BucketRow = z.object({ idx: z.number().int().nonnegative() });
const IdRow = z.object({ id: z.string() });

export class PgJobStore implements JobStore {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async recover(): Promise<RecoveredJobs> {
    return inTransaction(this.#pool, async (c) => {
      // One node per database until jobs carry a lease (PostgreSQL.Lock keeps a second node away): what was
      // Running was this node's, stopped with it.
      await c.query("UPDATE jobs SET state = 'Pending' WHERE state = 'Running'");
      const out: RecoveredJobs = { jobs: [], ignored: [] };
      for (const raw of (await c.query('SELECT * FROM jobs ORDER BY seq')).rows) {
        const loaded = checkJobRow(raw);
        if (loaded) out.jobs.push(loaded);
        else {
          const cols = (raw ?? {}) as Record<string, unknown>;
          out.ignored.push({ seq: cols['seq'], id: cols['id'] });
        }
      }
      return out;
    });
  }

  async add(job: NewJob): Promise<JobRecord> {
    const r = await this.#pool.query(
      `INSERT INTO jobs (id, type, state, priority, query, content, progress, creation_time)
       VALUES ($1, $2, 'Pending', $3, $4, $5, 0, $6) RETURNING *`,
      [job.id, job.type, job.priority, job.query, job.content, job.creation_time],
    );
    return JobRecordSchema.parse(r.rows[0]);
  }

  async claimNext(types: readonly JobType[]): Promise<JobRecord | undefined> {
    if (types.length === 0) return undefined;
    const r = await this.#pool.query(
      `UPDATE jobs SET state = 'Running' WHERE seq = (
         SELECT seq FROM jobs WHERE state = 'Pending' AND type = ANY($1::text[])
         ORDER BY priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [types],
    );
    if (r.rows.length === 0) return undefined;
    // A damaged row is claimed with its unusable columns replaced (the engine fails it at its start).
    return checkJobRow(r.rows[0])?.record;
  }

  async update(id: string, u: JobUpdate, opts: { clearBuckets?: boolean } = {}): Promise<void> {
    await inTransaction(this.#pool, async (c) => {
      await c.query(
        `UPDATE jobs SET state = $1, priority = $2, content = $3, progress = $4, private = $5, completion_time = $6,
         runtime_ms = $7, error_code = $8, error_details = $9 WHERE id = $10`,
        [u.state, u.priority, u.content, u.progress, u.private, u.completion_time, u.runtime_ms, u.error_code, u.error_details, id],
      );
      if (opts.clearBuckets) await c.query('DELETE FROM job_buckets WHERE job = $1', [id]);
    });
  }

  async savePrivate(id: string, json: string | null): Promise<void> {
    await this.#pool.query('UPDATE jobs SET private = $1 WHERE id = $2', [json, id]);
  }

  async bucketsDone(id: string): Promise<Set<number>> {
    const r = await this.#pool.query('SELECT idx FROM job_buckets WHERE job = $1', [id]);
    return new Set(r.rows.map((row) => BucketRow.parse(row).idx));
  }

  async markBucketDone(id: string, index: number): Promise<void> {
    await this.#pool.query('INSERT INTO job_buckets (job, idx) VALUES ($1, $2) ON CONFLICT DO NOTHING', [id, index]);
  }

  async clearBuckets(id: string): Promise<void> {
    await this.#pool.query('DELETE FROM job_buckets WHERE job = $1', [id]);
  }

  async trimHistory(keep: number): Promise<string[]> {
    const r = await this.#pool.query(
      `DELETE FROM jobs WHERE id IN (
         SELECT id FROM jobs WHERE state IN ('Success', 'Failure')
         ORDER BY completion_time DESC, seq DESC OFFSET $1)
       RETURNING id`,
      [Math.max(0, keep)],
    );
    return r.rows.map((row) => IdRow.parse(row).id);
  }
}
