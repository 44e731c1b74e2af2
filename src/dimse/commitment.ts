// Storage commitment (Push Model) as the sender: after its C-STOREs, a job asks the modality to take
// responsibility for the instances (N-ACTION), then waits for its report (N-EVENT-REPORT), which comes on a
// new association to the node's DICOM server (handed to the CommitmentSink here) or on the same one. Reports
// are matched by TransactionUID; a job keeps its pending transaction in its private state, so that a report
// that arrives after a restart still ends the job resumed from it.
import { randomUUID } from 'node:crypto';
import dimse from 'dcmjs-dimse';
import type { Config } from '../config/types.ts';
import { XferError } from '../errors.ts';
import { formatOrthancTimestamp } from '../protocol/progress.ts';
import { waitText } from '../transfer/waiting.ts';
import { retry, retryOptionsFromConfig } from '../util/retry.ts';
import { AssociationError, associationError, isRetryableAssociation, type ScuTarget } from './scu.ts';
import type { CommitmentReport, CommitmentSink } from './services.ts';
import type { CommitmentOutcome, FailedInstance, PlannedInstance } from './store-job-kind.ts';
import type { CommitmentStep, StoreJobContext } from './store-job.ts';

const { Client, Dataset } = dimse;
const { NActionRequest } = dimse.requests;

export const STORAGE_COMMITMENT_CLASS = '1.2.840.10008.1.20.1';
/** The well-known SOP instance of the Storage Commitment Push Model. */
export const STORAGE_COMMITMENT_INSTANCE = '1.2.840.10008.1.20.1.1';
/** Action type 1: "Request Storage Commitment". */
const ACTION_REQUEST = 1;

/** Reports kept while no job waits for them (a report that comes before its job resumed). */
const EARLY_REPORTS = 1000;

/** A new UID under 2.25 (a UUID as a decimal number). */
export function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replaceAll('-', '')}`).toString()}`;
}

type Item = Record<string, unknown>;

function items(v: unknown): Item[] {
  if (Array.isArray(v)) return v.filter((x): x is Item => typeof x === 'object' && x !== null);
  return typeof v === 'object' && v !== null ? [v as Item] : [];
}

/**
 * The report in an N-EVENT-REPORT's data set, as the library reads it (keyword → value): the transaction,
 * the instances committed (ReferencedSOPSequence) and those refused with their reason (FailedSOPSequence).
 */
export function reportFromDataset(callingAet: string, elements: Record<string, unknown>): CommitmentReport {
  const transactionUid = elements.TransactionUID;
  if (typeof transactionUid !== 'string' || transactionUid === '') {
    throw new XferError('BadRequest', 'a storage commitment report without TransactionUID');
  }
  const uidOf = (i: Item) => (typeof i.ReferencedSOPInstanceUID === 'string' ? i.ReferencedSOPInstanceUID : '');
  return {
    callingAet,
    transactionUid,
    committed: items(elements.ReferencedSOPSequence)
      .map(uidOf)
      .filter((u) => u !== ''),
    failed: items(elements.FailedSOPSequence)
      .filter((i) => uidOf(i) !== '')
      .map((i) => ({ sopInstanceUid: uidOf(i), reason: typeof i.FailureReason === 'number' ? i.FailureReason : 0x0110 })),
  };
}

/** Failure reasons of PS3.4 for storage commitment, in words. */
const FAILURE_REASONS = new Map<number, string>([
  [0x0110, 'processing failure'],
  [0x0112, 'no such object instance'],
  [0x0213, 'resource limitation'],
  [0x0122, 'referenced SOP class not supported'],
  [0x0119, 'class / instance conflict'],
  [0x0131, 'duplicate transaction UID'],
]);

/** The node's commitment reports by transaction, and the step of a C-STORE job that asks and waits for one. */
export class CommitmentTracker implements CommitmentSink, CommitmentStep {
  readonly #waiting = new Map<string, (r: CommitmentReport) => void>();
  readonly #early = new Map<string, CommitmentReport>();
  readonly #config: Pick<Config, 'DicomStorageCommitmentTimeout' | 'Transfers'>;

  constructor(config: Pick<Config, 'DicomStorageCommitmentTimeout' | 'Transfers'>) {
    this.#config = config;
  }

  async report(r: CommitmentReport): Promise<void> {
    const waiter = this.#waiting.get(r.transactionUid);
    if (waiter) {
      waiter(r);
      return;
    }
    // No job waits yet (it resumes after a restart): kept for it, the oldest dropped beyond the bound.
    this.#early.set(r.transactionUid, r);
    if (this.#early.size > EARLY_REPORTS) {
      const oldest = this.#early.keys().next().value;
      if (oldest !== undefined) this.#early.delete(oldest);
    }
  }

