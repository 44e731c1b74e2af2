// Resource expansion for /transfers/lookup and for a sender's first step (docs/protocol.md#lookup): resources
// to the set of instances with size and MD5, taken from the store's index; no DICOM file is read.
import { XferError } from '../errors.ts';
import { sortUniqueInstances, type InstanceInfo, type Resource } from '../protocol/wire.ts';
import type { Store } from '../store/types.ts';

/**
 * The instances of `resources`, de-duplicated and sorted by ID, each with its size and MD5 from the
 * store. A Patient/Study/Series expands to its instances; an Instance stands for itself. Rejects with
 * UnknownResource (404) when a resource is absent, including an Instance-level ID.
 */
export async function lookupInstances(store: Store, resources: readonly Resource[]): Promise<InstanceInfo[]> {
  const wanted = new Set<string>();
  for (const r of resources) {
    if (r.Level === 'Instance') {
      wanted.add(r.ID);
    } else {
      for (const id of await store.listInstances(r.Level, r.ID)) wanted.add(id);
    }
  }
  const ids = [...wanted];
  const found = await store.findInstances(ids);
  const out: InstanceInfo[] = [];
  for (const id of ids) {
    const info = found.get(id);
    // An instance listed under a series a moment ago may have been deleted since: same answer.
    if (!info) throw new XferError('UnknownResource', `Missing instance: ${id}`);
    out.push({ ID: info.id, Size: info.size, MD5: info.md5 });
  }
  return sortUniqueInstances(out);
}
