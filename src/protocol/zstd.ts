// zstd bodies between dicom-xfer nodes (extension zstd): one frame per body that declares its content size,
// made and read whole in the thread pool, and checked before it is decoded so that a frame cannot inflate
// past the payload it stands for (a zip bomb) nor hide a second frame behind the first.
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { Decoder, Encoder } from '@toondepauw/node-zstd';
import { XferError } from '../errors.ts';
import { Limiter } from '../util/concurrency.ts';

/**
 * Levels a node uses: 1 where the CPU is the limit (it writes under half of a DICOM payload), up to 9 where
 * the link is; past 9 it costs far more. Negative (faster) levels leave the literals unencoded and write
 * over 60% of noisy pixel data: more bytes than a fast link saves CPU for.
 */
export const ZSTD_MIN_LEVEL = 1;
export const ZSTD_DEFAULT_LEVEL = 2;
export const ZSTD_MAX_LEVEL = 9;
/**
 * Most payload bytes in one zstd body. A frame is made and read whole, so each request holds its payload in
 * memory: a sender whose buckets or spans may be larger uses gzip, which streams, and a receiver refuses a
 * larger zstd body (ParameterOutOfRange) before it reads it. Spans are at most Transfers.BucketSize (4 MiB
 * by default) and buckets under twice that.
 */
export const ZSTD_MAX_PAYLOAD = 64 * 1024 * 1024;

/** ParameterOutOfRange when a payload of `size` bytes is too large for one zstd body. */
export function checkZstdPayload(size: number): void {
  if (size > ZSTD_MAX_PAYLOAD) {
    throw new XferError('ParameterOutOfRange', `a zstd body holds at most ${ZSTD_MAX_PAYLOAD} payload bytes, not ${size}: use gzip`);
  }
}

const MAGIC = 0xfd2fb528;
/** Largest block of a frame (RFC 8878, Block_Maximum_Size). */
const MAX_BLOCK = 128 * 1024;
/** Longest frame header: magic, descriptor, window, dictionary ID (4) and content size (8). */
const MAX_HEADER = 18;

function corrupt(what: string, cause?: unknown): XferError {
  return new XferError('BadFileFormat', `Corrupted zstd data: ${what}`, { cause });
}

/** Most bytes a frame of `size` payload bytes may take (zstd's compress bound, with room for our header). */
export function zstdBound(size: number): number {
  return size + Math.floor(size / 256) + 1024;
}

interface FrameHeader {
  /** Bytes of the header. */
  length: number;
  /** The content size the frame declares, when it does. */
  contentSize: number | undefined;
  /** Where the content size field is, and its length (0: absent). */
  fcsAt: number;
  fcsLength: number;
  checksum: boolean;
}

/**
 * The frame header at the start of `buf`, or undefined when more bytes are needed. BadFileFormat when it is
 * not a zstd frame we read: another magic number (a skippable frame included), a reserved bit, a dictionary.
 */
function frameHeader(buf: Buffer): FrameHeader | undefined {
  if (buf.length < 5) {
    // The magic number is checked as soon as it is there, so that a body of something else fails early.
    if (buf.length === 4 && buf.readUInt32LE(0) !== MAGIC) throw corrupt('not a zstd frame (bad magic number)');
    return undefined;
  }
  if (buf.readUInt32LE(0) !== MAGIC) throw corrupt('not a zstd frame (bad magic number)');
  const fhd = buf[4] as number;
  if (fhd & 0x08) throw corrupt('reserved bit set in the frame header');
  if (fhd & 0x03) throw corrupt('the frame needs a dictionary');
  const single = (fhd & 0x20) !== 0;
  const fcsFlag = fhd >> 6;
  const fcsLength = fcsFlag === 0 ? (single ? 1 : 0) : 1 << fcsFlag;
  const fcsAt = 5 + (single ? 0 : 1);
  const length = fcsAt + fcsLength;
  if (buf.length < length) return undefined;
  let contentSize: number | undefined;
  if (fcsLength === 1) contentSize = buf[fcsAt] as number;
  else if (fcsLength === 2) contentSize = buf.readUInt16LE(fcsAt) + 256;
  else if (fcsLength === 4) contentSize = buf.readUInt32LE(fcsAt);
  else if (fcsLength === 8) contentSize = Number(buf.readBigUInt64LE(fcsAt));
  return { length, contentSize, fcsAt, fcsLength, checksum: (fhd & 0x04) !== 0 };
}

/**
 * Checks the whole of `frame` before it is decoded: one frame, declaring exactly `expected` payload bytes,
 * whose blocks end where the body ends. The decoder stops at the declared size, so what a frame can inflate
 * to is bounded by the span it was sent for. BadFileFormat otherwise.
 */
export function checkZstdFrame(frame: Buffer, expected: number): void {
  const h = frameHeader(frame.subarray(0, MAX_HEADER));
  if (!h) throw corrupt('truncated frame header');
  checkContentSize(h, expected);
  let at = h.length;
  // Every block holds at least a header of 3 bytes: the walk is bounded by the body's length.
  for (let guard = 0; guard <= frame.length; guard++) {
    if (at + 3 > frame.length) throw corrupt('truncated frame');
    const bh = (frame[at] as number) | ((frame[at + 1] as number) << 8) | ((frame[at + 2] as number) << 16);
    const last = (bh & 1) === 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw corrupt('reserved block type');
    if (size > MAX_BLOCK) throw corrupt('block larger than 128 KiB');
    at += 3 + (type === 1 ? 1 : size);
    if (last) break;
  }
  if (h.checksum) at += 4;
  if (at > frame.length) throw corrupt('truncated frame');
  if (at < frame.length) throw corrupt('unexpected data after the zstd frame');
}

