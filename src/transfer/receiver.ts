// The push receiver (docs/protocol.md#push-create to #discard, and #commit): push transactions, each with its
// own staging area, written bucket by bucket in parallel (no global lock), kept on disk so that a restart
// resumes them, bounded in number (LRU eviction of transactions idle for a while, never of an active one),
// expired when idle, and committed atomically through the store. The outcome of each commit is kept on disk
// for a day, so that a sender whose answer was lost learns it instead of committing twice (extension
// async-commit).
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { z } from 'zod';
import { XferError, isXferError } from '../errors.ts';
import { bucketSize } from '../protocol/buckets.ts';
import { ByteCounter } from '../protocol/compression.ts';
import {
  PushCreateSchema,
  parsePushCreate,
  sortUniqueInstances,
  toWirePushCreate,
  toWirePushHandle,
  type PushCreateBody,
  type Bucket,
  type JobHandle,
} from '../protocol/wire.ts';
import type { Store } from '../store/types.ts';
import { fsyncDir, freeBytes } from '../util/fs.ts';
import { readStored, storedCodec, type StoredCodec } from '../util/stored-json.ts';
import { BUCKET_CHECKSUM_STATUS, CRC32_HEX, CRC32_MEMBER, HEADER_CRC32 } from './capabilities.ts';
import { MAX_SPAN_BUCKETS, joinChunks } from './spans.ts';
import { StagingArea, fileError, writtenBy } from './staging.ts';

/** Instances one push transaction may declare unless told otherwise (Transfers.MaxPushInstances). */
const DEFAULT_MAX_INSTANCES = 100_000;

/** Bytes always left free on the staging disk when a transaction is created. */
export const STAGING_DISK_RESERVE = 64 * 1024 * 1024;

const MANIFEST = 'manifest.json';
const DONE_LOG = 'buckets.log';
const MANIFEST_VERSION = 1;
/** Directory (beside `push/`) of the recorded commit outcomes, one `<tx>.json` each. */
const OUTCOMES_DIR = 'push-outcomes';
/** How long the outcome of a commit is kept for a sender that asks again. */
export const OUTCOME_RETENTION_MS = 24 * 60 * 60 * 1000;
/** Most outcomes kept (the oldest go first beyond this). */
const MAX_OUTCOMES = 10_000;

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
  compression: 'gzip' | 'none';
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
  /** Seconds without activity after which a transaction is dropped (0 = never). */
  idleTimeoutSeconds: number;
  /**
   * Seconds without a request after which a transaction may be evicted to make room for a new one
   * (Transfers.IdleBeforeEviction); default 0: as soon as no request is in flight.
   */
  idleBeforeEvictionSeconds?: number;
  /** Most instances one transaction may declare (Transfers.MaxPushInstances); default 100,000. */
  maxInstances?: number;
  logger?: Logger;
}

/**
 * Where a transaction stands, for a sender following it (`GET /transfers/push/{tx}/state`): still open
 * (with its buckets), being committed, or its commit's recorded outcome.
 */
export type PushTransactionState =
  | { State: 'Open'; Buckets: number; BucketsDone: number; LastCommitStatus?: number; LastCommitDetails?: string }
  | { State: 'Committing' }
  | { State: 'Success' }
  | { State: 'Failure'; Details: string };


type TxState = 'creating' | 'open' | 'committing';


