// Bucket compression as streams (docs/protocol.md#compression): single-member gzip out, exactly one gzip
// member in, and the length check of an inflated bucket. Memory stays bounded: nothing here holds a whole
// bucket.

import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { XferError } from '../errors.ts';

/** The plugin's (zlib's) default level. */
export const DEFAULT_GZIP_LEVEL = 6;

/**
 * A gzip stream writing one RFC 1952 member at `level` (0-9): no file name, mtime 0, the header an
 * Orthanc peer writes (1f8b 0800 00000000 00 03 at level 6).
 */
export function createGzipStream(level: number = DEFAULT_GZIP_LEVEL): zlib.Gzip {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new XferError('ParameterOutOfRange', `Bad gzip level: ${level}`);
  return zlib.createGzip({ level, chunkSize: ZLIB_CHUNK });
}

/**
 * Output pieces of zlib's streams. Its default (16 KiB) makes one round trip to the thread pool and one
 * callback per 16 KiB, which on a gigabyte costs seconds of the main thread; 128 KiB pieces cost 8
 * times fewer, and 64 streams in flight still hold only a few tens of MB.
 */
const ZLIB_CHUNK = 128 * 1024;

/** Compressed bytes a GunzipOneMember gathers while its inflater is busy, to hand over at once. */
const INPUT_BATCH = 128 * 1024;

/** Longest gzip header accepted (file name and comment included) before the input is called corrupt. */
const MAX_HEADER = 64 * 1024;

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/**
 * Length of the gzip header at the start of `buf`, or undefined when more bytes are needed. Throws
 * BadFileFormat when it is not a gzip deflate member.
 */
function gzipHeaderLength(buf: Buffer): number | undefined {
  if (buf.length >= 1 && buf[0] !== 0x1f) throw corrupt('not gzip data (bad magic number)');
  if (buf.length >= 2 && buf[1] !== 0x8b) throw corrupt('not gzip data (bad magic number)');
  if (buf.length >= 3 && buf[2] !== 8) throw corrupt('unknown gzip compression method');
  if (buf.length < 10) return undefined;
  const flags = buf[3] ?? 0;
  if (flags & 0xe0) throw corrupt('reserved gzip header flags set');
  let at = 10;
  if (flags & FEXTRA) {
    if (buf.length < at + 2) return undefined;
    at += 2 + buf.readUInt16LE(at);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (flags & flag) {
      const zero = buf.indexOf(0, at);
      if (zero < 0) return undefined;
      at = zero + 1;
    }
  }
  if (flags & FHCRC) at += 2;
  return buf.length >= at ? at : undefined;
}

function corrupt(what: string, cause?: unknown): XferError {
  return new XferError('BadFileFormat', `Corrupted gzip data: ${what}`, { cause });
}

type GunzipState = 'header' | 'body' | 'trailer' | 'done';

/**
 * Inflates exactly one gzip member: the header is parsed here, the deflate data goes through zlib's raw
 * inflater, and the trailer's CRC-32 and length are checked. Bytes after the member, an incomplete
 * member or corrupt data fail the stream with BadFileFormat (400), whereas zlib's own gunzip would go
 * on to a second member, which an Orthanc peer never reads.
 */
export class GunzipOneMember extends Transform {
  #state: GunzipState = 'header';
  #header: Buffer = Buffer.alloc(0);
  #inflater: zlib.InflateRaw | undefined;
  /** Body bytes given to the inflater and not yet known to be consumed by it, with their body offset. */
  #fed: { buf: Buffer; start: number }[] = [];
  #fedTotal = 0;
  #trailer: Buffer = Buffer.alloc(0);
  #crc = 0;
  #length = 0;
  #inflaterEnded: Promise<void> | undefined;
  #received = false;

  constructor() {
    // Compressed input waiting while the inflater works is handed to it in one piece (_writev): a slow
    // link delivers a few KB per socket read, and each write to the inflater is a round trip to the
    // thread pool.
    super({ writableHighWaterMark: INPUT_BATCH });
  }

