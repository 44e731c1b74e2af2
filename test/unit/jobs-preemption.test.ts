// Priority that preempts, in the jobs engine on its own: a real JobsEngine on a real SQLite database, with a
// link job runner of the test's own that waits in its preemptible stretch until told to end. A job of higher
// Priority stops the running ones of lower Priority (back to Pending, Content.Waiting naming it), whatever
// ConcurrentJobs; they run again from their saved state when it is gone; equal priorities never preempt.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { openJobsDb } from '../../src/jobs/db.ts';
import { JobsEngine, type JobKind, type JobRunContext, type JobRunner, type JobState } from '../../src/jobs/engine.ts';

const Query = z.object({ name: z.string(), stretchLater: z.boolean().optional() });
const Content = z.looseObject({ Runs: z.number().optional(), Waiting: z.string().optional() });
const Private = z.object({ runs: z.number().int() });
type Q = z.output<typeof Query>;
type C = z.output<typeof Content>;
type P = z.output<typeof Private>;
const KIND: JobKind<Q, C, P> = { query: Query, content: Content, private: Private };

/**
 * A link job: each run records a finished bucket (its run number), then waits in its preemptible stretch
 * until released (or, with stretchLater, first waits outside it until let in).
 */
class LinkRunner implements JobRunner<Q, C, P> {
  readonly kind = KIND;
  readonly sharesLink = true;
  /** Names of the jobs, in the order their runs started. */
  readonly started: string[] = [];
  /** The buckets each run found done, by job, in run order. */
  readonly found = new Map<string, number[][]>();
  readonly canceled: string[] = [];
  readonly #release = new Map<string, () => void>();
  readonly #letIn = new Map<string, () => void>();
  readonly #inStretch = new Set<string>();

  inStretch(name: string): boolean {
    return this.#inStretch.has(name);
  }

  outsideStretch(name: string): boolean {
    return this.#letIn.has(name);
  }

  release(name: string): void {
    const f = this.#release.get(name);
    assert.ok(f, `${name} is not in its stretch`);
    f();
  }

  letIn(name: string): void {
    const f = this.#letIn.get(name);
    assert.ok(f, `${name} is not waiting outside its stretch`);
    f();
  }

  async run(ctx: JobRunContext<Q, C, P>): Promise<void> {
    const { name } = ctx.query;
    this.started.push(name);
    this.found.set(name, [...(this.found.get(name) ?? []), [...ctx.bucketsDone()].sort((a, b) => a - b)]);
    const runs = (ctx.loadPrivate()?.runs ?? 0) + 1;
    await ctx.savePrivate({ runs });
    ctx.setContent({ Runs: runs });
    await ctx.markBucketDone(runs);
    if (ctx.query.stretchLater && runs === 1) await this.#wait(this.#letIn, name, ctx.signal);
    ctx.signal.throwIfAborted();
    await ctx.preemptible(async () => {
      this.#inStretch.add(name);
      try {
        await this.#wait(this.#release, name, ctx.signal);
      } finally {
        this.#inStretch.delete(name);
      }
      ctx.signal.throwIfAborted();
    });
  }

  async cancelled(ctx: JobRunContext<Q, C, P>): Promise<void> {
    this.canceled.push(ctx.query.name);
  }

