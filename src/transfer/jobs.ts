// The two transfer jobs of the protocol, run by the jobs engine: PushTransfer (SPEC §7: plan, create a
// transaction on the peer, PUT every bucket, commit) and PullTransfer (SPEC §8: lookup, GET every
// bucket into a staging area, commit into the local store). Both keep their plan and finished buckets
// in the jobs database, so a pause, a cancel or a restart never sends a finished bucket again.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config/types.ts';
import { ERRORS, XferError, isXferError } from '../errors.ts';
import type { JobRunContext, JobRunner, JobType } from '../jobs/engine.ts';
import { bucketSize, scheduleBuckets } from '../protocol/buckets.ts';
import { buildChunkPath } from '../protocol/chunk-url.ts';
import { createGzipStream } from '../protocol/compression.ts';
import { bucketPhaseProgress, networkSpeedKBs, toMegabytes } from '../protocol/progress.ts';
import {
  parseLookupAnswer,
  parsePushHandle,
  sortUniqueInstances,
  toWireLookupRequest,
  toWirePushCreate,
  type Bucket,
  type Compression,
  type InstanceInfo,
  type Resource,
} from '../protocol/wire.ts';
import { PeerHttpError, type PeerClient } from '../peers/client.ts';
import type { Store } from '../store/types.ts';
import { mapLimit } from '../util/concurrency.ts';
import { isRetryable, retry, retryOptionsFromConfig } from '../util/retry.ts';
import { StagingArea } from './staging.ts';

/** The serialized form of a transfer job: its query (SPEC §11.6). */
export interface TransferJobQuery {
  Resources: Resource[];
  Peer: string;
  Compression: Compression;
  Priority: number;
  SenderTransferID: string;
  Originator?: string;
}

/** What the jobs need from the node. */
export interface TransferDeps {
  config: Config;
  store: Store;
  /** The HTTP client of a peer; UnknownResource when the peer is not (or no longer) configured. */
  peer(name: string): { client: PeerClient; url: string };
}

/** Durable state of a push job between runs. */
interface PushPrivate {
  instances: InstanceInfo[];
  buckets: Bucket[];
  /** Path of the transaction on the peer, once created. */
  path?: string;
  cookie?: string;
}

/** Durable state of a pull job between runs. */
interface PullPrivate {
  instances: InstanceInfo[];
  buckets: Bucket[];
  staging: string;
}

/** Bytes and timings of one run of a job, fed by the bucket streams; the job Content reads it. */
class RunStats {
  completed = 0;
  wireBytes = 0;
  retries = 0;
  #firstStart: number | undefined;
  #lastEnd: number | undefined;

  started(): void {
    this.#firstStart ??= Date.now();
  }

  bucketDone(wire: number): void {
    this.completed++;
    this.wireBytes += wire;
    this.#lastEnd = Date.now();
  }

  speedKBs(): number {
    if (this.#firstStart === undefined || this.#lastEnd === undefined) return 0;
    return networkSpeedKBs(this.wireBytes, this.#lastEnd - this.#firstStart);
  }
}

function totalSize(instances: readonly InstanceInfo[]): number {
  return instances.reduce((s, i) => s + i.Size, 0);
}

/** Headers of the push calls (SPEC §10.3); Orthanc's sender never asks for 100-continue. */
function pushHeaders(q: TransferJobQuery, cookie: string | undefined, contentType?: string): Record<string, string> {
  const h: Record<string, string> = { 'sender-transfer-id': q.SenderTransferID };
  if (contentType) h['content-type'] = contentType;
  if (cookie) h.cookie = cookie;
  return h;
}

function queryOf(ctx: JobRunContext): TransferJobQuery {
  return ctx.query as unknown as TransferJobQuery;
}

/** Expands resources on the local store into sorted, distinct instances with size and MD5 (no file read). */
export async function expandLocal(store: Store, resources: readonly Resource[]): Promise<InstanceInfo[]> {
  const ids = new Set<string>();
  for (const r of resources) {
    if (r.Level === 'Instance') {
      await store.instanceInfo(r.ID);
      ids.add(r.ID);
    } else for (const id of await store.listInstances(r.Level, r.ID)) ids.add(id);
  }
  const found = await store.findInstances([...ids]);
  const out: InstanceInfo[] = [];
  for (const id of ids) {
    const i = found.get(id);
    if (!i) throw new XferError('UnknownResource', `Instance ${id} vanished while the transfer was planned`);
    out.push({ ID: i.id, Size: i.size, MD5: i.md5 });
  }
  return sortUniqueInstances(out);
}

/** The concatenated bytes of a bucket, read from the store as one stream. */
function bucketStream(store: Store, bucket: Bucket): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for (const c of bucket) {
      if (c.Size === 0) continue;
      const s = await store.readRange(c.ID, c.Offset, c.Offset + c.Size);
      for await (const piece of s) yield piece as Buffer;
    }
  }
  return Readable.from(gen(), { objectMode: false });
}