  /**
   * The CRC-32 of everything inflated so far; once the stream has finished without error, the CRC-32 of
   * the whole payload, checked against the member's trailer.
   */
  get crc32(): number {
    return this.#crc >>> 0;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (chunk.length === 0) {
      cb();
      return;
    }
    this.#received = true;
    try {
      switch (this.#state) {
        case 'header': {
          this.#header = Buffer.concat([this.#header, chunk]);
          const length = gzipHeaderLength(this.#header);
          if (length === undefined) {
            if (this.#header.length > MAX_HEADER) throw corrupt('gzip header too long');
            cb();
            return;
          }
          const rest = this.#header.subarray(length);
          this.#header = Buffer.alloc(0);
          this.#startBody();
          if (rest.length === 0) {
            cb();
            return;
          }
          this.#feed(rest, cb);
          return;
        }
        case 'body':
          this.#feed(chunk, cb);
          return;
        case 'trailer':
          this.#trailer = Buffer.concat([this.#trailer, chunk]);
          this.#checkTrailer();
          cb();
          return;
        case 'done':
          throw corrupt('unexpected data after the gzip member');
      }
    } catch (e) {
      cb(e as Error);
    }
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], cb: (error?: Error | null) => void): void {
    const first = chunks[0];
    if (!first) {
      cb();
      return;
    }
    const chunk = chunks.length === 1 ? first.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this._transform(chunk, first.encoding, cb);
  }

