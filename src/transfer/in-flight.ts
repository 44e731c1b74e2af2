// The node's one budget of what is in flight: requests and bytes of every transfer the node runs (bucket
// requests of its jobs, chunk answers it serves), capped by Transfers.MaxRequestsInFlight and
// MaxInFlightSize. One object per node, handed to whatever moves bytes; 0 means no cap. It also shares one
// ceiling of requests in flight between the jobs' controllers (`seat`), so that the node's jobs see one link.
import type { TransfersConfig } from '../config/types.ts';

/** The caps; 0 (or absent) means none. */
export interface InFlightLimits {
  maxRequests?: number;
  /** Bytes. */
  maxBytes?: number;
  /**
   * The most requests the controllers of the node's running jobs ask for together (their levels), split
   * between them by `seat`; 0 (or absent): each job its own controller's level.
   */
  maxLevels?: number;
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
  /** A seat at the node's shared ceiling of requests in flight, for one phase of this owner's buckets. */
  seat(): InFlightSeat;
}

/**
 * One running phase's place at the node's ceiling of requests in flight (InFlightLimits.maxLevels): its
 * controller says how many requests it wants, the seat answers how many it may run now.
 */
export interface InFlightSeat {
  /** The requests this phase may run now, its controller asking for `wanted` (at least 1). */
  level(wanted: number): number;
  /** Calls `fn` when the phase may run more than before (another left, or asks for fewer); answers the unsubscribe. */
  onRaise(fn: () => void): () => void;
  /** The phase ends: its share goes to the others. Idempotent. */
  leave(): void;
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
  readonly #levels: LevelShare;

  constructor(limits: InFlightLimits = {}) {
    this.#maxRequests = cap(limits.maxRequests);
    this.#maxBytes = cap(limits.maxBytes);
    this.#levels = new LevelShare(cap(limits.maxLevels));
  }

  /**
   * The budget of Transfers.MaxRequestsInFlight and Transfers.MaxInFlightSize (MB). The jobs' controllers
   * share one ceiling: MaxRequestsInFlight when set, else MaxThreads, what one job alone may reach.
   */
  static fromConfig(t: Pick<TransfersConfig, 'MaxRequestsInFlight' | 'MaxInFlightSize' | 'MaxThreads'>): InFlight {
    const maxLevels = t.MaxRequestsInFlight > 0 ? t.MaxRequestsInFlight : t.MaxThreads;
    return new InFlight({ maxRequests: t.MaxRequestsInFlight, maxBytes: t.MaxInFlightSize * MB, maxLevels });
  }

  /** The caps in force (0: none). */
  get limits(): Required<Omit<InFlightLimits, 'maxLevels'>> {
    return { maxRequests: this.#maxRequests, maxBytes: this.#maxBytes };
  }

  /** The ceiling of requests in flight the running phases share (0: none). */
  get levelCeiling(): number {
    return this.#levels.max;
  }

  /** A seat at the node's shared ceiling of requests in flight (see InFlightSeat). */
  seat(): InFlightSeat {
    return this.#levels.seat();
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
    return { run: (bytes, signal, fn, waiting) => this.run(bytes, signal, fn, waiting, owner), seat: () => this.seat() };
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

/** A running phase at the shared ceiling: what its controller asks for now. */
interface Seated {
  wanted: number;
  raised: Set<() => void>;
}

/**
 * The node's ceiling of requests in flight split between the running phases: max-min fair (a phase that
 * asks for less than an even split leaves the rest to the others; an even split rounded up, so that phases
 * get equal parts), each at least 1. With one phase, its controller's level up to the ceiling: as before.
 */
class LevelShare {
  readonly max: number;
  /** Seated phases in the order they came. */
  readonly #seated: Seated[] = [];

  /** `max`: the ceiling; 0 for none (every phase runs its controller's level). */
  constructor(max: number) {
    this.max = max;
  }

  seat(): InFlightSeat {
    // Until it asks, a phase counts as wanting the whole ceiling: the others make room for it at once.
    const me: Seated = { wanted: Math.max(1, this.max), raised: new Set() };
    this.#seated.push(me);
    let left = false;
    return {
      level: (wanted) => {
        const w = Math.max(1, Math.floor(wanted));
        if (!left && w !== me.wanted) {
          const lower = w < me.wanted;
          me.wanted = w;
          if (lower) this.#raiseOthers(me);
        }
        return left || this.max === 0 ? w : (this.#grants().get(me) ?? w);
      },
      onRaise: (fn) => {
        me.raised.add(fn);
        return () => me.raised.delete(fn);
      },
      leave: () => {
        if (left) return;
        left = true;
        this.#seated.splice(this.#seated.indexOf(me), 1);
        this.#raiseOthers(me);
      },
    };
  }

  /** What each seated phase may run now (water-filling of `max` over their wants). */
  #grants(): Map<Seated, number> {
    const out = new Map<Seated, number>();
    let room = Math.max(this.max, this.#seated.length);
    const byWant = [...this.#seated].sort((x, y) => x.wanted - y.wanted);
    // The smallest wants first, each while it is within an even split of what is left; the rest split it.
    let k = 0;
    for (; k < byWant.length; k++) {
      const s = byWant[k] as Seated;
      if (s.wanted > Math.floor(room / (byWant.length - k))) break;
      out.set(s, s.wanted);
      room -= s.wanted;
    }
    const even = byWant.slice(k);
    // The rest split what is left evenly, rounded up: an extra request to some would give them a third more
    // than the others at 3 each (64 among 20); the ceiling is passed by fewer requests than there are phases.
    const part = even.length > 0 ? Math.ceil(room / even.length) : 0;
    for (const s of even) out.set(s, Math.max(1, Math.min(s.wanted, part)));
    return out;
  }

  #raiseOthers(me: Seated): void {
    if (this.max === 0) return;
    for (const s of [...this.#seated]) if (s !== me) for (const fn of [...s.raised]) fn();
  }
}

/** A cap as given: a positive integer, or 0 for none. */
function cap(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function megabytes(bytes: number): string {
  return (Math.round((bytes / MB) * 10) / 10).toString();
}
