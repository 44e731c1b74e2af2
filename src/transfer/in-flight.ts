// The node's one budget of what is in flight: requests and bytes of every transfer the node runs (bucket
// requests of its jobs, chunk answers it serves), capped by Transfers.MaxRequestsInFlight and
// MaxInFlightSize. One object per node, handed to whatever moves bytes; 0 means no cap.
import type { TransfersConfig } from '../config/types.ts';

/** The caps; 0 (or absent) means none. */
export interface InFlightLimits {
  maxRequests?: number;
  /** Bytes. */
  maxBytes?: number;
}

/** What is in flight now and since the start, for metrics and tests. */
export interface InFlightCounters {
  /** Requests holding a share of the budget now. */
  requests: number;
  /** Bytes they hold (a request larger than the byte cap counts as the cap). */
  bytes: number;
  /** Most requests and bytes held at once since the start. */
  peakRequests: number;
  peakBytes: number;
  /** Requests waiting for their share now. */
  waiting: number;
  /** Requests that had to wait, since the start. */
  waited: number;
}

/** Told why a request waits (a sentence for Content.Waiting), then undefined once it goes on. */
export type InFlightWaiting = (reason: string | undefined) => void;

const MB = 1024 * 1024;

/**
 * Who a request is for (a job's run, say): the budget is shared fairly between owners, so a job with many
 * requests in flight does not crowd out one with few. Any object or string; requests with no owner are one.
 */
export type InFlightOwner = object | string;

/** The share of the budget one owner (a job's run) uses: `run` as InFlight's, on that owner's behalf. */
export interface InFlightShare {
  run<T>(bytes: number, signal: AbortSignal | undefined, fn: () => Promise<T>, waiting?: InFlightWaiting): Promise<T>;
}

/** A request waiting for its share. */
interface Waiter {
  owner: InFlightOwner;
  charge: number;
  admit: () => void;
}

/** The owner of requests given none (chunk answers, say): they share one turn. */
const NO_OWNER: InFlightOwner = {};

export class InFlight {
  readonly #maxRequests: number;
  readonly #maxBytes: number;
  /** Requests admitted (holding a request slot and their bytes), and their bytes. */
  #held = 0;
  #heldBytes = 0;
  /** Requests admitted per owner, for the fair choice among waiters. */
  readonly #perOwner = new Map<InFlightOwner, number>();
  /** Waiting requests in arrival order. */
  readonly #queue: Waiter[] = [];
  #peakRequests = 0;
  #peakBytes = 0;
  #waited = 0;

  constructor(limits: InFlightLimits = {}) {
    this.#maxRequests = cap(limits.maxRequests);
    this.#maxBytes = cap(limits.maxBytes);
  }

  /** The budget of Transfers.MaxRequestsInFlight and Transfers.MaxInFlightSize (MB). */
  static fromConfig(t: Pick<TransfersConfig, 'MaxRequestsInFlight' | 'MaxInFlightSize'>): InFlight {
    return new InFlight({ maxRequests: t.MaxRequestsInFlight, maxBytes: t.MaxInFlightSize * MB });
  }

