// The node's current transfer rate: byte totals sampled once a second, the rate taken over the last few
// seconds (a sliding window, so one burst does not make the figure jump and a stall shows within seconds).

/** Cumulative bytes the node moved, each way. */
export interface ByteTotals {
  sent: number;
  received: number;
}

export interface ThroughputSample extends ByteTotals {
  /** Epoch milliseconds. */
  t: number;
}

/** Seconds of samples kept for the dashboard's chart. */
const KEEP = 300;
/** Seconds the current rate is averaged over. */
const WINDOW = 5;

export class Throughput {
  readonly #read: () => ByteTotals;
  readonly #samples: ThroughputSample[] = [];
  readonly #timer: NodeJS.Timeout;

  /** Starts sampling `read()` every second (the timer never keeps the process alive). */
  constructor(read: () => ByteTotals) {
    this.#read = read;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), 1000);
    this.#timer.unref();
  }

  #sample(): void {
    this.#samples.push({ t: Date.now(), ...this.#read() });
    if (this.#samples.length > KEEP + 1) this.#samples.splice(0, this.#samples.length - (KEEP + 1));
  }

  /** Bytes per second each way over the last WINDOW seconds (up to now, not only to the last sample). */
  now(): ByteTotals {
    const cur = { t: Date.now(), ...this.#read() };
    const from = this.#samples.find((s) => cur.t - s.t <= WINDOW * 1000 + 500) ?? this.#samples[this.#samples.length - 1];
    if (!from || cur.t - from.t < 200) return { sent: 0, received: 0 };
    const secs = (cur.t - from.t) / 1000;
    return { sent: Math.max(0, (cur.sent - from.sent) / secs), received: Math.max(0, (cur.received - from.received) / secs) };
  }

  /** The rate each way for every second sampled, oldest first (at most KEEP points). */
  history(): { t: number; sent: number; received: number }[] {
    const out: { t: number; sent: number; received: number }[] = [];
    for (let i = 1; i < this.#samples.length; i++) {
      const a = this.#samples[i - 1] as ThroughputSample;
      const b = this.#samples[i] as ThroughputSample;
      const secs = Math.max(0.001, (b.t - a.t) / 1000);
      out.push({ t: b.t, sent: Math.max(0, (b.sent - a.sent) / secs), received: Math.max(0, (b.received - a.received) / secs) });
    }
    return out;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
