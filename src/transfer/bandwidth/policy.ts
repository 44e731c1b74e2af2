// The node's bandwidth policy: one token bucket per direction for the whole node (Transfers.RateLimit, or
// the RateSchedule entry in force at the node's local time) and one per peer and direction (the peer's
// RateLimit); a transfer's bytes take their tokens from both. Peers' clients see it as a WireGate.
import { type Readable, Transform } from 'node:stream';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../../config/types.ts';
import type { WireGate, WireWay } from '../../peers/client.ts';
import { pieces } from '../../peers/wire-gate.ts';
import { scheduledLimit } from './schedule.ts';
import { type BucketTimers, TokenBucket } from './token-bucket.ts';

/** Bytes per second in one Mbit/s (10^6 bits). */
export const BYTES_PER_MBIT = 125_000;

export interface BandwidthOptions {
  config: Pick<Config, 'Transfers'>;
  /** A peer's own RateLimit now (Mbit/s), undefined for none: read at each refill, so a changed peer applies at once. */
  peerLimit(peer: string): number | undefined;
  /** The node's clock, ms since the epoch: the schedule reads the local time of day from it. */
  now?: () => number;
  timers?: BucketTimers;
}

/**
 * Names a date-time (`2026-12-07T07:59:58`, read as the node's local time) at which the bandwidth policy's
 * clock starts, running at real speed from there: tests use it to put a node on a chosen day and hour.
 */
export const TEST_CLOCK_ENV = 'DICOM_XFER_TEST_CLOCK';

/** The policy's clock: Date.now, or with TEST_CLOCK_ENV set, that time plus the time since the call. */
export function policyClock(env: NodeJS.ProcessEnv): () => number {
  const start = env[TEST_CLOCK_ENV];
  if (start === undefined || start === '') return Date.now;
  const at = new Date(start).getTime();
  if (!Number.isFinite(at)) throw new Error(`${TEST_CLOCK_ENV}: "${start}" is not a date-time`);
  const offset = at - Date.now();
  return () => Date.now() + offset;
}

type Pair = Record<WireWay, TokenBucket>;

const WAYS: readonly WireWay[] = ['out', 'in'];

/** Mbit/s as bytes per second; undefined for 0 (no limit). */
function bytesPerSecond(mbps: number | undefined): number | undefined {
  return mbps !== undefined && mbps > 0 ? mbps * BYTES_PER_MBIT : undefined;
}

export class BandwidthPolicy {
  readonly #o: BandwidthOptions;
  readonly #now: () => number;
  readonly #node: Pair;
  readonly #peers = new Map<string, Pair>();
  readonly #gates = new Map<string, WireGate>();
  /** Bytes that waited for their turn, at the peer's bucket or the node's, by direction. */
  readonly #throttled: Record<WireWay, number> = { out: 0, in: 0 };

  constructor(o: BandwidthOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#node = this.#pair(() => bytesPerSecond(this.nodeLimitMbps()));
  }

