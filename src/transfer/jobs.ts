// The transfer jobs of the protocol, as the jobs engine runs them: PushTransfer (push-job.ts, which hands
// the instances to a destination) and PullTransfer (pull-job.ts); what they share is in run.ts and
// bucket-phase.ts, the bodies in bucket-body.ts, the peer's side of the protocol in peer-api.ts.
import { randomUUID } from 'node:crypto';
import type { TransfersPeerState } from './peer-destination.ts';
import type { DestinationDirectory } from '../destinations/types.ts';
import type { AnyJobRunner, JobType } from '../jobs/engine.ts';
import type { TransferJobQuery } from './job-kinds.ts';
import { PullTransferJob } from './pull-job.ts';
import { PushTransferJob } from './push-job.ts';
import type { TransferDeps } from './run.ts';

export type { TransferDeps, TransferJobQuery };
export { PullTransferJob, PushTransferJob };
export { expandLocal } from './push-job.ts';

/** The runners of the transfer jobs: a push sends to a destination of `destinations`, a pull fetches from a peer. */
export function transferRunners(
  deps: TransferDeps,
  destinations: DestinationDirectory<TransfersPeerState>,
): (type: JobType) => AnyJobRunner {
  const push = new PushTransferJob(deps, destinations);
  const pull = new PullTransferJob(deps);
  return (type) => (type === 'PushTransfer' ? push : pull);
}

/** A fresh SenderTransferID when the query has none (docs/protocol.md#headers). */
export function senderTransferId(given: string | undefined): string {
  return given && given.length > 0 ? given : randomUUID();
}
