// The shapes of the push receiver: its options and counters, what it answers about a transaction, and a
// transaction as held in memory while this process serves it (its durable part is in push-state/).
import { join } from 'node:path';
import type { Logger } from 'pino';
import { XferError, isXferError } from '../errors.ts';
import { bucketSize } from '../protocol/buckets.ts';
import { readPushCreate } from '../protocol/push-create.ts';
import { refuseUnlistedZstd, sortUniqueInstances, type Bucket, type Compression, type PushCreateBody } from '../protocol/wire.ts';
import type { Store } from '../store/types.ts';
import type { ArrivalSink } from '../routing/arrivals.ts';
import type { RequestSender } from '../routing/origin.ts';
import type { PushTransactionState, StoredPushTransaction } from './push-state/types.ts';
import { MAX_SPAN_BUCKETS, joinChunks } from './spans.ts';
import { StagingArea, writtenBy } from './staging.ts';

/** Cumulative figures of the receiver, for metrics (docs/protocol.md#metrics and dicom-xfer's own). */
export interface PushReceiverCounters {
  /** Transactions created. */
  created: number;
  /** Transactions committed successfully. */
  committed: number;
  /** Commits that failed (nothing stored, transaction removed). */
  failedCommits: number;
  /** Transactions discarded by DELETE (the plugin counts these as "committed"). */
  discarded: number;
  /** Transactions evicted (least recently used) to make room for a new one. */
  evicted: number;
  /** Creates refused with 503 because every held transaction was in use. */
  refused: number;
  /** Creates that waited their turn for room (Transfers.PushAdmissionWait). */
  waitedCreates: number;
  /** Buckets refused because their payload's CRC-32 differed from the sender's (x-dicom-xfer-crc32). */
  checksumRefusals: number;
  /** Transactions removed after IdleTransactionTimeout without activity. */
  expired: number;
  /** Declared bytes of the transactions that reached commit (added when the commit starts). */
  receivedBytes: number;
  /** Sum over commits of (commit start - creation), in ms. */
  receptionMs: number;
  /** Sum of the durations of successful commits, in ms. */
  commitMs: number;
  /** Buckets written completely. */
  buckets: number;
  /** Uncompressed bucket bytes written into staging files. */
  bucketBytes: number;
  /** Request body bytes received by bucket PUTs (compressed when gzip). */
  wireBytes: number;
}

/** What a transaction looks like from outside (for logs, a status route, tests). */
export interface PushTransactionInfo {
  id: string;
  state: TxState;
  compression: Compression;
  instances: number;
  buckets: number;
  bucketsDone: number;
  totalSize: number;
  createdAt: number;
  lastActivity: number;
  requestsInFlight: number;
}

export interface PushReceiverOptions {
  store: Store;
  /** Transactions held at once (Transfers.MaxPushTransactions); at least 1. */
  maxTransactions: number;
  /**
   * Bytes the held transactions may take in memory together, each counted as admission.ts's
   * transactionMemory of its declared instances (Transfers.PushTransactionsMemory); 0 or absent: no bound.
   */
  maxTransactionsMemory?: number;
  /** Seconds without activity after which a transaction is dropped (0 = never). */
  idleTimeoutSeconds: number;
  /**
   * Seconds without a request after which a transaction may be evicted to make room for a new one
   * (Transfers.IdleBeforeEviction); default 0: as soon as no request is in flight.
   */
  idleBeforeEvictionSeconds?: number;
  /**
   * Milliseconds a create may wait, in turn with the others, for room when every transaction is held and
   * none may be evicted, before it is answered 503; default DEFAULT_ADMISSION_WAIT_MS (admission.ts).
   */
  admissionWaitMs?: number;
  /** Most instances one transaction may declare (Transfers.MaxPushInstances); default 100,000. */
  maxInstances?: number;
  /** Whether the node lists the extension zstd: otherwise a create with Compression "zstd" is refused. */
  zstd?: boolean;
  logger?: Logger;
  /**
   * Where the transactions' state is kept (the receiver closes it with itself); default: files beside
   * their staging (push-state/files.ts).
   */
  state?: PushTransactionState;
  /** Told of the instances each commit stored, with the peer that sent them (routing). */
  arrivals?: ArrivalSink;
  /** The name of the peer that sent a request under OrthancPeers ('' when none). */
  senderPeer?: (sender: RequestSender) => Promise<string>;
}

/**
 * Where a transaction stands, for a sender following it (`GET /transfers/push/{tx}/state`): still open
 * (with its buckets), being committed, or its commit's recorded outcome.
 */
export type PushTransactionStatus =
  | { State: 'Open'; Buckets: number; BucketsDone: number; LastCommitStatus?: number; LastCommitDetails?: string }
  | { State: 'Committing' }
  | { State: 'Success' }
  | { State: 'Failure'; Details: string };

export type TxState = 'creating' | 'open' | 'committing';

/** A transaction held by this process. */
export interface Transaction {
  id: string;
  dir: string;
  body: PushCreateBody;
  /** Sum of the declared instance sizes. */
  total: number;
  /** Payload size of each bucket. */
  bucketTotals: number[];
  area: StagingArea | undefined;
  state: TxState;
  createdAt: number;
  lastActivity: number;
  done: Set<number>;
  /** Requests being served for this transaction (PUTs, the create itself). */
  inFlight: number;
  /** Settles when the in-flight PUTs have; the commit and the removal wait for them. */
  ops: Set<Promise<unknown>>;
  /** Aborted when the transaction is discarded while a PUT runs. */
  abort: AbortController;
  commit: Promise<void> | undefined;
  /** Request body bytes received by its PUTs since this process holds it (extension receiver-progress). */
  received: number;
  /** The last commit ran out of disk (507): the transaction is kept, to be committed again. */
  commitFailure?: { status: number; details: string } | undefined;
}

