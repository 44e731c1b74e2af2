// The data-source side of pull mode (docs/protocol.md#chunks, #chunk-urls): answers a chunk request with the
// concatenated byte ranges of the listed instances, streamed from the store (never a whole instance in
// memory), through one gzip member when asked (at a level that follows the CPU), with a bounded number of
// answers produced at once, each holding its share of the node's in-flight budget (in-flight.ts). With the bucket-crc32 extension, the
// payload's CRC-32 is read ahead of the
// answer. With the zstd extension, the payload is read into memory and answered as one zstd frame.
import { Readable } from 'node:stream';
import { XferError } from '../errors.ts';
import { ChunkWalk, type ByteRange, type ChunkRequest } from '../protocol/chunk-url.ts';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { createGzipStream } from '../protocol/compression.ts';
import { checkZstdPayload, zstdCompress } from '../protocol/zstd.ts';
import { watchCpu } from './adaptive/cpu.ts';
import { GzipLevelChooser } from './adaptive/gzip-level.ts';
import { crc32Hex } from './capabilities.ts';
import type { Store } from '../store/types.ts';
import { Limiter } from '../util/concurrency.ts';
import { InFlight } from './in-flight.ts';

export interface ChunkPlan {
  ranges: ByteRange[];
  /** Bytes of the answer before compression. */
  total: number;
}

/**
 * The byte ranges of a chunk request (the walk of docs/protocol.md#chunks), given the sizes of the instances
 * the store holds. An instance that the walk has to visit and the store lacks is UnknownResource (404);
 * instances after the point where `size` bytes are gathered are not looked at, as the plugin does not open
 * them. Offsets and sizes are exact up to 2^53.
 */
export function planChunkRead(req: Pick<ChunkRequest, 'ids' | 'offset' | 'size'>, sizes: ReadonlyMap<string, number>): ChunkPlan {
  const walk = new ChunkWalk(req.offset, req.size);
  const ranges: ByteRange[] = [];
  for (const id of req.ids) {
    if (walk.done) break;
    const size = sizes.get(id);
    if (size === undefined) throw new XferError('UnknownResource', `Missing instance: ${id}`);
    const r = walk.visit(id, size);
    if (r && r.end > r.start) ranges.push(r);
  }
  return { ranges, total: walk.taken };
}

/** Cumulative figures of the chunk server, for metrics. */
export interface ChunkServerCounters {
  /** Chunk answers started. */
  requests: number;
  /** Uncompressed bytes read from the store for chunk answers. */
  bytes: number;
}

export interface ChunkAnswer {
  stream: Readable;
  contentType: 'application/octet-stream' | 'application/gzip' | 'application/zstd';
  /** Body length when known in advance (no compression, zstd). */
  length: number | undefined;
  plan: ChunkPlan;
  /** The payload's CRC-32 (8 hex digits) when it was taken on the way (a zstd answer, made whole). */
  crc32?: string;
  /**
   * Gives back the answer's slot and its share of the in-flight budget (idempotent): call it once the
   * answer is fully sent or the client went away, or at once if the answer is not sent.
   */
  release: () => void;
}

export class ChunkServer {
  readonly counters: ChunkServerCounters = { requests: 0, bytes: 0 };
  readonly #store: Store;
  readonly #slots: Limiter;
  /** The node's budget of requests and bytes in flight, shared with its jobs. */
  readonly inFlight: InFlight;
  /** The gzip level of the answers, chosen from this machine's CPU against the link (see GzipLevelChooser). */
  readonly gzip = new GzipLevelChooser();
  /** The zstd level of the answers, chosen the same way. */
  readonly zstd = new GzipLevelChooser({ codec: 'zstd' });
  #stopCpu: (() => void) | undefined;
  #stopZstdCpu: (() => void) | undefined;
  /** zstd answers being produced now. */
  #zstdRunning = 0;
  /** gzip answers being produced now. */
  #gzipRunning = 0;

  /**
   * `threads`: chunk answers produced at once, server-wide; more wait. The plugin uses Threads; a
   * dicom-xfer source allows MaxThreads, so that a puller that adapts its parallelism is not held back.
   */
  constructor(store: Store, threads: number, inFlight: InFlight = new InFlight()) {
    this.#store = store;
    this.#slots = new Limiter(Math.max(1, Math.floor(threads)));
    this.inFlight = inFlight;
  }

  /** Stops the CPU sampling. */
  close(): void {
    this.#stopCpu?.();
    this.#stopCpu = undefined;
    this.#stopZstdCpu?.();
    this.#stopZstdCpu = undefined;
  }