interface Transaction {
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
function isDiskFull(e: unknown): boolean {
  let cur: unknown = e;
  for (let depth = 0; depth < 8 && typeof cur === 'object' && cur !== null; depth++) {
    if (isXferError(cur, 'FullStorage')) return true;
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && DISK_FULL_CODES.has(code)) return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}

/** Transaction IDs are lowercase UUIDs; the route accepts `[.0-9a-f-]+`, anything else is unknown. */
const TX_ID = /^[.0-9a-f-]{1,64}$/;

/** The manifest of a transaction, as kept in its staging directory (the create body in its wire form). */
const ManifestSchema = z.object({
  Version: z.literal(MANIFEST_VERSION),
  ID: z.string().regex(TX_ID),
  CreatedAt: z.number().int(),
  LastActivity: z.number().int(),
  Create: PushCreateSchema,
});
export type Manifest = z.output<typeof ManifestSchema>;

/** Manifests in and out: a manifest that does not read back (damaged, other version) is refused. */
export const manifestCodec: StoredCodec<Manifest> = {
  toJSON: (m) => JSON.stringify({ ...m, Create: toWirePushCreate(m.Create) }),
  fromJSON: (text) => readStored(ManifestSchema, text, 'manifest'),
};

/** A commit's outcome as recorded on disk; At is the epoch ms of the end of the commit. */
const CommitOutcomeSchema = z.object({
  ID: z.string().regex(TX_ID),
  State: z.enum(['Success', 'Failure']),
  Details: z.string().optional(),
  At: z.number().int(),
});
type CommitOutcome = z.output<typeof CommitOutcomeSchema>;
export const commitOutcomeCodec = storedCodec(CommitOutcomeSchema, 'commit outcome');

/** One line of a transaction's log of received buckets. */
const DoneEntrySchema = z.object({ Bucket: z.number().int().nonnegative(), At: z.number().int() });
export const doneEntryCodec = storedCodec(DoneEntrySchema, 'received bucket');

export class PushReceiver {
  readonly counters: PushReceiverCounters = {
    created: 0,
    committed: 0,
    failedCommits: 0,
    discarded: 0,
    evicted: 0,
    refused: 0,
    checksumRefusals: 0,
    expired: 0,
    receivedBytes: 0,
    receptionMs: 0,
    commitMs: 0,
    buckets: 0,
    bucketBytes: 0,
    wireBytes: 0,
  };
  readonly #store: Store;
  readonly #root: string;
  readonly #max: number;
  readonly #idleMs: number;
  readonly #evictIdleMs: number;
  readonly #maxInstances: number;
  readonly #outcomesDir: string;
  /** Recorded commit outcomes by transaction ID, oldest first. */
  readonly #outcomes = new Map<string, CommitOutcome>();
  readonly #log: Logger | undefined;
  /** Held transactions, least recently used first (Map keeps insertion order; a touch re-inserts). */
  readonly #txs = new Map<string, Transaction>();
  /** Removals and other work running in the background, awaited by close(). */
  readonly #background = new Set<Promise<unknown>>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(opts: PushReceiverOptions) {
    this.#store = opts.store;
    this.#root = join(opts.store.stagingRoot(), 'push');
    this.#max = Math.max(1, Math.floor(opts.maxTransactions));
    this.#idleMs = Math.max(0, opts.idleTimeoutSeconds) * 1000;
    this.#evictIdleMs = Math.max(0, opts.idleBeforeEvictionSeconds ?? 0) * 1000;
    this.#maxInstances = Math.max(1, Math.floor(opts.maxInstances ?? DEFAULT_MAX_INSTANCES));
    this.#outcomesDir = join(opts.store.stagingRoot(), OUTCOMES_DIR);
    this.#log = opts.logger;
  }

