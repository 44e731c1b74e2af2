// The JobStore contract, run against the SQLite store on a real database file: add, claim by priority
// and age, updates, buckets, a reopen that puts back what was running, the history trim, and damaged
// rows named (never used as they are). A second store (PostgreSQL) runs the same function.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import Database from 'better-sqlite3';
import { openJobsDb } from '../../src/jobs/db.ts';
import { SqliteJobStore } from '../../src/jobs/sqlite-store.ts';
import type { JobRecord, JobStore, JobType, JobUpdate, NewJob } from '../../src/jobs/store.ts';
import { PgJobStore } from '../../src/db/postgres/job-store.ts';
import { migrate } from '../../src/db/postgres/migrations.ts';
import { describe as describeOrSkip } from '../helpers/data.ts';
import { pgPlaces, pgSkip } from '../helpers/postgres.ts';

/** A store on a fresh or reopened place (`close` ends it), and a way to damage a stored job. */
interface Harness {
  open(place: string): Promise<{ store: JobStore; close(): Promise<void> }>;
  /**
   * Sets a column of a job to a value of the wrong type, as another program would; answers false when the
   * database refuses such a value (PostgreSQL's column types keep a text out of an integer column).
   */
  damage(place: string, id: string, column: string, value: unknown): Promise<boolean>;
}

let n = 0;
const job = (type: JobType, priority: number): NewJob => ({
  id: `job-${++n}`,
  type,
  priority,
  query: JSON.stringify({ n }),
  content: '{}',
  creation_time: 1_700_000_000_000 + n,
});

const finished = (r: JobRecord, state: 'Success' | 'Failure', at: number): JobUpdate => ({
  state,
  priority: r.priority,
  content: r.content,
  progress: state === 'Success' ? 1 : 0,
  private: null,
  completion_time: at,
  runtime_ms: 10,
  error_code: state === 'Failure' ? 'NetworkProtocol' : null,
  error_details: state === 'Failure' ? 'told to fail' : null,
});

const ALL: JobType[] = ['PushTransfer', 'PullTransfer', 'RemotePullTransfer'];

