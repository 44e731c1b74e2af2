// The DicomModalityStore job: C-STORE of stored resources to a modality of DicomModalities, as the REST API
// (POST /modalities/{name}/store) and the routing rules submit it. Each confirmed instance is recorded as it
// is answered, so a pause or a restart sends only the others; a modality that does not answer is waited for
// within the node's retry budget, saying why in Content.Waiting; storage commitment follows when asked.
import type { Config, ModalityConfig } from '../config/types.ts';
import { XferError } from '../errors.ts';
import type { JobRunContext, JobRunner } from '../jobs/engine.ts';
import { formatOrthancTimestamp, toMegabytes } from '../protocol/progress.ts';
import type { Store } from '../store/types.ts';
import { expandLocal } from '../transfer/jobs.ts';
import { waitText } from '../transfer/waiting.ts';
import { retry, retryOptionsFromConfig, type RetryOptions } from '../util/retry.ts';
import { maxAssociations, modalityAddress, modalityNamed, scuTarget } from './modality.ts';
import { AssociationError, isRetryableAssociation, storeInstances, type ScuTarget, type StoreOutcome } from './scu.ts';
import { fileLayout, planInstance, readInstanceFile, scuInstance } from './scu-read.ts';
import {
  STORE_JOB_KIND,
  type CommitmentOutcome,
  type FailedInstance,
  type PlannedInstance,
  type StoreJobContent,
  type StoreJobPrivate,
  type StoreJobQuery,
} from './store-job-kind.ts';

export type StoreJobContext = JobRunContext<StoreJobQuery, StoreJobContent, StoreJobPrivate>;

/** Storage commitment after the C-STOREs: asks the modality and waits for its report (commitment.ts). */
export interface CommitmentStep {
  /** Resolves with the outcome and the instances refused; rejects when stopped or on a lasting network failure. */
  commit(
    ctx: StoreJobContext,
    target: ScuTarget,
    instances: readonly PlannedInstance[],
  ): Promise<{ outcome: CommitmentOutcome; failed: FailedInstance[] }>;
}

export interface StoreJobDeps {
  config: Config;
  store: Store;
  /** Storage commitment; without it a job that asks for it ends with StorageCommitment 'Unsupported'. */
  commitment?: CommitmentStep;
}

/** Failed instances named in the Content (their count is FailedInstancesCount). */
const FAILED_SHOWN = 100;

const hex = (status: number) => `0x${status.toString(16).toUpperCase().padStart(4, '0')}`;

/** The first words of Orthanc's job description: who asked. */
function description(q: StoreJobQuery): string {
  return q.Route !== undefined ? `Route ${q.Route}` : 'REST API';
}

/**
 * Retries of whole sends, as transfers do: MaxHttpRetries attempts 1 s apart, and with RetryBudget, on for as
 * long as the modality has been failing for less than that budget (a confirmed instance restarts the clock).
 */
class OutageRetries {
  #failingSince: number | undefined;
  #retries: number;
  readonly #ctx: ScuTask;
  readonly #config: Config;
  readonly #who: string;

  constructor(ctx: ScuTask, config: Config, who: string) {
    this.#ctx = ctx;
    this.#config = config;
    this.#who = who;
    const before = ctx.content().Retries;
    this.#retries = typeof before === 'number' ? before : 0;
  }

  progressed(): void {
    this.#failingSince = undefined;
    if (this.#ctx.content().Waiting !== undefined) this.#ctx.setContent({ Waiting: undefined, NextTryTime: undefined });
  }

  options(): RetryOptions {
    const budgetMs = this.#config.Transfers.RetryBudget * 1000;
    const base = retryOptionsFromConfig(this.#config, {
      signal: this.#ctx.signal,
      retryable: (e) => isRetryableAssociation(e) && (budgetMs <= 0 || Date.now() - (this.#failingSince ?? Date.now()) < budgetMs),
      onRetry: (info) => this.#noteRetry(info.error, info.delayMs),
    });
    // The outage clock bounds the retries in time; the whole send itself may take as long as it needs.
    return budgetMs > 0 ? { ...base, budgetMs: Number.MAX_SAFE_INTEGER } : base;
  }

  failed(): void {
    this.#failingSince ??= Date.now();
  }

  #noteRetry(error: unknown, delayMs: number): void {
    this.#retries++;
    const why = error instanceof AssociationError ? error.why : String(error);
    this.#ctx.log.warn({ err: why, delayMs }, 'the modality failed; trying again');
    this.#ctx.setContent({
      Retries: this.#retries,
      LastRetryCause: why,
      LastRetryTime: formatOrthancTimestamp(Date.now()),
      Waiting: `${this.#who} cannot be reached: ${why}; next try in ${waitText(delayMs)}`,
      NextTryTime: formatOrthancTimestamp(Date.now() + delayMs),
    });
  }
}

export class DicomStoreJob implements JobRunner<StoreJobQuery, StoreJobContent, StoreJobPrivate> {
  readonly kind = STORE_JOB_KIND;
  readonly #deps: StoreJobDeps;

  constructor(deps: StoreJobDeps) {
    this.#deps = deps;
  }

