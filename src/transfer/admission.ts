// Admission of push transactions at a receiver (Transfers.MaxPushTransactions): which idle transaction
// to evict for a new one, and the queue of creates waiting for room when none may be evicted, served in
// the order they came and each for a bounded time, so that many senders sharing one receiver take turns
// instead of racing each other's retries.
import { XferError } from '../errors.ts';
import type { PushReceiverCounters, Transaction } from './push-transaction.ts';

/** How long a create waits for room before it is answered 503, unless told otherwise: well within a sender's HttpTimeout. */
export const DEFAULT_ADMISSION_WAIT_MS = 20_000;

/** One create waiting for room. */
interface Waiter {
  admit: () => void;
  timer: NodeJS.Timeout | undefined;
}

/** A create's turn: whether it may go on, and `done` to call once it is registered or has failed. */
export interface Turn {
  admitted: boolean;
  done: (failed: boolean) => void;
}

export class PushAdmission {
  /** The receiver's held transactions, least recently used first. */
  readonly #txs: ReadonlyMap<string, Transaction>;
  readonly #counters: Pick<PushReceiverCounters, 'refused' | 'waitedCreates'>;
  readonly max: number;
  readonly #evictIdleMs: number;
  readonly #waitMs: number;
  readonly #queue: Waiter[] = [];
  /** Places held by admitted creates not yet registered (woken or not), so that a newcomer does not take them. */
  #reserved = 0;

  constructor(o: {
    txs: ReadonlyMap<string, Transaction>;
    counters: Pick<PushReceiverCounters, 'refused' | 'waitedCreates'>;
    max: number;
    evictIdleMs: number;
    waitMs: number;
  }) {
    this.#txs = o.txs;
    this.#counters = o.counters;
    this.max = Math.max(1, Math.floor(o.max));
    this.#evictIdleMs = Math.max(0, o.evictIdleMs);
    this.#waitMs = Math.max(0, o.waitMs);
  }

  /** Creates waiting now. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Waits for this create's turn: at once when nobody waits and there is room; otherwise behind the
   * creates already waiting, until a transaction ends or becomes evictable, for at most the wait. Not
   * admitted when the wait ran out (the caller refuses it with refuse()).
   */
  async enter(): Promise<Turn> {
    const none = { admitted: false, done: () => undefined };
    if (this.#queue.length === 0 && this.#room()) {
      // Its place is held until it is registered, so that a create coming meanwhile does not count it free.
      this.#reserved++;
      return this.#held();
    }
    if (this.#waitMs === 0) return none;
    this.#counters.waitedCreates++;
    const admitted = await new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        admit: () => {
          clearTimeout(waiter.timer);
          resolve(true);
        },
        timer: undefined,
      };
      waiter.timer = setTimeout(() => {
        const at = this.#queue.indexOf(waiter);
        if (at >= 0) this.#queue.splice(at, 1);
        resolve(false);
      }, this.#waitMs);
      this.#queue.push(waiter);
    });
    return admitted ? this.#held() : none;
  }

  /** The turn of a create admitted with a reserved place, given back by `done`. */
  #held(): Turn {
    let done = false;
    return {
      admitted: true,
      done: (failed) => {
        if (done) return;
        done = true;
        this.#reserved--;
        // A create that failed leaves its place to the next one (one that succeeded holds it now).
        if (failed) this.wake();
      },
    };
  }

  /** Gives the waiting creates, oldest first, the room there is now (a transaction ended or became evictable). */
  wake(): void {
    for (let w = this.#queue[0]; w && this.#room(); w = this.#queue[0]) {
      this.#queue.shift();
      this.#reserved++;
      w.admit();
    }
  }

  /** Lets every waiter go at once (the receiver is closing: each then finds it closed). */
  close(): void {
    for (const w of this.#queue.splice(0)) {
      this.#reserved++;
      w.admit();
    }
  }

  /**
   * The transaction to evict to make room, undefined when there is room: the least recently used one
   * with no request in flight and none for IdleBeforeEviction. An active transaction is never evicted:
   * refuse() when none qualifies.
   */
  victim(): Transaction | undefined {
    if (this.#txs.size < this.max) return undefined;
    const now = Date.now();
    for (const t of this.#txs.values()) if (this.#evictable(t, now)) return t;
    return this.refuse();
  }

  /** 503 (which senders retry): no room, and none came while the create waited its turn. */
  refuse(): never {
    this.#counters.refused++;
    throw new XferError(
      'InternalError',
      `all ${this.max} push transactions are in use (Transfers.MaxPushTransactions; one is evicted only after ` +
        `${this.#evictIdleMs / 1000} s without a request); try again later`,
      { httpStatus: 503 },
    );
  }

  /** Whether a transaction's last request just ended may make room at once (no idle time to wait). */
  get evictsWhenIdle(): boolean {
    return this.#evictIdleMs === 0;
  }

  #evictable(t: Transaction, now: number): boolean {
    return t.state === 'open' && t.inFlight === 0 && now - t.lastActivity >= this.#evictIdleMs;
  }

  /** A free place, or an evictable transaction, not yet promised to a woken create. */
  #room(): boolean {
    let room = this.max - this.#txs.size - this.#reserved;
    if (room > 0) return true;
    const now = Date.now();
    for (const t of this.#txs.values()) if (this.#evictable(t, now) && ++room > 0) return true;
    return false;
  }
}
