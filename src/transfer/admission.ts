// Admission of push transactions at a receiver (Transfers.MaxPushTransactions, and the memory their
// manifests take within Transfers.PushTransactionsMemory): which idle transactions to evict for a new one,
// and the queue of creates waiting for room when none may be evicted, served in the order they came and
// each for a bounded time, so that many senders sharing one receiver take turns instead of racing each
// other's retries.
import { XferError } from '../errors.ts';
import type { PushReceiverCounters, Transaction } from './push-transaction.ts';

/** How long a create waits for room before it is answered 503, unless told otherwise: well within a sender's HttpTimeout. */
export const DEFAULT_ADMISSION_WAIT_MS = 20_000;

/**
 * Memory a held transaction takes while it is open, whatever its requests: its manifest, bucket list and
 * per-instance state (measured on a receiver: about 20 KiB, plus 0.4 KiB per declared instance). The
 * bytes in flight are the requests', bounded apart from this.
 */
export function transactionMemory(instances: number): number {
  return TX_BASE_BYTES + TX_INSTANCE_BYTES * Math.max(0, instances);
}
const TX_BASE_BYTES = 20 * 1024;
const TX_INSTANCE_BYTES = 410;

/** One create waiting for room: `cost` is its transactionMemory. */
interface Waiter {
  cost: number;
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
  /** Bytes of transactionMemory all held transactions may take together (0: no bound). */
  readonly maxMemory: number;
  readonly #evictIdleMs: number;
  readonly #waitMs: number;
  readonly #queue: Waiter[] = [];
  /** Places held by admitted creates not yet registered (woken or not), so that a newcomer does not take them. */
  #reserved = 0;
  /** The memory those places hold. */
  #reservedMemory = 0;

  constructor(o: {
    txs: ReadonlyMap<string, Transaction>;
    counters: Pick<PushReceiverCounters, 'refused' | 'waitedCreates'>;
    max: number;
    /** Bytes; 0 or absent: no bound. */
    maxMemory?: number;
    evictIdleMs: number;
    waitMs: number;
  }) {
    this.#txs = o.txs;
    this.#counters = o.counters;
    this.max = Math.max(1, Math.floor(o.max));
    this.maxMemory = o.maxMemory !== undefined && o.maxMemory > 0 ? o.maxMemory : 0;
    this.#evictIdleMs = Math.max(0, o.evictIdleMs);
    this.#waitMs = Math.max(0, o.waitMs);
  }

  /** Creates waiting now. */
  get waiting(): number {
    return this.#queue.length;
  }

  /** The memory held transactions take now (transactionMemory of each), and that admitted creates hold. */
  get memory(): number {
    let sum = this.#reservedMemory;
    for (const t of this.#txs.values()) sum += costOf(t);
    return sum;
  }

  /**
   * Waits for the turn of a create of `instances` instances: at once when nobody waits and there is room
   * (a place, and its transactionMemory within the bound); otherwise behind the creates already waiting,
   * until a transaction ends or becomes evictable, for at most the wait. Not admitted when the wait ran out
   * (the caller refuses it with refuse()). No create passes one that waits, so a large one is not starved.
   */
  async enter(instances = 0): Promise<Turn> {
    const none = { admitted: false, done: () => undefined };
    const cost = transactionMemory(instances);
    if (this.#queue.length === 0 && this.#room(cost)) {
      // Its place is held until it is registered, so that a create coming meanwhile does not count it free.
      this.#reserve(cost);
      return this.#held(cost);
    }
    if (this.#waitMs === 0) return none;
    this.#counters.waitedCreates++;
    const admitted = await new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        cost,
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
    return admitted ? this.#held(cost) : none;
  }

  #reserve(cost: number): void {
    this.#reserved++;
    this.#reservedMemory += cost;
  }

  /** The turn of a create admitted with a reserved place, given back by `done`. */
  #held(cost: number): Turn {
    let done = false;
    return {
      admitted: true,
      done: (failed) => {
        if (done) return;
        done = true;
        this.#reserved--;
        this.#reservedMemory -= cost;
        // A create that failed leaves its place to the next one (one that succeeded holds it now).
        if (failed) this.wake();
      },
    };
  }

  /** Gives the waiting creates, oldest first, the room there is now (a transaction ended or became evictable). */
  wake(): void {
    for (let w = this.#queue[0]; w && this.#room(w.cost); w = this.#queue[0]) {
      this.#queue.shift();
      this.#reserve(w.cost);
      w.admit();
    }
  }

  /** Lets every waiter go at once (the receiver is closing: each then finds it closed). */
  close(): void {
    for (const w of this.#queue.splice(0)) {
      this.#reserve(w.cost);
      w.admit();
    }
  }

  /**
   * The transactions to evict to make room for a create of `instances` (none when there is room): the least
   * recently used ones with no request in flight and none for IdleBeforeEviction, as many as the place
   * and the memory bound need. An active transaction is never evicted: refuse() when those that qualify
   * are not enough. Asked by a create admitted by enter(): the places other admitted creates hold are theirs
   * already, counted when they are registered.
   */
  victims(instances: number): Transaction[] {
    const cost = transactionMemory(instances);
    let count = this.#txs.size;
    let memory = this.memory - this.#reservedMemory;
    const out: Transaction[] = [];
    const now = Date.now();
    for (const t of this.#txs.values()) {
      if (this.#fits(count, memory, cost)) break;
      if (!this.#evictable(t, now)) continue;
      out.push(t);
      count--;
      memory -= costOf(t);
    }
    return this.#fits(count, memory, cost) ? out : this.refuse();
  }

  /** 503 (which senders retry): no room, and none came while the create waited its turn. */
  refuse(): never {
    this.#counters.refused++;
    throw new XferError(
      'InternalError',
      `no room for another push transaction: ${this.#txs.size} of ${this.max} held (Transfers.MaxPushTransactions)` +
        (this.maxMemory > 0 ? `, ${mib(this.memory)} of ${mib(this.maxMemory)} MB (Transfers.PushTransactionsMemory)` : '') +
        `, all in use (one is evicted only after ${this.#evictIdleMs / 1000} s without a request); try again later`,
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

  /**
   * Whether a transaction of memory `cost` fits beside `count` transactions taking `memory`: a place under
   * the count, and the memory within its bound, unless nothing is held (one larger than the bound goes alone
   * rather than never).
   */
  #fits(count: number, memory: number, cost: number): boolean {
    if (count + 1 > this.max) return false;
    return this.maxMemory === 0 || count === 0 || memory + cost <= this.maxMemory;
  }

  /** Room for a create of memory `cost` not yet promised to a woken one: free, or made by evicting idle transactions. */
  #room(cost: number): boolean {
    let count = this.#txs.size + this.#reserved;
    let memory = this.memory;
    if (this.#fits(count, memory, cost)) return true;
    const now = Date.now();
    for (const t of this.#txs.values()) {
      if (!this.#evictable(t, now)) continue;
      count--;
      memory -= costOf(t);
      if (this.#fits(count, memory, cost)) return true;
    }
    return false;
  }
}

function costOf(t: Transaction): number {
  return transactionMemory(t.body.Instances.length);
}

function mib(bytes: number): string {
  return (Math.round((bytes / (1024 * 1024)) * 10) / 10).toString();
}