  /** Answers being produced now, and requests waiting for a slot. */
  get load(): { running: number; queued: number; limit: number } {
    return { running: this.#slots.running, queued: this.#slots.queued, limit: this.#slots.limit };
  }

  /**
   * Plans a chunk answer, waits for a server-wide slot and then for the answer's bytes in the node's
   * in-flight budget, and builds its body stream; the caller gives both back with `release`.
   * UnknownResource (404) when a needed instance is absent, before any wait and before any byte is
   * produced. The stream reads each range in turn from the store, and is gzipped as one member when
   * `compression` is gzip. `signal` gives up the waits (the client went away).
   */
  async answer(req: ChunkRequest, signal?: AbortSignal): Promise<ChunkAnswer> {
    const sizes = new Map<string, number>();
    for (const [id, info] of await this.#store.findInstances([...new Set(req.ids)])) sizes.set(id, info.size);
    const plan = planChunkRead(req, sizes);
    // A zstd answer is made whole in memory: bounded before any wait.
    if (req.compression === 'zstd') checkZstdPayload(plan.total);
    const slot = await this.#slots.acquire(1, signal);
    let budget: () => void;
    try {
      budget = await this.inFlight.acquire(plan.total, signal);
    } catch (e) {
      slot();
      throw e;
    }
    const release = (): void => {
      budget();
      slot();
    };
    if (req.compression !== 'zstd') return { ...this.#body(req, plan), plan, release };
    try {
      return { ...(await this.#zstdBody(plan)), plan, release };
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * A zstd answer: the payload read into memory (its share of the in-flight budget is held already), its
   * CRC-32 taken on the way, made one frame in the thread pool and sent with its length.
   */
  async #zstdBody(plan: ChunkPlan): Promise<Omit<ChunkAnswer, 'plan' | 'release'>> {
    this.counters.requests++;
    this.#stopZstdCpu ??= watchCpu(this.zstd, () => this.#zstdRunning > 0);
    this.#zstdRunning++;
    try {
      const parts: Buffer[] = [];
      let crc = 0;
      for await (const piece of this.#read(plan.ranges)) {
        crc = zlibCrc32(piece, crc);
        parts.push(piece);
      }
      const frame = await zstdCompress(Buffer.concat(parts, plan.total), this.zstd.level);
      return { stream: Readable.from([frame]), contentType: 'application/zstd', length: frame.length, crc32: crc32Hex(crc) };
    } finally {
      this.#zstdRunning--;
    }
  }

  /** The body stream of a planned answer. */
  #body(req: ChunkRequest, plan: ChunkPlan): Omit<ChunkAnswer, 'plan' | 'release'> {
    this.counters.requests++;
    const raw = Readable.from(this.#read(plan.ranges), { objectMode: false, highWaterMark: 256 * 1024 });
    if (req.compression === 'gzip') {
      this.#stopCpu ??= watchCpu(this.gzip, () => this.#gzipRunning > 0);
      const gz = createGzipStream(this.gzip.level);
      this.#gzipRunning++;
      // 'close' comes once, whether the answer ended, failed or was cut.
      gz.once('close', () => this.#gzipRunning--);
      // A failed read must fail the answer (the connection is cut), not end it early as if complete.
      raw.on('error', (e) => gz.destroy(e));
      gz.on('close', () => raw.destroy());
      return { stream: raw.pipe(gz), contentType: 'application/gzip', length: undefined };
    }
    return { stream: raw, contentType: 'application/octet-stream', length: plan.total };
  }

  /**
   * The CRC-32 (8 hex digits) of a planned answer's uncompressed payload, read from the store ahead of
   * the answer (extension bucket-crc32). Nothing is held in memory; the bytes are read twice, which the
   * page cache makes cheap next to sending them.
   */
  async crc32(plan: ChunkPlan): Promise<string> {
    let crc = 0;
    for (const r of plan.ranges) {
      const s = await this.#store.readRange(r.ID, r.start, r.end);
      for await (const piece of s) crc = zlibCrc32(piece as Buffer, crc);
    }
    return crc32Hex(crc);
  }

  async *#read(ranges: readonly ByteRange[]): AsyncGenerator<Buffer> {
    for (const r of ranges) {
      const s = await this.#store.readRange(r.ID, r.start, r.end);
      try {
        for await (const piece of s) {
          this.counters.bytes += (piece as Buffer).length;
          yield piece as Buffer;
        }
      } finally {
        s.destroy();
      }
    }
  }
}