  override _flush(cb: TransformCallback): void {
    const finish = () => {
      if (this.#state === 'done') cb();
      else cb(this.#received ? corrupt('truncated gzip data') : corrupt('empty body'));
    };
    if (this.#state === 'body' && this.#inflater && this.#inflaterEnded) {
      this.#inflater.end();
      this.#inflaterEnded.then(finish, (e: unknown) => cb(e as Error));
    } else {
      finish();
    }
  }

  override _read(size: number): void {
    // The consumer wants more: let the inflater produce again (it was paused when push() said stop).
    this.#inflater?.resume();
    super._read(size);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.#inflater?.destroy();
    cb(err);
  }

  #startBody(): void {
    this.#state = 'body';
    const inflater = zlib.createInflateRaw({ chunkSize: ZLIB_CHUNK });
    this.#inflater = inflater;
    inflater.on('data', (d: Buffer) => {
      this.#crc = zlib.crc32(d, this.#crc);
      this.#length += d.length;
      if (!this.push(d)) inflater.pause();
    });
    this.#inflaterEnded = new Promise<void>((resolve, reject) => {
      inflater.once('end', () => {
        try {
          this.#deflateEnded(inflater.bytesWritten);
          resolve();
        } catch (e) {
          this.destroy(e as Error);
          reject(e as Error);
        }
      });
      inflater.once('error', (e) => {
        const err = corrupt(e.message, e);
        this.destroy(err);
        reject(err);
      });
    });
    // The promise is also awaited in _flush; a rejection with no flush pending is already handled by destroy.
    this.#inflaterEnded.catch(() => undefined);
  }

  #feed(chunk: Buffer, cb: TransformCallback): void {
    const inflater = this.#inflater;
    if (!inflater) {
      cb(corrupt('internal state'));
      return;
    }
    this.#fed.push({ buf: chunk, start: this.#fedTotal });
    this.#fedTotal += chunk.length;
    inflater.write(chunk, (err) => {
      if (err) return; // reported through the inflater's 'error' event
      // Drop what the inflater has consumed for sure; the rest may hold the trailer.
      const consumed = inflater.bytesWritten;
      while (this.#fed.length > 0) {
        const first = this.#fed[0];
        if (!first || first.start + first.buf.length > consumed) break;
        this.#fed.shift();
      }
      cb();
    });
  }

  /** The deflate data ended after `consumed` body bytes: what follows it is the trailer. */
  #deflateEnded(consumed: number): void {
    const tail: Buffer[] = [];
    for (const { buf, start } of this.#fed) {
      const end = start + buf.length;
      if (end <= consumed) continue;
      tail.push(buf.subarray(Math.max(0, consumed - start)));
    }
    this.#fed = [];
    this.#state = 'trailer';
    this.#trailer = Buffer.concat(tail);
    this.#checkTrailer();
  }

  #checkTrailer(): void {
    if (this.#trailer.length < 8) return;
    if (this.#trailer.length > 8) throw corrupt('unexpected data after the gzip member');
    const crc = this.#trailer.readUInt32LE(0);
    const isize = this.#trailer.readUInt32LE(4);
    if (crc !== this.#crc >>> 0) throw corrupt('CRC-32 mismatch');
    if (isize !== this.#length % 2 ** 32) throw corrupt('length mismatch in the gzip trailer');
    this.#state = 'done';
  }
}

/** A stream that inflates exactly one gzip member (see GunzipOneMember). */
export function createGunzipStream(): GunzipOneMember {
  return new GunzipOneMember();
}

/**
 * Passes bytes through and fails unless exactly `expected` bytes went by: NetworkProtocol (500) with
 * Details like Orthanc's "WriteUncompressedBucket: 3 != 37422". A stream that runs past `expected`
 * fails once it is more than `slack` bytes past (Details "at least N != expected"), so an oversized or
 * malicious body is not read through; bytes past `expected` are never passed on. A little slack lets an
 * upstream inflater report a corrupt stream (400) before the length is blamed (500), as the plugin,
 * which inflates first, would. `label` replaces "WriteUncompressedBucket" in the Details.
 */
export class ExpectedLength extends Transform {
  readonly expected: number;
  readonly label: string;
  readonly slack: number;
  #seen = 0;

  constructor(expected: number, label = 'WriteUncompressedBucket', slack = 0) {
    super();
    this.expected = expected;
    this.label = label;
    this.slack = slack;
  }

  /** Bytes seen so far. */
  get bytes(): number {
    return this.#seen;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const before = this.#seen;
    this.#seen += chunk.length;
    if (this.#seen > this.expected + this.slack) {
      cb(new XferError('NetworkProtocol', `${this.label}: at least ${this.#seen} != ${this.expected}`));
      return;
    }
    if (this.#seen > this.expected) {
      // Keep counting (the stream may yet turn out corrupt upstream) but pass nothing past the bucket.
      cb(null, before < this.expected ? chunk.subarray(0, this.expected - before) : undefined);
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#seen !== this.expected) cb(new XferError('NetworkProtocol', `${this.label}: ${this.#seen} != ${this.expected}`));
    else cb();
  }
}

export function createLengthCheck(expected: number, label?: string, slack?: number): ExpectedLength {
  return new ExpectedLength(expected, label, slack);
}

/** Passes bytes through and counts them (e.g. the compressed bytes on the wire, for *SizeMB). */
export class ByteCounter extends Transform {
  #bytes = 0;
  readonly #onBytes: ((n: number) => void) | undefined;

  constructor(onBytes?: (n: number) => void) {
    super();
    this.#onBytes = onBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#bytes += chunk.length;
    this.#onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

/** gzip of a small buffer held in memory (one member). For bucket payloads use createGzipStream. */
export function gzipBuffer(data: Uint8Array, level: number = DEFAULT_GZIP_LEVEL): Buffer {
  return zlib.gzipSync(data, { level });
}

/** Inflates a gzip buffer held in memory with the one-member rules of GunzipOneMember. */
export async function gunzipBuffer(data: Uint8Array): Promise<Buffer> {
  const out: Buffer[] = [];
  const g = new GunzipOneMember();
  const done = new Promise<void>((resolve, reject) => {
    g.on('data', (d: Buffer) => out.push(d));
    g.once('end', resolve);
    g.once('error', reject);
  });
  g.end(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  await done;
  return Buffer.concat(out);
}
