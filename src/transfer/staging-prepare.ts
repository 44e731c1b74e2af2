// The commit's work done while a transfer runs: the instances of a staging area verified as they land are
// handed to the store in batches (prepareStaged), which places their files unseen, so that the commit
// finds little left to do. Batches form by themselves: whatever was verified while the last one ran.
import type { PreparedFile, StagedInstance, Store } from '../store/types.ts';

/** What a staging area asks of the store to do a commit's work ahead. */
export type CommitPreparer = Pick<Store, 'prepareStaged' | 'releasePrepared'>;

/** Most instances handed to the store at once. */
const PREPARE_BATCH = 64;

export class CommitPreparation {
  readonly #preparer: CommitPreparer;
  /** The instance as the store wants it, or undefined when it is no longer verified. */
  readonly #staged: (id: string) => StagedInstance | undefined;
  /** Instances handed over already (once each), those waiting for the next batch, what was placed. */
  readonly #asked = new Set<string>();
  #queue: string[] = [];
  readonly #placed = new Map<string, PreparedFile>();
  #running: Promise<void> | undefined;
  /** A commit takes the instances, or the area is gone: nothing more is begun. */
  #stopped = false;

  constructor(preparer: CommitPreparer, staged: (id: string) => StagedInstance | undefined) {
    this.#preparer = preparer;
    this.#staged = staged;
  }

  /** Instance `id` was verified with its header: it joins the next batch (once). */
  ready(id: string): void {
    if (this.#stopped || this.#asked.has(id)) return;
    this.#asked.add(id);
    this.#queue.push(id);
    this.#kick();
  }

  #kick(): void {
    if (this.#running || this.#stopped || this.#queue.length === 0) return;
    this.#running = this.#drain().finally(() => {
      this.#running = undefined;
      this.#kick();
    });
  }

  async #drain(): Promise<void> {
    const prepare = this.#preparer.prepareStaged?.bind(this.#preparer);
    for (let guard = 0; guard < 1_000_000 && this.#queue.length > 0 && !this.#stopped && prepare; guard++) {
      const batch = this.#queue.splice(0, PREPARE_BATCH).flatMap((id) => this.#staged(id) ?? []);
      if (batch.length === 0) continue;
      const placed = await prepare(batch).catch(() => []);
      batch.forEach((s, i) => {
        const p = placed[i];
        if (p) this.#placed.set(s.id, p);
      });
    }
  }

  /** Stops for good and waits for the batch running (a commit takes what is placed; a removal releases it). */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (let i = 0; i < 100 && this.#running; i++) await this.#running;
  }

  /** What was placed for `id`, if anything. */
  placed(id: string): PreparedFile | undefined {
    return this.#placed.get(id);
  }

  /** Undoes the placement of `ids` (files written again since); the store ignores what a commit adopted. */
  async release(ids?: readonly string[]): Promise<void> {
    const files: PreparedFile[] = [];
    for (const id of ids ?? [...this.#placed.keys()]) {
      const p = this.#placed.get(id);
      if (p) files.push(p);
      this.#placed.delete(id);
    }
    if (files.length > 0) await this.#preparer.releasePrepared?.(files).catch(() => undefined);
  }
}
