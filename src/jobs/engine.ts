// The jobs engine: a persistent queue of transfer jobs run by priority, at most ConcurrentJobs at once,
// with Orthanc's states and controls (pause, resume, cancel, resubmit). One place changes a job's state,
// saves it and emits it; a restart resumes running jobs where their saved state says they were.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { cpus } from 'node:os';
import type { Logger } from 'pino';
import { ERRORS, XferError, isXferError, type ErrorCode } from '../errors.ts';
import { formatOrthancTimestamp, progressPercent } from '../protocol/progress.ts';
import { describeIssue, readStored } from '../util/stored-json.ts';
import type { JobsDb } from './db.ts';
import { finishedFacts } from './facts.ts';
import type { AnyJobRunner, JobRunContext, JobRunnerFactory, StopReason } from './runner.ts';
import { mustYield, preemptedText, preemptionPass, type Preemptor } from './preemption.ts';
import { SqliteJobStore } from './sqlite-store.ts';
import { JOB_TYPES, type JobRecord, type JobState, type JobStore, type JobType, type JobUpdate, type LoadedJob } from './store.ts';

export { JOB_STATES, JOB_TYPES, type JobState, type JobType } from './store.ts';
export type { AnyJobRunner, JobKind, JobRunContext, JobRunner, JobRunnerFactory, StopReason } from './runner.ts';

export interface JobsEngineOptions {
  /** Jobs run at once; 0 = one per CPU core (Orthanc's ConcurrentJobs). */
  concurrentJobs: number;
  /** Finished jobs kept (Orthanc's JobsHistorySize). */
  historySize: number;
  runners: JobRunnerFactory;
  logger: Logger;
}

/** A job as the engine holds it in memory while it is known. */
interface Live {
  row: JobRecord;
  /** The buckets finished, read from the store before each run and kept in step with it. */
  done: Set<number>;
  /** The first write of this job that failed during its run: the run then fails with it. */
  writeError?: XferError;
  /** The query, as checked by its kind's schema. */
  query: unknown;
  content: Record<string, unknown>;
  /** Why the job can never run again (its saved query or type is unusable); resubmit refuses it. */
  unrunnable?: string;
  /** The type as stored, when it is not one this version knows (shown as is). */
  storedType?: string;
  controller?: AbortController;
  runStartedAt?: number;
  running?: Promise<void>;
  dirty: boolean;
  /** The run is in its preemptible stretch (JobRunContext.preemptible). */
  preemptible?: boolean;
  /** The running job gives way to this one (stopped at once, or when its preemptible stretch begins). */
  yieldTo?: Preemptor;
  /** The Pending job was stopped by a preemption: its Content.Waiting says so until it runs again. */
  preemptedBy?: Preemptor;
  /** When the preempted job last kept its remote state alive (JobRunner.keepAlive). */
  keptAliveAt?: number;
}

const FLUSH_MS = 1000;
/** The start of the ErrorDetails of a job whose saved state could not be used. */
const DAMAGED_STATE = 'the saved state of this job is unusable (damaged, or written by an incompatible version)';

export class JobsEngine extends EventEmitter {
  readonly #store: JobStore;
  readonly #opts: JobsEngineOptions;
  readonly #live = new Map<string, Live>();
  readonly #limit: number;
  /**
   * The store's writes, one after the other in the order the engine decided them: the engine's memory is
   * ahead of the store by at most this queue, and the store never sees an older state after a newer one.
   */
  #writes: Promise<void> = Promise.resolve();
  /** The last write queued is a scheduling pass (a second one behind it would find nothing more). */
  #passQueued = false;
  #nextSeq = 1;
  #flushTimer: NodeJS.Timeout | undefined;
  #closed = false;

  /** `store` may be the SQLite database of openJobsDb, used through SqliteJobStore. */
  constructor(store: JobStore | JobsDb, opts: JobsEngineOptions) {
    super();
    this.#store = 'prepare' in store ? new SqliteJobStore(store) : store;
    this.#opts = opts;
    this.#limit = opts.concurrentJobs > 0 ? opts.concurrentJobs : Math.max(1, cpus().length);
  }