  /**
   * Opens the receiver: reloads the transactions found under `<stagingRoot>/push/` (removing the ones
   * whose manifest or files are damaged, and the oldest beyond maxTransactions) and the recorded commit
   * outcomes, and starts the expiry timer.
   */
  static async open(opts: PushReceiverOptions): Promise<PushReceiver> {
    const r = new PushReceiver(opts);
    await mkdir(r.#root, { recursive: true });
    await mkdir(r.#outcomesDir, { recursive: true });
    await r.#reload();
    await r.#loadOutcomes();
    const every = r.#idleMs > 0 ? Math.min(60_000, Math.max(250, Math.floor(r.#idleMs / 4))) : 60_000;
    r.#timer = setInterval(() => r.#expire(), every);
    r.#timer.unref();
    return r;
  }

  /** Directory holding the push transactions' staging areas. */
  get root(): string {
    return this.#root;
  }

  /** Transactions held now. */
  get held(): number {
    return this.#txs.size;
  }

  /** Transactions that can still be created without evicting one (the plugin's available_push_count). */
  get available(): number {
    return Math.max(0, this.#max - this.#txs.size);
  }

  /** The held transactions, least recently used first. */
  list(): PushTransactionInfo[] {
    return [...this.#txs.values()].map((t) => this.#info(t));
  }

  /** One transaction; UnknownResource when it is not held. */
  info(id: string): PushTransactionInfo {
    return this.#info(this.#get(id));
  }

  /** Indices of the buckets of a transaction written completely and flushed, sorted. UnknownResource. */
  bucketsDone(id: string): number[] {
    return [...this.#get(id).done].sort((a, b) => a - b);
  }

  /**
   * The buckets a resuming sender need not send again (extension resume): as bucketsDone, and the
   * question counts as activity (the transaction is in use). UnknownResource when not held.
   */
  bucketsHeld(id: string): number[] {
    const tx = this.#get(id);
    this.#touch(tx);
    return this.bucketsDone(id);
  }

  /**
   * Where a transaction stands (extension async-commit): Open, Committing, or the recorded outcome of
   * its commit once it is no longer held. UnknownResource when neither held nor recently committed.
   */
  state(id: string): PushTransactionState {
    const tx = TX_ID.test(id) ? this.#txs.get(id) : undefined;
    if (tx) {
      this.#touch(tx);
      if (tx.state === 'committing') return { State: 'Committing' };
      const open: PushTransactionState = { State: 'Open', Buckets: tx.body.Buckets.length, BucketsDone: tx.done.size };
      // A commit that found the disk full: the sender learns why the transaction is open again.
      if (tx.commitFailure) return { ...open, LastCommitStatus: tx.commitFailure.status, LastCommitDetails: tx.commitFailure.details };
      return open;
    }
    const o = this.#outcomes.get(id);
    if (!o) throw new XferError('UnknownResource', `no push transaction ${id}`);
    return o.State === 'Success' ? { State: 'Success' } : { State: 'Failure', Details: o.Details ?? '' };
  }
  // ---- create ----------------------------------------------------------------------------------

  /**
   * Creates a transaction from a create body (parsed JSON). 413 when it declares more instances than
   * maxInstances (checked first); BadFileFormat / ParameterOutOfRange for a bad body; 503 when every held transaction has a request in flight (nothing changes); FullStorage
   * (507) when the declared total does not fit on the staging disk, counting what the other
   * transactions may still write (nothing changes). Otherwise evicts the least recently used idle
   * transaction if the receiver is full, makes its staging area (files come with their buckets), writes the manifest and answers
   * `{ID, Path}`.
   */
  async create(body: unknown): Promise<JobHandle> {
    this.#checkOpen();
    // The declared count, before anything is built per instance.
    const declared = (body as { Instances?: unknown } | null | undefined)?.Instances;
    if (Array.isArray(declared) && declared.length > this.#maxInstances) {
      throw new XferError(
        'BadRequest',
        `the transaction declares ${declared.length} instances, more than the ${this.#maxInstances} this node accepts in one (Transfers.MaxPushInstances)`,
        { httpStatus: 413 },
      );
    }
    const parsed = parsePushCreate(body);
    const create: PushCreateBody = { ...parsed, Instances: sortUniqueInstances(parsed.Instances) };
    let total = 0;
    for (const i of create.Instances) total += i.Size;
    this.#victim(); // 503 early, before the disk is even asked
    const free = await freeBytes(this.#root);
    const victim = this.#victim();
    let reserved = STAGING_DISK_RESERVE;
    for (const t of this.#txs.values()) if (t !== victim) reserved += this.#stillToWrite(t);
    if (total > free - reserved) {
      throw new XferError(
        'FullStorage',
        `the transfer declares ${total} bytes but the staging disk has room for ${Math.max(0, free - reserved)}`,
      );
    }
    // From here on, synchronous until the new transaction is registered: the checks above still hold.
    const evicted = victim ? this.#drop(victim, 'evicted') : undefined;
    const id = randomUUID();
    const now = Date.now();
    const tx: Transaction = {
      id,
      dir: join(this.#root, id),
      body: create,
      total,
      bucketTotals: create.Buckets.map(bucketSize),
      area: undefined,
      state: 'creating',
      createdAt: now,
      lastActivity: now,
      done: new Set(),
      inFlight: 1,
      ops: new Set(),
      abort: new AbortController(),
      commit: undefined,
      received: 0,
    };
    this.#txs.set(id, tx);
    try {
      // The victim had no request in flight, so its files go at once; its disk space is counted free.
      await evicted;
      tx.area = await StagingArea.create(tx.dir, create.Instances);
      await this.#writeManifest(tx);
    } catch (e) {
      this.#txs.delete(id);
      await rm(tx.dir, { recursive: true, force: true }).catch(() => undefined);
      throw fileError(e, 'cannot create the push transaction');
    } finally {
      tx.inFlight--;
    }
    tx.state = 'open';
    this.counters.created++;
    // The store makes ready for the commit while the buckets come.
    void this.#store.prepareFiles?.(create.Instances.length);
    this.#log?.info({ tx: id, instances: create.Instances.length, buckets: create.Buckets.length, bytes: total, evicted: victim?.id }, 'push transaction created');
    return toWirePushHandle(id);
  }

  /**
   * The transaction to evict to make room, undefined when there is room: the least recently used one
   * with no request in flight and none for IdleBeforeEviction. An active transaction is never evicted:
   * 503 (which senders retry) when none qualifies.
   */
  #victim(): Transaction | undefined {
    if (this.#txs.size < this.#max) return undefined;
    const now = Date.now();
    for (const t of this.#txs.values()) {
      if (t.state === 'open' && t.inFlight === 0 && now - t.lastActivity >= this.#evictIdleMs) return t;
    }
    this.counters.refused++;
    throw new XferError(
      'InternalError',
      `all ${this.#max} push transactions are in use (Transfers.MaxPushTransactions; one is evicted only after ${this.#evictIdleMs / 1000} s without a request); try again later`,
      { httpStatus: 503 },
    );
  }

  /** Declared bytes of the buckets not yet written (an upper bound of what it may still add to disk). */
  #stillToWrite(t: Transaction): number {
    let left = t.total;
    for (const i of t.done) left -= t.bucketTotals[i] ?? 0;
    return Math.max(0, left);
  }

  // ---- buckets ---------------------------------------------------------------------------------

  /**
   * Receives bucket `index` of a transaction from its request body, streamed. UnknownResource (404)
   * for an unknown transaction; BadSequenceOfCalls (400) once its commit has started;
   * ParameterOutOfRange (400) for an index outside the bucket list; UnknownResource / ParameterOutOfRange
   * when the bucket names an undeclared instance or runs past one (checked before any byte is read);
   * BadFileFormat (400) for corrupt gzip; NetworkProtocol (500) when the payload length differs from
   * the bucket total. Buckets may come in any order, several at once, and more than once. Once the data
   * is on disk the bucket is recorded as done in the transaction's log.
   *
   * With `crc32` (extension bucket-crc32: the CRC-32 of the uncompressed payload, or CRC32_MEMBER for a
   * gzip body whose trailer is that checksum), the payload is checked as it is written; a mismatch (or a payload damaged past inflating) is refused with
   * CorruptedFile and status BUCKET_CHECKSUM_STATUS (422), and the bucket is not recorded: the sender
   * sends it again, and its bytes overwrite the damaged ones.
   */
  async putBucket(
    id: string,
    index: number,
    body: AsyncIterable<Buffer> | Readable,
    opts: { crc32?: string | undefined; last?: number | undefined } = {},
  ): Promise<ReceivedBytes> {
    this.#checkOpen();
    const tx = this.#get(id);
    if (opts.crc32 !== undefined && !CRC32_HEX.test(opts.crc32) && !(opts.crc32 === CRC32_MEMBER && tx.body.Compression === 'gzip')) {
      throw new XferError('BadRequest', `${HEADER_CRC32} must be 8 lowercase hexadecimal digits (or "${CRC32_MEMBER}" with gzip)`);
    }
    if (tx.state !== 'open') {
      throw new XferError('BadSequenceOfCalls', `push transaction ${id} is being ${tx.state === 'committing' ? 'committed' : 'created'}`);
    }
    const count = tx.body.Buckets.length;
    const last = opts.last ?? index;
    if (!(Number.isSafeInteger(index) && index >= 0 && index < count)) {
      throw new XferError('ParameterOutOfRange', `bucket ${index} of a transaction with ${count} bucket${count === 1 ? '' : 's'}`);
    }
    if (!(Number.isSafeInteger(last) && last >= index && last < count)) {
      throw new XferError('ParameterOutOfRange', `buckets ${index}-${last} of a transaction with ${count} bucket${count === 1 ? '' : 's'}`);
    }
    if (last - index + 1 > MAX_SPAN_BUCKETS) {
      throw new XferError('ParameterOutOfRange', `a span of ${last - index + 1} buckets (at most ${MAX_SPAN_BUCKETS})`);
    }
    // A span (extension bucket-span) is the buckets' chunks in order: one payload, written the same way.
    const bucket = last === index ? (tx.body.Buckets[index] as Bucket) : joinChunks(tx.body.Buckets.slice(index, last + 1));
    const indexes: number[] = [];
    for (let i = index; i <= last; i++) indexes.push(i);
    const area = tx.area as StagingArea;
    area.checkBucket(bucket);
    this.#touch(tx);
    tx.inFlight++;
    const counter = new ByteCounter((n) => {
      this.counters.wireBytes += n;
      tx.received += n;
    });
    const work = (async () => {
      let bytes: number;
      try {
        bytes = await area.writeBucket(bucket, body, {
          gunzip: tx.body.Compression === 'gzip',
          signal: tx.abort.signal,
          before: [counter],
          crc32: opts.crc32,
        });
      } catch (e) {
        if (isXferError(e) && e.http === BUCKET_CHECKSUM_STATUS) this.counters.checksumRefusals++;
        throw e;
      }
      if (tx.abort.signal.aborted) throw new XferError('UnknownResource', `push transaction ${id} was discarded`);
      const at = Date.now();
      await this.#logDone(tx, indexes, at);
      for (const i of indexes) tx.done.add(i);
      this.counters.buckets += indexes.length;
      this.counters.bucketBytes += bytes;
    })();
    tx.ops.add(work);
    try {
      await work;
      return { bytes: tx.received, at: Math.round(performance.now()) };
    } finally {
      tx.ops.delete(work);
      tx.inFlight--;
      tx.lastActivity = Date.now();
      if (this.#txs.get(id) === tx) this.#touch(tx);
    }
  }

  async #logDone(tx: Transaction, indexes: readonly number[], at: number): Promise<void> {
    const fh = await open(join(tx.dir, DONE_LOG), 'a');
    try {
      await fh.write(indexes.map((i) => `${doneEntryCodec.toJSON({ Bucket: i, At: at })}\n`).join(''));
      await fh.datasync();
    } catch (e) {
      throw fileError(e, 'cannot record a received bucket');
    } finally {
      await fh.close();
    }
  }

  // ---- commit and discard ----------------------------------------------------------------------

  /**
   * Commits a transaction: waits for its PUTs still running, then has the store check every MD5 and
   * adopt every instance at once, or none. The transaction and its staging are gone afterwards in both
   * cases, except when the disk is full: FullStorage (507), nothing stored, and the transaction stays open
   * to be committed again once there is room. UnknownResource (404) for an unknown transaction;
   * CorruptedFile (500) naming the refused instances when the commit fails, nothing of the transfer being
   * visible. A second commit of a
   * transaction being committed (a retry) waits for the same outcome.
   */
  async commit(id: string): Promise<void> {
    this.#checkOpen();
    const tx = this.#get(id);
    if (tx.state === 'creating') throw new XferError('BadSequenceOfCalls', `push transaction ${id} is being created`);
    tx.commit ??= this.#commit(tx);
    return tx.commit;
  }

  /**
   * Starts the commit of a transaction and answers at once (extension async-commit): Committing while
   * it runs (follow it with state()), or the recorded outcome when the transaction was committed already
   * (a retry whose first answer was lost: nothing is done twice). UnknownResource (404) when neither held
   * nor recently committed; BadSequenceOfCalls while it is being created.
   */
  commitAsync(id: string): PushTransactionState {
    this.#checkOpen();
    const tx = TX_ID.test(id) ? this.#txs.get(id) : undefined;
    if (!tx) return this.state(id);
    if (tx.state === 'creating') throw new XferError('BadSequenceOfCalls', `push transaction ${id} is being created`);
    tx.commit ??= this.#commit(tx);
    // The outcome is recorded; the sender reads it through state().
    tx.commit.catch(() => undefined);
    return { State: 'Committing' };
  }

  /**
   * state() once the commit running on `id` has ended, or after `maxMs`, whichever comes first, so that a
   * sender following an asynchronous commit learns its end at once instead of polling.
   */
  async waitState(id: string, maxMs: number): Promise<PushTransactionState> {
    const tx = TX_ID.test(id) ? this.#txs.get(id) : undefined;
    if (tx?.commit && maxMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        tx.commit.catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, maxMs);
        }),
      ]);
      clearTimeout(timer);
    }
    return this.state(id);
  }

  async #commit(tx: Transaction): Promise<void> {
    tx.state = 'committing';
    tx.commitFailure = undefined;
    tx.inFlight++;
    const done = (async () => {
      await Promise.allSettled([...tx.ops]);
      const start = Date.now();
      const area = tx.area as StagingArea;
      let keep = false;
      this.counters.receivedBytes += area.totalSize;
      this.counters.receptionMs += start - tx.createdAt;
      try {
        const result = await this.#store.commitStaged(await area.staged());
        this.counters.committed++;
        this.counters.commitMs += Date.now() - start;
        this.#log?.info(
          { tx: tx.id, stored: result.stored.length, alreadyStored: result.alreadyStored.length, ms: Date.now() - start },
          'push transaction committed',
        );
        await this.#recordOutcome({ ID: tx.id, State: 'Success', At: Date.now() });
      } catch (e) {
        if (isDiskFull(e)) {
          // Nothing was stored and the staged files are intact: the transaction stays, for the sender to
          // commit again once there is room (a full disk is no fault of the data).
          keep = true;
          const why = isXferError(e) ? (e.details ?? e.message) : e instanceof Error ? e.message : String(e);
          const err = new XferError(
            'FullStorage',
            `the receiver's disk is full: commit of push transaction ${tx.id} stored nothing (${why}); the transaction is kept, commit it again once there is room`,
            { cause: e },
          );
          tx.commitFailure = { status: err.http, details: err.details ?? err.message };
          this.#log?.warn({ tx: tx.id, details: err.details }, 'push transaction commit failed for a full disk; transaction kept');
          throw err;
        }
        this.counters.failedCommits++;
        const err = isXferError(e, 'CorruptedFile')
          ? e
          : new XferError('CorruptedFile', `commit of push transaction ${tx.id} failed, nothing stored: ${isXferError(e) ? (e.details ?? e.message) : String(e)}`, { cause: e });
        this.#log?.warn({ tx: tx.id, details: err.details }, 'push transaction commit failed; transaction removed');
        await this.#recordOutcome({ ID: tx.id, State: 'Failure', Details: err.details ?? err.message, At: Date.now() });
        throw err;
      } finally {
        tx.inFlight--;
        if (keep) {
          tx.state = 'open';
          tx.commit = undefined;
          tx.lastActivity = Date.now();
        } else {
          if (this.#txs.get(tx.id) === tx) this.#txs.delete(tx.id);
          await area.remove();
        }
      }
    })();
    this.#track(done);
    return done;
  }

  /**
   * Discards a transaction and its staging (DELETE). UnknownResource (404) when unknown;
   * BadSequenceOfCalls (400) while it is being committed. PUTs still running are told to stop; the
   * staging is removed once they have.
   */
  async discard(id: string): Promise<void> {
    this.#checkOpen();
    const tx = this.#get(id);
    if (tx.state === 'committing') throw new XferError('BadSequenceOfCalls', `push transaction ${id} is being committed`);
    const busy = tx.ops.size > 0;
    const removed = this.#drop(tx, 'discarded');
    // Without a PUT running the files go before the answer; a stalled PUT must not hold the DELETE.
    if (!busy) await removed;
  }

  /**
   * Forgets a transaction now and removes its staging once its running requests have stopped; the
   * promise settles (never rejects) when the staging is gone.
   */
  #drop(tx: Transaction, why: 'discarded' | 'evicted' | 'expired'): Promise<void> {
    this.#txs.delete(tx.id);
    this.counters[why]++;
    tx.abort.abort();
    this.#log?.info({ tx: tx.id, why, bucketsDone: tx.done.size, buckets: tx.body.Buckets.length }, `push transaction ${why}`);
    const removal = (async () => {
      await Promise.allSettled([...tx.ops]);
      await rm(tx.dir, { recursive: true, force: true, maxRetries: 2 }).catch(() => undefined);
    })();
    this.#track(removal);
    return removal;
  }

  /**
   * Drops the transactions idle for longer than the timeout, never one with a request in flight, and
   * the commit outcomes older than OUTCOME_RETENTION_MS.
   */
  #expire(): void {
    if (this.#closed) return;
    const now = Date.now();
    if (this.#idleMs > 0) {
      for (const t of [...this.#txs.values()]) {
        if (t.state === 'open' && t.inFlight === 0 && now - t.lastActivity > this.#idleMs) void this.#drop(t, 'expired');
      }
    }
    this.#track(this.#pruneOutcomes(now));
  }

  // ---- commit outcomes -------------------------------------------------------------------------

  /** Records a commit's outcome durably (written, flushed, renamed); a failure to do so is only logged. */
  async #recordOutcome(o: CommitOutcome): Promise<void> {
    this.#outcomes.delete(o.ID);
    this.#outcomes.set(o.ID, o);
    const file = join(this.#outcomesDir, `${o.ID}.json`);
    try {
      const tmp = `${file}.tmp`;
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(commitOutcomeCodec.toJSON(o));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      await fsyncDir(this.#outcomesDir);
    } catch (e) {
      this.#log?.warn({ tx: o.ID, err: String(e) }, 'cannot record the outcome of a commit');
    }
    if (this.#outcomes.size > MAX_OUTCOMES) this.#track(this.#pruneOutcomes(Date.now()));
  }

  async #loadOutcomes(): Promise<void> {
    const found: CommitOutcome[] = [];
    for (const name of await readdir(this.#outcomesDir).catch(() => [] as string[])) {
      const id = name.endsWith('.json') ? name.slice(0, -5) : '';
      if (!TX_ID.test(id)) {
        // A temporary file left by a crash, or something that is not ours.
        await rm(join(this.#outcomesDir, name), { force: true }).catch(() => undefined);
        continue;
      }
      try {
        const o = commitOutcomeCodec.fromJSON(await readFile(join(this.#outcomesDir, name), 'utf8'));
        if (o.ID === id) {
          found.push(o);
          continue;
        }
      } catch (e) {
        // Unreadable (damaged, or from an incompatible version): removed below.
        this.#log?.warn({ file: name, err: isXferError(e) ? e.details : String(e) }, 'removing an unreadable commit outcome');
      }
      await rm(join(this.#outcomesDir, name), { force: true }).catch(() => undefined);
    }
    found.sort((a, b) => a.At - b.At);
    for (const o of found) this.#outcomes.set(o.ID, o);
    await this.#pruneOutcomes(Date.now());
  }

  /** Forgets (and deletes) outcomes older than the retention, and the oldest beyond MAX_OUTCOMES. */
  async #pruneOutcomes(now: number): Promise<void> {
    const gone: string[] = [];
    for (const o of this.#outcomes.values()) {
      if (now - o.At > OUTCOME_RETENTION_MS || this.#outcomes.size - gone.length > MAX_OUTCOMES) gone.push(o.ID);
      else break;
    }
    for (const id of gone) {
      this.#outcomes.delete(id);
      await rm(join(this.#outcomesDir, `${id}.json`), { force: true }).catch(() => undefined);
    }
  }

  /** Stops the expiry timer and waits for the work in flight (commits, removals). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    for (let i = 0; i < 100 && this.#background.size > 0; i++) await Promise.allSettled([...this.#background]);
    const puts = [...this.#txs.values()].flatMap((t) => [...t.ops]);
    await Promise.allSettled(puts);
  }

  // ---- persistence -----------------------------------------------------------------------------

  async #writeManifest(tx: Transaction): Promise<void> {
    const manifest: Manifest = {
      Version: MANIFEST_VERSION,
      ID: tx.id,
      CreatedAt: tx.createdAt,
      LastActivity: tx.lastActivity,
      Create: tx.body,
    };
    const tmp = join(tx.dir, `${MANIFEST}.tmp`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(manifestCodec.toJSON(manifest));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(tx.dir, MANIFEST));
    await fsyncDir(tx.dir);
  }

  async #reload(): Promise<void> {
    const names = await readdir(this.#root).catch(() => [] as string[]);
    const loaded: Transaction[] = [];
    for (const name of names) {
      const dir = join(this.#root, name);
      try {
        loaded.push(await this.#load(name, dir));
      } catch (e) {
        this.#log?.warn({ dir, err: isXferError(e) ? e.details : String(e) }, 'removing an unusable push transaction left by a previous run');
        await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      }
    }
    loaded.sort((a, b) => a.lastActivity - b.lastActivity);
    for (const t of loaded) this.#txs.set(t.id, t);
    while (this.#txs.size > this.#max) {
      const oldest = this.#txs.values().next().value as Transaction;
      await this.#drop(oldest, 'evicted');
    }
    if (loaded.length > 0) this.#log?.info({ transactions: this.#txs.size }, 'push transactions resumed from disk');
  }

  async #load(name: string, dir: string): Promise<Transaction> {
    if (!TX_ID.test(name)) throw new XferError('BadFileFormat', 'not a transaction directory');
    let text: string;
    try {
      text = await readFile(join(dir, MANIFEST), 'utf8');
    } catch (e) {
      throw new XferError('BadFileFormat', `no readable manifest: ${(e as Error).message}`);
    }
    // Damaged, or of another version: BadFileFormat naming the field, and the transaction is discarded.
    const manifest = manifestCodec.fromJSON(text);
    if (manifest.ID !== name) throw new XferError('BadFileFormat', `manifest of another transaction (${manifest.ID})`);
    const body = manifest.Create;
    const done = new Set<number>();
    let last = manifest.LastActivity;
    const log = await readFile(join(dir, DONE_LOG), 'utf8').catch(() => '');
    for (const line of log.split('\n')) {
      // A line torn by a crash (or otherwise unreadable) is ignored: that bucket will simply be sent again.
      let entry: z.output<typeof DoneEntrySchema>;
      try {
        entry = doneEntryCodec.fromJSON(line);
      } catch {
        continue;
      }
      if (entry.Bucket < body.Buckets.length) done.add(entry.Bucket);
      last = Math.max(last, entry.At);
    }
    const area = await StagingArea.open(dir, body.Instances, writtenBy(body.Buckets, done));
    return {
      id: name,
      dir,
      body: { ...body, Instances: area.instances },
      total: area.totalSize,
      bucketTotals: body.Buckets.map(bucketSize),
      area,
      state: 'open',
      createdAt: manifest.CreatedAt,
      lastActivity: last,
      done,
      inFlight: 0,
      ops: new Set(),
      abort: new AbortController(),
      commit: undefined,
      received: 0,
    };
  }

  // ---- helpers ---------------------------------------------------------------------------------

  #get(id: string): Transaction {
    const tx = TX_ID.test(id) ? this.#txs.get(id) : undefined;
    if (!tx) throw new XferError('UnknownResource', `no push transaction ${id}`);
    return tx;
  }

  /** Marks a transaction most recently used. */
  #touch(tx: Transaction): void {
    tx.lastActivity = Date.now();
    this.#txs.delete(tx.id);
    this.#txs.set(tx.id, tx);
  }

  #track(p: Promise<unknown>): void {
    const quiet = p.catch(() => undefined);
    this.#background.add(quiet);
    void quiet.finally(() => this.#background.delete(quiet));
  }

  #checkOpen(): void {
    if (this.#closed) throw new XferError('InternalError', 'the push receiver is stopping', { httpStatus: 503 });
  }

  #info(t: Transaction): PushTransactionInfo {
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
}
