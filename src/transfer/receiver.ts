// The push receiver (docs/protocol.md#push-create to #discard, and #commit): push transactions, each with its
// own staging area, written bucket by bucket in parallel (no global lock), kept on disk so that a restart
// resumes them, bounded in number (LRU eviction of transactions idle for a while, never of an active one),
// expired when idle, and committed atomically through the store. The outcome of each commit is kept on disk
// for a day, so that a sender whose answer was lost learns it instead of committing twice (extension
// async-commit).
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { XferError, isXferError } from '../errors.ts';
import { ByteCounter } from '../protocol/compression.ts';
import { toWirePushHandle, type JobHandle, type PushCreateBody } from '../protocol/wire.ts';
import { committedArrivals } from '../routing/arrivals.ts';
import type { RequestSender } from '../routing/origin.ts';
import type { CommitResult, Store } from '../store/types.ts';
import { freeBytes } from '../util/fs.ts';
import { DEFAULT_ADMISSION_WAIT_MS, PushAdmission } from './admission.ts';
import { BUCKET_CHECKSUM_STATUS, CRC32_HEX, CRC32_MEMBER, HEADER_CRC32 } from './capabilities.ts';
import { reloadTransactions } from './push-reload.ts';
import { FilePushState } from './push-state/files.ts';
import { TX_ID, type CommitOutcome, type PushTransactionState } from './push-state/types.ts';
import {
  bucketSpan,
  heldTransaction,
  infoOf,
  isDiskFull,
  parseCreate,
  stillToWrite,
  type PushReceiverCounters,
  type PushReceiverOptions,
  type PushTransactionInfo,
  type PushTransactionStatus,
  type ReceivedBytes,
  type Transaction,
} from './push-transaction.ts';
import { StagingArea, decoding, fileError } from './staging.ts';

export type {
  PushReceiverCounters,
  PushReceiverOptions,
  PushTransactionInfo,
  PushTransactionStatus,
  ReceivedBytes,
} from './push-transaction.ts';

/** Instances one push transaction may declare unless told otherwise (Transfers.MaxPushInstances). */
const DEFAULT_MAX_INSTANCES = 100_000;

/** Bytes always left free on the staging disk when a transaction is created. */
export const STAGING_DISK_RESERVE = 64 * 1024 * 1024;

/** Directory (beside `push/`) of the recorded commit outcomes of the default state, one `<tx>.json` each. */
const OUTCOMES_DIR = 'push-outcomes';