/** A bucket body ready to send: gzip is compressed into memory (its length must be known), none streams. */
async function bucketBody(
  store: Store,
  bucket: Bucket,
  compression: Compression,
): Promise<{ body: Buffer | { stream: Readable; length: number }; wire: number }> {
  const raw = bucketStream(store, bucket);
  if (compression === 'none') {
    const length = bucketSize(bucket);
    return { body: { stream: raw, length }, wire: length };
  }
  const parts: Buffer[] = [];
  let wire = 0;
  await pipeline(raw, createGzipStream(), async (source: AsyncIterable<Buffer>) => {
    for await (const p of source) {
      parts.push(p);
      wire += p.length;
    }
  });
  return { body: Buffer.concat(parts, wire), wire };
}

/** Runs the pending buckets with `threads` workers; the first failure stops new ones (SPEC §10.1). */
async function runBuckets(
  ctx: JobRunContext,
  total: number,
  threads: number,
  work: (index: number) => Promise<void>,
): Promise<void> {
  const done = ctx.bucketsDone();
  const pending: number[] = [];
  for (let i = 0; i < total; i++) if (!done.has(i)) pending.push(i);
  await mapLimit(pending, threads, async (i) => {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    await work(i);
  });
}

/** A peer's answer carrying Orthanc's CorruptedFile error (a commit refused for bad MD5 or bad data). */
function isRemoteCorruptedFile(e: unknown): boolean {
  return e instanceof PeerHttpError && e.remote?.OrthancStatus === ERRORS.CorruptedFile.status;
}

