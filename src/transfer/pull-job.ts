// The PullTransfer job (docs/protocol.md#pull-mode): lookup on the peer, GET every bucket into a staging area
// (checked as it is written), then commit into the local store, all or nothing. The plan and the finished
// buckets are kept in the jobs database, so a pause or a restart never fetches a finished bucket again. The
// commit's work is done as instances are verified (the store places them unseen), as on a push receiver.
import { committedArrivals } from '../routing/arrivals.ts';
import { join } from 'node:path';
import { XferError, isXferError } from '../errors.ts';
import type { JobRunContext, JobRunner } from '../jobs/engine.ts';
import { scheduleBuckets } from '../protocol/buckets.ts';
import { sortUniqueInstances, type Compression, type InstanceInfo } from '../protocol/wire.ts';
import { isRetryable } from '../util/retry.ts';
import { wireCompression, zstdFallbackNote } from './adaptive/gzip-level.ts';
import { runBuckets } from './bucket-phase.ts';
import { BUCKET_CHECKSUM_STATUS, extensionsEnabled, type PeerCapabilities } from './capabilities.ts';
import { PULL_KIND, type PullContent, type PullPrivate, type TransferJobQuery } from './job-kinds.ts';
import { ChecksumMismatch, TransferRun, isChecksumRefusal, totalSize, type Skipped, type TransferDeps } from './run.ts';
import { SPAN_UNIT, spanLabel, type Span } from './spans.ts';
import { StagingArea, writtenBy } from './staging.ts';

type PullContext = JobRunContext<TransferJobQuery, PullContent, PullPrivate>;

/** A bucket fetched with a wrong checksum is fetched again at once this many times. */
const IMMEDIATE_REFETCHES = 3;

export class PullTransferJob implements JobRunner<TransferJobQuery, PullContent, PullPrivate> {
  readonly kind = PULL_KIND;
  readonly sharesLink = true;
  readonly #deps: TransferDeps;

  constructor(deps: TransferDeps) {
    this.#deps = deps;
  }

