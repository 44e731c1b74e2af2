// The jobs engine: a persistent queue of transfer jobs run by priority, at most ConcurrentJobs at once,
// with Orthanc's states and controls (pause, resume, cancel, resubmit). One place changes a job's state,
// saves it and emits it; a restart resumes running jobs where their saved state says they were.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { cpus } from 'node:os';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ERRORS, XferError, isXferError, type ErrorCode } from '../errors.ts';
import { formatOrthancTimestamp, progressPercent } from '../protocol/progress.ts';
import { describeIssue, readStored } from '../util/stored-json.ts';
import type { JobsDb } from './db.ts';

export const JOB_STATES = ['Pending', 'Running', 'Paused', 'Success', 'Failure'] as const;
export type JobState = (typeof JOB_STATES)[number];
/** RemotePullTransfer: a send in pull mode, followed on this node while the peer's PullTransfer runs. */
export const JOB_TYPES = ['PushTransfer', 'PullTransfer', 'RemotePullTransfer'] as const;
export type JobType = (typeof JOB_TYPES)[number];

/** Why a running job's signal was aborted. */
export type StopReason = 'pause' | 'cancel' | 'shutdown';

/**
 * The schemas of what one kind of job persists: its query, its public Content and its private state.
 * Each is checked when it is read back from the database, so that a damaged row fails its job.
 */
export interface JobKind<Q, C extends Record<string, unknown>, P> {
  readonly query: z.ZodType<Q>;
  readonly content: z.ZodType<C>;
  readonly private: z.ZodType<P>;
}

/** What a running job may do with the engine: report, save its progress, and watch for a stop. */
export interface JobRunContext<Q = unknown, C extends Record<string, unknown> = Record<string, unknown>, P = unknown> {
  readonly id: string;
  readonly type: JobType;
  /** The query the job was submitted with (checked against its kind's schema). */
  readonly query: Q;
  /** Aborted with a StopReason when the job must stop (pause, cancel, shutdown). */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /**
   * The private state saved by an earlier run of this job (after a pause or a restart), checked against
   * the kind's schema: BadFileFormat (which fails the run) when it does not read back.
   */
  loadPrivate(): P | undefined;
  /** Saves the job's private state durably (plan, remote transaction, cookies...). */
  savePrivate(state: P): void;
  /** Buckets that an earlier run finished. */
  bucketsDone(): Set<number>;
  /** Records a finished bucket durably. */
  markBucketDone(index: number): void;
  /** Forgets every finished bucket (the job starts a new plan, e.g. a new remote transaction). */
  clearBucketsDone(): void;
  /** The job's public Content as it stands (kept across pauses and restarts). */
  content(): Readonly<C>;
  /** Merges keys into the job's public Content (a key set to undefined is removed). */
  setContent(partial: Partial<C>): void;
  /** Sets the progress fraction (0 to 1). */
  setProgress(p: number): void;
}

/** One kind of job: runs or continues it; throws an XferError to fail; returns to succeed. */
export interface JobRunner<Q = unknown, C extends Record<string, unknown> = Record<string, unknown>, P = unknown> {
  /** The schemas of its persisted query, Content and private state. */
  readonly kind: JobKind<Q, C, P>;
  run(ctx: JobRunContext<Q, C, P>): Promise<void>;
  /** Cleanup after a cancel (e.g. discard the remote transaction); best effort, never throws. */
  cancelled?(ctx: JobRunContext<Q, C, P>): Promise<void>;
  /**
   * The job only watches work done elsewhere (a peer's job): it runs at once and does not count against
   * ConcurrentJobs, so that it never holds the slot that the work it watches needs (a peer that is this node).
   */
  readonly watcher?: boolean;
}

/** Any kind of job, as the engine sees it (each runner narrows its own query, Content and state). */
export type AnyJobRunner = JobRunner<unknown, Record<string, unknown>, unknown>;

export type JobRunnerFactory = (type: JobType) => AnyJobRunner;

export interface JobsEngineOptions {
  /** Jobs run at once; 0 = one per CPU core (Orthanc's ConcurrentJobs). */
  concurrentJobs: number;
  /** Finished jobs kept (Orthanc's JobsHistorySize). */
  historySize: number;
  runners: JobRunnerFactory;
  logger: Logger;
}

