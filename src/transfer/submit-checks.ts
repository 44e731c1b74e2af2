// Checks made when a send is asked for, before any job exists: every resource to send must be in the
// local store, so that a mistyped ID is refused at once (400, Orthanc's error shape) instead of becoming
// a job that fails later.
import { XferError, isXferError } from '../errors.ts';
import type { Resource } from '../protocol/wire.ts';
import type { Store } from '../store/types.ts';
import { mapLimit } from '../util/concurrency.ts';

/** Look-ups in flight at once (an Orthanc store answers each over HTTP). */
const CHECK_THREADS = 4;

/**
 * Refuses (UnknownResource, HTTP 400) resources that the store does not hold. A store that cannot answer
 * now (an Orthanc store that is down) does not refuse anything: the job will retry it.
 */
export async function assertLocalResources(store: Store, resources: readonly Resource[]): Promise<void> {
  const missing: Resource[] = [];
  await mapLimit(resources, CHECK_THREADS, async (r) => {
    try {
      if (r.Level === 'Instance') await store.instanceInfo(r.ID);
      else await store.listInstances(r.Level, r.ID);
    } catch (e) {
      if (isXferError(e, 'UnknownResource')) missing.push(r);
      // Anything else (the store is unavailable, a timeout) is left for the job, which retries.
    }
  });
  if (missing.length === 0) return;
  const first = missing[0] as Resource;
  const more = missing.length > 1 ? ` (and ${missing.length - 1} more)` : '';
  throw new XferError('UnknownResource', `${first.Level} ${first.ID} is not stored on this node${more}: nothing was sent`, {
    httpStatus: 400,
  });
}
