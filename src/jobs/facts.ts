// The log line of a job that succeeded, in plain words and as fields: what it moved, where, how fast.
import type { JobType } from './store.ts';

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const mb = (n: number) => `${(n / 1_000_000).toFixed(1)} MB`;

/**
 * The line of a job that succeeded: its peer, size, instances, running time (pauses left out) and data
 * rate (the bytes of the instances it moved, those already at the destination left out, per second).
 */
export function finishedFacts(
  type: JobType,
  content: Readonly<Record<string, unknown>>,
  runtimeMs: number,
): { fields: Record<string, unknown>; message: string } {
  if (type === 'DicomModalityStore') return storeFacts(content, runtimeMs);
  const seconds = Math.max(0, runtimeMs) / 1000;
  const fields: Record<string, unknown> = { seconds: Math.round(seconds * 10) / 10 };
  const peer = typeof content['Peer'] === 'string' ? content['Peer'] : undefined;
  const instances = num(content['TotalInstances']);
  const bytes = num(content['TotalBytes']);
  const moved = bytes === undefined ? undefined : Math.max(0, bytes - (num(content['SkippedBytes']) ?? 0));
  if (peer !== undefined) fields['peer'] = peer;
  if (instances !== undefined) fields['instances'] = instances;
  if (bytes !== undefined) fields['bytes'] = bytes;
  const skipped = num(content['SkippedInstances']);
  if (skipped) fields['skippedInstances'] = skipped;
  const rate = moved !== undefined && seconds > 0 ? moved / seconds : undefined;
  if (rate !== undefined) fields['bytesPerSecond'] = Math.round(rate);
  const what = `${instances ?? '?'} instance${instances === 1 ? '' : 's'}${bytes !== undefined ? `, ${mb(bytes)}` : ''}`;
  const from = type === 'PullTransfer' || type === 'DicomWebRetrieve' ? 'from' : 'to';
  const server = typeof content['Server'] === 'string' ? content['Server'] : undefined;
  const where = peer !== undefined ? ` ${from} peer "${peer}"` : server !== undefined ? ` ${from} DICOMweb server "${server}"` : '';
  const pace = rate !== undefined ? `, ${mb(rate)}/s` : '';
  const kind =
    type === 'PullTransfer' ? 'pull' : type === 'DicomWebStow' ? 'STOW-RS' : type === 'DicomWebRetrieve' ? 'DICOMweb retrieve' : 'push';
  return { fields, message: `${kind} finished: ${what}${where} in ${fields['seconds']} s${pace}` };
}

/**
 * The line of a C-STORE job to a modality: which modality, how many instances it took (with warnings) or
 * refused, and what storage commitment said, so that a log alone tells whether the PACS took responsibility.
 */
function storeFacts(content: Readonly<Record<string, unknown>>, runtimeMs: number): { fields: Record<string, unknown>; message: string } {
  const seconds = Math.max(0, runtimeMs) / 1000;
  const fields: Record<string, unknown> = { seconds: Math.round(seconds * 10) / 10 };
  const modality = typeof content['Modality'] === 'string' ? content['Modality'] : undefined;
  const aet = typeof content['RemoteAet'] === 'string' ? content['RemoteAet'] : undefined;
  const commitment = typeof content['StorageCommitment'] === 'string' ? content['StorageCommitment'] : undefined;
  const instances = num(content['InstancesCount']);
  const stored = num(content['StoredInstancesCount']) ?? 0;
  const failed = num(content['FailedInstancesCount']) ?? 0;
  const warnings = num(content['WarningInstancesCount']) ?? 0;
  // The job's Content has its size in whole megabytes only (as Orthanc's): no data rate is made from it.
  const sizeMB = num(content['TotalSizeMB']);
  Object.assign(fields, { modality, remoteAet: aet, instances, stored, failed, warnings, sizeMB, commitment });
  for (const k of Object.keys(fields)) if (fields[k] === undefined) delete fields[k];
  const where = modality === undefined ? '' : ` to modality "${modality}"${aet === undefined ? '' : ` (${aet})`}`;
  const count = `${stored} of ${instances ?? '?'} instance${instances === 1 ? '' : 's'} stored`;
  const what = `${count}${warnings ? ` (${warnings} with warnings)` : ''}, ${failed} failed`;
  return { fields, message: `C-STORE finished: ${what}${where} in ${fields['seconds']} s, storage commitment ${commitment ?? '?'}` };
}
