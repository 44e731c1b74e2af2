// The write of one bucket payload into a staging area's files: each piece at its place as it streams in,
// gathered into large positional writes, the payload's length and CRC-32 checked, each instance's MD5 taken
// in the MD5 worker once its bytes are on disk. One BucketWriter per payload; its state is its fields.
import type { FileHandle } from 'node:fs/promises';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import { XferError, isXferError } from '../errors.ts';
import { bucketSize, payloadLayout, type PlacedChunk } from '../protocol/buckets.ts';
import { createGunzipStream, createLengthCheck, type GunzipOneMember } from '../protocol/compression.ts';
import type { Bucket, Compression, InstanceInfo } from '../protocol/wire.ts';
import { ZstdOneFrame } from '../protocol/zstd.ts';
import { BUCKET_CHECKSUM_STATUS, CRC32_MEMBER, HEADER_CRC32, crc32Hex } from './capabilities.ts';
import { HEAD_BYTES, type InstanceChecks } from './staging-checks.ts';

/** Bytes gathered before one positional write. */
const WRITE_BATCH = 1024 * 1024;
/** Gathered bytes are written when no more arrive for this long. */
const IDLE_FLUSH_MS = 20;

export interface WriteBucketOptions {
  /** The payload is one gzip member to inflate first (a gzip transaction). */
  gunzip?: boolean;
  /**
   * The payload is one zstd frame (extension zstd) that must declare the payload's length; it is checked,
   * then decoded whole in the thread pool (src/protocol/zstd.ts). Its CRC-32 is taken as it is written.
   */
  zstd?: boolean;
  /** Aborting stops the write between two pieces of the payload (the transfer was discarded). */
  signal?: AbortSignal;
  /** Streams inserted before the inflater, e.g. a counter of the bytes on the wire. */
  before?: Transform[];
  /**
   * CRC-32 (8 hex digits) the uncompressed payload must have (extension bucket-crc32), or CRC32_MEMBER
   * for a gzip payload whose own trailer is the checksum. A mismatch, or a payload that cannot be
   * inflated, is CorruptedFile with status 422: the bucket is to be sent again.
   */
  crc32?: string | undefined;
}

/** The decoding options of a payload sent with `compression`. */
export function decoding(compression: Compression): Pick<WriteBucketOptions, 'gunzip' | 'zstd'> {
  return { gunzip: compression === 'gzip', zstd: compression === 'zstd' };
}

/** What a bucket writer needs of its staging area. */
export interface BucketTarget {
  instance(id: string): InstanceInfo | undefined;
  /**
   * The file of an instance, made if need be, opened for positional writes. `whole`: this writer is about to
   * write all of the instance, so a file it makes need not be sized first.
   */
  openForWrite(id: string, whole: boolean): Promise<FileHandle>;
  readonly checks: InstanceChecks;
}

/**
 * Turns a failure of the file system into our error table: a full disk is FullStorage (507), anything
 * else CannotWriteFile (500). XferErrors pass unchanged.
 */
