// A transfers peer as a destination: the push of the protocol (docs/protocol.md#push-mode). Plan the buckets,
// create a transaction on the peer, PUT every bucket not done, commit; with a peer that lists them
// (capabilities.ts), the extensions resume, dedupe, async-commit, bucket-crc32, bucket-span and
// receiver-progress. The plan, the transaction and the finished buckets are kept in the task, so a pause, a
// cancel or a restart never sends a finished bucket again.
import { XferError } from '../errors.ts';
import type { PushPrivate } from './job-kinds.ts';
import { scheduleBuckets } from '../protocol/buckets.ts';
import type { Compression, InstanceInfo } from '../protocol/wire.ts';
import { watchCpu } from './adaptive/cpu.ts';
import { wireCompression, zstdFallbackNote } from './adaptive/gzip-level.ts';
import { bodiesInMemory, bucketBody, PayloadBuffers, type BodyOptions, type BucketBody } from './bucket-body.ts';
import { runBuckets, type BucketMeter } from './bucket-phase.ts';
import type { PeerCapabilities } from './capabilities.ts';
import { PeerApi, type PushTransaction } from './peer-api.ts';
import { TransactionGone, TransferRun, isChecksumRefusal, isNotFound, totalSize, type TransferDeps } from './run.ts';
import { SPAN_UNIT, spanLabel, spanSegment, type Span } from './spans.ts';
import { isRetryable, retry, retryOptionsFromConfig } from '../util/retry.ts';
import { commitPush, peerHolds } from './peer-destination-commit.ts';
import type { Destination, SendRequest, SendTask } from '../destinations/types.ts';

/** What a push keeps of its destination between runs: the job's private state but the instances. */
export type TransfersPeerState = Omit<PushPrivate, 'instances'>;

type PeerTask = SendTask<TransfersPeerState>;

/** New transactions a push makes in one run when the peer loses its transaction (404) before giving up. */
const MAX_TRANSACTIONS_PER_RUN = 4;
/** A bucket refused with a wrong checksum is sent again at once this many times. */
const IMMEDIATE_RESENDS = 3;
/**
 * Most small buckets (SPAN_UNIT) a push transaction is cut into: each is a chunk or more in the create
 * body, which the receiver bounds (Transfers.MaxPushInstances × 672 bytes, 64 MiB by default).
 */
const MAX_SPAN_UNITS = 200_000;

/** The transaction a state names, if any. */
function transactionOf(state: TransfersPeerState): PushTransaction | undefined {
  if (state.path === undefined) return undefined;
  return state.cookie ? { path: state.path, cookie: state.cookie } : { path: state.path };
}

export class TransfersPeerDestination implements Destination<TransfersPeerState> {
  readonly description: string;
  readonly #deps: TransferDeps;
  readonly #peer: string;

  /** `peer` is the name of a configured peer (UnknownResource at the first call otherwise). */
  constructor(deps: TransferDeps, peer: string) {
    this.#deps = deps;
    this.#peer = peer;
    this.description = `peer "${peer}"`;
  }

