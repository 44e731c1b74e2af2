// Where a node sends instances: the destination seam. A job hands a destination the instances to send and a
// task to report through and to keep its durable state in; the destination alone knows its wire. A transfers
// peer (transfer/peer-destination.ts, the push of the protocol) implements it today; a DICOM modality or a DICOMweb
// server can implement it tomorrow without the jobs, the routes or the dashboard changing.
import type { Logger } from 'pino';
import type { Compression, InstanceInfo } from '../protocol/wire.ts';

/**
 * What a destination gets from the job running a send: its stop signal and log, a place to report (the
 * job's Content keys and progress), and durable memory across pauses and restarts, so that a send resumes
 * where it stopped. A job's run context is one (jobs/engine.ts JobRunContext).
 */
export interface SendTask<State> {
  /** Aborted when the send must stop (pause, cancel, shutdown): the destination stops, keeping its state. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** The state an earlier run saved, undefined on the first run. */
  loadPrivate(): State | undefined;
  /** Saves the state: what a later run resumes from; durable when the promise resolves. */
  savePrivate(state: State): Promise<void>;
  /** Units of work (buckets, instances...) that earlier runs finished, recorded one by one as they end. */
  bucketsDone(): Set<number>;
  markBucketDone(index: number): Promise<void>;
  /** Forgets every finished unit (a new plan). */
  clearBucketsDone(): Promise<void>;
  /** The figures reported so far (the job's Content). */
  content(): Readonly<Record<string, unknown>>;
  /** Merges figures into the report (a key set to undefined is removed). */
  setContent(partial: Record<string, unknown>): void;
  /** The fraction done, 0 to 1. */
  setProgress(fraction: number): void;
  /**
   * Runs the stretch of the send that may give way to a job of higher Priority (its bucket phase): the
   * signal is then aborted with 'preempt', and a later run resumes from the state kept. Absent: none.
   */
  preemptible?<T>(work: () => Promise<T>): Promise<T>;
}

/** What to send. */
export interface SendRequest {
  /** The instances, sorted by ID and distinct, with their size and MD5 from the local store. */
  instances: readonly InstanceInfo[];
  compression: Compression;
  /** Names this transfer to the destination across retries and runs (the protocol's sender-transfer-id). */
  transferId: string;
}

export interface Destination<State> {
  /** What the destination is, for logs and messages ("peer b"). */
  readonly description: string;
  /**
   * Sends every instance of `request`, reporting through `task`, resuming from the state a run before
   * saved there. Resolves when the destination holds them all; rejects with an XferError saying why not
   * (the task's state is kept: a later run resumes), or with the signal's reason when stopped.
   */
  send(request: SendRequest, task: SendTask<State>): Promise<void>;
  /** After a cancel: drops what the destination holds of the unfinished send. Best effort, never throws. */
  abandon(request: Pick<SendRequest, 'transferId'>, task: SendTask<State>): Promise<void>;
  /** While the send waits preempted: keeps what the destination holds of it from expiring. Best effort, never throws. */
  keepAlive?(request: Pick<SendRequest, 'transferId'>, task: SendTask<State>): Promise<void>;
}

/** What the dashboard shows of one destination (its peers page): these keys for every kind, then the kind's own. */
export interface DestinationStatus extends Record<string, unknown> {
  Name: string;
  /** What it is: `transfers-peer` today; a DICOM modality or a DICOMweb server tomorrow. */
  Kind: string;
  /** Where it is, without credentials. */
  Url: string | null;
  Reachable: boolean;
}

/**
 * The node's destinations by name: what a push job sends to and what the dashboard lists. One directory per
 * kind of destination; the composition root hands the jobs and the dashboard the node's.
 */
export interface DestinationDirectory<State> {
  /** The names of every destination, sorted. */
  names(): string[];
  /** The destination of that name; UnknownResource when none is configured under it. */
  get(name: string): Destination<State>;
  /** Every destination's status, asked now (each kind bounds its own wait). */
  statusAll(): Promise<DestinationStatus[]>;
}