export function jobStoreContract(name: string, places: () => string, h: Harness): void {
  describe(`JobStore contract: ${name}`, () => {
    test('add answers the stored job; claimNext takes the highest priority, then the oldest, once', async () => {
      const place = places();
      const { store, close } = await h.open(place);
      try {
        const low = await store.add(job('PushTransfer', 1));
        const highOld = await store.add(job('PullTransfer', 5));
        const highNew = await store.add(job('PushTransfer', 5));
        const watcher = await store.add(job('RemotePullTransfer', 9));
        assert.equal(low.state, 'Pending');
        assert.equal(low.progress, 0);
        assert.equal(low.private, null);
        assert.ok(low.seq < highOld.seq && highOld.seq < highNew.seq, 'seq follows submission');
        // Only the types asked for: the watcher of priority 9 is not taken.
        const order: string[] = [];
        for (let i = 0; i < 5; i++) {
          const c = await store.claimNext(['PushTransfer', 'PullTransfer']);
          if (!c) break;
          assert.equal(c.state, 'Running');
          order.push(c.id);
        }
        assert.deepEqual(order, [highOld.id, highNew.id, low.id]);
        assert.equal(await store.claimNext(['PushTransfer']), undefined, 'a claimed job is not claimed twice');
        assert.equal((await store.claimNext(ALL))?.id, watcher.id);
        assert.equal(await store.claimNext([]), undefined);
      } finally {
        await close();
      }
    });

    test('updates, private state and buckets survive a reopen; what was Running comes back Pending', async () => {
      const place = places();
      let { store, close } = await h.open(place);
      const a = await store.add(job('PushTransfer', 0));
      const b = await store.add(job('PullTransfer', 0));
      const claimed = await store.claimNext(ALL);
      assert.equal(claimed?.id, a.id);
      await store.savePrivate(a.id, '{"plan":[1,2]}');
      await store.markBucketDone(a.id, 3);
      await store.markBucketDone(a.id, 0);
      await store.markBucketDone(a.id, 3);
      await store.update(b.id, {
        ...finished(b, 'Success', 5),
        state: 'Paused',
        completion_time: null,
        content: '{"Runs":1}',
        progress: 0.25,
      });
      await close();

      ({ store, close } = await h.open(place));
      try {
        const { jobs, ignored } = await store.recover();
        assert.deepEqual(ignored, []);
        assert.deepEqual(
          jobs.map((j) => [j.record.id, j.record.state, j.problems]),
          [
            [a.id, 'Pending', []],
            [b.id, 'Paused', []],
          ],
        );
        const ra = jobs[0]?.record;
        const rb = jobs[1]?.record;
        assert.equal(ra?.private, '{"plan":[1,2]}');
        assert.deepEqual([...(await store.bucketsDone(a.id))].sort(), [0, 3]);
        assert.equal(rb?.content, '{"Runs":1}');
        assert.equal(rb?.progress, 0.25);
        // A finished job's update drops its buckets in the same go.
        await store.update(a.id, finished(a, 'Failure', 7), { clearBuckets: true });
        assert.deepEqual([...(await store.bucketsDone(a.id))], []);
        await store.markBucketDone(b.id, 1);
        await store.clearBuckets(b.id);
        assert.deepEqual([...(await store.bucketsDone(b.id))], []);
        await store.savePrivate(b.id, null);
        const again = await store.recover();
        assert.equal(again.jobs[0]?.record.error_code, 'NetworkProtocol');
        assert.equal(again.jobs[0]?.record.error_details, 'told to fail');
        assert.equal(again.jobs[1]?.record.private, null);
      } finally {
        await close();
      }
    });

    test('trimHistory keeps the most recently finished and never an unfinished job', async () => {
      const place = places();
      const { store, close } = await h.open(place);
      try {
        const jobs: JobRecord[] = [];
        for (let i = 0; i < 5; i++) jobs.push(await store.add(job('PushTransfer', 0)));
        const [j0, j1, j2, j3, j4] = jobs as [JobRecord, JobRecord, JobRecord, JobRecord, JobRecord];
        await store.update(j0.id, finished(j0, 'Success', 300));
        await store.update(j1.id, finished(j1, 'Failure', 100));
        await store.update(j2.id, finished(j2, 'Success', 200));
        await store.update(j3.id, finished(j3, 'Success', 400));
        // j4 stays Pending.
        assert.deepEqual((await store.trimHistory(2)).sort(), [j1.id, j2.id].sort());
        assert.deepEqual(
          (await store.recover()).jobs.map((j) => j.record.id),
          [j0.id, j3.id, j4.id],
        );
        assert.deepEqual(await store.trimHistory(2), []);
        assert.deepEqual((await store.trimHistory(0)).sort(), [j0.id, j3.id].sort());
        assert.deepEqual(
          (await store.recover()).jobs.map((j) => j.record.id),
          [j4.id],
        );
      } finally {
        await close();
      }
    });

    test('damaged rows come back with the column named and a fallback, never as written', async () => {
      const place = places();
      let { store, close } = await h.open(place);
      const a = await store.add(job('PushTransfer', 4));
      const b = await store.add(job('PullTransfer', 0));
      const c = await store.add(job('PushTransfer', 0));
      await close();
      const priorityDamaged = await h.damage(place, a.id, 'priority', 'high');
      await h.damage(place, b.id, 'type', 'FutureTransfer');
      await h.damage(place, c.id, 'progress', 7);
      ({ store, close } = await h.open(place));
      try {
        const { jobs } = await store.recover();
        const byId = new Map(jobs.map((j) => [j.record.id, j]));
        if (priorityDamaged) {
          assert.match(byId.get(a.id)?.problems.join() ?? '', /column priority/);
          assert.equal(byId.get(a.id)?.record.priority, 0);
        } else assert.deepEqual(byId.get(a.id)?.problems, []);
        assert.equal(byId.get(b.id)?.storedType, 'FutureTransfer');
        assert.match(byId.get(b.id)?.problems.join() ?? '', /column type/);
        assert.match(byId.get(c.id)?.problems.join() ?? '', /column progress/);
        assert.equal(byId.get(c.id)?.record.state, 'Pending', 'the sound columns are kept');
        // The job of an unknown type is never claimed as one this version runs.
        const claimed: string[] = [];
        for (let i = 0; i < 4; i++) {
          const r = await store.claimNext(['PullTransfer']);
          if (!r) break;
          claimed.push(r.id);
        }
        assert.deepEqual(claimed, []);
      } finally {
        await close();
      }
    });
  });
}

describe('the SQLite job store', () => {
  let dir: string;
  let k = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-jobstore-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  jobStoreContract('SQLite', () => join(dir, `jobs-${++k}.sqlite`), {
    async open(place) {
      const db = openJobsDb(place);
      return {
        store: new SqliteJobStore(db),
        close: async () => {
          db.close();
        },
      };
    },
    async damage(place, id, column, value) {
      const raw = new Database(place);
      try {
        // The column name comes from the test itself, never from input.
        assert.equal(raw.prepare(`UPDATE jobs SET ${column} = ? WHERE id = ?`).run(value, id).changes, 1);
        return true;
      } finally {
        raw.close();
      }
    },
  });
});

describeOrSkip('the PostgreSQL job store', { skip: pgSkip() }, () => {
  const places = pgPlaces('jobs');
  let k = 0;
  jobStoreContract('PostgreSQL', () => `place-${++k}`, {
    async open(place) {
      const pool = await places.pool(place);
      await migrate(pool);
      return { store: new PgJobStore(pool), close: () => pool.end() };
    },
    async damage(place, id, column, value) {
      const pool = await places.pool(place);
      try {
        // The column name comes from the test itself, never from input.
        const r = await pool.query(`UPDATE jobs SET ${column} = $1 WHERE id = $2`, [value, id]);
        assert.equal(r.rowCount, 1);
        return true;
      } catch (e) {
        if (e instanceof pg.DatabaseError && e.code === '22P02') return false; // invalid text for the column's type
        throw e;
      } finally {
        await pool.end();
      }
    },
  });
});
