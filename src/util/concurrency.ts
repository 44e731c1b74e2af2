// The one shape of concurrency: a limiter (slots or weights, FIFO, a limit that may change while callers
// wait, abort-aware), and N workers draining a queue through it; mapLimit keeps results in input order.

/** A caller waiting in a Limiter's queue. */
interface Waiter {
  weight: number;
  admit: () => void;
}

/**
 * A counting limiter: `acquire(weight)` waits in FIFO order until `weight` fits under the limit beside
 * what is held, then answers the release. The limit is a number or a function read at every admission
 * (so a controller can move it); `wake()` admits the waiters a raised limit now allows. One caller is
 * always admitted when nothing is held, so a weight above the limit (or a limit of 0) runs alone rather
 * than stalls. No caller passes the head of the queue, so a heavy one is not starved by light ones.
 */
export class Limiter {
  #limit: () => number;
  #inUse = 0;
  #holders = 0;
  readonly #queue: Waiter[] = [];

  constructor(limit: number | (() => number)) {
    this.#limit = typeof limit === 'function' ? limit : () => limit;
  }

  /** The limit in force now. */
  get limit(): number {
    return this.#limit();
  }

  /** Sets a new limit (a number or a function) and admits the waiters it allows. */
  setLimit(limit: number | (() => number)): void {
    this.#limit = typeof limit === 'function' ? limit : () => limit;
    this.#pump();
  }

  /** Re-reads the limit and admits the waiters it now allows. */
  wake(): void {
    this.#pump();
  }

  /** Weight held now (the sum of the admitted callers' weights). */
  get inUse(): number {
    return this.#inUse;
  }

  /** Callers admitted and not yet released. */
  get running(): number {
    return this.#holders;
  }

  /** Callers waiting. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Whether an `acquire(weight)` made now would have to wait. */
  wouldWait(weight = 1): boolean {
    return this.#queue.length > 0 || !this.#fits(weight);
  }

  /**
   * Resolves with a release function (idempotent) once `weight` is admitted. Rejects with the signal's
   * reason if it is aborted first; a caller that gave up holds nothing and its place passes on.
   */
  acquire(weight = 1, signal?: AbortSignal): Promise<() => void> {
    if (!(weight >= 0) || !Number.isFinite(weight))
      return Promise.reject(new RangeError(`weight must be a finite number ≥ 0, not ${weight}`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#queue.length === 0 && this.#fits(weight)) return Promise.resolve(this.#take(weight));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#queue.indexOf(waiter);
        if (at < 0) return;
        this.#queue.splice(at, 1);
        reject(signal?.reason);
        // The head that gave up may have held back callers behind it that fit.
        if (at === 0) this.#pump();
      };
      const waiter: Waiter = {
        weight,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#take(weight));
        },
      };
      this.#queue.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #fits(weight: number): boolean {
    return this.#holders === 0 || this.#inUse + weight <= this.#limit();
  }

  #take(weight: number): () => void {
    this.#inUse += weight;
    this.#holders++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inUse -= weight;
      this.#holders--;
      this.#pump();
    };
  }

  #pump(): void {
    for (let head = this.#queue[0]; head && this.#fits(head.weight); head = this.#queue[0]) {
      this.#queue.shift();
      head.admit();
    }
  }
}

/**
 * Runs `work` on every item `take` hands out (undefined: none left), each while it holds one slot of
 * `limiter`; an item is taken only once a slot is free, so what `take` hands out can depend on the state
 * of the run. The first failure stops new items; the ones in flight finish; then the failure is thrown.
 * `stop()` true also stops new items (a pause) and the run ends once those in flight have finished.
 */
export async function drain<T>(
  take: () => T | undefined,
  limiter: Limiter,
  work: (item: T) => Promise<unknown>,
  stop: () => boolean = () => false,
): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  // Bounded by the items handed out: each turn either starts one or ends the loop.
  for (;;) {
    const release = await limiter.acquire();
    const item = failure === undefined && !stop() ? take() : undefined;
    if (item === undefined) {
      release();
      break;
    }
    let started: Promise<unknown>;
    try {
      started = work(item);
    } catch (error) {
      started = Promise.reject(error);
    }
    // The failure is recorded before the slot is released, so the loop that the release wakes sees it.
    const done: Promise<void> = started.then(release, (error: unknown) => {
      failure ??= { error };
      release();
    });
    running.add(done);
    void done.then(() => running.delete(done));
  }
  await Promise.all(running);
  if (failure) throw failure.error;
}

/**
 * Runs `fn` on every item with at most `limit` calls in flight; resolves with the results in input
 * order. Rejects with the first error after the calls already started have settled.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  await drain(
    () => (next < items.length ? next++ : undefined),
    new Limiter(Math.max(1, limit)),
    async (i) => {
      results[i] = await fn(items[i] as T, i);
    },
  );
  return results;
}