  async send(req: SendRequest, task: PeerTask): Promise<void> {
    const r = new TransferRun(task, this.#deps, { Peer: this.#peer, Compression: req.compression, SenderTransferID: req.transferId }, {});
    let state: TransfersPeerState = task.loadPrivate() ?? {};
    if (state.skipped) r.publishSkipped(state.skipped);
    const caps = await r.capabilities();
    // A bucket is under twice BucketSize, a span at most BucketSize: each must fit in one zstd body.
    const wire = wireCompression(r.q.Compression, caps.has('zstd'), 2 * r.config.Transfers.BucketSize * 1024);
    if (r.q.Compression === 'zstd' && wire !== 'zstd') {
      task.setContent({
        CompressionNote: zstdFallbackNote(this.#peer, caps.has('zstd')),
      });
    }
    // A transaction made by an earlier run (before a pause or a restart) may hold more than this node
    // knows: with resume, the receiver says which buckets it has.
    let resuming = state.path !== undefined;
    for (let made = 0; ; ) {
      let tx = transactionOf(state);
      if (!tx) {
        if (made >= MAX_TRANSACTIONS_PER_RUN) {
          throw new XferError('NetworkProtocol', `peer "${this.#peer}" lost ${made} transactions of this transfer in a row; giving up`);
        }
        made++;
        state = await this.#open(r, caps, req.instances, task, wire);
        tx = transactionOf(state);
        // The peer holds everything already: nothing to send, no transaction.
        if (!tx) return task.setProgress(1);
        resuming = false;
      } else if (resuming && caps.has('resume')) {
        resuming = false;
        const held = await this.#heldBuckets(r, tx);
        if (held === undefined) {
          state = await this.#forget(task, state);
          continue;
        }
        for (const i of held) await task.markBucketDone(i);
      }
      const sent = state.sent ?? req.instances;
      if (!(await this.#sendBuckets(r, caps, tx, state)) || !(await commitPush(r, caps, tx, sent))) {
        state = await this.#forget(task, state);
        continue;
      }
      return task.setProgress(1);
    }
  }

  /** A cancelled push discards its transaction on the peer (the plugin leaks it). */
  async abandon(req: Pick<SendRequest, 'transferId'>, task: PeerTask): Promise<void> {
    const state = task.loadPrivate();
    const tx = state ? transactionOf(state) : undefined;
    if (!tx) return;
    try {
      const api = new PeerApi(this.#deps.peer(this.#peer).client, req.transferId);
      await this.#discard(api, task, tx);
    } catch (e) {
      task.log.warn({ err: String(e) }, 'could not discard the remote transaction');
    }
  }

  /**
   * Asks the peer once which buckets the transaction holds, which counts as activity there: a push that waits
   * preempted keeps its transaction from expiring or being evicted. Only with a peer that listed resume (an
   * Orthanc knows no such call, and has no idle timeout).
   */
  async keepAlive(req: Pick<SendRequest, 'transferId'>, task: PeerTask): Promise<void> {
    const state = task.loadPrivate();
    const tx = state ? transactionOf(state) : undefined;
    const listed = task.content().PeerExtensions;
    if (!tx || !Array.isArray(listed) || !listed.includes('resume')) return;
    try {
      const api = new PeerApi(this.#deps.peer(this.#peer).client, req.transferId);
      await api.heldBuckets(tx);
    } catch (e) {
      task.log.warn({ err: String(e), path: tx.path }, 'could not keep the remote transaction alive');
    }
  }

  /** Drops a transaction the peer lost; the next round makes a new one. */
  async #forget(task: PeerTask, state: TransfersPeerState): Promise<TransfersPeerState> {
    task.log.warn({ path: state.path }, 'the peer no longer holds the transaction: a new one is made');
    const { path: _path, cookie: _cookie, ...rest } = state;
    await task.clearBucketsDone();
    await task.savePrivate(rest);
    return rest;
  }

  /**
   * Plans and creates a transaction: with dedupe, only the instances the peer lacks (none at all: the
   * state comes back without a path); the buckets of docs/protocol.md#bucket-scheduling;
   * `POST /transfers/push`.
   */
  async #open(
    r: TransferRun,
    caps: PeerCapabilities,
    instances: readonly InstanceInfo[],
    task: PeerTask,
    wire: Compression,
  ): Promise<TransfersPeerState> {
    let sent = [...instances];
    let state: TransfersPeerState = {};
    if (caps.has('dedupe')) {
      const held = await peerHolds(r, instances);
      sent = instances.filter((i) => !held.has(i.ID));
      const skipped = { count: instances.length - sent.length, bytes: totalSize(instances) - totalSize(sent) };
      r.publishSkipped(skipped);
      state = { skipped };
    }
    await task.clearBucketsDone();
    if (sent.length === 0) {
      await task.savePrivate(state);
      return state;
    }
    // With bucket-span the transaction is cut into small buckets, and the requests join them as the link
    // allows; past MAX_SPAN_UNITS of them (a create body too large for the receiver), the plugin's buckets.
    const g = r.config.Transfers.BucketSize * 1024;
    const small = caps.has('bucket-span') && totalSize(sent) / SPAN_UNIT <= MAX_SPAN_UNITS;
    const buckets = scheduleBuckets(sent, { bucketSize: small ? Math.min(g, SPAN_UNIT) : g });
    const tx = await r.mustCall('creating the transaction', (signal) =>
      r.api.createPush(
        { Instances: sent, Buckets: buckets, Compression: wire },
        { timeoutMs: r.config.Transfers.PeerCommitTimeout * 1000, signal },
      ),
    );
    const next: TransfersPeerState = {
      ...state,
      sent,
      buckets,
      path: tx.path,
      compression: wire,
      ...(tx.cookie ? { cookie: tx.cookie } : {}),
    };
    await task.savePrivate(next);
    return next;
  }

  /** The buckets the peer's transaction holds (extension resume); undefined when it is gone (404). */
  async #heldBuckets(r: TransferRun, tx: PushTransaction): Promise<Set<number> | undefined> {
    try {
      return await r.call('asking which buckets the transaction holds', (signal) => r.api.heldBuckets(tx, { signal }));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      if (r.ctx.signal.aborted) throw e;
      throw r.failure('asking which buckets the transaction holds', e, Date.now());
    }
  }

  /**
   * PUTs the buckets not done (docs/protocol.md#push-mode, step 4). With bucket-crc32 each carries its
   * checksum, and a bucket refused for it is sent again at once; with resume, a bucket is first looked up on
   * the receiver before it is sent again (its earlier attempt may have arrived). Answers false when the peer
   * lost the transaction; a bucket failing for good discards the transaction and fails the job
   * (docs/protocol.md#push-mode, step 6).
   */
  async #sendBuckets(r: TransferRun, caps: PeerCapabilities, tx: PushTransaction, state: TransfersPeerState): Promise<boolean> {
    const { ctx } = r;
    // A dicom-xfer peer that joins buckets also takes a body without a Content-Length.
    const join = caps.has('bucket-span');
    // The receiver says how many bytes arrived: the throughput is measured from that.
    const receiverClock = caps.has('receiver-progress');
    const checksum = caps.has('bucket-crc32');
    // The transaction's own compression: one made before a pause keeps the codec it was created with.
    const compression = state.compression ?? r.q.Compression;
    ctx.setContent({ WireCompression: compression });
    if (compression !== 'none') r.gzip.useCodec(compression);
    // The payloads held in memory are reused from one request to the next, for this run only.
    const buffers = new PayloadBuffers();
    const put = (span: Span, signal: AbortSignal | undefined, attempt: number, meter: BucketMeter) =>
      this.#put(r, caps, tx, span, { signal, attempt, meter, checksum, join, compression, buffers });
    const inMemory = bodiesInMemory({ compression, checksum, gzip: { chunked: join } });
    const stopCpu = compression !== 'none' ? watchCpu(r.gzip, () => true) : undefined;
    try {
      await runBuckets(r, state.buckets ?? [], 'push', put, (e) => isChecksumRefusal(e) || isRetryable(e), {
        join,
        receiverClock,
        bodiesInMemory: inMemory,
      });
      return true;
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      if (e instanceof TransactionGone) return false;
      await this.#discard(r.api, ctx, tx);
      throw e;
    } finally {
      stopCpu?.();
    }
  }

  /** One attempt at one span: its body read from the store once, sent again at once when refused for its checksum. */
  async #put(
    r: TransferRun,
    caps: PeerCapabilities,
    tx: PushTransaction,
    span: Span,
    o: {
      signal: AbortSignal | undefined;
      attempt: number;
      meter: BucketMeter;
      checksum: boolean;
      join: boolean;
      compression: Compression;
      buffers: PayloadBuffers;
    },
  ): Promise<number> {
    const { signal, meter } = o;
    if (o.attempt > 1 && caps.has('resume') && (await this.#holds(r, tx, span, signal))) return 0;
    const level = r.gzip.level;
    if (o.compression === 'gzip') r.ctx.setContent({ GzipLevel: level });
    if (o.compression === 'zstd') r.ctx.setContent({ ZstdLevel: level });
    const options: BodyOptions = { compression: o.compression, checksum: o.checksum, gzip: { level, chunked: o.join }, zstd: { level } };
    let made: BucketBody | undefined;
    for (let resend = 0; ; resend++) {
      // A body in memory is sent again as it is; a streamed one cannot be replayed and is read again.
      if (!made || !Buffer.isBuffer(made.body)) made = await bucketBody(r.store, span.chunks, options, o.buffers);
      let sent = 0;
      const onBodyBytes = (n: number): void => {
        sent += n;
        meter.moved(n);
      };
      try {
        const answer = await r.api.putBucket(tx, spanSegment(span), made.body, { crc32: made.crc32, signal, onBodyBytes });
        // A 200 comes once the receiver has read the whole body: nothing reads the buffer any more.
        made.release?.();
        if (answer.received) meter.delivered(answer.received.bytes, answer.received.at);
        return sent;
      } catch (e) {
        if (isNotFound(e)) throw new TransactionGone(tx.path, e);
        if (!isChecksumRefusal(e) || resend >= IMMEDIATE_RESENDS) throw e;
        r.noteRetry(spanLabel(span), e, 0);
      }
    }
  }

  /** Whether the transaction holds every bucket of `span` already (a retried PUT whose answer was lost). */
  async #holds(r: TransferRun, tx: PushTransaction, span: Span, signal: AbortSignal | undefined): Promise<boolean> {
    const held = await r.api.heldBuckets(tx, { signal }).catch((e: unknown) => {
      throw isNotFound(e) ? new TransactionGone(tx.path, e) : e;
    });
    for (let i = span.first; i <= span.last; i++) if (!held.has(i)) return false;
    return true;
  }

  /** DELETE of the transaction, best effort with few retries (the job is failing or canceled). */
  async #discard(api: PeerApi, task: Pick<PeerTask, 'log'>, tx: PushTransaction): Promise<void> {
    const T = this.#deps.config.Transfers;
    await retry(
      (_a, signal) => api.discard(tx, { signal }),
      retryOptionsFromConfig({ Transfers: { ...T, RetryBudget: Math.min(T.RetryBudget, 10) } }),
    ).catch((e: unknown) => task.log.warn({ err: String(e), path: tx.path }, 'could not discard the remote transaction'));
  }
}
