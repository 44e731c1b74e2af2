// The storage commitment reports (N-EVENT-REPORT of the Storage Commitment Push Model) that a modality
// sends back to the node: read from the request's data set as the DIMSE library gives it (keywords as keys,
// sequences as lists of items) into the node's CommitmentReport.
import type dimse from 'dcmjs-dimse';
import { XferError } from '../errors.ts';
import type { CommitmentReport } from './services.ts';

type NEventReportRequest = InstanceType<typeof dimse.requests.NEventReportRequest>;

/** Event types of the Storage Commitment Push Model (PS3.4 J.3.3): all committed, or some failed. */
export const COMMITMENT_SUCCESS = 1;
export const COMMITMENT_FAILURES = 2;

/** A value the library gives as a single item or a list of them. */
function items(v: unknown): Record<string, unknown>[] {
  const list = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
  return list.filter((i): i is Record<string, unknown> => typeof i === 'object' && i !== null);
}

function text(v: unknown): string {
  const first = Array.isArray(v) ? v[0] : v;
  return typeof first === 'string' ? first.replace(/\0+$/, '').trim() : '';
}

function numberOf(v: unknown): number {
  const first = Array.isArray(v) ? v[0] : v;
  return typeof first === 'number' ? first : Number(first ?? NaN);
}

/** Reads the report of an N-EVENT-REPORT; throws InvalidParameter (never anything else) when it is not one. */
export function commitmentReportOf(request: NEventReportRequest, callingAet: string): CommitmentReport {
  const eventType = request.getEventTypeId();
  if (eventType !== COMMITMENT_SUCCESS && eventType !== COMMITMENT_FAILURES) {
    throw new XferError('ParameterOutOfRange', `storage commitment event type ${eventType} (expected 1 or 2)`);
  }
  const elements = request.getDataset()?.getElements() ?? {};
  const transactionUid = text(elements.TransactionUID);
  if (transactionUid === '') throw new XferError('ParameterOutOfRange', 'the storage commitment report has no TransactionUID');
  const committed = items(elements.ReferencedSOPSequence)
    .map((i) => text(i.ReferencedSOPInstanceUID))
    .filter((uid) => uid !== '');
  const failed = items(elements.FailedSOPSequence)
    .map((i) => ({ sopInstanceUid: text(i.ReferencedSOPInstanceUID), reason: numberOf(i.FailureReason) }))
    .filter((f) => f.sopInstanceUid !== '')
    // A failure without a reason is reported as "processing failure" (0x0110), the general one.
    .map((f) => (Number.isInteger(f.reason) ? f : { ...f, reason: 0x0110 }));
  return { callingAet, transactionUid, committed, failed };
}
