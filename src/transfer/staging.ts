// The staging area of one incoming transfer: a directory with one pre-sized (sparse) file per declared
// instance, filled positionally by bucket payloads as they stream in, then handed to the store's atomic
// commit. Used by the push receiver; a pull download can use it the same way.
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { XferError, isXferError } from '../errors.ts';
import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { BUCKET_CHECKSUM_STATUS, CRC32_MEMBER, HEADER_CRC32, crc32Hex } from './capabilities.ts';
import { bucketSize, payloadLayout, type PlacedChunk } from '../protocol/buckets.ts';
import { createGunzipStream, createLengthCheck } from '../protocol/compression.ts';
import { sortUniqueInstances, type Bucket, type InstanceInfo } from '../protocol/wire.ts';
import type { StagedInstance } from '../store/types.ts';
import { parseDicomHeader } from '../dicom/parse.ts';
import type { DicomHeader } from '../dicom/types.ts';
import { mapLimit } from '../util/concurrency.ts';

/** Name of an instance's file inside a staging directory (IDs are lowercase hex and dashes only). */
export function stagedFileName(id: string): string {
  return `${id}.dcm`;
}

export interface WriteBucketOptions {
  /** The payload is one gzip member to inflate first (a gzip transaction). */
  gunzip?: boolean;
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

export class StagingArea {
  /** The directory holding the instance files. */
  readonly dir: string;
  readonly #instances: Map<string, InstanceInfo>;
  readonly #total: number;
  /** Instances whose whole file was hashed while written and matched the declared MD5. */
  readonly #verified = new Set<string>();
  /** Writes into each instance so far, to tell whether another bucket wrote while one was hashed. */
  readonly #epochs = new Map<string, number>();
  /** Instances written in pieces, hashed in order as their pieces land (see #advance). */
  readonly #running = new Map<string, Running>();
  /** Headers parsed from the bytes of verified instances: the commit need not read them again. */
  readonly #headers = new Map<string, DicomHeader>();
  /** Creation of each file made or being made. */
  readonly #made = new Map<string, Promise<void>>();
  #removed = false;