  /** The report of a transaction, once it comes; rejects with Timeout at `deadline` (epoch ms) or when stopped. */
  wait(transactionUid: string, deadline: number, signal: AbortSignal): Promise<CommitmentReport> {
    const early = this.#early.get(transactionUid);
    if (early) {
      this.#early.delete(transactionUid);
      return Promise.resolve(early);
    }
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#waiting.delete(transactionUid);
      };
      const onAbort = () => {
        done();
        reject(signal.reason);
      };
      const timer = setTimeout(
        () => {
          done();
          reject(new XferError('Timeout', `no storage commitment report for transaction ${transactionUid} in time`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.#waiting.set(transactionUid, (r) => {
        done();
        resolve(r);
      });
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async commit(ctx: StoreJobContext, target: ScuTarget, instances: readonly PlannedInstance[]) {
    const state = ctx.loadPrivate() ?? { instances: [...instances] };
    let pending = state.commitment;
    if (!pending) {
      pending = { TransactionUID: newUid(), RequestedAt: Date.now() };
      ctx.setContent({ StorageCommitment: 'Pending' });
      const transaction = pending.TransactionUID;
      // A modality that cannot be reached is tried again as for the C-STOREs (RetryBudget), saying why.
      await retry(
        () => requestCommitment(target, transaction, instances, (r) => void this.report(r), ctx.signal),
        retryOptionsFromConfig(this.#config, {
          signal: ctx.signal,
          retryable: isRetryableAssociation,
          onRetry: (info) => {
            const why = info.error instanceof AssociationError ? info.error.why : String(info.error);
            ctx.setContent({
              Waiting: `${target.calledAet} cannot be reached for storage commitment: ${why}; next try in ${waitText(info.delayMs)}`,
            });
          },
        }),
      );
      // A report that came already is kept (report() holds it); saved, the transaction outlives a restart.
      await ctx.savePrivate({ ...state, commitment: pending });
      ctx.log.info({ transaction: pending.TransactionUID, instances: instances.length }, 'storage commitment asked');
    }
    const seconds = this.#config.DicomStorageCommitmentTimeout > 0 ? this.#config.DicomStorageCommitmentTimeout : 3600;
    const deadline = pending.RequestedAt + seconds * 1000;
    ctx.setContent({ Waiting: `the storage commitment report of ${target.calledAet}, until ${formatOrthancTimestamp(deadline)}` });
    let report: CommitmentReport;
    try {
      report = await this.wait(pending.TransactionUID, deadline, ctx.signal);
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      ctx.setContent({ StorageCommitment: 'Failed', Waiting: undefined });
      throw new XferError(
        'Timeout',
        `${target.calledAet} sent no storage commitment report within ${seconds} s (DicomStorageCommitmentTimeout)`,
      );
    }
    ctx.setContent({ Waiting: undefined });
    return judge(report, instances);
  }
}

/** The outcome of a report for the instances asked: each one committed, or named with its reason. */
function judge(report: CommitmentReport, instances: readonly PlannedInstance[]): { outcome: CommitmentOutcome; failed: FailedInstance[] } {
  const committed = new Set(report.committed);
  const refused = new Map(report.failed.map((f) => [f.sopInstanceUid, f.reason]));
  const failed: FailedInstance[] = [];
  for (const i of instances) {
    if (committed.has(i.SOPInstanceUID) && !refused.has(i.SOPInstanceUID)) continue;
    const reason = refused.get(i.SOPInstanceUID);
    failed.push({
      ID: i.ID,
      SOPInstanceUID: i.SOPInstanceUID,
      Status: reason === undefined ? '' : `0x${reason.toString(16).toUpperCase().padStart(4, '0')}`,
      Reason: reason === undefined ? 'not in the storage commitment report' : (FAILURE_REASONS.get(reason) ?? 'refused'),
    });
  }
  return { outcome: failed.length === 0 ? 'Committed' : 'Failed', failed };
}

/**
 * Sends the N-ACTION of storage commitment on its own association; a report that the modality sends on that
 * same association (some do) is handed to `onReport`.
 */
export async function requestCommitment(
  target: ScuTarget,
  transactionUid: string,
  instances: readonly PlannedInstance[],
  onReport: (r: CommitmentReport) => void,
  signal: AbortSignal,
): Promise<void> {
  const client = new Client();
  const request = new NActionRequest(STORAGE_COMMITMENT_CLASS, STORAGE_COMMITMENT_INSTANCE, ACTION_REQUEST);
  request.setDataset(
    new Dataset({
      TransactionUID: transactionUid,
      ReferencedSOPSequence: instances.map((i) => ({ ReferencedSOPClassUID: i.SOPClassUID, ReferencedSOPInstanceUID: i.SOPInstanceUID })),
    }),
  );
  let status: number | undefined;
  request.on('response', (r: InstanceType<typeof dimse.responses.Response>) => {
    status = r.getStatus();
  });
  client.addRequest(request);
  client.on('nEventReportRequest', (req: InstanceType<typeof dimse.requests.NEventReportRequest>, answer: (r: unknown) => void) => {
    const response = dimse.responses.NEventReportResponse.fromRequest(req);
    try {
      onReport(reportFromDataset(target.calledAet, req.getDataset()?.getElements() ?? {}));
      response.setStatus(0);
    } catch {
      response.setStatus(0x0110);
    }
    answer(response);
  });
  const failure = await new Promise<XferError | undefined>((resolve) => {
    let error: XferError | undefined;
    const onAbort = () => {
      try {
        client.abort();
      } catch {
        // Not connected (any more).
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    client.on('associationRejected', () => {
      error ??= associationError(target, 'association rejected (storage commitment)');
    });
    client.on('networkError', (e: unknown) => {
      error ??= associationError(target, e instanceof Error ? e.message : String(e), e);
    });
    client.on('closed', () => {
      signal.removeEventListener('abort', onAbort);
      resolve(error);
    });
    client.send(target.host, target.port, target.callingAet, target.calledAet, {
      connectTimeout: target.timeoutMs,
      associationTimeout: target.timeoutMs,
      pduTimeout: target.timeoutMs,
      // A modality may send its report on this association right after its answer: give it a moment.
      associationLingerTimeout: 500,
    });
  });
  if (signal.aborted) throw signal.reason;
  if (failure) throw failure;
  if (status !== 0) {
    const s = status === undefined ? 'no answer' : `status 0x${status.toString(16).padStart(4, '0')}`;
    throw new XferError('NetworkProtocol', `${target.calledAet} refused the storage commitment request (N-ACTION: ${s})`);
  }
}
