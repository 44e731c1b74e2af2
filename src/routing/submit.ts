// The jobs a routing rule submits: a PushTransfer to a transfers peer (the same job POST /transfers/send
// makes), a DicomModalityStore to a DICOM modality, or a DicomWebStow to a DICOMweb server. Each carries the
// rule's name (Content.Route) and its send's key (Content.RouteBatch), by which a send whose job ID was not
// recorded before a crash finds it again.
import type { RouteRuleConfig } from '../config/types.ts';
import type { JobsEngine } from '../jobs/engine.ts';
import type { DestinationKind } from './rules.ts';

/** One batch to one destination. */
export interface SendPlan {
  rule: RouteRuleConfig;
  destination: string;
  kind: DestinationKind;
  /** Orthanc IDs of the instances, sorted. */
  instances: readonly string[];
  /** The send's key (batch/destination). */
  key: string;
}

/** Submits the job of a send; answers its ID. */
export function submitSend(jobs: JobsEngine, plan: SendPlan, senderTransferId: string): string {
  const { rule } = plan;
  const resources = plan.instances.map((ID) => ({ Level: 'Instance' as const, ID }));
  const content = { Route: rule.Name, RouteBatch: plan.key };
  if (plan.kind === 'peer') {
    const query = {
      Resources: resources,
      Peer: plan.destination,
      Compression: rule.Compression,
      Priority: rule.Priority,
      SenderTransferID: senderTransferId,
      Route: rule.Name,
      RouteBatch: plan.key,
    };
    return jobs.submit('PushTransfer', query, rule.Priority, content);
  }
  if (plan.kind === 'dicomweb') {
    const query = { Server: plan.destination, Resources: resources, Priority: rule.Priority, Route: rule.Name, RouteBatch: plan.key };
    return jobs.submit('DicomWebStow', query, rule.Priority, content);
  }
  const query = {
    Modality: plan.destination,
    Resources: resources,
    StorageCommitment: rule.StorageCommitment,
    Priority: rule.Priority,
    Route: rule.Name,
  };
  return jobs.submit('DicomModalityStore', query, rule.Priority, content);
}

/** The job that carries a send's key, if the jobs engine knows one (after a crash between submit and record). */
export function findJobByKey(jobs: JobsEngine, key: string): string | undefined {
  for (const id of jobs.list()) {
    const content = jobs.describe(id)['Content'];
    if (typeof content === 'object' && content !== null && (content as Record<string, unknown>)['RouteBatch'] === key) return id;
  }
  return undefined;
}
