// What the push receiver keeps of its transactions beyond the staged bytes (the create body, the buckets
// received, the outcome of each commit), behind one interface: the files beside the staging today, a
// database shared by several nodes tomorrow, without the transfer code knowing which.
import { z } from 'zod';
import type { PushCreateBody } from '../../protocol/wire.ts';
import { storedCodec } from '../../util/stored-json.ts';

/** Transaction IDs are lowercase UUIDs; the route accepts `[.0-9a-f-]+`, anything else is unknown. */
export const TX_ID = /^[.0-9a-f-]{1,64}$/;

/** How long the outcome of a commit is kept for a sender that asks again. */
export const OUTCOME_RETENTION_MS = 24 * 60 * 60 * 1000;

/** A commit's outcome as recorded; At is the epoch ms of the end of the commit. */
export const CommitOutcomeSchema = z.object({
  ID: z.string().regex(TX_ID),
  State: z.enum(['Success', 'Failure']),
  Details: z.string().optional(),
  At: z.number().int(),
});
export type CommitOutcome = z.output<typeof CommitOutcomeSchema>;
export const commitOutcomeCodec = storedCodec(CommitOutcomeSchema, 'commit outcome');

/** A transaction as created: what must survive a restart for it to be resumed. */
export interface NewPushTransaction {
  id: string;
  /** Epoch ms. */
  createdAt: number;
  /** The create body, instances sorted and unique. */
  create: PushCreateBody;
}

/** A transaction read back (after a restart). */
export interface StoredPushTransaction extends NewPushTransaction {
  /** Epoch ms of its last recorded activity: its creation or the latest bucket recorded. */
  lastActivity: number;
  /** Indices of the buckets recorded as received, sorted, each within the create body's bucket list. */
  buckets: number[];
}

/** One transaction found when reading the state back: usable, or refused with the reason. */
export type ReloadedPushTransaction = { ok: true; tx: StoredPushTransaction } | { ok: false; id: string; reason: string };

/**
 * The durable state of the push transactions. Every method is asynchronous (a database answers later);
 * each is atomic on its own, so that the receiver never needs two calls to stay consistent across a crash.
 * Unknown or malformed IDs are answered as unknown, never as paths or keys of something else.
 */
export interface PushTransactionState {
  /** Records a new transaction, durably before it resolves. */
  create(tx: NewPushTransaction): Promise<void>;
  /**
   * Records buckets as received (their bytes are on disk), durably before it resolves. Recording a bucket
   * twice is harmless. UnknownResource when the transaction is not recorded (deleted, or committed).
   */
  recordBuckets(id: string, indexes: readonly number[], at: number): Promise<void>;
  /**
   * The transactions recorded, oldest activity first; damaged ones (unreadable, of another version, of
   * an unknown transaction) come as refused with the field at fault, for the caller to delete. A
   * transaction whose commit outcome is recorded is not listed.
   */
  list(): Promise<ReloadedPushTransaction[]>;
  /** Forgets a transaction (discarded, expired, evicted, damaged). Idempotent. */
  delete(id: string): Promise<void>;
  /**
   * Ends a transaction with its commit's outcome, in one step: from then on the transaction is not
   * listed and outcome() answers this. Records for an ID even when the transaction is not recorded.
   */
  finishCommit(outcome: CommitOutcome): Promise<void>;
  /** The recorded outcome of a transaction's commit, undefined when none (or pruned). */
  outcome(id: string): Promise<CommitOutcome | undefined>;
  /** Forgets the outcomes older than the retention (measured from `now`, epoch ms) and the oldest beyond the cap. */
  pruneOutcomes(now: number): Promise<void>;
  /** Waits for the work in progress. Idempotent. */
  close(): Promise<void>;
}
