// What a job's runner sees of the jobs engine (engine.ts): the schemas of what a kind of job persists, the run
// context it reports through and is stopped by, and the runner itself.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { JobType } from './store.ts';

/** Why a running job's signal was aborted ('preempt': a link job of higher Priority became runnable). */
export type StopReason = 'pause' | 'cancel' | 'shutdown' | 'preempt';

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
  /**
   * Saves the job's private state (plan, remote transaction, cookies...); durable when the promise
   * resolves. Writes land in the order they were asked; one that fails fails the run, awaited or not.
   */
  savePrivate(state: P): Promise<void>;
  /** Buckets finished so far (by this run and earlier ones). */
  bucketsDone(): Set<number>;
  /** Records a finished bucket; durable when the promise resolves (as savePrivate). */
  markBucketDone(index: number): Promise<void>;
  /** Forgets every finished bucket (the job starts a new plan, e.g. a new remote transaction). */
  clearBucketsDone(): Promise<void>;
  /** The job's public Content as it stands (kept across pauses and restarts). */
  content(): Readonly<C>;
  /** Merges keys into the job's public Content (a key set to undefined is removed). */
  setContent(partial: Partial<C>): void;
  /** Sets the progress fraction (0 to 1). */
  setProgress(p: number): void;
  /**
   * Runs the stretch of a link job that may give way to one of higher Priority (its bucket phase): the
   * signal is then aborted with 'preempt' and the job goes back to Pending until no such job is left.
   */
  preemptible<T>(work: () => Promise<T>): Promise<T>;
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
  /** The job moves data over the node's link: it gives way to a runnable link job of higher Priority. */
  readonly sharesLink?: boolean;
  /**
   * While the job waits preempted, called every `keepAliveMs` (none when 0 or absent) to keep what it holds
   * remotely from expiring (a push's transaction); best effort, never throws.
   */
  keepAlive?(ctx: JobRunContext<Q, C, P>): Promise<void>;
  readonly keepAliveMs?: number;
}

/** Any kind of job, as the engine sees it (each runner narrows its own query, Content and state). */
export type AnyJobRunner = JobRunner<unknown, Record<string, unknown>, unknown>;

export type JobRunnerFactory = (type: JobType) => AnyJobRunner;