export class PushReceiver {
  readonly counters: PushReceiverCounters = {
    created: 0,
    committed: 0,
    failedCommits: 0,
    discarded: 0,
    evicted: 0,
    refused: 0,
    waitedCreates: 0,
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
  readonly #idleMs: number;
  readonly #accepts: { maxInstances: number; zstd: boolean };
  /** The durable part of the transactions. */
  readonly #state: PushTransactionState;
  readonly #log: Logger | undefined;
  /** Told of what each commit stored (routing). */
  readonly #routing: Pick<PushReceiverOptions, 'arrivals' | 'senderPeer'>;
  /** Held transactions, least recently used first (Map keeps insertion order; a touch re-inserts). */
  readonly #txs = new Map<string, Transaction>();
  /** Removals and other work running in the background, awaited by close(). */
  readonly #background = new Set<Promise<unknown>>();
  /** Creates waiting for room, served in turn. */
  readonly #admission: PushAdmission;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(opts: PushReceiverOptions, state: PushTransactionState) {
    this.#store = opts.store;
    this.#state = state;
    this.#root = join(opts.store.stagingRoot(), 'push');
    this.#idleMs = Math.max(0, opts.idleTimeoutSeconds) * 1000;
    this.#accepts = { maxInstances: Math.max(1, Math.floor(opts.maxInstances ?? DEFAULT_MAX_INSTANCES)), zstd: opts.zstd ?? false };
    this.#log = opts.logger;
    this.#routing = opts;
    this.#admission = new PushAdmission({
      txs: this.#txs,
      counters: this.counters,
      max: opts.maxTransactions,
      maxMemory: opts.maxTransactionsMemory ?? 0,
      evictIdleMs: Math.max(0, opts.idleBeforeEvictionSeconds ?? 0) * 1000,
      waitMs: opts.admissionWaitMs ?? DEFAULT_ADMISSION_WAIT_MS,
    });
  }

  /**
   * Opens the receiver: reloads the transactions its state holds (removing the ones whose state or
   * staged files are damaged, and the oldest beyond maxTransactions), removes staging directories under
   * `<stagingRoot>/push/` that no transaction owns, and starts the expiry timer. Without `state`, the
   * state is kept in files beside the staging (FilePushState).
   */
  static async open(opts: PushReceiverOptions): Promise<PushReceiver> {
    const staging = opts.store.stagingRoot();
    const state =
      opts.state ??
      (await FilePushState.open({ dir: join(staging, 'push'), outcomesDir: join(staging, OUTCOMES_DIR), logger: opts.logger }));
    const r = new PushReceiver(opts, state);
    await mkdir(r.#root, { recursive: true });
    await r.#reload();
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
    return Math.max(0, this.#admission.max - this.#txs.size);
  }

  /** Creates waiting their turn for room now. */
  get waiting(): number {
    return this.#admission.waiting;
  }

  /** The held transactions, least recently used first. */
  list(): PushTransactionInfo[] {
    return [...this.#txs.values()].map((t) => infoOf(t));
  }

  /** One transaction; UnknownResource when it is not held. */
  info(id: string): PushTransactionInfo {
    return infoOf(this.#get(id));
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
  async state(id: string): Promise<PushTransactionStatus> {
    const tx = TX_ID.test(id) ? this.#txs.get(id) : undefined;
    if (tx) {
      this.#touch(tx);
      if (tx.state === 'committing') return { State: 'Committing' };
      const open: PushTransactionStatus = { State: 'Open', Buckets: tx.body.Buckets.length, BucketsDone: tx.done.size };
      // A commit that found the disk full: the sender learns why the transaction is open again.
      if (tx.commitFailure) return { ...open, LastCommitStatus: tx.commitFailure.status, LastCommitDetails: tx.commitFailure.details };
      return open;
    }
    const o = TX_ID.test(id) ? await this.#state.outcome(id) : undefined;
    if (!o) throw new XferError('UnknownResource', `no push transaction ${id}`);
    return o.State === 'Success' ? { State: 'Success' } : { State: 'Failure', Details: o.Details ?? '' };
  }
  // ---- create ----------------------------------------------------------------------------------

  /**
   * Creates a transaction from a create body (parsed JSON). 413 when it declares more instances than
   * maxInstances (checked first); BadFileFormat / ParameterOutOfRange for a bad body. When every held transaction is in use, the create
   * waits its turn behind the creates already waiting (admission.ts) until one ends or may be evicted, and
   * is answered 503 when none did in time (nothing changes); FullStorage
   * (507) when the declared total does not fit on the staging disk, counting what the other
   * transactions may still write (nothing changes). Otherwise evicts the least recently used idle
   * transaction if the receiver is full, makes its staging area (files come with their buckets), writes the manifest and answers
   * `{ID, Path}`.
   */
  async create(body: unknown): Promise<JobHandle> {
    this.#checkOpen();
    const create = parseCreate(body, this.#accepts);
    // Full: the create waits its turn (FIFO, bounded) for a transaction to end or become evictable.
    const turn = await this.#admission.enter(create.Instances.length);
    let failed = true;
    try {
      this.#checkOpen();
      if (!turn.admitted) this.#admission.refuse();
      const handle = await this.#create(create);
      failed = false;
      return handle;
    } finally {
      turn.done(failed);
    }
  }

  async #create(create: PushCreateBody): Promise<JobHandle> {
    let total = 0;
    for (const i of create.Instances) total += i.Size;
    this.#admission.victims(create.Instances.length); // 503 early, before the disk is even asked
    const free = await freeBytes(this.#root);
    const victims = this.#admission.victims(create.Instances.length);
    let reserved = STAGING_DISK_RESERVE;
    for (const t of this.#txs.values()) if (!victims.includes(t)) reserved += stillToWrite(t);
    if (total > free - reserved) {
      throw new XferError(
        'FullStorage',
        `the transfer declares ${total} bytes but the staging disk has room for ${Math.max(0, free - reserved)}`,
      );
    }
    // From here on, synchronous until the new transaction is registered: the checks above still hold.
    const evicted = Promise.all(victims.map((v) => this.#drop(v, 'evicted')));
    const id = randomUUID();
    const now = Date.now();
    const dir = join(this.#root, id);
    const tx = heldTransaction({
      id,
      dir,
      body: create,
      total,
      area: undefined,
      state: 'creating',
      createdAt: now,
      lastActivity: now,
      done: new Set(),
      inFlight: 1,
    });
    this.#txs.set(id, tx);
    try {
      // The victims had no request in flight, so their files go at once; their disk space is counted free.
      await evicted;
      tx.area = await StagingArea.create(tx.dir, create.Instances, this.#store);
      await this.#state.create({ id, createdAt: now, create });
    } catch (e) {
      this.#txs.delete(id);
      this.#admission.wake();
      await this.#state.delete(id).catch(() => undefined);
      await rm(tx.dir, { recursive: true, force: true }).catch(() => undefined);
      throw fileError(e, 'cannot create the push transaction');
    } finally {
      tx.inFlight--;
    }
    tx.state = 'open';
    this.counters.created++;
    // The store makes ready for the commit while the buckets come.
    void this.#store.prepareFiles?.(create.Instances.length);
    this.#log?.info(
      { tx: id, instances: create.Instances.length, buckets: create.Buckets.length, bytes: total, evicted: victims.map((v) => v.id) },
      'push transaction created',
    );
    return toWirePushHandle(id);
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
   * gzip body whose trailer is that checksum), the payload is checked as it is written; a mismatch (or a
   * payload damaged past inflating) is refused with CorruptedFile and status BUCKET_CHECKSUM_STATUS (422),
   * and the bucket is not recorded: the sender sends it again, and its bytes overwrite the damaged ones.
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
    const { bucket, indexes } = bucketSpan(tx.body, index, opts.last ?? index);
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
          ...decoding(tx.body.Compression),
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
      await this.#state.recordBuckets(id, indexes, at).catch((e: unknown) => {
        throw fileError(e, 'cannot record a received bucket');
      });
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
      if (tx.inFlight === 0 && this.#admission.evictsWhenIdle) this.#admission.wake();
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
  async commit(id: string, sender: RequestSender = {}): Promise<void> {
    this.#checkOpen();
    const tx = this.#get(id);
    if (tx.state === 'creating') throw new XferError('BadSequenceOfCalls', `push transaction ${id} is being created`);
    tx.commit ??= this.#commit(tx, sender);
    return tx.commit;
  }

  /**
   * Starts the commit of a transaction and answers at once (extension async-commit): Committing while
   * it runs (follow it with state()), or the recorded outcome when the transaction was committed already
   * (a retry whose first answer was lost: nothing is done twice). UnknownResource (404) when neither held
   * nor recently committed; BadSequenceOfCalls while it is being created.
   */
  async commitAsync(id: string, sender: RequestSender = {}): Promise<PushTransactionStatus> {
    this.#checkOpen();
    const tx = TX_ID.test(id) ? this.#txs.get(id) : undefined;
    if (!tx) return this.state(id);
    if (tx.state === 'creating') throw new XferError('BadSequenceOfCalls', `push transaction ${id} is being created`);
    tx.commit ??= this.#commit(tx, sender);
    // The outcome is recorded; the sender reads it through state().
    tx.commit.catch(() => undefined);
    return { State: 'Committing' };
  }

  /**
   * state() once the commit running on `id` has ended, or after `maxMs`, whichever comes first, so that a
   * sender following an asynchronous commit learns its end at once instead of polling.
   */
  async waitState(id: string, maxMs: number): Promise<PushTransactionStatus> {
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

  async #commit(tx: Transaction, sender: RequestSender): Promise<void> {
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
        await this.#announce(result, sender);
        await this.#finish({ ID: tx.id, State: 'Success', At: Date.now() });
      } catch (e) {
        if (isDiskFull(e)) {
          // Nothing was stored and the staged files are intact: the transaction stays, for the sender to
          // commit again once there is room (a full disk is no fault of the data).
          keep = true;
          const why = isXferError(e) ? (e.details ?? e.message) : e instanceof Error ? e.message : String(e);
          const err = new XferError(
            'FullStorage',
            `the receiver's disk is full: commit of push transaction ${tx.id} stored nothing (${why}); the transaction is kept, commit ` +
              `it again once there is room`,
            { cause: e },
          );
          tx.commitFailure = { status: err.http, details: err.details ?? err.message };
          this.#log?.warn({ tx: tx.id, details: err.details }, 'push transaction commit failed for a full disk; transaction kept');
          throw err;
        }
        this.counters.failedCommits++;
        const err = isXferError(e, 'CorruptedFile')
          ? e
          : new XferError(
              'CorruptedFile',
              `commit of push transaction ${tx.id} failed, nothing stored: ${isXferError(e) ? (e.details ?? e.message) : String(e)}`,
              { cause: e },
            );
        this.#log?.warn({ tx: tx.id, details: err.details }, 'push transaction commit failed; transaction removed');
        await this.#finish({ ID: tx.id, State: 'Failure', Details: err.details ?? err.message, At: Date.now() });
        throw err;
      } finally {
        tx.inFlight--;
        if (keep) {
          tx.state = 'open';
          tx.commit = undefined;
          tx.lastActivity = Date.now();
        } else {
          if (this.#txs.get(tx.id) === tx) this.#txs.delete(tx.id);
          this.#admission.wake();
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
   * Forgets a transaction now and removes its staging (and what the store prepared of it) once its running
   * requests have stopped; the promise settles (never rejects) when the staging is gone.
   */
  #drop(tx: Transaction, why: 'discarded' | 'evicted' | 'expired'): Promise<void> {
    this.#txs.delete(tx.id);
    this.counters[why]++;
    tx.abort.abort();
    this.#admission.wake();
    this.#log?.info({ tx: tx.id, why, bucketsDone: tx.done.size, buckets: tx.body.Buckets.length }, `push transaction ${why}`);
    const removal = (async () => {
      await Promise.allSettled([...tx.ops]);
      await this.#state
        .delete(tx.id)
        .catch((e: unknown) => this.#log?.warn({ tx: tx.id, err: String(e) }, 'cannot forget a push transaction'));
      await (tx.area ? tx.area.remove() : StagingArea.discard(tx.dir));
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
    this.#track(this.#state.pruneOutcomes(now));
    // A transaction idle for IdleBeforeEviction by now may make room for a waiting create.
    this.#admission.wake();
  }

  /** Announces what a commit stored (before the sender learns of the commit); a failure to record it is only logged. */
  async #announce(result: CommitResult, sender: RequestSender): Promise<void> {
    const peer = (await this.#routing.senderPeer?.(sender).catch(() => '')) ?? '';
    await this.#routing.arrivals?.arrived(committedArrivals(result, { kind: 'peer', peer })).catch((e: unknown) => {
      this.#log?.error({ err: String(e) }, 'cannot record the arrival of committed instances: routing rules will not see them');
    });
  }

  /** Ends a committed transaction with its outcome; a failure to record it is only logged. */
  async #finish(o: CommitOutcome): Promise<void> {
    try {
      await this.#state.finishCommit(o);
    } catch (e) {
      this.#log?.warn({ tx: o.ID, err: String(e) }, 'cannot record the outcome of a commit');
      await this.#state.delete(o.ID).catch(() => undefined);
    }
  }

  /** Stops the expiry timer and waits for the work in flight (commits, removals). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#admission.close();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    for (let i = 0; i < 100 && this.#background.size > 0; i++) await Promise.allSettled([...this.#background]);
    const puts = [...this.#txs.values()].flatMap((t) => [...t.ops]);
    await Promise.allSettled(puts);
    await this.#state.close();
  }

  // ---- reload --------------------------------------------------------------------------------

  /** Takes back the transactions of the state, and removes what no usable transaction owns. */
  async #reload(): Promise<void> {
    const loaded = await reloadTransactions(this.#root, this.#state, this.#log);
    for (const t of loaded) this.#txs.set(t.id, t);
    while (this.#txs.size > this.#admission.max) {
      const oldest = this.#txs.values().next().value as Transaction;
      await this.#drop(oldest, 'evicted');
    }
    if (loaded.length > 0) this.#log?.info({ transactions: this.#txs.size }, 'push transactions resumed from disk');
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
}
