// The node's one budget of what is in flight: requests and bytes of every transfer the node runs (bucket
// requests of its jobs, chunk answers it serves), capped by Transfers.MaxRequestsInFlight and
// MaxInFlightSize. One object per node, handed to whatever moves bytes; 0 means no cap.
import type { TransfersConfig } from '../config/types.ts';
import { Limiter } from '../util/concurrency.ts';

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

export class InFlight {
  readonly #maxRequests: number;
  readonly #maxBytes: number;
  // Requests first, bytes second, always in this order, so two callers never hold one each and wait.
  readonly #requests: Limiter;
  readonly #bytes: Limiter;
  /** Requests admitted (holding a request slot and their bytes). */
  #held = 0;
  #peakRequests = 0;
  #peakBytes = 0;
  #waiting = 0;
  #waited = 0;

  constructor(limits: InFlightLimits = {}) {
    this.#maxRequests = cap(limits.maxRequests);
    this.#maxBytes = cap(limits.maxBytes);
    this.#requests = new Limiter(this.#maxRequests || Number.POSITIVE_INFINITY);
    this.#bytes = new Limiter(this.#maxBytes || Number.POSITIVE_INFINITY);
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
      bytes: this.#bytes.inUse,
      peakRequests: this.#peakRequests,
      peakBytes: this.#peakBytes,
      waiting: this.#waiting,
      waited: this.#waited,
    };
  }

  /**
   * Waits (FIFO) until one more request of `bytes` fits in the budget, and answers its release
   * (idempotent). When it has to wait, `waiting` is told why, then told undefined once it goes on. Rejects
   * with the signal's reason if aborted first, holding nothing.
   */
  async acquire(bytes: number, signal?: AbortSignal, waiting?: InFlightWaiting): Promise<() => void> {
    const charge = this.#maxBytes > 0 ? Math.min(Math.max(0, bytes), this.#maxBytes) : Math.max(0, bytes);
    const waits = this.#requests.wouldWait(1) || this.#bytes.wouldWait(charge);
    if (waits) {
      this.#waiting++;
      this.#waited++;
      waiting?.(this.reason());
    }
    let releaseRequest: (() => void) | undefined;
    try {
      releaseRequest = await this.#requests.acquire(1, signal);
      const releaseBytes = await this.#bytes.acquire(charge, signal);
      this.#held++;
      this.#peakRequests = Math.max(this.#peakRequests, this.#held);
      this.#peakBytes = Math.max(this.#peakBytes, this.#bytes.inUse);
      const request = releaseRequest;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        this.#held--;
        releaseBytes();
        request();
      };
    } catch (e) {
      releaseRequest?.();
      throw e;
    } finally {
      if (waits) {
        this.#waiting--;
        waiting?.(undefined);
      }
    }
  }

  /** Runs `fn` while holding a share of `bytes`: the one-line form for a request of a job. */
  async run<T>(bytes: number, signal: AbortSignal | undefined, fn: () => Promise<T>, waiting?: InFlightWaiting): Promise<T> {
    const release = await this.acquire(bytes, signal, waiting);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Why a request waits now, in plain words. */
  reason(): string {
    const parts: string[] = [];
    if (this.#maxRequests > 0) parts.push(`${this.#requests.running} of ${this.#maxRequests} requests (Transfers.MaxRequestsInFlight)`);
    if (this.#maxBytes > 0) {
      parts.push(`${megabytes(this.#bytes.inUse)} of ${megabytes(this.#maxBytes)} MB (Transfers.MaxInFlightSize)`);
    }
    return `waits for room in this node's transfers in flight: ${parts.join(', ')}`;
  }
}

/** A cap as given: a positive integer, or 0 for none. */
function cap(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function megabytes(bytes: number): string {
  return (Math.round((bytes / MB) * 10) / 10).toString();
}