  #wait(gates: Map<string, () => void>, name: string, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        gates.delete(name);
        resolve();
      };
      if (signal.aborted) return resolve();
      gates.set(name, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

const logger = pino({ level: 'silent' });

/** Waits (at most 10 s, looking every 5 ms) until `ok` holds. */
async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (let i = 0; i < 100_000 && !ok(); i++) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('priority that preempts, in the jobs engine', () => {
  let dir: string;
  let n = 0;
  const engines: JobsEngine[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-preempt-'));
  });
  after(async () => {
    for (const e of engines) await e.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(concurrentJobs: number): Promise<{ engine: JobsEngine; runner: LinkRunner }> {
    const runner = new LinkRunner();
    const engine = new JobsEngine(openJobsDb(join(dir, `jobs-${++n}.sqlite`)), {
      concurrentJobs,
      historySize: 100,
      runners: () => runner,
      logger,
    });
    engines.push(engine);
    await engine.start();
    return { engine, runner };
  }

  const submit = (engine: JobsEngine, name: string, priority: number, extra: Partial<Q> = {}) =>
    engine.submit('PushTransfer', { name, ...extra }, priority);
  const inState = (engine: JobsEngine, id: string, state: JobState) => until(`job ${id} ${state}`, () => engine.state(id) === state);
  const content = (engine: JobsEngine, id: string) => engine.describe(id).Content as C;

  for (const slots of [1, 2]) {
    test(`ConcurrentJobs ${slots}: a higher priority stops the running job, which resumes from its saved state after it`, async () => {
      const { engine, runner } = await start(slots);
      const bulk = submit(engine, 'bulk', 0);
      await until('bulk in its stretch', () => runner.inStretch('bulk'));
      const high = submit(engine, 'high', 5);
      await until('high in its stretch', () => runner.inStretch('high'));
      assert.equal(engine.state(bulk), 'Pending', 'the preempted job went back to the queue');
      assert.equal(content(engine, bulk).Waiting, `preempted by job ${high} (priority 5); resumes where it stopped when that job ends`);
      assert.equal(engine.describe(bulk).ErrorCode, 0, 'not failed');
      assert.deepEqual(runner.started, ['bulk', 'high'], 'the preempted job did not start again while the higher one runs');
      runner.release('high');
      await inState(engine, high, 'Success');
      await until('bulk in its stretch again', () => runner.inStretch('bulk'));
      assert.equal(engine.state(bulk), 'Running');
      assert.equal(content(engine, bulk).Waiting, undefined, 'a job running again no longer says it waits');
      assert.deepEqual(runner.found.get('bulk'), [[], [1]], 'the second run found the first run’s bucket done');
      runner.release('bulk');
      await inState(engine, bulk, 'Success');
      assert.equal(content(engine, bulk).Runs, 2);
    });
  }

  test('equal priorities do not preempt each other; a lower one waits while a higher one runs', async () => {
    const { engine, runner } = await start(3);
    const a = submit(engine, 'a', 3);
    const b = submit(engine, 'b', 3);
    await until('both running', () => runner.inStretch('a') && runner.inStretch('b'));
    assert.deepEqual([engine.state(a), engine.state(b)], ['Running', 'Running'], 'neither preempted the other');
    const low = submit(engine, 'low', 1);
    // The engine decides in the pass that follows the submit: a job that needs it starts within that pass.
    submit(engine, 'probe', 3);
    await until('probe running', () => runner.inStretch('probe'));
    assert.equal(engine.state(low), 'Pending', 'a lower priority does not start while higher ones run, despite a free slot');
    assert.deepEqual(runner.started.sort(), ['a', 'b', 'probe']);
    for (const name of ['a', 'b', 'probe']) runner.release(name);
    await until('low running', () => runner.inStretch('low'));
    assert.equal(content(engine, low).Waiting, undefined, 'a job that never ran was not preempted');
    runner.release('low');
    await inState(engine, low, 'Success');
    assert.deepEqual(runner.found.get('low'), [[]], 'one run');
  });

  test('a job outside its preemptible stretch gives way as it enters it; one whose preemptor ended goes on', async () => {
    const { engine, runner } = await start(2);
    const bulk = submit(engine, 'bulk', 0, { stretchLater: true });
    await until('bulk outside its stretch', () => runner.outsideStretch('bulk'));
    submit(engine, 'high', 5);
    await until('high in its stretch', () => runner.inStretch('high'));
    assert.equal(engine.state(bulk), 'Running', 'not stopped outside its stretch (e.g. during a commit)');
    runner.letIn('bulk');
    await inState(engine, bulk, 'Pending');
    runner.release('high');
    await until('bulk in its stretch', () => runner.inStretch('bulk'));
    runner.release('bulk');
    await inState(engine, bulk, 'Success');

    const other = submit(engine, 'other', 0, { stretchLater: true });
    await until('other outside its stretch', () => runner.outsideStretch('other'));
    const brief = submit(engine, 'brief', 5);
    await until('brief in its stretch', () => runner.inStretch('brief'));
    runner.release('brief');
    await inState(engine, brief, 'Success');
    runner.letIn('other');
    await until('other in its stretch', () => runner.inStretch('other'));
    assert.equal(engine.state(other), 'Running', 'the job it was to give way to had ended');
    runner.release('other');
    await inState(engine, other, 'Success');
    assert.deepEqual(runner.found.get('other'), [[]], 'one run');
  });

  test('a preempted job pauses, resumes behind the higher one, and cancels; none of it fails it', async () => {
    const { engine, runner } = await start(1);
    const bulk = submit(engine, 'bulk', 0);
    const spare = submit(engine, 'spare', -1);
    await until('bulk in its stretch', () => runner.inStretch('bulk'));
    submit(engine, 'high', 5);
    await until('high in its stretch', () => runner.inStretch('high'));
    await engine.pause(bulk);
    assert.equal(engine.state(bulk), 'Paused');
    assert.equal(content(engine, bulk).Waiting, undefined, 'a paused job waits for resume, not for the other job');
    engine.resume(bulk);
    assert.equal(engine.state(bulk), 'Pending');
    // Cancel of the spare (Pending, never run) while the high one runs: a canceled job, nothing else.
    await engine.cancel(spare);
    assert.equal(engine.state(spare), 'Failure');
    runner.release('high');
    await until('bulk in its stretch again', () => runner.inStretch('bulk'));
    assert.deepEqual(runner.found.get('bulk'), [[], [1]]);
    // Preempted once more, then canceled while preempted.
    const again = submit(engine, 'again', 5);
    await until('again in its stretch', () => runner.inStretch('again'));
    await inState(engine, bulk, 'Pending');
    await engine.cancel(bulk);
    const j = engine.describe(bulk);
    assert.equal(j.State, 'Failure');
    assert.equal(j.ErrorDescription, 'This job was canceled');
    assert.equal((j.Content as C).Waiting, undefined);
    assert.deepEqual(runner.canceled, ['spare', 'bulk'], 'the canceled job cleaned up what it holds');
    runner.release('again');
    await inState(engine, again, 'Success');
  });
});