  /** The caps in force (0: none). */
  get limits(): Required<InFlightLimits> {
    return { maxRequests: this.#maxRequests, maxBytes: this.#maxBytes };
  }

  get counters(): InFlightCounters {
    return {
      requests: this.#held,
      bytes: this.#heldBytes,
      peakRequests: this.#peakRequests,
      peakBytes: this.#peakBytes,
      waiting: this.#queue.length,
      waited: this.#waited,
    };
  }

  /** The budget as one owner (a job's run) meets it: its requests get their fair share beside the others'. */
  share(owner: InFlightOwner): InFlightShare {
    return { run: (bytes, signal, fn, waiting) => this.run(bytes, signal, fn, waiting, owner) };
  }

  /**
   * Waits until one more request of `bytes` fits in the budget, and answers its release (idempotent).
   * Among waiting requests, the next one admitted is the oldest of the owner that holds the fewest
   * requests now (so owners share the budget in turn; with one owner, plain FIFO), and no request passes
   * that one, so a large request is not starved by small ones. When it has to wait, `waiting` is told why,
   * then told undefined once it goes on. Rejects with the signal's reason if aborted first, holding nothing.
   */
  acquire(bytes: number, signal?: AbortSignal, waiting?: InFlightWaiting, owner: InFlightOwner = NO_OWNER): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const charge = this.#maxBytes > 0 ? Math.min(Math.max(0, bytes), this.#maxBytes) : Math.max(0, bytes);
    if (this.#queue.length === 0 && this.#fits(charge)) return Promise.resolve(this.#take(owner, charge));
    this.#waited++;
    waiting?.(this.reason());
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#queue.indexOf(waiter);
        if (at < 0) return;
        this.#queue.splice(at, 1);
        waiting?.(undefined);
        reject(signal?.reason);
        // The one that gave up may have held back others that fit.
        this.#pump();
      };
      const waiter: Waiter = {
        owner,
        charge,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          waiting?.(undefined);
          resolve(this.#take(owner, charge));
        },
      };
      this.#queue.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs `fn` while holding a share of `bytes`: the one-line form for a request of a job. */
  async run<T>(
    bytes: number,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
    waiting?: InFlightWaiting,
    owner?: InFlightOwner,
  ): Promise<T> {
    const release = await this.acquire(bytes, signal, waiting, owner);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Why a request waits now, in plain words. */
  reason(): string {
    const parts: string[] = [];
    if (this.#maxRequests > 0) parts.push(`${this.#held} of ${this.#maxRequests} requests (Transfers.MaxRequestsInFlight)`);
    if (this.#maxBytes > 0) {
      parts.push(`${megabytes(this.#heldBytes)} of ${megabytes(this.#maxBytes)} MB (Transfers.MaxInFlightSize)`);
    }
    return `waits for room in this node's transfers in flight: ${parts.join(', ')}`;
  }

  /** One request always goes when nothing is held, so one larger than the byte cap runs alone rather than stalls. */
  #fits(charge: number): boolean {
    if (this.#held === 0) return true;
    if (this.#maxRequests > 0 && this.#held + 1 > this.#maxRequests) return false;
    return this.#maxBytes === 0 || this.#heldBytes + charge <= this.#maxBytes;
  }

  #take(owner: InFlightOwner, charge: number): () => void {
    this.#held++;
    this.#heldBytes += charge;
    this.#perOwner.set(owner, (this.#perOwner.get(owner) ?? 0) + 1);
    this.#peakRequests = Math.max(this.#peakRequests, this.#held);
    this.#peakBytes = Math.max(this.#peakBytes, this.#heldBytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#held--;
      this.#heldBytes -= charge;
      const left = (this.#perOwner.get(owner) ?? 1) - 1;
      if (left > 0) this.#perOwner.set(owner, left);
      else this.#perOwner.delete(owner);
      this.#pump();
    };
  }

  /** Admits waiters while the next one (fair choice) fits. */
  #pump(): void {
    for (let at = this.#next(); at >= 0; at = this.#next()) {
      const w = this.#queue[at] as Waiter;
      if (!this.#fits(w.charge)) return;
      this.#queue.splice(at, 1);
      w.admit();
    }
  }

  /** Index of the waiter to admit next: the oldest of the owner holding fewest requests; -1 when none waits. */
  #next(): number {
    let best = -1;
    let fewest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.#queue.length && fewest > 0; i++) {
      const held = this.#perOwner.get((this.#queue[i] as Waiter).owner) ?? 0;
      if (held < fewest) {
        fewest = held;
        best = i;
      }
    }
    return best;
  }
}

/** A cap as given: a positive integer, or 0 for none. */
function cap(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function megabytes(bytes: number): string {
  return (Math.round((bytes / MB) * 10) / 10).toString();
}