  async run(ctx: PullContext): Promise<void> {
    const { store } = this.#deps;
    const q = ctx.query;
    const content: PullContent = { Compression: q.Compression, Peer: q.Peer, Resources: q.Resources };
    if (q.Originator !== undefined) content.Originator = q.Originator;
    const r = new TransferRun(ctx, this.#deps, q, content);
    const saved = ctx.loadPrivate();
    if (!saved) ctx.setProgress(0);
    const caps = await r.capabilities();
    // zstd when the source lists it (the same length in a chunk URL as gzip, so a plan made for either holds).
    const wire = wireCompression(q.Compression, caps.has('zstd'), 2 * this.#deps.config.Transfers.BucketSize * 1024);
    ctx.setContent({ WireCompression: wire });
    if (q.Compression === 'zstd' && wire !== 'zstd') {
      ctx.setContent({
        CompressionNote: zstdFallbackNote(q.Peer, caps.has('zstd')),
      });
    }
    const planned = saved ? await this.#reopen(r, ctx, saved) : await this.#plan(r, ctx, caps);
    if (!planned) return ctx.setProgress(1);
    const { state, area } = planned;
    // The store makes ready for the commit while the buckets come.
    void store.prepareFiles?.((state.fetched ?? state.instances).length);
    const sizes = new Map((state.fetched ?? state.instances).map((i) => [i.ID, i.Size]));
    const fetch = (span: Span, signal: AbortSignal | undefined, moved: (n: number) => void) =>
      this.#fetch(r, caps, area, span, signal, moved, wire);
    try {
      await runBuckets(
        r,
        state.buckets,
        'pull',
        (span, signal, _attempt, meter) => fetch(span, signal, meter.moved),
        (e) => isChecksumRefusal(e) || isRetryable(e),
        {
          join: caps.has('bucket-span'),
          pull: { sizeOf: (id) => sizes.get(id), compression: wire },
        },
      );
    } catch (e) {
      // Paused or stopped: the staged files stay for the next run, what the store placed of them goes (the
      // next run's area places again what it verifies; a crash leaves it to the store's journal).
      if (ctx.signal.aborted) {
        await area.releasePrepared();
        throw e;
      }
      await area.remove();
      throw e;
    }
    try {
      const staged = await area.staged();
      // The commit's work done while the buckets came: instances placed ahead, which the commit adopts as they are.
      ctx.setContent({ PreparedInstances: staged.filter((s) => s.prepared !== undefined).length });
      // An Orthanc store that is down (or too slow) keeps the staged files: the commit is made again.
      const result = await r.call(
        'storing the instances',
        () => store.commitStaged(staged),
        (e) => isXferError(e, 'DatabaseUnavailable') || isXferError(e, 'Timeout'),
      );
      // Routing learns of what the commit stored before the job counts as done (origin peer:NAME).
      await this.#deps.arrivals?.arrived(committedArrivals(result, { kind: 'peer', peer: q.Peer }));
    } finally {
      await area.remove();
    }
    ctx.setProgress(1);
  }

  /** A later run: the staging area as the finished buckets left it, and the figures of the plan. */
  async #reopen(r: TransferRun, ctx: PullContext, state: PullPrivate): Promise<{ state: PullPrivate; area: StagingArea }> {
    const written = writtenBy(state.buckets, ctx.bucketsDone());
    const area = await StagingArea.open(state.staging, state.fetched ?? state.instances, written, this.#deps.store);
    r.publishTotals(state.instances);
    r.publishCounters('pull');
    if (state.skipped) r.publishSkipped(state.skipped);
    return { state, area };
  }

  /**
   * The first run: the lookup, what the local store already holds left out, the buckets, the staging area.
   * Undefined when there is nothing to fetch.
   */
  async #plan(r: TransferRun, ctx: PullContext, caps: PeerCapabilities): Promise<{ state: PullPrivate; area: StagingArea } | undefined> {
    const { config, store } = this.#deps;
    const instances = await this.#lookup(r, ctx.query);
    // Unlike the plugin, an empty pull too says what it moved: nothing.
    r.publishTotals(instances);
    r.publishCounters('pull');
    if (instances.length === 0) return undefined;
    // What the local store already holds with the same MD5 is not fetched again (works with any source).
    let fetched = instances;
    let skipped: Skipped | undefined;
    if (extensionsEnabled(config)) {
      const found = await store.findInstances(instances.map((i) => i.ID));
      fetched = instances.filter((i) => found.get(i.ID)?.md5 !== i.MD5);
      skipped = { count: instances.length - fetched.length, bytes: totalSize(instances) - totalSize(fetched) };
      r.publishSkipped(skipped);
    }
    if (fetched.length === 0) return undefined;
    // A source with bucket-span serves ranges cheaply: small buckets, joined into requests as the link allows.
    const g = config.Transfers.BucketSize * 1024;
    const buckets = scheduleBuckets(fetched, {
      bucketSize: caps.has('bucket-span') ? Math.min(g, SPAN_UNIT) : g,
      pullBaseUrl: r.peerUrl,
      compression: ctx.query.Compression,
    });
    const staging = join(store.stagingRoot(), 'pull', ctx.id);
    // Each instance verified as it lands is placed in the store ahead of the commit (staging-prepare.ts).
    const area = await StagingArea.create(staging, fetched, store);
    const state: PullPrivate = { instances, fetched, buckets, staging, ...(skipped ? { skipped } : {}) };
    await ctx.savePrivate(state);
    return { state, area };
  }

  /** One attempt at one span: fetched and written, fetched again at once when its checksum is wrong. */
  async #fetch(
    r: TransferRun,
    caps: PeerCapabilities,
    area: StagingArea,
    span: Span,
    signal: AbortSignal | undefined,
    moved: (n: number) => void,
    compression: Compression,
  ): Promise<number> {
    const bucket = span.chunks;
    const wantCrc32 = caps.has('bucket-crc32');
    for (let refetch = 0; ; refetch++) {
      let wire = 0;
      const onBodyBytes = (n: number): void => {
        wire += n;
        moved(n);
      };
      const res = await r.api.chunks(bucket, compression, { wantCrc32, signal, onBodyBytes });
      try {
        // Checked as it is written: a damaged bucket is fetched again and its bytes overwritten.
        await area.writeBucket(bucket, res.body, {
          gunzip: compression === 'gzip',
          zstd: compression === 'zstd',
          ...(signal ? { signal } : {}),
          ...(res.crc32 !== undefined ? { crc32: res.crc32 } : {}),
        });
        return wire;
      } catch (e) {
        if (!(isXferError(e) && e.http === BUCKET_CHECKSUM_STATUS)) throw e;
        const label = spanLabel(span);
        const mismatch = new ChecksumMismatch(`${label}: ${e.details ?? e.message}`);
        if (refetch >= IMMEDIATE_REFETCHES) throw mismatch;
        r.noteRetry(label, mismatch, 0);
      }
    }
  }

  /**
   * `POST /transfers/lookup` on the peer (docs/protocol.md#pull-mode, step 2): its instances, sorted and
   * distinct.
   */
  async #lookup(r: TransferRun, q: TransferJobQuery): Promise<InstanceInfo[]> {
    const lookup = await r.mustCall('the lookup', (signal) => r.api.lookup(q.Resources, { signal }));
    if (q.Originator !== undefined && lookup.Originator !== q.Originator) {
      throw new XferError(
        'NetworkProtocol',
        `peer "${q.Peer}" is not the server that asked for this pull (its Originator differs): check RemoteSelf`,
      );
    }
    return sortUniqueInstances(lookup.Instances);
  }

  /** A cancelled pull drops its staging area. */
  async cancelled(ctx: PullContext): Promise<void> {
    const state = ctx.loadPrivate();
    if (state) await StagingArea.discard(state.staging);
  }
}
