// The worker pool of a transfer: buckets in flight up to a limit that a controller (AdaptiveConcurrency)
// moves while the run goes on, built on the node's one concurrency primitive (util/concurrency.ts).
import { drain, Limiter } from '../../util/concurrency.ts';

/**
 * Runs `work` on every item with at most `limit()` in flight, re-reading the limit as items finish and
 * whenever `subscribe`'s callback fires (a controller raised it), so the run follows a changing limit.
 * `items` is a list, or a function that hands out the next item (undefined: none left) at the moment a
 * slot frees, so that what it hands out can depend on the state of the run. The first failure stops new
 * items; the ones in flight finish; then the failure is thrown. `stop()` true also stops new items (a pause).
 */
export async function runWithLimit<T>(
  items: readonly T[] | (() => T | undefined),
  limit: () => number,
  work: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
  subscribe?: (wake: () => void) => () => void,
): Promise<void> {
  let at = 0;
  const take: () => T | undefined = typeof items === 'function' ? items : () => (at < items.length ? items[at++] : undefined);
  // The limit is read at every admission; the controller's callback admits at once what a raise allows.
  const slots = new Limiter(() => Math.max(1, limit()));
  const unsubscribe = subscribe?.(() => slots.wake());
  try {
    await drain(take, slots, work, stop);
  } finally {
    unsubscribe?.();
  }
}
