// Local copies of instances that Orthanc sent whole when only a byte range was asked for (Orthanc 1.10.1
// ignores HTTP Range on /instances/{id}/file). A large instance split into many buckets is then fetched
// from Orthanc once, streamed to disk, and every bucket is read from the copy: never a whole instance in
// memory, and not the whole instance once per bucket. Copies are bounded in bytes and dropped when idle.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { XferError } from '../../errors.ts';
import { freeBytes } from '../../util/fs.ts';

export interface RangeCacheOptions {
  /** Folder of the copies; emptied when the cache opens and when it closes. */
  dir: string;
  /** Bytes of copies kept at most (a copy being read is kept even past it). */
  maxBytes: number;
  /** Milliseconds after which a copy nobody read is dropped. */
  idleMs: number;
}

interface Entry {
  path: string;
  size: number;
  lastUse: number;
  /** Range streams open on the copy (a pinned copy is never dropped). */
  pins: number;
}

/** Bytes kept free on the disk whatever the cache wants. */
const DISK_MARGIN = 256 * 1024 * 1024;

export class RangeCache {
  readonly #opts: RangeCacheOptions;
  readonly #entries = new Map<string, Entry>();
  /** Copies being written, so that concurrent readers of one instance wait for one download. */
  readonly #filling = new Map<string, Promise<void>>();
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(opts: RangeCacheOptions) {
    this.#opts = opts;
  }

  /** Opens the cache in an emptied folder. */
  static async open(opts: RangeCacheOptions): Promise<RangeCache> {
    await rm(opts.dir, { recursive: true, force: true });
    await mkdir(opts.dir, { recursive: true });
    const cache = new RangeCache(opts);
    cache.#timer = setInterval(() => cache.#dropIdle(), Math.max(1000, Math.floor(opts.idleMs / 2)));
    cache.#timer.unref();
    return cache;
  }

  /** Bytes of complete copies held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether a copy of `size` bytes may be written now (bounded by the free disk space). */
  async canHold(size: number): Promise<boolean> {
    if (this.#closed) return false;
    try {
      return (await freeBytes(this.#opts.dir)) - size > DISK_MARGIN;
    } catch {
      return false;
    }
  }

  /**
   * The bytes [start, end) of the copy of `id`, waiting for a copy being written; undefined when there is
   * none (or its download failed). Rejects with ParameterOutOfRange when the range is outside the copy.
   */
  async read(id: string, start: number, end: number): Promise<Readable | undefined> {
    const pending = this.#filling.get(id);
    if (pending) await pending.catch(() => undefined);
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    if (end > entry.size) {
      throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id} (${entry.size} bytes)`);
    }
    entry.lastUse = Date.now();
    entry.pins++;
    let fh;
    try {
      fh = await open(entry.path, 'r');
    } catch (e) {
      entry.pins--;
      this.#drop(id);
      throw new XferError('InexistentFile', `the local copy of instance ${id} is gone`, { cause: e });
    }
    if (end === start) {
      await fh.close();
      entry.pins--;
      return Readable.from([]);
    }
    const stream = createReadStream('', { fd: fh, start, end: end - 1, highWaterMark: 256 * 1024 });
    stream.once('close', () => {
      entry.pins--;
      entry.lastUse = Date.now();
      this.#evict();
    });
    return stream;
  }

  /**
   * Writes `body` (the whole file of `id`, `size` bytes) as the copy of `id`, then answers [start, end)
   * from it. When another copy of `id` is being written, `body` is dropped and that copy is used.
   */
  async fillAndRead(id: string, size: number, body: Readable, start: number, end: number): Promise<Readable> {
    if (this.#filling.has(id) || this.#entries.has(id)) {
      body.destroy();
    } else {
      const fill = this.#fill(id, size, body);
      this.#filling.set(id, fill);
      try {
        await fill;
      } finally {
        this.#filling.delete(id);
      }
    }
    const s = await this.read(id, start, end);
    if (!s) throw new XferError('InternalError', `the local copy of instance ${id} could not be made`);
    return s;
  }

  async #fill(id: string, size: number, body: Readable): Promise<void> {
    const path = join(this.#opts.dir, id);
    const part = `${path}.part`;
    let written = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        written += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, counter, createWriteStream(part, { highWaterMark: 1 << 20 }));
      if (written !== size) throw new XferError('NetworkProtocol', `Orthanc sent ${written} bytes of instance ${id} instead of ${size}`);
      await rename(part, path);
    } catch (e) {
      await unlink(part).catch(() => undefined);
      throw e;
    }
    if (this.#closed) {
      await unlink(path).catch(() => undefined);
      throw new XferError('BadSequenceOfCalls', 'the Orthanc store is closed');
    }
    this.#entries.set(id, { path, size, lastUse: Date.now(), pins: 0 });
    this.#bytes += size;
    this.#evict(id);
  }

  /** Drops the least recently used copies nobody reads while over the byte bound (never `keep`). */
  #evict(keep?: string): void {
    if (this.#bytes <= this.#opts.maxBytes) return;
    const idle = [...this.#entries].filter(([id, e]) => e.pins === 0 && id !== keep).sort((a, b) => a[1].lastUse - b[1].lastUse);
    for (const [id] of idle) {
      if (this.#bytes <= this.#opts.maxBytes) break;
      this.#drop(id);
    }
  }

  #dropIdle(): void {
    const now = Date.now();
    for (const [id, e] of this.#entries) if (e.pins === 0 && now - e.lastUse >= this.#opts.idleMs) this.#drop(id);
  }

  #drop(id: string): void {
    const e = this.#entries.get(id);
    if (!e) return;
    this.#entries.delete(id);
    this.#bytes -= e.size;
    // A stream already open on the file keeps reading it after the unlink.
    unlink(e.path).catch(() => undefined);
  }

  /** Drops every copy and the folder. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.allSettled([...this.#filling.values()]);
    this.#entries.clear();
    this.#bytes = 0;
    await rm(this.#opts.dir, { recursive: true, force: true });
  }
}
