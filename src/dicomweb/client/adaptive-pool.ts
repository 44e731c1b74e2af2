// Runs a list of requests with as many in flight as an AdaptiveConcurrency allows (the transfers' controller
// of requests in flight), stopping new ones at the first failure and rejecting with it once the others end.
import type { AdaptiveConcurrency } from '../../transfer/adaptive/controller.ts';

export async function runAdaptive<T>(items: readonly T[], adaptive: AdaptiveConcurrency, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { e: unknown } | undefined;
  const running = new Set<Promise<void>>();
  // Bounded: each turn starts one item of a finite list, or waits for one that runs to end.
  while ((next < items.length && failure === undefined) || running.size > 0) {
    if (next < items.length && failure === undefined && running.size < adaptive.limit) {
      const item = items[next++] as T;
      const p: Promise<void> = work(item)
        .catch((e: unknown) => {
          failure ??= { e };
        })
        .finally(() => running.delete(p));
      running.add(p);
      continue;
    }
    await Promise.race(running);
  }
  adaptive.drained();
  if (failure !== undefined) throw failure.e;
}