  /** Mbit/s the node's transfers may use together now (each direction); 0 = none. */
  nodeLimitMbps(): number {
    const t = this.#o.config.Transfers;
    if (t.RateSchedule.length === 0) return t.RateLimit;
    return scheduledLimit(t.RateSchedule, t.RateLimit, new Date(this.#now()));
  }

  /** Mbit/s in force for transfers with `peer` now: the lower of its limit and the node's; undefined = none. */
  limitMbps(peer: string): number | undefined {
    const limits = [this.nodeLimitMbps(), this.#o.peerLimit(peer) ?? 0].filter((l) => l > 0);
    return limits.length > 0 ? Math.min(...limits) : undefined;
  }

  /** The gate of `peer`'s client: its bytes take tokens from the peer's bucket, then from the node's. */
  gate(peer: string): WireGate {
    let g = this.#gates.get(peer);
    if (g) return g;
    const own = this.#peerPair(peer);
    const node = this.#node;
    g = {
      take: (way, bytes, signal) => {
        const first = own[way].take(bytes, signal);
        const then = first ? undefined : node[way].take(bytes, signal);
        if (first || then) this.#throttled[way] += bytes;
        return first ? first.then(() => node[way].take(bytes, signal)) : then;
      },
      charge: (way, bytes) => {
        own[way].charge(bytes);
        node[way].charge(bytes);
      },
      limitMbps: () => this.limitMbps(peer),
    };
    this.#gates.set(peer, g);
    return g;
  }

  /**
   * A chunk answer this node serves (a peer pulls from it), paced by the node's outgoing bucket with its
   * own transfers: the node's limit covers what it sends either way. `signal` aborts when the client goes.
   */
  paceServed(body: Readable, signal: AbortSignal): Readable {
    const out = this.#node.out;
    const throttled = this.#throttled;
    const limited = () => out.rate() !== undefined;
    const paced = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        if (!limited()) {
          out.charge(chunk.length);
          cb(null, chunk);
          return;
        }
        const each = async () => {
          for (const piece of pieces(chunk)) {
            const turn = out.take(piece.byteLength, signal);
            if (turn) {
              throttled.out += piece.byteLength;
              await turn;
            }
            this.push(piece);
          }
        };
        each().then(() => cb(), cb);
      },
    });
    body.on('error', (e) => paced.destroy(e));
    paced.on('close', () => {
      if (!body.destroyed) body.destroy();
    });
    return body.pipe(paced);
  }

  #pair(rate: () => number | undefined): Pair {
    const o = { rate, now: this.#now, timers: this.#o.timers };
    return { out: new TokenBucket(o), in: new TokenBucket(o) };
  }

  #peerPair(peer: string): Pair {
    let p = this.#peers.get(peer);
    if (!p) {
      p = this.#pair(() => bytesPerSecond(this.#o.peerLimit(peer)));
      this.#peers.set(peer, p);
    }
    return p;
  }

  /** Prometheus: the node's limit in force, and the bytes counted and held back by the node's buckets. */
  registerIn(registry: Registry): void {
    const policy = this;
    registry.registerMetric(
      new Gauge({
        name: 'dicom_xfer_transfers_rate_limit_mbps',
        help: "Mbit/s the node's transfers may use together in each direction now (Transfers.RateLimit or RateSchedule); 0 = none.",
        registers: [],
        collect() {
          this.set(policy.nodeLimitMbps());
        },
      }),
    );
    registry.registerMetric(
      new Gauge({
        name: 'dicom_xfer_transfers_rate_waiting',
        help: 'Pieces of transfers waiting for their turn under the bandwidth policy now (node and peer buckets).',
        registers: [],
        collect() {
          this.set(policy.waiting());
        },
      }),
    );
    const counter = (name: string, help: string, pick: (way: WireWay) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['direction'],
        registers: [],
        collect() {
          this.reset();
          for (const way of WAYS) this.inc({ direction: way }, pick(way));
        },
      });
    registry.registerMetric(
      counter(
        'dicom_xfer_transfers_wire_bytes_total',
        "Bytes of the node's transfer calls on the wire, heads included.",
        (way) => policy.#node[way].counts.bytes,
      ),
    );
    registry.registerMetric(
      counter(
        'dicom_xfer_transfers_throttled_bytes_total',
        'Bytes of transfers that waited for the bandwidth policy (the node limit or a peer limit) before crossing the wire.',
        (way) => policy.#throttled[way],
      ),
    );
  }

  /** Pieces waiting for their turn now, in every bucket. */
  waiting(): number {
    let n = 0;
    for (const pair of [this.#node, ...this.#peers.values()]) for (const way of WAYS) n += pair[way].waiting;
    return n;
  }

  /** Fails every waiter (the node stops). */
  close(reason: unknown): void {
    for (const pair of [this.#node, ...this.#peers.values()]) for (const way of WAYS) pair[way].close(reason);
  }
}
