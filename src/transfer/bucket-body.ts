// The body of a bucket PUT, read from the store once: the payload's CRC-32 (extension bucket-crc32) is
// taken from the same bytes that are sent, never from a read ahead of them.
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { XferError } from '../errors.ts';
import { bucketSize } from '../protocol/buckets.ts';
import { createGzipStream } from '../protocol/compression.ts';
import type { Bucket, Compression } from '../protocol/wire.ts';
import { ZSTD_DEFAULT_LEVEL, zstdCompress } from '../protocol/zstd.ts';
import type { Store } from '../store/types.ts';
import { CRC32_MEMBER, crc32Hex } from './capabilities.ts';

/** The concatenated bytes of a bucket, read from the store as one stream. */
export function bucketStream(store: Store, bucket: Bucket): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for (const c of bucket) {
      if (c.Size === 0) continue;
      const s = await store.readRange(c.ID, c.Offset, c.Offset + c.Size);
      for await (const piece of s) yield piece as Buffer;
    }
  }
  return Readable.from(gen(), { objectMode: false });
}

/** Smallest payload taken from PayloadBuffers (smaller ones are cheap to allocate, and share Node's pool). */
const POOLED_MIN = 64 * 1024;
/** Payload buffers are kept in sizes rounded up to this grain. */
const POOLED_GRAIN = 256 * 1024;

/**
 * Payload buffers of one transfer, given back once their request succeeded and reused by the next ones. A
 * fresh buffer per request is memory outside the JavaScript heap, and V8 answers every few tens of MB of it
 * with a full collection of the heap: on loopback that cost the sender more CPU than its CRC-32. At most
 * `maxHeld` bytes wait here unused; a buffer not given back (a failed request) is left to the collector.
 */
export class PayloadBuffers {
  readonly #free = new Map<number, Buffer[]>();
  readonly #maxHeld: number;
  #held = 0;

  constructor(maxHeld = 64 * 1024 * 1024) {
    this.#maxHeld = maxHeld;
  }

  /** Bytes waiting to be reused. */
  get held(): number {
    return this.#held;
  }

  /** A buffer of `size` bytes (contents undefined), and how to give it back once nothing reads it any more. */
  take(size: number): { buf: Buffer; give: () => void } {
    if (size < POOLED_MIN) return { buf: Buffer.allocUnsafe(size), give: () => undefined };
    const capacity = Math.ceil(size / POOLED_GRAIN) * POOLED_GRAIN;
    let whole = this.#free.get(capacity)?.pop();
    if (whole) this.#held -= capacity;
    else whole = Buffer.allocUnsafeSlow(capacity);
    const kept = whole;
    let given = false;
    const give = (): void => {
      if (given || this.#held + capacity > this.#maxHeld) return;
      given = true;
      this.#held += capacity;
      const list = this.#free.get(capacity);
      if (list) list.push(kept);
      else this.#free.set(capacity, [kept]);
    };
    return { buf: whole.subarray(0, size), give };
  }
}

/**
 * The concatenated bytes of a bucket in one buffer of its size, and their CRC-32: each chunk read straight
 * into its place when the store can (no stream pieces, no copy into the buffer), else copied from its
 * stream, and checksummed right after its read, while its bytes are still in the processor's cache. With
 * `buffers`, the buffer comes from there, and `give` hands it back.
 */
export async function readBucket(
  store: Store,
  bucket: Bucket,
  buffers?: PayloadBuffers,
): Promise<{ payload: Buffer; crc: number; give: () => void }> {
  const size = bucketSize(bucket);
  const { buf: out, give } = buffers ? buffers.take(size) : { buf: Buffer.allocUnsafe(size), give: () => undefined };
  let at = 0;
  let crc = 0;
  for (const c of bucket) {
    if (c.Size === 0) continue;
    const part = out.subarray(at, at + c.Size);
    if (store.readRangeInto) await store.readRangeInto(c.ID, c.Offset, part);
    else await copyStream(await store.readRange(c.ID, c.Offset, c.Offset + c.Size), part, c.ID);
    crc = zlibCrc32(part, crc);
    at += c.Size;
  }
  return { payload: out, crc, give };
}

/** Copies `source` into `target`, which it must fill exactly. */
async function copyStream(source: Readable, target: Buffer, id: string): Promise<void> {
  let at = 0;
  for await (const piece of source) {
    const b = piece as Buffer;
    if (at + b.length > target.length) {
      source.destroy();
      throw new XferError('CorruptedFile', `instance ${id}: its range is longer than ${target.length} bytes`);
    }
    b.copy(target, at);
    at += b.length;
  }
  if (at !== target.length) throw new XferError('CorruptedFile', `instance ${id}: its range ends at ${at} of ${target.length} bytes`);
}

/** A bucket body ready to send, and the CRC-32 of its uncompressed payload when `checksum`. */
export interface BucketBody {
  /** In memory (can be sent again as is), or a stream (of `length` bytes; without, chunked). */
  body: Buffer | { stream: Readable; length?: number };
  crc32?: string;
  /** Gives a body in memory back to the PayloadBuffers it came from: call it once its request succeeded. */
  release?: () => void;
}

/** How a push builds its bodies with one peer. */
export interface BodyOptions {
  compression: Compression;
  /** Each body carries the CRC-32 of its payload (extension bucket-crc32). */
  checksum: boolean;
  /** The gzip level, and whether the peer takes chunked bodies (a dicom-xfer peer listing bucket-span). */
  gzip: { level: number; chunked: boolean };
  /** The zstd level (compression "zstd"; ZSTD_DEFAULT_LEVEL when absent). */
  zstd?: { level: number };
}

/**
 * Whether bodies are built whole in memory before they are sent (then the requests in flight are bounded by
 * the bytes they hold): a checksum without compression, gzip for a peer that wants a Content-Length, and
 * zstd always (a frame is made whole).
 */
export function bodiesInMemory(o: Pick<BodyOptions, 'compression' | 'checksum'> & { gzip: { chunked: boolean } }): boolean {
  if (o.compression === 'zstd') return true;
  return o.compression === 'none' ? o.checksum : !o.gzip.chunked;
}

/** Tapped bytes' CRC-32, as they pass. */
function crcTap(): { tap: Transform; crc32: () => string } {
  let crc = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      crc = zlibCrc32(chunk, crc);
      cb(null, chunk);
    },
  });
  return { tap, crc32: () => crc32Hex(crc) };
}