function describeFailure(what: string, e: unknown): XferError {
  if (isXferError(e)) return new XferError(e.code, `${what}: ${e.details ?? e.message}`, { cause: e });
  return new XferError('NetworkProtocol', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

export class PushTransferJob implements JobRunner {
  readonly #deps: TransferDeps;

  constructor(deps: TransferDeps) {
    this.#deps = deps;
  }

  async run(ctx: JobRunContext): Promise<void> {
    const { config, store } = this.#deps;
    const q = queryOf(ctx);
    const T = config.Transfers;
    ctx.setContent({ Compression: q.Compression, Peer: q.Peer, Resources: q.Resources });
    const { client } = this.#deps.peer(q.Peer);
    const retryOpts = (stats: RunStats) =>
      retryOptionsFromConfig(config, {
        signal: ctx.signal,
        onRetry: (info) => {
          stats.retries++;
          ctx.log.warn({ attempt: info.attempt, delayMs: info.delayMs, err: String(info.error) }, 'retrying a call');
          ctx.setContent({ Retries: stats.retries });
        },
      });
    const stats = new RunStats();

    let state = ctx.loadPrivate<PushPrivate>();
    if (!state) {
      ctx.setProgress(0);
      const instances = await expandLocal(store, q.Resources);
      const buckets = scheduleBuckets(instances, { bucketSize: T.BucketSize * 1024 });
      state = { instances, buckets };
      ctx.savePrivate(state);
    }
    const { instances, buckets } = state;
    ctx.setContent({ TotalInstances: instances.length, TotalSizeMB: toMegabytes(totalSize(instances)), TotalBuckets: buckets.length });

    if (!state.path) {
      const create = toWirePushCreate({ Instances: instances, Buckets: buckets, Compression: q.Compression });
      const answer = await retry(
        (_a, signal) =>
          client.json({
            method: 'POST',
            path: '/transfers/push',
            headers: pushHeaders(q, undefined, 'application/json'),
            body: JSON.stringify(create),
            timeoutMs: T.PeerCommitTimeout * 1000,
            signal,
          }),
        retryOpts(stats),
      ).catch((e: unknown) => {
        throw describeFailure(`cannot create the transaction on peer "${q.Peer}"`, e);
      });
      const handle = parsePushHandle(answer.body);
      state = { ...state, path: handle.Path, ...(answer.cookie ? { cookie: answer.cookie } : {}) };
      ctx.savePrivate(state);
    }
    const path = state.path as string;
    const cookie = state.cookie;

    const done = ctx.bucketsDone();
    let completed = done.size;
    ctx.setProgress(bucketPhaseProgress(completed, buckets.length));
    ctx.setContent({ CompletedHttpQueries: completed, UploadedSizeMB: 0, NetworkSpeedKBs: 0 });
    stats.started();
    try {
      await runBuckets(ctx, buckets.length, T.Threads, async (i) => {
        const bucket = buckets[i] as Bucket;
        await retry(async (_a, signal) => {
          const { body, wire } = await bucketBody(store, bucket, q.Compression);
          await client.buffer({
            method: 'PUT',
            path: `${path}/${i}`,
            headers: pushHeaders(q, cookie, 'application/octet-stream'),
            body,
            signal,
          });
          stats.bucketDone(wire);
        }, retryOpts(stats));
        ctx.markBucketDone(i);
        completed++;
        ctx.setProgress(bucketPhaseProgress(completed, buckets.length));
        ctx.setContent({
          CompletedHttpQueries: completed,
          UploadedSizeMB: toMegabytes(stats.wireBytes),
          NetworkSpeedKBs: stats.speedKBs(),
        });
      });
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      // A bucket failed for good: discard the transaction on the peer, then fail (SPEC §7 step 6).
      await this.#discard(ctx, client, path, cookie);
      throw describeFailure('a bucket could not be sent', e);
    }

    // An attempt whose answer never came (cut connection, timeout) may have committed all the same.
    let outcomeUnknown = false;
    await retry(
      async (_a, signal) => {
        try {
          return await client.json({
            method: 'POST',
            path: `${path}/commit`,
            headers: pushHeaders(q, cookie),
            body: '',
            timeoutMs: T.PeerCommitTimeout * 1000,
            signal,
          });
        } catch (e) {
          if (!(e instanceof PeerHttpError)) outcomeUnknown = true;
          throw e;
        }
      },
      // A commit refused for bad data (CorruptedFile) fails the same way every time, and the receiver
      // may have dropped the transaction: another attempt would only hide the reason behind a 404.
      { ...retryOpts(stats), retryable: (e) => !isRemoteCorruptedFile(e) && isRetryable(e) },
    ).catch(async (e: unknown) => {
      // The transaction is gone after an attempt whose answer was lost: the receiver may well have
      // committed it (then removed it). The instances themselves tell.
      if (outcomeUnknown && e instanceof PeerHttpError && e.status === 404 && (await this.#storedAtPeer(ctx, client, instances))) {
        ctx.log.warn({ path }, 'the commit answer was lost, but the peer holds every instance: the transfer is complete');
        return;
      }
      throw describeFailure(`the peer "${q.Peer}" did not commit the transfer`, e);
    });
    ctx.setProgress(1);
  }

  /** Whether the peer stores every instance with its MD5 (Orthanc's `/instances/{id}/attachments/dicom/md5`). */
  async #storedAtPeer(ctx: JobRunContext, client: PeerClient, instances: readonly InstanceInfo[]): Promise<boolean> {
    try {
      await mapLimit(instances, this.#deps.config.Transfers.Threads, async (i) => {
        const a = await client.buffer({ method: 'GET', path: `/instances/${i.ID}/attachments/dicom/md5`, signal: ctx.signal });
        if (a.body.toString('utf8').trim() !== i.MD5) throw new XferError('CorruptedFile', `instance ${i.ID} differs at the peer`);
      });
      return true;
    } catch {
      return false;
    }
  }

  async #discard(ctx: JobRunContext, client: PeerClient, path: string, cookie: string | undefined): Promise<void> {
    const q = queryOf(ctx);
    await retry(
      (_a, signal) => client.buffer({ method: 'DELETE', path, headers: pushHeaders(q, cookie), signal }),
      retryOptionsFromConfig(this.#deps.config),
    ).catch((e: unknown) => ctx.log.warn({ err: String(e), path }, 'could not discard the remote transaction'));
  }

  /** A cancelled push discards its transaction on the peer (the plugin leaks it). */
  async cancelled(ctx: JobRunContext): Promise<void> {
    const state = ctx.loadPrivate<PushPrivate>();
    if (!state?.path) return;
    try {
      const { client } = this.#deps.peer(queryOf(ctx).Peer);
      await this.#discard(ctx, client, state.path, state.cookie);
    } catch (e) {
      ctx.log.warn({ err: String(e) }, 'could not discard the remote transaction');
    }
  }
}

export class PullTransferJob implements JobRunner {
  readonly #deps: TransferDeps;

  constructor(deps: TransferDeps) {
    this.#deps = deps;
  }

  async run(ctx: JobRunContext): Promise<void> {
    const { config, store } = this.#deps;
    const q = queryOf(ctx);
    const T = config.Transfers;
    const content: Record<string, unknown> = { Compression: q.Compression, Peer: q.Peer, Resources: q.Resources };
    if (q.Originator !== undefined) content.Originator = q.Originator;
    ctx.setContent(content);
    const { client, url } = this.#deps.peer(q.Peer);
    const stats = new RunStats();
    const retryOpts = () =>
      retryOptionsFromConfig(config, {
        signal: ctx.signal,
        onRetry: (info) => {
          stats.retries++;
          ctx.log.warn({ attempt: info.attempt, delayMs: info.delayMs, err: String(info.error) }, 'retrying a call');
          ctx.setContent({ Retries: stats.retries });
        },
      });

    let state = ctx.loadPrivate<PullPrivate>();
    let area: StagingArea;
    if (!state) {
      ctx.setProgress(0);
      const answer = await retry(
        (_a, signal) =>
          client.json({
            method: 'POST',
            path: '/transfers/lookup',
            headers: { 'content-type': 'application/json', 'sender-transfer-id': q.SenderTransferID },
            body: JSON.stringify(toWireLookupRequest(q.Resources)),
            signal,
          }),
        retryOpts(),
      ).catch((e: unknown) => {
        throw describeFailure(`the lookup on peer "${q.Peer}" failed`, e);
      });
      let lookup;
      try {
        lookup = parseLookupAnswer(answer.body);
      } catch (e) {
        throw describeFailure(`peer "${q.Peer}" answered the lookup with a bad document`, e);
      }
      if (q.Originator !== undefined && lookup.Originator !== q.Originator) {
        throw new XferError(
          'NetworkProtocol',
          `peer "${q.Peer}" is not the server that asked for this pull (its Originator differs): check RemoteSelf`,
        );
      }
      const instances = sortUniqueInstances(lookup.Instances);
      if (instances.length === 0) {
        ctx.setProgress(1);
        return;
      }
      const buckets = scheduleBuckets(instances, {
        bucketSize: T.BucketSize * 1024,
        pullBaseUrl: url,
        compression: q.Compression,
      });
      const staging = join(store.stagingRoot(), 'pull', ctx.id);
      area = await StagingArea.create(staging, instances);
      state = { instances, buckets, staging };
      ctx.savePrivate(state);
    } else {
      area = await StagingArea.open(state.staging, state.instances);
    }
    const { instances, buckets } = state;
    ctx.setContent({ TotalInstances: instances.length, TotalSizeMB: toMegabytes(totalSize(instances)), TotalBuckets: buckets.length });

    let completed = ctx.bucketsDone().size;
    ctx.setProgress(bucketPhaseProgress(completed, buckets.length));
    ctx.setContent({ CompletedHttpQueries: completed, DownloadedSizeMB: 0, NetworkSpeedKBs: 0 });
    stats.started();
    try {
      await runBuckets(ctx, buckets.length, T.Threads, async (i) => {
        const bucket = buckets[i] as Bucket;
        await retry(async (_a, signal) => {
          const res = await client.stream({ method: 'GET', path: buildChunkPath(bucket, q.Compression), signal });
          let wire = 0;
          res.body.on('data', (b: Buffer) => (wire += b.length));
          await area.writeBucket(bucket, res.body, { gunzip: q.Compression === 'gzip', signal });
          stats.bucketDone(wire);
        }, retryOpts());
        ctx.markBucketDone(i);
        completed++;
        ctx.setProgress(bucketPhaseProgress(completed, buckets.length));
        ctx.setContent({
          CompletedHttpQueries: completed,
          DownloadedSizeMB: toMegabytes(stats.wireBytes),
          NetworkSpeedKBs: stats.speedKBs(),
        });
      });
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      await area.remove();
      throw describeFailure(`a bucket could not be downloaded from peer "${q.Peer}"`, e);
    }
    try {
      await store.commitStaged(area.staged());
    } catch (e) {
      await area.remove();
      throw e;
    }
    await area.remove();
    ctx.setProgress(1);
  }

  /** A cancelled pull drops its staging area. */
  async cancelled(ctx: JobRunContext): Promise<void> {
    const state = ctx.loadPrivate<PullPrivate>();
    if (state) await (await StagingArea.open(state.staging, state.instances).catch(() => undefined))?.remove();
  }
}

export function transferRunners(deps: TransferDeps): (type: JobType) => JobRunner {
  const push = new PushTransferJob(deps);
  const pull = new PullTransferJob(deps);
  return (type) => (type === 'PushTransfer' ? push : pull);
}

/** A fresh SenderTransferID when the query has none (SPEC §10.3). */
export function senderTransferId(given: string | undefined): string {
  return given && given.length > 0 ? given : randomUUID();
}
