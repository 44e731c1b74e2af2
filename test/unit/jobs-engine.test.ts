// The jobs engine on its own: a real JobsEngine on a real SQLite database in a temporary folder, run with
// a job runner of the test's own (it succeeds, fails, retries, or waits for a pause): states, priorities,
// pause/resume/cancel/resubmit, persistence across a reopen, and rows damaged between two opens.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { z } from 'zod';
import { ERRORS, XferError, isXferError } from '../../src/errors.ts';
import { openJobsDb, type JobsDb } from '../../src/jobs/db.ts';
import { JobsEngine, type JobKind, type JobRunContext, type JobRunner, type JobState } from '../../src/jobs/engine.ts';

const FakeQuery = z.object({ behave: z.enum(['succeed', 'fail', 'flaky', 'wait', 'save-late']), name: z.string() });
const FakeContent = z.looseObject({ Count: z.number().optional(), Retries: z.number().optional(), Runs: z.number().optional() });
const FakePrivate = z.object({ reached: z.number().int() });
type Q = z.output<typeof FakeQuery>;
type C = z.output<typeof FakeContent>;
type P = z.output<typeof FakePrivate>;
const FAKE_KIND: JobKind<Q, C, P> = { query: FakeQuery, content: FakeContent, private: FakePrivate };

/** A runner whose behaviour the query chooses; it records what each run found and started. */
class FakeRunner implements JobRunner<Q, C, P> {
  readonly kind = FAKE_KIND;
  /** Names of the jobs, in the order their runs started. */
  readonly started: string[] = [];
  /** What the last run of each job found: its private state and the buckets done. */
  readonly found = new Map<string, { private: P | undefined; done: number[] }>();
  readonly canceledJobs: string[] = [];
  readonly #gates = new Map<string, () => void>();

  /** The job `name` waits at its gate (a 'wait' job that has saved its progress). */
  waiting(name: string): boolean {
    return this.#gates.has(name);
  }

  /** Lets a waiting job end with success. */
  release(name: string): void {
    const open = this.#gates.get(name);
    assert.ok(open, `${name} is not waiting`);
    open();
  }