/** Every piece of `source`, in one buffer. */
async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const p of source) {
    parts.push(p);
    length += p.length;
  }
  return Buffer.concat(parts, length);
}

/**
 * The body of a bucket PUT, from one read of the store. Without compression it streams from the store, or,
 * when its CRC-32 is asked, is read whole into memory and checksummed there (the header must go before
 * the body). With gzip, a peer that takes chunked bodies gets the member as it is compressed: the
 * bytes leave while the rest is still being read, memory stays at a few zlib buffers per request, and the
 * link's pace holds the compression back; its checksum is the member's own trailer (CRC32_MEMBER). Other
 * peers (Orthanc's plugin wants a Content-Length) get the member compressed into memory first, the CRC-32
 * taken on the way in; their buckets are the plugin's size. With zstd (a dicom-xfer peer listing it) the
 * payload is read into memory, its CRC-32 taken there, and made one frame in the thread pool. A payload
 * held in memory is read straight into one buffer of its size (readBucket): the stream's pieces, their
 * copy into the whole and the garbage they leave cost more CPU than the rest of the sender's work.
 */
export async function bucketBody(store: Store, bucket: Bucket, o: BodyOptions, buffers?: PayloadBuffers): Promise<BucketBody> {
  if (o.compression === 'none' || o.compression === 'zstd') {
    if (!o.checksum && o.compression === 'none') return { body: { stream: bucketStream(store, bucket), length: bucketSize(bucket) } };
    if (o.compression === 'none') {
      const { payload, crc, give } = await readBucket(store, bucket, buffers);
      return { body: payload, crc32: crc32Hex(crc), release: give };
    }
    const { payload, crc } = await readBucket(store, bucket);
    const body = await zstdCompress(payload, o.zstd?.level ?? ZSTD_DEFAULT_LEVEL);
    return o.checksum ? { body, crc32: crc32Hex(crc) } : { body };
  }
  if (o.gzip.chunked) {
    const raw = bucketStream(store, bucket);
    const gz = createGzipStream(o.gzip.level);
    // A failed read fails the body (the request is cut), rather than ending the member early.
    raw.on('error', (e) => gz.destroy(e));
    gz.on('close', () => raw.destroy());
    const body = { stream: raw.pipe(gz) };
    return o.checksum ? { body, crc32: CRC32_MEMBER } : { body };
  }
  const { tap, crc32 } = crcTap();
  let body: Buffer = Buffer.alloc(0);
  await pipeline(bucketStream(store, bucket), tap, createGzipStream(o.gzip.level), async (source: AsyncIterable<Buffer>) => {
    body = await collect(source);
  });
  return o.checksum ? { body, crc32: crc32() } : { body };
}