/** A row of the jobs table as this version writes it. */
const JobRowSchema = z.object({
  seq: z.number().int(),
  id: z.string(),
  type: z.enum(JOB_TYPES),
  state: z.enum(JOB_STATES),
  priority: z.number().int(),
  query: z.string(),
  content: z.string(),
  progress: z.number().min(0).max(1),
  private: z.string().nullable(),
  creation_time: z.number().int(),
  completion_time: z.number().int().nullable(),
  runtime_ms: z.number().int().nonnegative(),
  error_code: z.custom<ErrorCode>((v) => typeof v === 'string' && Object.hasOwn(ERRORS, v), 'expected an error code this version knows').nullable(),
  error_details: z.string().nullable(),
});
type JobRow = z.output<typeof JobRowSchema>;

/** What a column takes when its stored value is unusable (the job is failed with the reason). */
const ROW_FALLBACK: Omit<JobRow, 'seq' | 'id'> = {
  type: 'PushTransfer',
  state: 'Failure',
  priority: 0,
  query: '{}',
  content: '{}',
  progress: 0,
  private: null,
  creation_time: 0,
  completion_time: null,
  runtime_ms: 0,
  error_code: null,
  error_details: null,
};

/** A job as the engine holds it in memory while it is known. */
interface Live {
  row: JobRow;
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
}

const FLUSH_MS = 1000;
/** The start of the ErrorDetails of a job whose saved state could not be used. */
const DAMAGED_STATE = 'the saved state of this job is unusable (damaged, or written by an incompatible version)';

/**
 * The line of a job that succeeded: its peer, size, instances, running time (pauses left out) and data
 * rate (the bytes of the instances it moved, those already at the destination left out, per second).
 */
export function finishedFacts(
  type: JobType,
  content: Readonly<Record<string, unknown>>,
  runtimeMs: number,
): { fields: Record<string, unknown>; message: string } {
  const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const seconds = Math.max(0, runtimeMs) / 1000;
  const fields: Record<string, unknown> = { seconds: Math.round(seconds * 10) / 10 };
  const peer = typeof content['Peer'] === 'string' ? content['Peer'] : undefined;
  const instances = num(content['TotalInstances']);
  const bytes = num(content['TotalBytes']);
  const moved = bytes === undefined ? undefined : Math.max(0, bytes - (num(content['SkippedBytes']) ?? 0));
  if (peer !== undefined) fields['peer'] = peer;
  if (instances !== undefined) fields['instances'] = instances;
  if (bytes !== undefined) fields['bytes'] = bytes;
  const skipped = num(content['SkippedInstances']);
  if (skipped) fields['skippedInstances'] = skipped;
  const rate = moved !== undefined && seconds > 0 ? moved / seconds : undefined;
  if (rate !== undefined) fields['bytesPerSecond'] = Math.round(rate);
  const mb = (n: number) => `${(n / 1_000_000).toFixed(1)} MB`;
  const what = `${instances ?? '?'} instance${instances === 1 ? '' : 's'}${bytes !== undefined ? `, ${mb(bytes)}` : ''}`;
  const where = peer === undefined ? '' : ` ${type === 'PullTransfer' ? 'from' : 'to'} peer "${peer}"`;
  const pace = rate !== undefined ? `, ${mb(rate)}/s` : '';
  const kind = type === 'PullTransfer' ? 'pull' : 'push';
  return { fields, message: `${kind} finished: ${what}${where} in ${fields['seconds']} s${pace}` };
}