export function fileError(e: unknown, what: string): XferError {
  if (isXferError(e)) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new XferError('FullStorage', `${what}: ${(e as Error).message}`, { cause: e });
  }
  return new XferError('CannotWriteFile', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

export class BucketWriter {
  readonly #target: BucketTarget;
  readonly #opts: WriteBucketOptions;
  readonly #total: number;
  /** The chunks of the payload, in payload order, empty ones left out. */
  readonly #layout: PlacedChunk[];
  readonly #handles = new Map<string, FileHandle>();
  /** Payload bytes placed so far. */
  #written = 0;
  /** Current chunk of the layout. */
  #k = 0;
  /** Bytes of the current chunk not yet written, gathered up to WRITE_BATCH, and where they go in it. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #pendingAt = 0;
  /** The current chunk is a whole instance (hashed from its file once written, see #endChunk). */
  #whole = false;
  /** The first bytes of that instance, for its header. */
  #head: Buffer[] | undefined;
  #headBytes = 0;
  /** The instance's write count when its chunk began, and this writer's writes into it since. */
  #hashEpoch = 0;
  #ownWrites = 0;
  /** CRC-32 of the payload, computed here when it is not inflated (the inflater has its own). */
  #payloadCrc = 0;
  readonly #sumHere: boolean;
  /** Idle flush: a piece is being handled, when the last one came, the timer, the flush under way and its failure. */
  #processing = false;
  #lastPieceAt = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  #idleFlush: Promise<void> | undefined;
  #idleError: { error: unknown } | undefined;

  constructor(target: BucketTarget, bucket: Bucket, opts: WriteBucketOptions) {
    this.#target = target;
    this.#opts = opts;
    this.#total = bucketSize(bucket);
    this.#layout = payloadLayout(bucket).filter((c) => c.Size > 0);
    if (opts.crc32 === CRC32_MEMBER && !opts.gunzip)
      throw new XferError('BadRequest', `${HEADER_CRC32}: ${CRC32_MEMBER} is for gzip bodies only`);
    this.#sumHere = opts.crc32 !== undefined && !opts.gunzip;
  }

  /**
   * Streams the payload into the files and flushes them; resolves with the payload bytes written. See
   * StagingArea.writeBucket for the errors.
   */
  async write(payload: AsyncIterable<Buffer> | Readable): Promise<number> {
    const opts = this.#opts;
    const gunzip: GunzipOneMember | undefined = opts.gunzip ? createGunzipStream() : undefined;
    try {
      const stages: (Transform | ((s: AsyncIterable<Buffer>) => Promise<void>))[] = [...(opts.before ?? [])];
      if (gunzip) stages.push(gunzip);
      else if (opts.zstd) stages.push(new ZstdOneFrame(this.#total));
      // With gzip, up to 1 MiB of excess output is counted, not written, so that a corrupt member is
      // reported as such (400) rather than as a wrong length (500).
      stages.push(createLengthCheck(this.#total, undefined, gunzip ? 1024 * 1024 : 0));
      stages.push((source) => this.#sink(source));
      // pipeline's typings cannot express a variable list of stages.
      await (pipeline as unknown as (...args: unknown[]) => Promise<void>)(payload, ...stages);
      // An inflated payload's CRC-32 is the one its gzip trailer was checked against: no second pass.
      const crc = gunzip ? gunzip.crc32 : this.#payloadCrc;
      if (opts.crc32 !== undefined && opts.crc32 !== CRC32_MEMBER && crc32Hex(crc) !== opts.crc32) {
        throw new XferError('CorruptedFile', `the bucket's CRC-32 is ${crc32Hex(crc)}, sent as ${opts.crc32}: send it again`, {
          httpStatus: BUCKET_CHECKSUM_STATUS,
        });
      }
      await Promise.all([...this.#handles.values()].map((fh) => fh.datasync()));
    } catch (e) {
      throw this.#failure(e);
    } finally {
      for (const fh of this.#handles.values()) await fh.close().catch(() => undefined);
    }
    return this.#written;
  }

  /** What a failed write is reported as. */
  #failure(e: unknown): XferError {
    if ((e as Error | undefined)?.name === 'AbortError') {
      return new XferError('UnknownResource', 'the transfer was discarded while this bucket arrived', { cause: e });
    }
    // With a checksum, a payload damaged in flight (bad gzip, wrong length) is a bucket to send again.
    if (this.#opts.crc32 !== undefined && (isXferError(e, 'BadFileFormat') || isXferError(e, 'NetworkProtocol'))) {
      return new XferError('CorruptedFile', `the bucket arrived damaged (${e.details ?? e.message}): send it again`, {
        httpStatus: BUCKET_CHECKSUM_STATUS,
        cause: e,
      });
    }
    return fileError(e, 'cannot write a bucket into the staging files');
  }

  /**
   * The last stage of the pipeline: places each piece as it comes. Gathered bytes wait for more only while
   * more keeps coming: a sender that pauses (a slow link) finds what it sent already on disk, and a stalled
   * request holds little. One timer per bucket, re-armed while pieces keep arriving, watches for the pause
   * (not a timer raced per piece).
   */
  async #sink(source: AsyncIterable<Buffer>): Promise<void> {
    const first = this.#layout[0];
    if (first) this.#startChunk(first);
    try {
      const it = source[Symbol.asyncIterator]();
      for (let guard = 0; guard < Number.MAX_SAFE_INTEGER; guard++) {
        this.#processing = false;
        const step = await it.next();
        this.#processing = true;
        if (this.#idleFlush) await this.#idleFlush;
        if (this.#idleError) throw this.#idleError.error;
        if (step.done) break;
        if (this.#opts.signal?.aborted) throw new XferError('UnknownResource', 'the transfer was discarded while this bucket arrived');
        await this.#place(step.value);
        this.#lastPieceAt = Date.now();
        if (this.#pendingBytes > 0 && !this.#idleTimer) this.#idleTimer = setTimeout(() => this.#onIdle(), IDLE_FLUSH_MS);
      }
    } finally {
      clearTimeout(this.#idleTimer);
      // A flush under way ends before the files are closed.
      await this.#idleFlush;
    }
    const last = this.#layout[this.#k];
    if (last) await this.#flush(last);
  }

  /** Places one piece of the payload across the chunks it spans. */
  async #place(piece: Buffer): Promise<void> {
    let at = 0;
    while (at < piece.length) {
      const c = this.#layout[this.#k];
      // The length check upstream refuses extra bytes before they get here.
      if (!c)
        throw new XferError('NetworkProtocol', `WriteUncompressedBucket: at least ${this.#written + piece.length - at} != ${this.#total}`);
      const inChunk = this.#written - c.payloadOffset;
      const n = Math.min(piece.length - at, c.Size - inChunk);
      const part = piece.subarray(at, at + n);
      if (this.#head && this.#headBytes < HEAD_BYTES) {
        this.#head.push(part);
        this.#headBytes += part.length;
      }
      if (this.#sumHere) this.#payloadCrc = crc32(part, this.#payloadCrc);
      this.#pending.push(part);
      this.#pendingBytes += n;
      at += n;
      this.#written += n;
      if (this.#written - c.payloadOffset >= c.Size) {
        await this.#endChunk(c);
        this.#k++;
        const following = this.#layout[this.#k];
        if (following) this.#startChunk(following);
      } else if (this.#pendingBytes >= WRITE_BATCH) await this.#flush(c);
    }
  }

  /** The idle timer fired: writes what is gathered if nothing came for IDLE_FLUSH_MS, else looks again later. */
  #onIdle(): void {
    this.#idleTimer = undefined;
    const current = this.#layout[this.#k];
    if (this.#pendingBytes === 0 || !current || this.#idleFlush) return;
    const quiet = Date.now() - this.#lastPieceAt;
    // A piece came meanwhile, or one is being handled: look again once it could be a pause.
    if (quiet < IDLE_FLUSH_MS || this.#processing) {
      this.#idleTimer = setTimeout(() => this.#onIdle(), Math.max(1, IDLE_FLUSH_MS - quiet));
      return;
    }
    this.#idleFlush = this.#flush(current).then(
      () => {
        this.#idleFlush = undefined;
      },
      (error: unknown) => {
        this.#idleFlush = undefined;
        this.#idleError = { error };
      },
    );
  }

  #startChunk(c: PlacedChunk): void {
    this.#pendingAt = 0;
    this.#ownWrites = 0;
    const inst = this.#target.instance(c.ID);
    const whole = c.Offset === 0 && inst !== undefined && c.Size === inst.Size;
    this.#whole = whole;
    this.#head = whole ? [] : undefined;
    this.#headBytes = 0;
    this.#hashEpoch = this.#target.checks.epoch(c.ID);
  }

  async #endChunk(c: PlacedChunk): Promise<void> {
    await this.#flush(c);
    if (!this.#whole) return;
    // Hashed in the MD5 worker from the page cache: the event loop, the receiver's busiest thread, is spared.
    this.#target.checks.wholeWritten(c.ID, this.#hashEpoch, this.#ownWrites, this.#head ?? []);
    this.#whole = false;
    this.#head = undefined;
  }

  /** Writes the gathered bytes of chunk `c` at their place. */
  async #flush(c: PlacedChunk): Promise<void> {
    if (this.#pendingBytes === 0) return;
    const fh = await this.#handleOf(c.ID, this.#whole);
    const checks = this.#target.checks;
    checks.beforeWrite(c.ID);
    this.#ownWrites++;
    await writeAllAt(fh, this.#pending, this.#pendingBytes, c.Offset + this.#pendingAt);
    // A piece of an instance (not the whole of it in this chunk) joins the instance's running hash.
    if (this.#whole) checks.spoil(c.ID);
    else checks.advance(c.ID, c.Offset + this.#pendingAt, this.#pendingBytes);
    this.#pendingAt += this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  async #handleOf(id: string, whole: boolean): Promise<FileHandle> {
    let fh = this.#handles.get(id);
    if (!fh) {
      fh = await this.#target.openForWrite(id, whole);
      this.#handles.set(id, fh);
    }
    return fh;
  }
}

/** Writes `buffers` (`length` bytes in all) at `position`, whatever the kernel takes per call. */
async function writeAllAt(fh: FileHandle, buffers: Buffer[], length: number, position: number): Promise<void> {
  if (buffers.length === 1) return writeFully(fh, buffers[0] as Buffer, position);
  const { bytesWritten } = await fh.writev(buffers, position);
  if (bytesWritten === length) return;
  // A short vectored write: finish the rest with plain writes.
  await writeFully(fh, Buffer.concat(buffers, length).subarray(bytesWritten), position + bytesWritten);
}

export async function writeFully(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  // A regular file takes the whole write at once; the loop only guards against short writes.
  for (let guard = 0; done < data.byteLength && guard < 1_000_000; guard++) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done, position + done);
    if (bytesWritten <= 0) throw new XferError('CannotWriteFile', 'short write into a staged file');
    done += bytesWritten;
  }
}
