// The PushTransfer job (docs/protocol.md#push-mode): lists what to send in the local store, then hands the
// instances to the destination, a transfers peer (transfer/peer-destination.ts), which knows the wire. The
// list and the destination's own state are kept in the jobs database, so a pause, a cancel or a restart
// goes on where it stopped.
import type { SendTask } from '../destinations/types.ts';
import type { TransfersPeerState } from './peer-destination.ts';
import type { DestinationDirectory } from '../destinations/types.ts';
import type { Config } from '../config/types.ts';
import { XferError } from '../errors.ts';
import type { JobRunContext, JobRunner } from '../jobs/engine.ts';
import { sortUniqueInstances, type InstanceInfo, type Resource } from '../protocol/wire.ts';
import type { Store } from '../store/types.ts';
import { PUSH_KIND, type PushContent, type PushPrivate, type TransferJobQuery } from './job-kinds.ts';
import { TransferRun, type TransferDeps } from './run.ts';

type PushContext = JobRunContext<TransferJobQuery, PushContent, PushPrivate>;

/** Longest period between two keep-alives of a preempted push's transaction, in seconds. */
const KEEP_ALIVE_MAX_S = 30;

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

/**
 * The job's context as the destination's task: the job keeps the instances in its private state, the
 * destination the rest (its plan, its transaction), both in one record as before the destination seam.
 */
function destinationTask(ctx: PushContext, instances: readonly InstanceInfo[]): SendTask<TransfersPeerState> {
  return {
    signal: ctx.signal,
    log: ctx.log,
    loadPrivate: () => {
      const saved = ctx.loadPrivate();
      if (!saved) return undefined;
      const { instances: _instances, ...state } = saved;
      return state;
    },
    savePrivate: (state) => ctx.savePrivate({ instances: [...instances], ...state }),
    bucketsDone: () => ctx.bucketsDone(),
    markBucketDone: (i) => ctx.markBucketDone(i),
    clearBucketsDone: () => ctx.clearBucketsDone(),
    content: () => ctx.content(),
    setContent: (partial) => ctx.setContent(partial),
    setProgress: (p) => ctx.setProgress(p),
    preemptible: (work) => ctx.preemptible(work),
  };
}

/**
 * How often a preempted push keeps its transaction alive: half of the shorter of the idle limits of a
 * receiver (IdleBeforeEviction, IdleTransactionTimeout; 0 = none) as this node has them, peers being
 * configured alike, and at least every 30 s (the default's period, for a peer with shorter limits).
 */
function keepAlivePeriodMs(t: Pick<Config['Transfers'], 'IdleBeforeEviction' | 'IdleTransactionTimeout'>): number {
  const limits = [t.IdleBeforeEviction, t.IdleTransactionTimeout, KEEP_ALIVE_MAX_S * 2].filter((s) => s > 0);
  return Math.max(500, (Math.min(...limits) * 1000) / 2);
}

export class PushTransferJob implements JobRunner<TransferJobQuery, PushContent, PushPrivate> {
  readonly kind = PUSH_KIND;
  readonly sharesLink = true;
  readonly keepAliveMs: number;
  readonly #deps: TransferDeps;
  readonly #destinations: DestinationDirectory<TransfersPeerState>;

  constructor(deps: TransferDeps, destinations: DestinationDirectory<TransfersPeerState>) {
    this.#deps = deps;
    this.#destinations = destinations;
    this.keepAliveMs = keepAlivePeriodMs(deps.config.Transfers);
  }

  async run(ctx: PushContext): Promise<void> {
    const q = ctx.query;
    const r = new TransferRun(ctx, this.#deps, q, { Compression: q.Compression, Peer: q.Peer, Resources: q.Resources });
    let state = ctx.loadPrivate();
    if (!state) {
      ctx.setProgress(0);
      // An Orthanc store that is down is waited for (DatabaseUnavailable is retryable), as a peer is.
      state = { instances: await r.call('listing what to send in the store', () => expandLocal(this.#deps.store, q.Resources)) };
      await ctx.savePrivate(state);
    }
    r.publishTotals(state.instances);
    r.publishCounters('push');
    const destination = this.#destinations.get(q.Peer);
    await destination.send(
      { instances: state.instances, compression: q.Compression, transferId: q.SenderTransferID },
      destinationTask(ctx, state.instances),
    );
  }

  /** A preempted push keeps its transaction on the destination from expiring while it waits. */
  async keepAlive(ctx: PushContext): Promise<void> {
    const state = ctx.loadPrivate();
    if (!state) return;
    await this.#destinations
      .get(ctx.query.Peer)
      .keepAlive?.({ transferId: ctx.query.SenderTransferID }, destinationTask(ctx, state.instances));
  }

  /** A cancelled push drops what the destination holds of it. */
  async cancelled(ctx: PushContext): Promise<void> {
    const state = ctx.loadPrivate();
    if (!state) return;
    await this.#destinations.get(ctx.query.Peer).abandon({ transferId: ctx.query.SenderTransferID }, destinationTask(ctx, state.instances));
  }
}