  private constructor(dir: string, instances: readonly InstanceInfo[]) {
    this.dir = dir;
    this.#instances = new Map(sortUniqueInstances(instances).map((i) => [i.ID, i]));
    let total = 0;
    for (const i of this.#instances.values()) total += i.Size;
    this.#total = total;
  }

  /**
   * Creates `dir` (and its parents) for one file per instance, each extended to its declared size without
   * writing data (sparse). Duplicated IDs collapse, the last declaration winning. The first files are made
   * before this resolves (so that a directory that cannot be written fails here, with the directory
   * removed and FullStorage / CannotWriteFile thrown); the others are made as the buckets write into them,
   * and the rest (instances no bucket writes: empty ones) by staged(), so that a transaction of 100,000
   * instances answers its create at once and makes no file ahead of its data.
   */
  static async create(dir: string, instances: readonly InstanceInfo[]): Promise<StagingArea> {
    const area = new StagingArea(dir, instances);
    try {
      await mkdir(dir, { recursive: true });
      const ids: string[] = [];
      for (const id of area.#instances.keys()) {
        if (ids.length >= FILE_PARALLELISM) break;
        ids.push(id);
      }
      await mapLimit(ids, FILE_PARALLELISM, (id) => area.#make(id));
    } catch (e) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw fileError(e, 'cannot create the staging files');
    }
    return area;
  }

  /**
   * The file of instance `id`, made (once) with its declared size; a creation that failed (a full disk)
   * is tried again by the next caller. Refused once the area is removed: no file outlives it.
   */
  #make(id: string): Promise<void> {
    if (this.#removed) return Promise.reject(new XferError('UnknownResource', 'the staging area was removed'));
    let made = this.#made.get(id);
    if (!made) {
      const size = this.#instances.get(id)?.Size ?? 0;
      made = (async () => {
        // Never truncating a file that is there: another area on the same directory (the run before a
        // pause, whose last writes may still be running) may have made it and written into it.
        let fresh = true;
        const fh = await open(this.pathOf(id), 'wx').catch(async (e: unknown) => {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          fresh = false;
          return open(this.pathOf(id), 'r+');
        });
        try {
          if (fresh || (await fh.stat()).size !== size) await fh.truncate(size);
        } finally {
          await fh.close();
        }
      })();
      const mine = made;
      mine.catch(() => {
        if (this.#made.get(id) === mine) this.#made.delete(id);
      });
      this.#made.set(id, mine);
    }
    return made;
  }

  /** Settles once every file is made; throws what their creation threw. */
  async #allMade(): Promise<void> {
    try {
      await mapLimit([...this.#instances.keys()], FILE_PARALLELISM, (id) => this.#make(id));
    } catch (e) {
      throw fileError(e, 'cannot create the staging files');
    }
  }

  /**
   * Reopens a staging area created earlier (after a pause or a restart). `written` names the instances
   * that a recorded bucket wrote into: their files must be there with their declared size, else
   * InexistentFile (e.g. a commit adopted them before a crash). The file of any other instance may not
   * have been made yet (files are made as buckets write into them): it is made as by create(), by the
   * bucket that writes into it or by staged().
   */
  static async open(dir: string, instances: readonly InstanceInfo[], written: ReadonlySet<string>): Promise<StagingArea> {
    const area = new StagingArea(dir, instances);
    await mapLimit([...area.#instances.values()], FILE_PARALLELISM, async (i) => {
      const st = await stat(area.pathOf(i.ID)).catch(() => undefined);
      if (st && st.isFile() && st.size === i.Size) {
        area.#made.set(i.ID, Promise.resolve());
      } else if (written.has(i.ID)) {
        throw new XferError('InexistentFile', `staged file of instance ${i.ID} is missing or has the wrong size`);
      }
    });
    return area;
  }

  /** Sum of the declared sizes of the (distinct) instances. */
  get totalSize(): number {
    return this.#total;
  }

  /** The declared instances, sorted by ID. */
  get instances(): InstanceInfo[] {
    return [...this.#instances.values()];
  }

  has(id: string): boolean {
    return this.#instances.has(id);
  }

  pathOf(id: string): string {
    return join(this.dir, stagedFileName(id));
  }

  /**
   * Checks that a bucket fits the declared instances, before any byte of it is read: UnknownResource
   * (404) for an undeclared instance, ParameterOutOfRange (400) for a chunk that runs past its
   * instance's declared size.
   */
  checkBucket(bucket: Bucket): void {
    for (const c of bucket) {
      const inst = this.#instances.get(c.ID);
      if (!inst) throw new XferError('UnknownResource', `instance ${c.ID} is not part of this transfer`);
      if (c.Offset + c.Size > inst.Size) {
        throw new XferError(
          'ParameterOutOfRange',
          `chunk [${c.Offset}, ${c.Offset + c.Size}) is outside instance ${c.ID} (${inst.Size} bytes)`,
        );
      }
    }
  }

  /**
   * Streams one bucket payload into the instance files: each piece is written at its place as it
   * arrives (nothing holds the whole bucket), the payload length must equal the bucket total
   * (NetworkProtocol "WriteUncompressedBucket: got != expected" otherwise, as soon as it runs over),
   * and the touched files are flushed to disk before this resolves. A payload cut short leaves its
   * bytes written, which is harmless: the bucket is simply not complete and will be sent again.
   * Resolves with the number of payload bytes written.
   */
  async writeBucket(bucket: Bucket, payload: AsyncIterable<Buffer> | Readable, opts: WriteBucketOptions = {}): Promise<number> {
    this.checkBucket(bucket);
    const total = bucketSize(bucket);
    const layout = payloadLayout(bucket).filter((c) => c.Size > 0);
    const handles = new Map<string, FileHandle>();
    const signal = opts.signal;
    let written = 0;
    const handleOf = async (id: string): Promise<FileHandle> => {
      let fh = handles.get(id);
      if (!fh) {
        await this.#make(id);
        fh = await open(this.pathOf(id), 'r+');
        handles.set(id, fh);
      }
      return fh;
    };
    // Bytes of the current chunk not yet written: gathered up to WRITE_BATCH so that a bucket is a few
    // large writes rather than one per network packet.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let pendingAt = 0;
    // A chunk that is a whole instance is hashed on its way to the disk: when it matches the declared
    // MD5 and nothing else wrote into that instance meanwhile, the commit need not read it again.
    let hash: Hash | undefined;
    // The first bytes of that instance, for its header.
    let head: Buffer[] | undefined;
    let headBytes = 0;
    let payloadCrc = 0;
    const gunzip = opts.gunzip ? createGunzipStream() : undefined;
    if (opts.crc32 === CRC32_MEMBER && !gunzip) throw new XferError('BadRequest', `${HEADER_CRC32}: ${CRC32_MEMBER} is for gzip bodies only`);
    const sumHere = opts.crc32 !== undefined && !gunzip;
    let hashEpoch = 0;
    let ownWrites = 0;
    const flush = async (c: PlacedChunk): Promise<void> => {
      if (pendingBytes === 0) return;
      const fh = await handleOf(c.ID);
      this.#verified.delete(c.ID);
      this.#headers.delete(c.ID);
      this.#epochs.set(c.ID, (this.#epochs.get(c.ID) ?? 0) + 1);
      ownWrites++;
      await writeAllAt(fh, pending, pendingBytes, c.Offset + pendingAt);
      // A piece of an instance (not the whole of it in this chunk) joins the instance's running hash.
      if (hash) this.#spoil(c.ID);
      else this.#advance(c.ID, c.Offset + pendingAt, pendingBytes);
      pendingAt += pendingBytes;
      pending = [];
      pendingBytes = 0;
    };
    const sink = async (source: AsyncIterable<Buffer>): Promise<void> => {
      let k = 0; // current chunk of the layout
      const startChunk = (c: PlacedChunk) => {
        pendingAt = 0;
        ownWrites = 0;
        const inst = this.#instances.get(c.ID);
        const whole = c.Offset === 0 && inst !== undefined && c.Size === inst.Size;
        hash = whole ? createHash('md5') : undefined;
        head = whole ? [] : undefined;
        headBytes = 0;
        hashEpoch = this.#epochs.get(c.ID) ?? 0;
      };
      const endChunk = async (c: PlacedChunk) => {
        await flush(c);
        if (hash) {
          const inst = this.#instances.get(c.ID);
          const sole = (this.#epochs.get(c.ID) ?? 0) === hashEpoch + ownWrites;
          if (inst && sole && hash.digest('hex') === inst.MD5) {
            this.#verified.add(c.ID);
            const header = headerFrom(head ?? [], inst.Size);
            if (header) this.#headers.set(c.ID, header);
          }
          hash = undefined;
          head = undefined;
        }
      };
      if (layout[0]) startChunk(layout[0]);
      // Gathered bytes wait for more only while more keeps coming: a sender that pauses (a slow link)
      // finds what it sent already on disk, and a stalled request holds little. One timer per bucket,
      // re-armed while pieces keep arriving, watches for the pause (not a timer raced per piece).
      let processing = false;
      let lastPieceAt = 0;
      let idleTimer: NodeJS.Timeout | undefined;
      let idleFlush: Promise<void> | undefined;
      let idleError: { error: unknown } | undefined;
      const onIdle = (): void => {
        idleTimer = undefined;
        const current = layout[k];
        if (pendingBytes === 0 || !current || idleFlush) return;
        const quiet = Date.now() - lastPieceAt;
        // A piece came meanwhile, or one is being handled: look again once it could be a pause.
        if (quiet < IDLE_FLUSH_MS || processing) {
          idleTimer = setTimeout(onIdle, Math.max(1, IDLE_FLUSH_MS - quiet));
          return;
        }
        idleFlush = flush(current).then(
          () => {
            idleFlush = undefined;
          },
          (error: unknown) => {
            idleFlush = undefined;
            idleError = { error };
          },
        );
      };
      try {
        const it = source[Symbol.asyncIterator]();
        for (let guard = 0; guard < Number.MAX_SAFE_INTEGER; guard++) {
          processing = false;
          const step = await it.next();
          processing = true;
          if (idleFlush) await idleFlush;
          if (idleError) throw idleError.error;
          if (step.done) break;
          const piece = step.value;
          if (signal?.aborted) throw new XferError('UnknownResource', 'the transfer was discarded while this bucket arrived');
          let at = 0;
          while (at < piece.length) {
            const c = layout[k];
            // The length check upstream refuses extra bytes before they get here.
            if (!c) throw new XferError('NetworkProtocol', `WriteUncompressedBucket: at least ${written + piece.length - at} != ${total}`);
            const inChunk = written - c.payloadOffset;
            const n = Math.min(piece.length - at, c.Size - inChunk);
            const part = piece.subarray(at, at + n);
            hash?.update(part);
            if (head && headBytes < HEAD_BYTES) {
              head.push(part);
              headBytes += part.length;
            }
            if (sumHere) payloadCrc = crc32(part, payloadCrc);
            pending.push(part);
            pendingBytes += n;
            at += n;
            written += n;
            if (written - c.payloadOffset >= c.Size) {
              await endChunk(c);
              k++;
              const following = layout[k];
              if (following) startChunk(following);
            } else if (pendingBytes >= WRITE_BATCH) await flush(c);
          }
          lastPieceAt = Date.now();
          if (pendingBytes > 0 && !idleTimer) idleTimer = setTimeout(onIdle, IDLE_FLUSH_MS);
        }
      } finally {
        clearTimeout(idleTimer);
        // A flush under way ends before the files are closed.
        await idleFlush;
      }
      const last = layout[k];
      if (last) await flush(last);
    };
    try {
      const stages: (Transform | ((s: AsyncIterable<Buffer>) => Promise<void>))[] = [...(opts.before ?? [])];
      if (gunzip) stages.push(gunzip);
      // With gzip, up to 1 MiB of excess output is counted, not written, so that a corrupt member is
      // reported as such (400) rather than as a wrong length (500).
      stages.push(createLengthCheck(total, undefined, opts.gunzip ? 1024 * 1024 : 0));
      stages.push(sink);
      // pipeline's typings cannot express a variable list of stages.
      await (pipeline as unknown as (...args: unknown[]) => Promise<void>)(payload, ...stages);
      // An inflated payload's CRC-32 is the one its gzip trailer was checked against: no second pass.
      if (gunzip) payloadCrc = gunzip.crc32;
      if (opts.crc32 !== undefined && opts.crc32 !== CRC32_MEMBER && crc32Hex(payloadCrc) !== opts.crc32) {
        throw new XferError('CorruptedFile', `the bucket's CRC-32 is ${crc32Hex(payloadCrc)}, sent as ${opts.crc32}: send it again`, {
          httpStatus: BUCKET_CHECKSUM_STATUS,
        });
      }
      await Promise.all([...handles.values()].map((fh) => fh.datasync()));
    } catch (e) {
      if ((e as Error | undefined)?.name === 'AbortError') {
        throw new XferError('UnknownResource', 'the transfer was discarded while this bucket arrived', { cause: e });
      }
      // With a checksum, a payload damaged in flight (bad gzip, wrong length) is a bucket to send again.
      if (opts.crc32 !== undefined && (isXferError(e, 'BadFileFormat') || isXferError(e, 'NetworkProtocol'))) {
        throw new XferError('CorruptedFile', `the bucket arrived damaged (${e.details ?? e.message}): send it again`, {
          httpStatus: BUCKET_CHECKSUM_STATUS,
          cause: e,
        });
      }
      throw fileError(e, 'cannot write a bucket into the staging files');
    } finally {
      for (const fh of handles.values()) await fh.close().catch(() => undefined);
    }
    return written;
  }

  /** Writes `data` at `offset` of an instance's file (ParameterOutOfRange past its declared size). */
  async writeAt(id: string, offset: number, data: Uint8Array): Promise<void> {
    this.checkBucket([{ ID: id, Offset: offset, Size: data.byteLength }]);
    await this.#make(id);
    const fh = await open(this.pathOf(id), 'r+');
    try {
      await writeFully(fh, data, offset);
    } catch (e) {
      throw fileError(e, `cannot write into the staged file of ${id}`);
    } finally {
      await fh.close();
    }
  }

  /**
   * Feeds a piece just written at `offset` into its instance's running hash: the bytes are read back
   * from the file (the page cache; nothing is held in memory meanwhile) as soon as every byte before
   * them is in, so pieces may land in any order. When the whole instance is in and matches its MD5 it is verified,
   * and the commit need not read it again. A piece written over bytes already counted (a bucket sent
   * again) spoils the instance: the commit reads it then. Runs in order per instance, in the background;
   * staged() waits for it.
   */
  #advance(id: string, offset: number, length: number): void {
    const inst = this.#instances.get(id);
    if (!inst) return;
    let r = this.#running.get(id);
    if (!r) {
      r = { hash: createHash('md5'), at: 0, ahead: new Map(), spoiled: false, done: false, queue: Promise.resolve() };
      this.#running.set(id, r);
    }
    const run = r;
    if (run.spoiled) return;
    const end = offset + length;
    run.queue = run.queue
      .then(async () => {
        if (run.spoiled) return;
        if (run.done || offset < run.at || [...run.ahead].some(([a, b]) => offset < b && a < end)) {
          this.#spoil(id);
          return;
        }
        run.ahead.set(offset, end);
        for (let e = run.ahead.get(run.at); e !== undefined; e = run.ahead.get(run.at)) {
          run.ahead.delete(run.at);
          await hashFileRange(this.pathOf(id), run.at, e, run.hash);
          if (run.spoiled) return;
          run.at = e;
        }
        if (run.at === inst.Size) {
          run.done = true;
          if (run.hash.digest('hex') === inst.MD5) {
            this.#verified.add(id);
            // The file holds exactly the bytes counted (a later write would spoil it): its header from there.
            const header = headerFrom([await readHead(this.pathOf(id), inst.Size)], inst.Size);
            if (header && !run.spoiled) this.#headers.set(id, header);
          }
        }
      })
      .catch(() => {
        run.spoiled = true;
      });
  }

  /** Stops trusting what was hashed of an instance so far (it is read again at commit). */
  #spoil(id: string): void {
    const r = this.#running.get(id);
    if (r) r.spoiled = true;
    this.#verified.delete(id);
    this.#headers.delete(id);
  }

  /** The instances as the store's commitStaged wants them (once every file is made and hashed). */
  async staged(): Promise<StagedInstance[]> {
    await this.#allMade();
    await Promise.all([...this.#running.values()].map((r) => r.queue));
    return this.instances.map((i) => {
      const header = this.#headers.get(i.ID);
      const verified = this.#verified.has(i.ID);
      return {
        id: i.ID,
        path: this.pathOf(i.ID),
        size: i.Size,
        md5: i.MD5,
        synced: true,
        verified,
        ...(verified && header ? { header } : {}),
      };
    });
  }

  /** Deletes the directory and everything in it (what a commit did not adopt). Never throws. */
  async remove(): Promise<void> {
    // Files still being made would land in a directory already gone, or make it again.
    this.#removed = true;
    await Promise.allSettled(this.#made.values());
    await StagingArea.discard(this.dir);
  }

  /** Removes the staging area in `dir`, if any, without opening it (a cancelled transfer's). */
  static async discard(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true, maxRetries: 2 }).catch(() => undefined);
  }
}

/** The running hash of an instance written in pieces. */
interface Running {
  hash: Hash;
  /** Bytes [0, at) are hashed. */
  at: number;
  /** Pieces written and not yet counted, start -> end, read back once `at` reaches them. */
  ahead: Map<number, number>;
  /** Something was written over counted bytes (or a read failed): the commit checks the file itself. */
  spoiled: boolean;
  /** Every byte was counted (and the digest taken). */
  done: boolean;
  /** The steps of this instance, one after the other. */
  queue: Promise<void>;
}

/** Bytes of an instance's beginning kept to parse its header from. */
const HEAD_BYTES = 64 * 1024;

/** The header of an instance from its first bytes, or undefined when they do not hold all of it. */
function headerFrom(parts: readonly Buffer[], size: number): DicomHeader | undefined {
  const bytes = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts as Buffer[]);
  if (bytes.length === 0) return undefined;
  try {
    return parseDicomHeader(bytes, { prefix: bytes.length < size });
  } catch {
    // Cut short, or not DICOM: the commit reads the file and says what is wrong with it.
    return undefined;
  }
}

/** The first HEAD_BYTES of a file (all of it when smaller). */
async function readHead(path: string, size: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(Math.min(HEAD_BYTES, size));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Feeds bytes [start, end) of a file into `hash`. */
async function hashFileRange(path: string, start: number, end: number, hash: Hash): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(Math.min(READ_BACK, end - start));
    for (let at = start; at < end; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - at), at);
      if (bytesRead === 0) throw new Error(`${path} ends at ${at}, before ${end}`);
      hash.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** Bytes read back at once for a running hash. */
const READ_BACK = 1024 * 1024;

/** Bytes gathered before one positional write. */
const WRITE_BATCH = 1024 * 1024;
/** Staging files created (or checked) at once. */
const FILE_PARALLELISM = 16;
/** Gathered bytes are written when no more arrive for this long. */
const IDLE_FLUSH_MS = 20;

/** Writes `buffers` (`length` bytes in all) at `position`, whatever the kernel takes per call. */
async function writeAllAt(fh: FileHandle, buffers: Buffer[], length: number, position: number): Promise<void> {
  if (buffers.length === 1) return writeFully(fh, buffers[0] as Buffer, position);
  const { bytesWritten } = await fh.writev(buffers, position);
  if (bytesWritten === length) return;
  // A short vectored write: finish the rest with plain writes.
  await writeFully(fh, Buffer.concat(buffers, length).subarray(bytesWritten), position + bytesWritten);
}

async function writeFully(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  // A regular file takes the whole write at once; the loop only guards against short writes.
  for (let guard = 0; done < data.byteLength && guard < 1_000_000; guard++) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done, position + done);
    if (bytesWritten <= 0) throw new XferError('CannotWriteFile', 'short write into a staged file');
    done += bytesWritten;
  }
}

/** The instances that the buckets `done` (indexes into `buckets`) wrote into. */
export function writtenBy(buckets: readonly Bucket[], done: Iterable<number>): Set<string> {
  const ids = new Set<string>();
  for (const i of done) for (const c of buckets[i] ?? []) if (c.Size > 0) ids.add(c.ID);
  return ids;
}