export class JobsEngine extends EventEmitter {
  readonly #db: JobsDb;
  readonly #opts: JobsEngineOptions;
  readonly #live = new Map<string, Live>();
  readonly #limit: number;
  #flushTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(db: JobsDb, opts: JobsEngineOptions) {
    super();
    this.#db = db;
    this.#opts = opts;
    this.#limit = opts.concurrentJobs > 0 ? opts.concurrentJobs : Math.max(1, cpus().length);
  }

  /** Loads saved jobs; jobs that were running when the node stopped run again from their saved state. */
  start(): void {
    const rows: unknown[] = this.#db.prepare('SELECT * FROM jobs ORDER BY seq').all();
    const damaged: [Live, string][] = [];
    for (const raw of rows) {
      const loaded = this.#load(raw);
      if (!loaded) continue;
      const { live, problem } = loaded;
      if (live.row.state === 'Running') live.row.state = 'Pending';
      this.#live.set(live.row.id, live);
      if (problem !== undefined) damaged.push([live, problem]);
    }
    this.#db.prepare("UPDATE jobs SET state = 'Pending' WHERE state = 'Running'").run();
    for (const [live, problem] of damaged) this.#failDamaged(live, problem);
    this.#flushTimer = setInterval(() => this.#flush(), FLUSH_MS);
    this.#flushTimer.unref();
    this.#schedule();
  }

  /**
   * A saved row, checked: its columns, then its query, Content and private state against its kind's
   * schemas. A row that fails comes back with the problem (the job is then failed, see #failDamaged);
   * one without its keys is skipped.
   */
  #load(raw: unknown): { live: Live; problem?: string } | undefined {
    const whole = JobRowSchema.safeParse(raw);
    const problems: string[] = [];
    let row: JobRow;
    let storedType: string | undefined;
    if (whole.success) row = whole.data;
    else {
      const cols = z.record(z.string(), z.unknown()).catch({}).parse(raw);
      const seq = JobRowSchema.shape.seq.safeParse(cols['seq']);
      const id = JobRowSchema.shape.id.safeParse(cols['id']);
      if (!seq.success || !id.success) {
        this.#opts.logger.error({ seq: cols['seq'], id: cols['id'] }, 'a job row without its keys is ignored');
        return undefined;
      }
      const out: Record<string, unknown> = { seq: seq.data, id: id.data };
      for (const [key, fallback] of Object.entries(ROW_FALLBACK)) {
        const r = JobRowSchema.shape[key as keyof typeof ROW_FALLBACK].safeParse(cols[key]);
        out[key] = r.success ? r.data : fallback;
        if (!r.success) problems.push(`column ${key}: ${describeIssue(r.error)}`);
        if (!r.success && key === 'type') storedType = String(cols[key]);
      }
      row = JobRowSchema.parse(out);
    }
    const live: Live = { row, query: undefined, content: {}, dirty: false };
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
    this.#db.prepare('DELETE FROM job_buckets WHERE job = ?').run(r.id);
    this.#flushOne(live);
    this.#opts.logger.warn({ job: r.id, type: live.storedType ?? r.type, details: r.error_details }, 'job with damaged saved state marked failed');
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
    const id = randomUUID();
    const now = Date.now();
    const info = this.#db
      .prepare(
        `INSERT INTO jobs (id, type, state, priority, query, content, progress, creation_time)
         VALUES (?, ?, 'Pending', ?, ?, ?, 0, ?)`,
      )
      .run(id, type, priority, JSON.stringify(query), JSON.stringify(content), now);
    const row = JobRowSchema.parse(this.#db.prepare('SELECT * FROM jobs WHERE seq = ?').get(info.lastInsertRowid));
    this.#live.set(id, { row, query: checkedQuery.data, content: { ...content }, dirty: false });
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
    const s = live.row.state;
    if (s === 'Pending') this.#setState(live, 'Paused');
    else if (s === 'Running') {
      live.controller?.abort('pause' satisfies StopReason);
      await live.running;
    } else if (s !== 'Paused') throw new XferError('BadSequenceOfCalls', `cannot pause a job in state ${s}`);
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
    const s = live.row.state;
    if (s === 'Running') {
      live.controller?.abort('cancel' satisfies StopReason);
      await live.running;
      return;
    }
    if (s === 'Pending' || s === 'Paused') {
      const runner = this.#opts.runners(live.row.type);
      if (runner.cancelled) await runner.cancelled(this.#context(live, runner, new AbortController().signal));
      this.#finish(live, 'Failure', new XferError('CanceledJob'));
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
    this.#db.prepare('DELETE FROM job_buckets WHERE job = ?').run(id);
    live.row.private = null;
    live.row.error_code = null;
    live.row.error_details = null;
    live.row.completion_time = null;
    live.row.progress = 0;
    this.#setState(live, 'Pending');
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
  }

  #get(id: string): Live {
    const live = this.#live.get(id);
    if (!live) throw new XferError('UnknownResource', `job ${id}`);
    return live;
  }

  #schedule(): void {
    if (this.#closed) return;
    const watcher = (l: Live): boolean => this.#opts.runners(l.row.type).watcher === true;
    for (const l of [...this.#live.values()]) if (l.row.state === 'Pending' && watcher(l)) this.#run(l);
    let running = [...this.#live.values()].filter((l) => l.row.state === 'Running' && !watcher(l)).length;
    while (running < this.#limit) {
      const next = [...this.#live.values()]
        .filter((l) => l.row.state === 'Pending' && !watcher(l))
        .sort((a, b) => b.row.priority - a.row.priority || a.row.seq - b.row.seq)[0];
      if (!next) return;
      running++;
      this.#run(next);
    }
  }

  #run(live: Live): void {
    const controller = new AbortController();
    live.controller = controller;
    live.runStartedAt = Date.now();
    this.#setState(live, 'Running');
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
      if (outcome.state === 'Success' || outcome.state === 'Failure') this.#finish(live, outcome.state, outcome.error);
      else if (reason === 'shutdown') this.#flushOne(live);
      else this.#setState(live, outcome.state);
      this.#schedule();
    })();
  }

  #stopped(controller: AbortController): { state: JobState; error?: XferError } {
    const reason = controller.signal.reason as StopReason;
    if (reason === 'pause') return { state: 'Paused' };
    if (reason === 'cancel') return { state: 'Failure', error: new XferError('CanceledJob') };
    return { state: 'Running' };
  }

  #context(live: Live, runner: AnyJobRunner, signal: AbortSignal): JobRunContext {
    const db = this.#db;
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
        live.row.private = JSON.stringify(state);
        db.prepare('UPDATE jobs SET private = ? WHERE id = ?').run(live.row.private, id);
      },
      bucketsDone() {
        const rows = db.prepare('SELECT idx FROM job_buckets WHERE job = ?').all(id) as { idx: number }[];
        return new Set(rows.map((r) => r.idx));
      },
      markBucketDone(index: number) {
        db.prepare('INSERT OR IGNORE INTO job_buckets (job, idx) VALUES (?, ?)').run(id, index);
      },
      clearBucketsDone() {
        db.prepare('DELETE FROM job_buckets WHERE job = ?').run(id);
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
    };
  }

  #setState(live: Live, state: JobState): void {
    const prev = live.row.state;
    live.row.state = state;
    this.#flushOne(live);
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
    this.#db.prepare('DELETE FROM job_buckets WHERE job = ?').run(r.id);
    if (error) {
      this.#opts.logger.warn({ job: r.id, type: r.type, code: error.code, details: r.error_details }, 'job failed');
    } else {
      const facts = finishedFacts(r.type, live.content, r.runtime_ms);
      this.#opts.logger.info({ job: r.id, type: r.type, ...facts.fields }, facts.message);
    }
    this.#setState(live, state);
    this.#trimHistory();
  }

  #trimHistory(): void {
    const finished = [...this.#live.values()]
      .filter((l) => l.row.state === 'Success' || l.row.state === 'Failure')
      .sort((a, b) => (a.row.completion_time ?? 0) - (b.row.completion_time ?? 0) || a.row.seq - b.row.seq);
    const excess = finished.length - this.#opts.historySize;
    for (let i = 0; i < excess; i++) {
      const l = finished[i] as Live;
      this.#live.delete(l.row.id);
      this.#db.prepare('DELETE FROM jobs WHERE id = ?').run(l.row.id);
    }
  }

  #flushOne(live: Live): void {
    const r = live.row;
    this.#db
      .prepare(
        `UPDATE jobs SET state = ?, priority = ?, content = ?, progress = ?, private = ?, completion_time = ?,
         runtime_ms = ?, error_code = ?, error_details = ? WHERE id = ?`,
      )
      .run(
        r.state,
        r.priority,
        JSON.stringify(live.content),
        r.progress,
        r.private,
        r.completion_time,
        r.runtime_ms + (live.runStartedAt !== undefined ? Date.now() - live.runStartedAt : 0),
        r.error_code,
        r.error_details,
        r.id,
      );
    live.dirty = false;
  }

  #flush(): void {
    for (const live of this.#live.values()) if (live.dirty) this.#flushOne(live);
  }
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k];
  return out;
}