  async run(ctx: StoreJobContext): Promise<void> {
    const q = ctx.query;
    const { config } = this.#deps;
    const modality = modalityNamed(config, q.Modality);
    const target = scuTarget(config, modality, { localAet: q.LocalAet, timeoutSeconds: q.Timeout });
    const wantCommitment = q.StorageCommitment;
    ctx.setContent({
      Description: description(q),
      Modality: q.Modality,
      RemoteAet: target.calledAet,
      LocalAet: target.callingAet,
      ParentResources: q.Resources.map((r) => r.ID),
      ...(q.Route !== undefined ? { Route: q.Route } : {}),
    });
    if (ctx.content().StorageCommitment === undefined) ctx.setContent({ StorageCommitment: wantCommitment ? 'Pending' : 'NotRequested' });
    const state = await this.#plan(ctx);
    const total = state.instances.length;
    ctx.setContent({ InstancesCount: total, TotalSizeMB: toMegabytes(state.instances.reduce((s, i) => s + i.Size, 0)) });
    const failures = await sendPlanned(this.#deps, ctx, modality, target, state.instances, wantCommitment ? 0.95 : 1);
    if (failures.length > 0) {
      const list = failures.slice(0, 10).map((f) => `${f.ID} (${f.Status}: ${f.Reason})`);
      const more = failures.length > 10 ? `, and ${failures.length - 10} more` : '';
      throw new XferError(
        'NetworkProtocol',
        `${failures.length} of ${total} instances refused by ${modalityAddress(modality)}: ${list.join(', ')}${more}`,
      );
    }
    if (!wantCommitment) return;
    if (!modality.allowStorageCommitment || !this.#deps.commitment) {
      ctx.setContent({ StorageCommitment: 'Unsupported' });
      return;
    }
    ctx.setProgress(0.95);
    const r = await this.#deps.commitment.commit(ctx, target, state.instances);
    ctx.setContent({ StorageCommitment: r.outcome });
    if (r.outcome === 'Failed') {
      ctx.setContent({ FailedInstancesCount: r.failed.length, FailedInstances: r.failed.slice(0, FAILED_SHOWN) });
      const list = r.failed.slice(0, 10).map((f) => `${f.ID} (${f.Reason})`);
      throw new XferError(
        'NetworkProtocol',
        `storage commitment refused by ${modalityAddress(modality)} for ${r.failed.length} instances: ${list.join(', ')}`,
      );
    }
  }

  /** The plan of an earlier run, or a new one: every instance of the resources with its header's UIDs. */
  async #plan(ctx: StoreJobContext): Promise<StoreJobPrivate> {
    const saved = ctx.loadPrivate();
    if (saved) return saved;
    ctx.setProgress(0);
    const listed = await expandLocal(this.#deps.store, ctx.query.Resources);
    const instances: PlannedInstance[] = [];
    for (const i of listed) instances.push(await planInstance(this.#deps.store, i.ID, i.Size));
    const state: StoreJobPrivate = { instances };
    await ctx.savePrivate(state);
    return state;
  }
}

/**
 * What a send to a modality reports through and remembers in: a C-STORE job's run context, or a push job's
 * destination task (modality-destination.ts). Finished units are the indexes of the plan.
 */
export interface ScuTask {
  readonly signal: AbortSignal;
  readonly log: StoreJobContext['log'];
  bucketsDone(): Set<number>;
  markBucketDone(index: number): Promise<void>;
  content(): Readonly<Record<string, unknown>>;
  setContent(partial: Record<string, unknown>): void;
  setProgress(fraction: number): void;
}

/**
 * Sends every instance of the plan not yet confirmed, with retries (see OutageRetries); answers the
 * instances the modality refused. `progressShare` is the part of the progress the sends make (the rest is
 * storage commitment's).
 */
export async function sendPlanned(
  deps: Pick<StoreJobDeps, 'store' | 'config'>,
  ctx: ScuTask,
  modality: ModalityConfig,
  target: ScuTarget,
  plan: readonly PlannedInstance[],
  progressShare = 1,
): Promise<FailedInstance[]> {
  const { store, config } = deps;
  const indexOf = new Map(plan.map((p, i) => [p.ID, i]));
  const failed = new Map<string, FailedInstance>();
  const before = ctx.content();
  let warnings = typeof before.WarningInstancesCount === 'number' ? before.WarningInstancesCount : 0;
  const total = plan.length;
  const publish = () => {
    const stored = ctx.bucketsDone().size;
    ctx.setContent({
      StoredInstancesCount: stored,
      WarningInstancesCount: warnings,
      FailedInstancesCount: failed.size,
      FailedInstances: failed.size > 0 ? [...failed.values()].slice(0, FAILED_SHOWN) : undefined,
    });
    ctx.setProgress(total === 0 ? 1 : (stored / total) * progressShare);
  };
  publish();
  const retries = new OutageRetries(ctx, config, `modality "${modality.name}" (${modalityAddress(modality)})`);
  const outcome = async (o: StoreOutcome) => {
    const index = indexOf.get(o.instance.id);
    if (index === undefined) return;
    retries.progressed();
    if (o.kind === 'failure') {
      failed.set(o.instance.id, {
        ID: o.instance.id,
        SOPInstanceUID: o.instance.sopInstanceUid,
        Status: hex(o.status < 0 ? 0xffff : o.status),
        Reason: o.comment ?? 'refused by the modality',
      });
    } else {
      if (o.kind === 'warning') warnings++;
      await ctx.markBucketDone(index);
    }
    publish();
  };
  await retry(async () => {
    const done = ctx.bucketsDone();
    const todo = plan.filter((p, i) => !done.has(i) && !failed.has(p.ID)).map(scuInstance);
    try {
      await storeInstances(target, todo, {
        associations: maxAssociations(modality),
        signal: ctx.signal,
        read: (i) => readInstanceFile(store, i.id, plan[indexOf.get(i.id) ?? -1]?.Size ?? 0),
        layout: fileLayout,
        outcome,
      });
    } catch (e) {
      if (!ctx.signal.aborted) retries.failed();
      throw e;
    }
  }, retries.options());
  return [...failed.values()];
}
