// Keeps a transfer's requests in flight from climbing once the bandwidth policy, not the link, holds it
// back: more requests cannot raise a rate that is flat at the limit, they would only split it finer.
// The requests-in-flight controller is left as it is; its level is capped from outside.

/** A measured rate this close to the limit means the limit is what holds the transfer. */
const AT_LIMIT = 0.9;

export class LevelCap {
  readonly #ceiling: () => number | undefined;
  /** The lowest level seen reaching the limit, while the limit stays the same. */
  #level: number | undefined;
  #limit: number | undefined;

  /** `ceiling`: bytes per second the policy allows the transfer now, undefined for none. */
  constructor(ceiling: () => number | undefined) {
    this.#ceiling = ceiling;
  }

  #current(): number | undefined {
    const c = this.#ceiling();
    // A new limit (a schedule's boundary, a changed peer): what the old one taught says nothing of it.
    if (c !== this.#limit) {
      this.#limit = c;
      this.#level = undefined;
    }
    return c;
  }

  /** After each decision of the controller: the level it ran at and the rate it measured (bytes per second). */
  observe(level: number, rate: number | undefined): void {
    const c = this.#current();
    if (c === undefined || rate === undefined || rate < AT_LIMIT * c) return;
    this.#level = Math.min(this.#level ?? level, level);
  }

  /** The requests in flight to run: the controller's `level`, at most the level that reached the limit. */
  of(level: number): number {
    this.#current();
    return this.#level === undefined ? level : Math.min(level, this.#level);
  }
}