  async run(ctx: JobRunContext<Q, C, P>): Promise<void> {
    const { name, behave } = ctx.query;
    this.started.push(name);
    const saved = ctx.loadPrivate();
    this.found.set(name, { private: saved, done: [...ctx.bucketsDone()].sort((a, b) => a - b) });
    ctx.setContent({ Runs: (ctx.content().Runs ?? 0) + 1 });
    if (behave === 'succeed') {
      ctx.setContent({ Count: 3 });
      ctx.setProgress(1);
      return;
    }
    if (behave === 'fail') throw new XferError('NetworkProtocol', `${name} was told to fail`);
    if (behave === 'flaky') {
      // Two attempts fail, the third works: the retries show in the Content.
      for (let attempt = 1; attempt <= 3; attempt++) {
        if (attempt < 3) ctx.setContent({ Retries: attempt });
      }
      return;
    }
    if (behave === 'save-late') {
      // Waits, then saves without awaiting the write: a write that fails must still fail the run.
      await new Promise<void>((resolve) => this.#gates.set(name, resolve));
      this.#gates.delete(name);
      void ctx.savePrivate({ reached: 99 });
      return;
    }
    const reached = saved?.reached ?? 0;
    ctx.markBucketDone(reached);
    ctx.savePrivate({ reached: reached + 1 });
    ctx.setProgress(0.5);
    await new Promise<void>((resolve) => {
      this.#gates.set(name, resolve);
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    this.#gates.delete(name);
  }

  async cancelled(ctx: JobRunContext<Q, C, P>): Promise<void> {
    this.canceledJobs.push(ctx.query.name);
  }
}

const logger = pino({ level: 'silent' });

async function open(path: string, runner: FakeRunner, concurrentJobs = 1): Promise<{ db: JobsDb; engine: JobsEngine }> {
  const db = openJobsDb(path);
  const engine = new JobsEngine(db, { concurrentJobs, historySize: 100, runners: () => runner, logger });
  await engine.start();
  return { db, engine };
}

/** Waits (at most 10 s, looking every 5 ms) until `ok` holds. */
async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (let i = 0; i < 100_000 && !ok(); i++) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const inState = (engine: JobsEngine, id: string, state: JobState) => until(`job ${id} ${state}`, () => engine.state(id) === state);

function submit(engine: JobsEngine, name: string, behave: Q['behave'], priority = 0): string {
  return engine.submit('PushTransfer', { behave, name }, priority);
}

describe('jobs engine with a fake runner on a real database', () => {
  let dir: string;
  let n = 0;
  /** A fresh database file for each test. */
  const fresh = () => join(dir, `jobs-${++n}.sqlite`);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-engine-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a job that succeeds, one that fails, one that retries: states and Orthanc error fields', async () => {
    const runner = new FakeRunner();
    const { db, engine } = await open(fresh(), runner, 2);
    try {
      const ok = submit(engine, 'ok', 'succeed');
      const bad = submit(engine, 'bad', 'fail');
      const flaky = submit(engine, 'flaky', 'flaky');
      await inState(engine, ok, 'Success');
      await inState(engine, bad, 'Failure');
      await inState(engine, flaky, 'Success');
      const a = engine.describe(ok);
      assert.equal(a.ErrorCode, 0);
      assert.equal(a.ErrorDescription, 'Success');
      assert.equal(a.Progress, 100);
      assert.deepEqual(a.Content, { Count: 3, Runs: 1 });
      const b = engine.describe(bad);
      assert.equal(b.State, 'Failure');
      assert.equal(b.ErrorCode, ERRORS.NetworkProtocol.status);
      assert.equal(b.ErrorDescription, ERRORS.NetworkProtocol.message);
      assert.equal(b.ErrorDetails, 'bad was told to fail');
      assert.deepEqual(engine.describe(flaky).Content, { Retries: 2, Runs: 1 });
    } finally {
      await engine.close();
      db.close();
    }
  });

  test('one slot: the higher priority runs first, equal priorities in submission order', async () => {
    const runner = new FakeRunner();
    const { db, engine } = await open(fresh(), runner, 1);
    try {
      const blocker = submit(engine, 'blocker', 'wait');
      await until('the blocker at its gate', () => runner.waiting('blocker'));
      const ids = [
        submit(engine, 'low', 'succeed', 1),
        submit(engine, 'high', 'succeed', 10),
        submit(engine, 'mid-1', 'succeed', 5),
        submit(engine, 'mid-2', 'succeed', 5),
      ];
      for (const id of ids) assert.equal(engine.state(id), 'Pending');
      runner.release('blocker');
      await inState(engine, blocker, 'Success');
      for (const id of ids) await inState(engine, id, 'Success');
      assert.deepEqual(runner.started, ['blocker', 'high', 'mid-1', 'mid-2', 'low']);
    } finally {
      await engine.close();
      db.close();
    }
  });

  test('pause keeps the saved state, resume continues from it; cancel and resubmit', async () => {
    const runner = new FakeRunner();
    const { db, engine } = await open(fresh(), runner, 1);
    try {
      const id = submit(engine, 'p', 'wait');
      await until('p at its gate', () => runner.waiting('p'));
      await engine.pause(id);
      assert.equal(engine.state(id), 'Paused');
      assert.throws(
        () => engine.resubmit(id),
        (e) => isXferError(e, 'BadSequenceOfCalls'),
      );
      engine.resume(id);
      await until('p at its gate again', () => runner.waiting('p') && runner.started.length === 2);
      assert.deepEqual(runner.found.get('p'), { private: { reached: 1 }, done: [0] }, 'the second run starts where the first stopped');
      runner.release('p');
      await inState(engine, id, 'Success');
      assert.deepEqual(engine.describe(id).Content, { Runs: 2 });

      // A pending job canceled, a running one canceled: both fail as CanceledJob, the runner cleans up.
      const running = submit(engine, 'c-run', 'wait');
      await until('c-run at its gate', () => runner.waiting('c-run'));
      const queued = submit(engine, 'c-queued', 'succeed');
      await engine.cancel(queued);
      await engine.cancel(running);
      for (const c of [running, queued]) {
        const j = engine.describe(c);
        assert.equal(j.State, 'Failure');
        assert.equal(j.ErrorCode, ERRORS.CanceledJob.status);
      }
      assert.deepEqual(runner.canceledJobs.sort(), ['c-queued', 'c-run']);
      await assert.rejects(engine.cancel(running), (e) => isXferError(e, 'BadSequenceOfCalls'));

      // Resubmitted: from the first step again (its private state and buckets were dropped), Content kept.
      engine.resubmit(running);
      await until('c-run at its gate after the resubmit', () => runner.waiting('c-run'));
      assert.deepEqual(runner.found.get('c-run'), { private: undefined, done: [] });
      assert.equal((engine.describe(running).Content as C).Runs, 2);
      runner.release('c-run');
      await inState(engine, running, 'Success');
      assert.equal(engine.describe(running).ErrorDetails, '');
    } finally {
      await engine.close();
      db.close();
    }
  });

  test('a reopened engine has every job back; a job running at close runs again from its saved state', async () => {
    const path = fresh();
    const runner = new FakeRunner();
    let { db, engine } = await open(path, runner, 2);
    const done = submit(engine, 'done', 'succeed', 3);
    const paused = submit(engine, 'paused', 'wait');
    const running = submit(engine, 'running', 'wait');
    await inState(engine, done, 'Success');
    await until('both at their gates', () => runner.waiting('paused') && runner.waiting('running'));
    await engine.pause(paused);
    const before = engine.describe(done);
    await engine.close();
    db.close();

    const again = new FakeRunner();
    ({ db, engine } = await open(path, again, 2));
    try {
      assert.deepEqual(engine.list(), [done, paused, running]);
      const after = engine.describe(done);
      for (const k of ['State', 'Content', 'Priority', 'Progress', 'CreationTime', 'CompletionTime', 'ErrorCode', 'Type']) {
        assert.deepEqual(after[k], before[k], k);
      }
      assert.equal(engine.state(paused), 'Paused');
      await until('running at its gate after the reopen', () => again.waiting('running'));
      assert.deepEqual(again.found.get('running'), { private: { reached: 1 }, done: [0] });
      assert.deepEqual(again.started, ['running'], 'the paused job stays paused');
      engine.resume(paused);
      await until('paused at its gate after resume', () => again.waiting('paused'));
      assert.deepEqual(again.found.get('paused'), { private: { reached: 1 }, done: [0] });
      again.release('paused');
      again.release('running');
      await inState(engine, paused, 'Success');
      await inState(engine, running, 'Success');
    } finally {
      await engine.close();
      db.close();
    }
  });

  test('rows damaged between two opens fail their jobs with the field named; the others run', async () => {
    const path = fresh();
    const runner = new FakeRunner();
    let { db, engine } = await open(path, runner, 2);
    const ids: Record<string, string> = {};
    for (const name of ['content', 'query', 'fine']) {
      ids[name] = submit(engine, name, 'succeed');
      await inState(engine, ids[name] as string, 'Success');
    }
    ids.code = submit(engine, 'code', 'fail');
    await inState(engine, ids.code, 'Failure');
    for (const name of ['priority', 'private', 'type', 'queued']) {
      ids[name] = submit(engine, name, 'wait');
      await until(`${name} at its gate`, () => runner.waiting(name));
      await engine.pause(ids[name] as string);
    }
    await engine.close();
    db.close();

    // Another program (or another version) writes values of the wrong type.
    const raw = new Database(path);
    const set = (sql: string, id: string | undefined) => assert.equal(raw.prepare(sql).run(id).changes, 1);
    set(`UPDATE jobs SET content = '{"Count":"many","Runs":1}' WHERE id = ?`, ids.content);
    set(`UPDATE jobs SET priority = 'high' WHERE id = ?`, ids.priority);
    set(`UPDATE jobs SET query = '{"behave":"succeed","name":42}' WHERE id = ?`, ids.query);
    set(`UPDATE jobs SET private = '{"reached":' WHERE id = ?`, ids.private);
    set(`UPDATE jobs SET type = 'FutureTransfer' WHERE id = ?`, ids.type);
    set(`UPDATE jobs SET error_code = 'FutureError' WHERE id = ?`, ids.code);
    raw.close();

    const again = new FakeRunner();
    ({ db, engine } = await open(path, again, 2));
    try {
      const failed = (name: string, detail: RegExp) => {
        const j = engine.describe(ids[name] as string);
        assert.equal(j.State, 'Failure', name);
        assert.equal(j.ErrorCode, ERRORS.BadFileFormat.status, name);
        assert.equal(j.ErrorDescription, 'Bad file format', name);
        assert.match(String(j.ErrorDetails), /saved state of this job is unusable/, name);
        assert.match(String(j.ErrorDetails), detail, name);
        return j;
      };
      assert.deepEqual(failed('content', /Content: Count: .*expected number/).Content, {}, 'a damaged Content is not shown');
      assert.equal(failed('priority', /column priority: .*expected number/).Priority, 0);
      failed('query', /query: name: .*expected string/);
      failed('private', /private state is not JSON/);
      assert.equal(failed('type', /column type/).Type, 'FutureTransfer');
      failed('code', /column error_code: expected an error code this version knows/);
      assert.equal(engine.state(ids.fine as string), 'Success');
      assert.deepEqual(engine.describe(ids.fine as string).Content, { Count: 3, Runs: 1 });
      assert.equal(engine.state(ids.queued as string), 'Paused');
      assert.deepEqual(again.started, [], 'no damaged job ran');

      // A job whose query is unusable cannot run again; one whose Content was damaged can.
      assert.throws(
        () => engine.resubmit(ids.query as string),
        (e) => isXferError(e, 'BadSequenceOfCalls') && /query/.test(e.details ?? ''),
      );
      assert.throws(
        () => engine.resubmit(ids.type as string),
        (e) => isXferError(e, 'BadSequenceOfCalls'),
      );
      engine.resubmit(ids.content as string);
      await inState(engine, ids.content as string, 'Success');
      engine.resume(ids.queued as string);
      await until('queued at its gate', () => again.waiting('queued'));
      again.release('queued');
      await inState(engine, ids.queued as string, 'Success');
    } finally {
      await engine.close();
      db.close();
    }

    // The verdict is kept: a third open reads the same failures, and nothing crashes.
    const third = new FakeRunner();
    ({ db, engine } = await open(path, third, 2));
    try {
      assert.equal(engine.state(ids.priority as string), 'Failure');
      assert.match(String(engine.describe(ids.query as string).ErrorDetails), /query: name/);
      assert.equal(engine.state(ids.content as string), 'Success');
    } finally {
      await engine.close();
      db.close();
    }
  });

  test('a write of the job store that fails fails the run, even when the job did not await it', async () => {
    const runner = new FakeRunner();
    const { db, engine } = await open(fresh(), runner, 1);
    const id = submit(engine, 'late', 'save-late');
    await until('late at its gate', () => runner.waiting('late'));
    // The database goes away under the engine: every later write fails for real.
    db.close();
    runner.release('late');
    await inState(engine, id, 'Failure');
    const j = engine.describe(id);
    assert.equal(j.ErrorCode, ERRORS.InternalError.status);
    assert.match(String(j.ErrorDetails), /job store: .*database connection is not open/);
    await engine.close();
  });

  test('submit refuses a query outside the kind of the job (nothing saved)', async () => {
    const runner = new FakeRunner();
    const { db, engine } = await open(fresh(), runner, 1);
    try {
      assert.throws(
        () => engine.submit('PushTransfer', { behave: 'jump', name: 'x' }, 0),
        (e) => isXferError(e, 'InternalError') && /behave/.test(e.details ?? ''),
      );
      assert.deepEqual(engine.list(), []);
    } finally {
      await engine.close();
      db.close();
    }
  });
});