  /** Loads saved jobs; jobs that were running when the node stopped run again from their saved state. */
  async start(): Promise<void> {
    let recovered: Awaited<ReturnType<JobStore['recover']>> = { jobs: [], ignored: [] };
    await this.#enqueue(async () => {
      recovered = await this.#store.recover();
    });
    for (const keys of recovered.ignored) this.#opts.logger.error(keys, 'a job row without its keys is ignored');
    const damaged: [Live, string][] = [];
    for (const loaded of recovered.jobs) {
      const { live, problem } = this.#load(loaded);
      this.#live.set(live.row.id, live);
      this.#nextSeq = Math.max(this.#nextSeq, live.row.seq + 1);
      if (problem !== undefined) damaged.push([live, problem]);
    }
    for (const [live, problem] of damaged) this.#failDamaged(live, problem);
    this.#flushTimer = setInterval(() => this.#flush(), FLUSH_MS);
    this.#flushTimer.unref();
    this.#schedule();
  }

  /**
   * A stored job, checked: its columns (by the store), then its query, Content and private state against
   * its kind's schemas. A job that fails comes back with the problem (it is then failed, see #failDamaged).
   */
  #load(loaded: LoadedJob): { live: Live; problem?: string } {
    const { record: row, storedType } = loaded;
    const problems = [...loaded.problems];
    const live: Live = { row, done: new Set(), query: undefined, content: {}, dirty: false };
    if (storedType !== undefined) {
      live.storedType = storedType;
      live.unrunnable = `its type "${storedType}" is not one this version runs`;
    } else {
      const kind = this.#opts.runners(row.type).kind;
      const read = <T>(what: string, fn: () => T): T | undefined => {
        try {
          return fn();
        } catch (e) {
          problems.push(isXferError(e) ? (e.details ?? e.message) : `${what}: ${String(e)}`);
          return undefined;
        }
      };
      live.query = read('query', () => readStored(kind.query, row.query, 'query'));
      if (live.query === undefined) live.unrunnable = 'its saved query is unusable';
      live.content = read('Content', () => readStored(kind.content, row.content, 'Content')) ?? {};
      if (row.private !== null) read('private state', () => readStored(kind.private, row.private ?? '', 'private state'));
    }
    return problems.length > 0 ? { live, problem: problems.join('; ') } : { live };
  }

  /** Fails a job whose saved state is unusable, saying which field is at fault; its other state goes. */
  #failDamaged(live: Live, problem: string): void {
    const r = live.row;
    r.state = 'Failure';
    r.completion_time ??= Date.now();
    r.error_code = 'BadFileFormat';
    r.error_details = `${DAMAGED_STATE}: ${problem}`;
    r.private = null;
    this.#flushOne(live, { clearBuckets: true });
    this.#opts.logger.warn(
      { job: r.id, type: live.storedType ?? r.type, details: r.error_details },
      'job with damaged saved state marked failed',
    );
  }

  /** Queues a new job; answers its ID. */
  submit(type: JobType, query: Record<string, unknown>, priority: number, content: Record<string, unknown> = {}): string {
    if (this.#closed) throw new XferError('BadSequenceOfCalls', 'the node is stopping');
    const kind = this.#opts.runners(type).kind;
    // What is saved must read back: a query or Content outside the kind's schema is a bug of the caller.
    const checkedQuery = kind.query.safeParse(query);
    if (!checkedQuery.success) throw new XferError('InternalError', `${type} query: ${describeIssue(checkedQuery.error)}`);
    const checkedContent = kind.content.safeParse(content);
    if (!checkedContent.success) throw new XferError('InternalError', `${type} Content: ${describeIssue(checkedContent.error)}`);
    const fresh = {
      id: randomUUID(),
      type,
      priority,
      query: JSON.stringify(query),
      content: JSON.stringify(content),
      creation_time: Date.now(),
    };
    const row: JobRecord = {
      ...fresh,
      // Until the store answers with the job's own seq, the next one this engine would give.
      seq: this.#nextSeq++,
      state: 'Pending',
      progress: 0,
      private: null,
      completion_time: null,
      runtime_ms: 0,
      error_code: null,
      error_details: null,
    };
    const id = row.id;
    this.#live.set(id, { row, done: new Set(), query: checkedQuery.data, content: { ...content }, dirty: false });
    void this.#enqueue(async () => {
      row.seq = (await this.#store.add(fresh)).seq;
    });
    this.#opts.logger.info({ job: id, type, priority, state: 'Pending' }, 'job submitted');
    this.emit('change', id);
    this.#schedule();
    return id;
  }

  /** IDs of every known job, oldest first. */
  list(): string[] {
    return [...this.#live.values()].sort((a, b) => a.row.seq - b.row.seq).map((l) => l.row.id);
  }

  has(id: string): boolean {
    return this.#live.has(id);
  }

  /** A job in Orthanc's JSON shape; UnknownResource when absent. */
  describe(id: string): Record<string, unknown> {
    const live = this.#get(id);
    const r = live.row;
    const now = Date.now();
    const runtime = r.runtime_ms + (live.runStartedAt !== undefined ? now - live.runStartedAt : 0);
    const failed = r.state === 'Failure';
    const code: ErrorCode | undefined = failed ? (r.error_code ?? 'InternalError') : undefined;
    const out: Record<string, unknown> = {};
    if (r.completion_time !== null && (r.state === 'Success' || r.state === 'Failure')) {
      out.CompletionTime = formatOrthancTimestamp(r.completion_time);
    }
    out.Content = sortKeys(live.content);
    out.CreationTime = formatOrthancTimestamp(r.creation_time);
    out.EffectiveRuntime = runtime / 1000;
    out.ErrorCode = code ? ERRORS[code].status : 0;
    out.ErrorDescription = code ? ERRORS[code].message : 'Success';
    out.ErrorDetails = failed ? (r.error_details ?? '') : '';
    if (r.state === 'Running' && r.progress > 0 && r.progress < 1 && runtime > 0) {
      out.EstimatedTimeOfArrival = formatOrthancTimestamp(now + (runtime * (1 - r.progress)) / r.progress);
    }
    out.ID = r.id;
    out.Priority = r.priority;
    out.Progress = progressPercent(r.progress);
    out.State = r.state;
    out.Timestamp = formatOrthancTimestamp(now);
    out.Type = live.storedType ?? r.type;
    return out;
  }

  state(id: string): JobState {
    return this.#get(id).row.state;
  }

  /** Pauses a pending or running job; a running one keeps its state and stops after in-flight work. */
  async pause(id: string): Promise<void> {
    const live = this.#get(id);
    // A run stopped by a preemption just before ends Pending, and is paused as a Pending job.
    if (live.row.state === 'Running' && (await this.#stopRun(live, 'pause')) !== 'Pending') return;
    const s = live.row.state;
    if (s === 'Pending') {
      this.#waitFor(live, undefined);
      this.#setState(live, 'Paused');
      // A paused job no longer holds back the link jobs of lower Priority.
      this.#schedule();
    } else if (s !== 'Paused') throw new XferError('BadSequenceOfCalls', `cannot pause a job in state ${s}`);
  }

  /** Stops a run with `reason` and answers the state it ended in (Pending when a preemption came first). */
  async #stopRun(live: Live, reason: StopReason): Promise<JobState> {
    live.controller?.abort(reason);
    await live.running;
    return live.row.state;
  }

  /** Puts a paused job back in the queue; it continues from the next bucket not done. */
  resume(id: string): void {
    const live = this.#get(id);
    if (live.row.state !== 'Paused') {
      throw new XferError('BadSequenceOfCalls', `only a paused job can be resumed (this one is ${live.row.state})`);
    }
    this.#setState(live, 'Pending');
    this.#schedule();
  }

  /** Ends a job that is not finished; the job cleans up what it holds remotely. */
  async cancel(id: string): Promise<void> {
    const live = this.#get(id);
    // A run stopped by a preemption just before ends Pending, and is canceled as a Pending job.
    if (live.row.state === 'Running' && (await this.#stopRun(live, 'cancel')) !== 'Pending') return;
    const s = live.row.state;
    if (s === 'Pending' || s === 'Paused') {
      const runner = this.#opts.runners(live.row.type);
      if (runner.cancelled) await runner.cancelled(this.#context(live, runner, new AbortController().signal));
      this.#waitFor(live, undefined);
      this.#finish(live, 'Failure', new XferError('CanceledJob'));
      this.#schedule();
      return;
    }
    throw new XferError('BadSequenceOfCalls', `cannot cancel a job in state ${s}`);
  }

  /** Starts a failed (or canceled) job again from its first step; its Content is kept. */
  resubmit(id: string): void {
    const live = this.#get(id);
    if (live.row.state !== 'Failure') {
      throw new XferError('BadSequenceOfCalls', `only a failed job can be resubmitted (this one is ${live.row.state})`);
    }
    if (live.unrunnable !== undefined) throw new XferError('BadSequenceOfCalls', `this job cannot run again: ${live.unrunnable}`);
    live.row.private = null;
    live.row.error_code = null;
    live.row.error_details = null;
    live.row.completion_time = null;
    live.row.progress = 0;
    this.#setState(live, 'Pending', { clearBuckets: true });
    this.#schedule();
  }

  /** Stops every running job (their state stays saved for the next start) and closes the engine. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#flushTimer);
    const running = [...this.#live.values()].filter((l) => l.running);
    for (const l of running) l.controller?.abort('shutdown' satisfies StopReason);
    await Promise.all(running.map((l) => l.running));
    this.#flush();
    await this.#writes;
  }

  /**
   * Queues a write of the store after those already queued; answers when it is done. A failure is logged
   * and, for a job's own write during its run, fails that run; the promise answered rejects too, so that a
   * caller that awaits it learns at once.
   */
  #enqueue(write: () => Promise<void>, live?: Live): Promise<void> {
    this.#passQueued = false;
    const done = this.#writes.then(write);
    this.#writes = done.catch((e: unknown) => {
      const error = isXferError(e) ? e : new XferError('InternalError', `job store: ${String(e)}`, { cause: e });
      this.#opts.logger.error({ job: live?.row.id, err: error.details ?? error.message }, 'a write of the job store failed');
      if (live) live.writeError ??= error;
    });
    return done;
  }

  #get(id: string): Live {
    const live = this.#live.get(id);
    if (!live) throw new XferError('UnknownResource', `job ${id}`);
    return live;
  }

  /** Queues a pass that starts what may start (unless one is already last in the queue). */
  #schedule(): void {
    if (this.#closed || this.#passQueued) return;
    void this.#enqueue(() => this.#claimPass());
    this.#passQueued = true;
  }

  /**
   * Claims from the store and runs: every Pending watcher, and the best Pending jobs while fewer than
   * ConcurrentJobs others run. The store picks (priority, then age) and marks each Running atomically.
   */
  async #claimPass(): Promise<void> {
    const watcherTypes = JOB_TYPES.filter((t) => this.#opts.runners(t).watcher === true);
    const watcher = (l: Live): boolean => watcherTypes.includes(l.row.type);
    for (let claimed = 0; claimed <= this.#live.size && !this.#closed; claimed++) {
      // A link job that gives way to one of higher Priority leaves its slot to it, whatever ConcurrentJobs.
      const linkOk = this.#preempt().mayStart;
      const running = [...this.#live.values()].filter((l) => l.row.state === 'Running' && !watcher(l) && !l.yieldTo).length;
      const types = running < this.#limit ? JOB_TYPES : watcherTypes;
      const record = await this.#store.claimNext(linkOk ? types : types.filter((t) => !this.#sharesLink(t)));
      if (!record) return;
      const live = this.#live.get(record.id);
      if (!live) {
        this.#opts.logger.error({ job: record.id }, 'the job store answered a job this engine does not know');
        continue;
      }
      if (live.row.state !== 'Pending' || this.#closed) {
        // Paused or canceled since this pass was queued: the store gets the engine's state back.
        await this.#store.update(live.row.id, this.#snapshot(live));
        continue;
      }
      if (this.#sharesLink(live.row.type) && mustYield(live.row.priority, this.#preempt().top)) {
        // A link job of higher Priority the store does not hold yet (a pass follows its write): back it goes.
        await this.#store.update(live.row.id, this.#snapshot(live));
        return;
      }
      live.done = await this.#store.bucketsDone(live.row.id);
      this.#run(live);
    }
  }

  readonly #sharesLink = (type: JobType): boolean => this.#opts.runners(type).sharesLink === true;

  /** A pass of jobs/preemption.ts over the link jobs. */
  #preempt(): ReturnType<typeof preemptionPass> {
    return preemptionPass(
      [...this.#live.values()].filter((l) => this.#sharesLink(l.row.type)),
      {
        yielding: (l, by) =>
          this.#opts.logger.info({ job: l.row.id, by: by.id, priority: by.priority }, 'job preempted by a job of higher priority'),
        waiting: (l, by) => this.#waitFor(l, by),
      },
    );
  }

  /** Marks (by) or unmarks (undefined) a Pending job as waiting for its preemptor, in Content.Waiting. */
  #waitFor(live: Live, by: Preemptor | undefined): void {
    if (!live.preemptedBy && !by) return;
    live.preemptedBy = by;
    live.keptAliveAt = Date.now();
    if (by) live.content.Waiting = preemptedText(by);
    else delete live.content.Waiting;
    live.dirty = true;
    this.emit('progress', live.row.id);
  }

  /** A preempted job keeps what it holds remotely from expiring, as often as its runner asks. */
  #keepAlive(): void {
    for (const l of this.#live.values()) {
      const runner = l.preemptedBy && l.row.state === 'Pending' ? this.#opts.runners(l.row.type) : undefined;
      if (!runner?.keepAlive || !runner.keepAliveMs || Date.now() - (l.keptAliveAt ?? 0) < runner.keepAliveMs) continue;
      l.keptAliveAt = Date.now();
      void runner.keepAlive(this.#context(l, runner, new AbortController().signal)).catch(() => undefined);
    }
  }

  #run(live: Live): void {
    const controller = new AbortController();
    live.controller = controller;
    live.runStartedAt = Date.now();
    delete live.writeError;
    this.#waitFor(live, undefined);
    // The store has it Running already (claimNext).
    this.#setState(live, 'Running', { write: false });
    const runner = this.#opts.runners(live.row.type);
    const ctx = this.#context(live, runner, controller.signal);
    live.running = (async () => {
      let outcome: { state: JobState; error?: XferError };
      try {
        await runner.run(ctx);
        outcome = controller.signal.aborted ? this.#stopped(controller) : { state: 'Success' };
      } catch (e) {
        if (controller.signal.aborted) outcome = this.#stopped(controller);
        else outcome = { state: 'Failure', error: isXferError(e) ? e : new XferError('InternalError', String(e), { cause: e }) };
      }
      // What the run saved must be in the store before it counts as done.
      await this.#writes;
      if (live.writeError && outcome.state === 'Success') outcome = { state: 'Failure', error: live.writeError };
      const reason = controller.signal.reason as StopReason | undefined;
      if (controller.signal.aborted && reason === 'cancel' && runner.cancelled) {
        await runner.cancelled(ctx).catch(() => undefined);
      }
      // A run that ends no longer waits for anything: the plain-words wait of its last retry goes.
      delete live.content.Waiting;
      delete live.content.NextTryTime;
      live.row.runtime_ms += Date.now() - (live.runStartedAt ?? Date.now());
      live.runStartedAt = undefined;
      live.controller = undefined;
      live.running = undefined;
      live.preemptible = false;
      const yieldTo = live.yieldTo;
      live.yieldTo = undefined;
      if (outcome.state === 'Success' || outcome.state === 'Failure') this.#finish(live, outcome.state, outcome.error);
      else if (reason === 'shutdown') this.#flushOne(live);
      else {
        // A preempted job waits in the queue, its state and finished buckets kept, neither failed nor retried.
        if (reason === 'preempt' && yieldTo) this.#waitFor(live, yieldTo);
        this.#setState(live, outcome.state);
      }
      this.#schedule();
    })();
  }

  #stopped(controller: AbortController): { state: JobState; error?: XferError } {
    const reason = controller.signal.reason as StopReason;
    if (reason === 'pause') return { state: 'Paused' };
    if (reason === 'preempt') return { state: 'Pending' };
    if (reason === 'cancel') return { state: 'Failure', error: new XferError('CanceledJob') };
    return { state: 'Running' };
  }

  #context(live: Live, runner: AnyJobRunner, signal: AbortSignal): JobRunContext {
    const store = this.#store;
    const id = live.row.id;
    const engine = this;
    return {
      id,
      type: live.row.type,
      query: live.query,
      signal,
      log: this.#opts.logger.child({ job: id }),
      loadPrivate() {
        if (live.row.private === null) return undefined;
        try {
          return readStored(runner.kind.private, live.row.private, 'private state');
        } catch (e) {
          throw new XferError('BadFileFormat', `${DAMAGED_STATE}: ${isXferError(e) ? e.details : String(e)}`, { cause: e });
        }
      },
      savePrivate(state: unknown) {
        const json = JSON.stringify(state);
        live.row.private = json;
        return engine.#enqueue(() => store.savePrivate(id, json), live);
      },
      bucketsDone() {
        return new Set(live.done);
      },
      markBucketDone(index: number) {
        live.done.add(index);
        return engine.#enqueue(() => store.markBucketDone(id, index), live);
      },
      clearBucketsDone() {
        live.done.clear();
        return engine.#enqueue(() => store.clearBuckets(id), live);
      },
      content() {
        return { ...live.content };
      },
      setContent(partial: Record<string, unknown>) {
        Object.assign(live.content, partial);
        live.dirty = true;
        engine.emit('progress', id);
      },
      setProgress(p: number) {
        live.row.progress = Math.max(0, Math.min(1, p));
        live.dirty = true;
        engine.emit('progress', id);
      },
      async preemptible<T>(work: () => Promise<T>): Promise<T> {
        live.preemptible = true;
        // A preemption decided before the stretch began (and still due) stops the run as it enters it.
        engine.#preempt();
        try {
          const out = await work();
          // Nothing may start after the stretch once the run is stopped (e.g. the commit after the buckets).
          signal.throwIfAborted();
          return out;
        } finally {
          live.preemptible = false;
        }
      },
    };
  }

  #setState(live: Live, state: JobState, opts: { write?: boolean; clearBuckets?: boolean } = {}): void {
    const prev = live.row.state;
    live.row.state = state;
    if (opts.write !== false) this.#flushOne(live, { clearBuckets: opts.clearBuckets === true });
    if (prev !== state) {
      this.#opts.logger.info({ job: live.row.id, type: live.row.type, from: prev, state }, 'job state changed');
      this.emit('change', live.row.id);
    }
  }

  #finish(live: Live, state: 'Success' | 'Failure', error?: XferError): void {
    const r = live.row;
    r.completion_time = Date.now();
    if (state === 'Success') r.progress = 1;
    r.error_code = error ? error.code : null;
    r.error_details = error ? (error.details ?? error.message) : null;
    // The durable state is dropped: a resubmitted job starts from its first step, as in Orthanc.
    r.private = null;
    live.done.clear();
    if (error) {
      this.#opts.logger.warn({ job: r.id, type: r.type, code: error.code, details: r.error_details }, 'job failed');
    } else {
      const facts = finishedFacts(r.type, live.content, r.runtime_ms);
      this.#opts.logger.info({ job: r.id, type: r.type, ...facts.fields }, facts.message);
    }
    // One write: the state with its private state and finished buckets dropped.
    this.#setState(live, state, { clearBuckets: true });
    this.#trimHistory();
  }

  #trimHistory(): void {
    const finished = [...this.#live.values()]
      .filter((l) => l.row.state === 'Success' || l.row.state === 'Failure')
      .sort((a, b) => (a.row.completion_time ?? 0) - (b.row.completion_time ?? 0) || a.row.seq - b.row.seq);
    const excess = finished.length - this.#opts.historySize;
    if (excess <= 0) return;
    for (const l of finished.slice(0, excess)) this.#live.delete(l.row.id);
    // The store, at this point of the queue, holds the same finished jobs: it trims the same ones.
    void this.#enqueue(async () => {
      await this.#store.trimHistory(this.#opts.historySize);
    });
  }

  /** The changing columns of a job as the engine holds them now. */
  #snapshot(live: Live): JobUpdate {
    const r = live.row;
    return {
      state: r.state,
      priority: r.priority,
      content: JSON.stringify(live.content),
      progress: r.progress,
      private: r.private,
      completion_time: r.completion_time,
      runtime_ms: r.runtime_ms + (live.runStartedAt !== undefined ? Date.now() - live.runStartedAt : 0),
      error_code: r.error_code,
      error_details: r.error_details,
    };
  }

  #flushOne(live: Live, opts: { clearBuckets?: boolean } = {}): void {
    const id = live.row.id;
    const update = this.#snapshot(live);
    live.dirty = false;
    void this.#enqueue(() => this.#store.update(id, update, opts));
  }

  #flush(): void {
    this.#keepAlive();
    for (const live of this.#live.values()) if (live.dirty) this.#flushOne(live);
  }
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k];
  return out;
}