function checkContentSize(h: FrameHeader, expected: number): void {
  if (h.contentSize === undefined) throw corrupt('the frame does not declare its content size');
  if (h.contentSize !== expected) throw corrupt(`the frame declares ${h.contentSize} bytes where the payload has ${expected}`);
}

/** `frame` with its content size written in its header (the encoder streams and leaves it out). */
function withContentSize(frame: Buffer, size: number): Buffer {
  const h = frameHeader(frame.subarray(0, MAX_HEADER));
  if (!h) throw new XferError('InternalError', 'the zstd encoder wrote a truncated frame');
  if (h.contentSize !== undefined) {
    if (h.contentSize !== size) throw new XferError('InternalError', `the zstd encoder declared ${h.contentSize} bytes for ${size}`);
    return frame;
  }
  // Four bytes (flag 2) up to 4 GiB, eight beyond.
  const fcsLength = size < 2 ** 32 ? 4 : 8;
  const out = Buffer.allocUnsafe(frame.length + fcsLength);
  frame.copy(out, 0, 0, h.fcsAt);
  out[4] = ((frame[4] as number) & 0x3f) | ((fcsLength === 4 ? 2 : 3) << 6);
  if (fcsLength === 4) out.writeUInt32LE(size, h.fcsAt);
  else out.writeBigUInt64LE(BigInt(size), h.fcsAt);
  frame.copy(out, h.fcsAt + fcsLength, h.fcsAt);
  return out;
}

const encoders = new Map<number, Encoder>();
const decoder = new Decoder();

/**
 * The package runs each call in libuv's thread pool, which the file system shares (the reads of a body, the
 * writes of a staged one). Codec calls take at most one thread per core and never the whole pool, so that
 * with many requests in flight a read or a write does not wait behind a queue of whole-bucket compressions,
 * and compressions beyond the cores would only share them.
 */
const POOL_THREADS = Number(process.env.UV_THREADPOOL_SIZE) || 4;
export const ZSTD_TASKS = Math.max(1, Math.min(availableParallelism(), POOL_THREADS - 1));
const tasks = new Limiter(ZSTD_TASKS);

/** Runs `call` (one codec call in the thread pool) when a task slot is free; the slot is released whatever the outcome. */
async function inPool<T>(call: () => Promise<T>): Promise<T> {
  const release = await tasks.acquire();
  try {
    return await call();
  } finally {
    release();
  }
}

/** Codec calls running and waiting now. */
export function zstdTasks(): { running: number; queued: number } {
  return { running: tasks.running, queued: tasks.queued };
}

/** One zstd frame of `payload` at `level`, declaring its content size; compressed in the thread pool. */
export async function zstdCompress(payload: Buffer, level: number): Promise<Buffer> {
  if (!Number.isInteger(level) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL) {
    throw new XferError('ParameterOutOfRange', `Bad zstd level: ${level}`);
  }
  let enc = encoders.get(level);
  if (!enc) {
    enc = new Encoder(level);
    encoders.set(level, enc);
  }
  const encoder = enc;
  return withContentSize(await inPool(() => encoder.encode(payload)), payload.length);
}

/**
 * The payload of one zstd frame that must hold exactly `expected` bytes: checked whole first
 * (checkZstdFrame), then decoded in the thread pool. BadFileFormat for anything else.
 */
export async function zstdDecompress(frame: Buffer, expected: number): Promise<Buffer> {
  checkZstdFrame(frame, expected);
  let out: Buffer;
  try {
    out = await inPool(() => decoder.decode(frame));
  } catch (e) {
    throw corrupt((e as Error).message, e);
  }
  if (out.length !== expected) throw corrupt(`the frame holds ${out.length} bytes where the payload has ${expected}`);
  return out;
}

/** Pieces the decoded payload is passed on in, so that the writer downstream gathers and writes as usual. */
const OUT_PIECE = 1024 * 1024;

/**
 * Takes one zstd frame for a payload of `expected` bytes and passes the payload on. The header is checked as
 * soon as it arrives and the body is refused once it outgrows what such a payload compresses to, so a body
 * that is not what it claims fails before it is held; the frame is decoded once whole.
 */
export class ZstdOneFrame extends Transform {
  readonly #expected: number;
  readonly #bound: number;
  #parts: Buffer[] = [];
  #length = 0;
  #headerChecked = false;

  constructor(expected: number) {
    super();
    checkZstdPayload(expected);
    this.#expected = expected;
    this.#bound = zstdBound(expected);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#parts.push(chunk);
    this.#length += chunk.length;
    try {
      if (this.#length > this.#bound) throw corrupt(`a body of more than ${this.#bound} bytes for a payload of ${this.#expected}`);
      if (!this.#headerChecked) {
        const head = Buffer.concat(this.#parts).subarray(0, MAX_HEADER);
        const h = frameHeader(head);
        if (h) {
          checkContentSize(h, this.#expected);
          this.#headerChecked = true;
        }
      }
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.#length === 0) {
      cb(corrupt('empty body'));
      return;
    }
    const frame = this.#parts.length === 1 ? (this.#parts[0] as Buffer) : Buffer.concat(this.#parts, this.#length);
    this.#parts = [];
    zstdDecompress(frame, this.#expected).then(
      (out) => {
        for (let at = 0; at < out.length; at += OUT_PIECE) this.push(out.subarray(at, at + OUT_PIECE));
        cb();
      },
      (e: unknown) => cb(e as Error),
    );
  }
}