/** What a bucket PUT answers with (extension receiver-progress). */
export interface ReceivedBytes {
  /** Request body bytes the transaction's PUTs have received (on the wire: compressed with gzip). */
  bytes: number;
  /** When, in ms on this process' monotonic clock. */
  at: number;
}

/** System and SQLite codes of a file system (or quota) without room. */
const DISK_FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'SQLITE_FULL']);

/** Whether a failure comes from a full disk: FullStorage, or a full-disk code along its causes. */
export function isDiskFull(e: unknown): boolean {
  let cur: unknown = e;
  for (let depth = 0; depth < 8 && typeof cur === 'object' && cur !== null; depth++) {
    if (isXferError(cur, 'FullStorage')) return true;
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && DISK_FULL_CODES.has(code)) return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}
/** A transaction as held from its creation or its reload: what is given, and nothing in flight. */
export function heldTransaction(
  t: Pick<Transaction, 'id' | 'dir' | 'body' | 'total' | 'area' | 'state' | 'createdAt' | 'lastActivity' | 'done' | 'inFlight'>,
): Transaction {
  return {
    ...t,
    bucketTotals: t.body.Buckets.map(bucketSize),
    ops: new Set(),
    abort: new AbortController(),
    commit: undefined,
    received: 0,
  };
}

/** What a receiver accepts in a create: at most this many instances, and zstd only when it lists it. */
export interface CreateLimits {
  maxInstances: number;
  zstd: boolean;
}

/**
 * A create body (parsed JSON) checked and normalised (instances sorted and unique). 413 when it declares
 * more instances than `maxInstances`, checked before anything is built per instance; BadFileFormat /
 * ParameterOutOfRange for a bad body, and for Compression "zstd" unless `zstd` (the node lists it).
 */
export function parseCreate(body: unknown, { maxInstances, zstd }: CreateLimits): PushCreateBody {
  const declared = (body as { Instances?: unknown } | null | undefined)?.Instances;
  if (Array.isArray(declared) && declared.length > maxInstances) {
    throw new XferError(
      'BadRequest',
      `the transaction declares ${declared.length} instances, more than the ${maxInstances} this node accepts in one ` +
        `(Transfers.MaxPushInstances)`,
      { httpStatus: 413 },
    );
  }
  const parsed = readPushCreate(body);
  refuseUnlistedZstd(parsed.Compression, zstd);
  return { ...parsed, Instances: sortUniqueInstances(parsed.Instances) };
}

/**
 * Buckets `index` to `last` of a transaction as one payload to write (extension bucket-span: the buckets'
 * chunks in order), with their indices. ParameterOutOfRange for indices outside the bucket list or a span
 * longer than MAX_SPAN_BUCKETS.
 */
export function bucketSpan(body: PushCreateBody, index: number, last: number): { bucket: Bucket; indexes: number[] } {
  const count = body.Buckets.length;
  const of = `of a transaction with ${count} bucket${count === 1 ? '' : 's'}`;
  if (!(Number.isSafeInteger(index) && index >= 0 && index < count)) throw new XferError('ParameterOutOfRange', `bucket ${index} ${of}`);
  if (!(Number.isSafeInteger(last) && last >= index && last < count)) {
    throw new XferError('ParameterOutOfRange', `buckets ${index}-${last} ${of}`);
  }
  if (last - index + 1 > MAX_SPAN_BUCKETS) {
    throw new XferError('ParameterOutOfRange', `a span of ${last - index + 1} buckets (at most ${MAX_SPAN_BUCKETS})`);
  }
  const bucket = last === index ? (body.Buckets[index] as Bucket) : joinChunks(body.Buckets.slice(index, last + 1));
  const indexes: number[] = [];
  for (let i = index; i <= last; i++) indexes.push(i);
  return { bucket, indexes };
}

/** What a transaction looks like from outside. */
export function infoOf(t: Transaction): PushTransactionInfo {
  return {
    id: t.id,
    state: t.state,
    compression: t.body.Compression,
    instances: t.body.Instances.length,
    buckets: t.body.Buckets.length,
    bucketsDone: t.done.size,
    totalSize: t.total,
    createdAt: t.createdAt,
    lastActivity: t.lastActivity,
    requestsInFlight: t.inFlight,
  };
}

/** Declared bytes of the buckets not yet written (an upper bound of what it may still add to disk). */
export function stillToWrite(t: Transaction): number {
  let left = t.total;
  for (const i of t.done) left -= t.bucketTotals[i] ?? 0;
  return Math.max(0, left);
}

/** A transaction read back from the state, with its staging reopened (InexistentFile when files are missing). */
export async function resumeTransaction(root: string, stored: StoredPushTransaction): Promise<Transaction> {
  const dir = join(root, stored.id);
  const body = stored.create;
  const done = new Set(stored.buckets);
  const area = await StagingArea.open(dir, body.Instances, writtenBy(body.Buckets, done));
  const { createdAt, lastActivity } = stored;
  const total = area.totalSize;
  return heldTransaction({
    id: stored.id,
    dir,
    body: { ...body, Instances: area.instances },
    total,
    area,
    state: 'open',
    createdAt,
    lastActivity,
    done,
    inFlight: 0,
  });
}
