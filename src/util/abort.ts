// One abort listener per signal, shared by every waiter on it: a job's signal is watched by each of its
// requests in flight and by each retry that sleeps, and a listener of its own for each would pile up on
// the signal (Node warns past ten: MaxListenersExceededWarning) for as many as MaxThreads allows.

interface Watch {
  fns: Set<() => void>;
  /** The signal's one listener, calling every fn. */
  fire: () => void;
}

const watches = new WeakMap<AbortSignal, Watch>();

/**
 * Calls `fn` once when `signal` aborts, through the signal's single shared listener. Answers the function
 * that stops watching (idempotent); the shared listener goes away with the last watcher. `fn` is not
 * called when the signal is already aborted: callers check `signal.aborted` first.
 */
export function whenAborted(signal: AbortSignal, fn: () => void): () => void {
  let w = watches.get(signal);
  if (!w) {
    const fns = new Set<() => void>();
    const fire = (): void => {
      watches.delete(signal);
      const all = [...fns];
      fns.clear();
      for (const f of all) f();
    };
    w = { fns, fire };
    watches.set(signal, w);
    signal.addEventListener('abort', fire, { once: true });
  }
  const watch = w;
  // A wrapper of its own: the same fn may watch twice.
  const entry = (): void => fn();
  watch.fns.add(entry);
  return () => {
    if (!watch.fns.delete(entry) || watch.fns.size > 0) return;
    if (watches.get(signal) === watch) watches.delete(signal);
    signal.removeEventListener('abort', watch.fire);
  };
}
