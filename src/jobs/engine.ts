// The jobs engine: a persistent queue of transfer jobs run by priority, at most ConcurrentJobs at once,
// with Orthanc's states and controls (pause, resume, cancel, resubmit). One place changes a job's state,
// saves it and emits it; a restart resumes running jobs where their saved state says they were.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { cpus } from 'node:os';
import type { Logger } from 'pino';
import { ERRORS, XferError, isXferError, type ErrorCode } from '../errors.ts';
import { formatOrthancTimestamp, progressPercent } from '../protocol/progress.ts';
import type { JobsDb } from './db.ts';

export type JobState = 'Pending' | 'Running' | 'Paused' | 'Success' | 'Failure';
/** RemotePullTransfer: a send in pull mode, followed on this node while the peer's PullTransfer runs. */
export type JobType = 'PushTransfer' | 'PullTransfer' | 'RemotePullTransfer';

/** Why a running job's signal was aborted. */
export type StopReason = 'pause' | 'cancel' | 'shutdown';

/** What a running job may do with the engine: report, save its progress, and watch for a stop. */
export interface JobRunContext {
  readonly id: string;
  readonly type: JobType;
  /** The query the job was submitted with (its serialized form). */
  readonly query: Record<string, unknown>;
  /** Aborted with a StopReason when the job must stop (pause, cancel, shutdown). */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** The private state saved by an earlier run of this job (after a pause or a restart). */
  loadPrivate<T>(): T | undefined;
  /** Saves the job's private state durably (plan, remote transaction, cookies...). */
  savePrivate(state: unknown): void;
  /** Buckets that an earlier run finished. */
  bucketsDone(): Set<number>;
  /** Records a finished bucket durably. */
  markBucketDone(index: number): void;
  /** Forgets every finished bucket (the job starts a new plan, e.g. a new remote transaction). */
  clearBucketsDone(): void;
  /** The job's public Content as it stands (kept across pauses and restarts). */
  content(): Readonly<Record<string, unknown>>;
  /** Merges keys into the job's public Content. */
  setContent(partial: Record<string, unknown>): void;
  /** Sets the progress fraction (0 to 1). */
  setProgress(p: number): void;
}

/** One kind of job: runs or continues it; throws an XferError to fail; returns to succeed. */
export interface JobRunner {
  run(ctx: JobRunContext): Promise<void>;
  /** Cleanup after a cancel (e.g. discard the remote transaction); best effort, never throws. */
  cancelled?(ctx: JobRunContext): Promise<void>;
  /**
   * The job only watches work done elsewhere (a peer's job): it runs at once and does not count against
   * ConcurrentJobs, so that it never holds the slot that the work it watches needs (a peer that is this node).
   */
  readonly watcher?: boolean;
}

export type JobRunnerFactory = (type: JobType) => JobRunner;

export interface JobsEngineOptions {
  /** Jobs run at once; 0 = one per CPU core (Orthanc's ConcurrentJobs). */
  concurrentJobs: number;
  /** Finished jobs kept (Orthanc's JobsHistorySize). */
  historySize: number;
  runners: JobRunnerFactory;
  logger: Logger;
}

interface JobRow {
  seq: number;
  id: string;
  type: JobType;
  state: JobState;
  priority: number;
  query: string;
  content: string;
  progress: number;
  private: string | null;
  creation_time: number;
  completion_time: number | null;
  runtime_ms: number;
  error_code: string | null;
  error_details: string | null;
}

/** A job as the engine holds it in memory while it is known. */
interface Live {
  row: JobRow;
  content: Record<string, unknown>;
  controller?: AbortController;
  runStartedAt?: number;
  running?: Promise<void>;
  dirty: boolean;
}

const FLUSH_MS = 1000;

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
    const rows = this.#db.prepare('SELECT * FROM jobs ORDER BY seq').all() as JobRow[];
    for (const row of rows) {
      if (row.state === 'Running') row.state = 'Pending';
      this.#live.set(row.id, { row, content: JSON.parse(row.content) as Record<string, unknown>, dirty: false });
    }
    this.#db.prepare("UPDATE jobs SET state = 'Pending' WHERE state = 'Running'").run();
    this.#flushTimer = setInterval(() => this.#flush(), FLUSH_MS);
    this.#flushTimer.unref();
    this.#schedule();
  }

  /** Queues a new job; answers its ID. */
  submit(type: JobType, query: Record<string, unknown>, priority: number, content: Record<string, unknown> = {}): string {
    if (this.#closed) throw new XferError('BadSequenceOfCalls', 'the node is stopping');
    const id = randomUUID();
    const now = Date.now();
    const info = this.#db
      .prepare(
        `INSERT INTO jobs (id, type, state, priority, query, content, progress, creation_time)
         VALUES (?, ?, 'Pending', ?, ?, ?, 0, ?)`,
      )
      .run(id, type, priority, JSON.stringify(query), JSON.stringify(content), now);
    const row = this.#db.prepare('SELECT * FROM jobs WHERE seq = ?').get(info.lastInsertRowid) as JobRow;
    this.#live.set(id, { row, content: { ...content }, dirty: false });
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
    const code = (failed ? (r.error_code ?? 'InternalError') : undefined) as ErrorCode | undefined;
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
    out.Type = r.type;
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
      if (runner.cancelled) await runner.cancelled(this.#context(live, new AbortController().signal));
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
    const ctx = this.#context(live, controller.signal);
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

  #context(live: Live, signal: AbortSignal): JobRunContext {
    const db = this.#db;
    const id = live.row.id;
    const engine = this;
    return {
      id,
      type: live.row.type,
      query: JSON.parse(live.row.query) as Record<string, unknown>,
      signal,
      log: this.#opts.logger.child({ job: id }),
      loadPrivate<T>() {
        return live.row.private === null ? undefined : (JSON.parse(live.row.private) as T);
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
