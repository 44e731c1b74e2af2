// Local copies of instances that Orthanc sent whole when only a byte range was asked for (Orthanc 1.10.1
// ignores HTTP Range on /instances/{id}/file). A large instance split into many buckets is then fetched
// from Orthanc once, streamed to disk, and every bucket is read from the copy, as soon as the bytes it
// needs are written: never a whole instance in memory, and not the whole instance once per bucket.
// Copies are bounded in bytes and dropped when idle.
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { XferError } from '../../errors.ts';
import { freeBytes } from '../../util/fs.ts';

export interface RangeCacheOptions {
  /** Folder of the copies; emptied when the cache opens and when it closes. */
  dir: string;
  /** Bytes of complete copies kept at most (a copy being read or written is kept even past it). */
  maxBytes: number;
  /** Milliseconds after which a copy nobody read is dropped. */
  idleMs: number;
}

interface Waiter {
  need: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Entry {
  path: string;
  size: number;
  /** Bytes written to the file so far, from its start. */
  written: number;
  complete: boolean;
  lastUse: number;
  /** Range streams open on the copy (a pinned copy is never dropped). */
  pins: number;
  /** Readers waiting for bytes not written yet. */
  waiters: Waiter[];
  /** Orthanc's answer being written, until the copy is complete. */
  body: Readable | undefined;
}

/** Bytes kept free on the disk whatever the cache wants. */
const DISK_MARGIN = 256 * 1024 * 1024;

export class RangeCache {
  readonly #opts: RangeCacheOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #writing = new Set<Promise<void>>();
  /** Bytes of all copies, complete or being written. */
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

  /** Bytes of the copies held now (complete or being written). */
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

  /** Whether there is a copy of `id`, complete or being written. */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /**
   * Starts writing `body` (the whole file of `id`, `size` bytes) as the copy of `id`, in the background;
   * readers get their ranges as soon as the bytes are on disk. When a copy of `id` exists, `body` is dropped.
   */
  begin(id: string, size: number, body: Readable): void {
    if (this.#closed || this.#entries.has(id)) {
      body.destroy();
      return;
    }
    const entry: Entry = {
      path: join(this.#opts.dir, id),
      size,
      written: 0,
      complete: false,
      lastUse: Date.now(),
      pins: 0,
      waiters: [],
      body,
    };
    this.#entries.set(id, entry);
    this.#bytes += size;
    const w = this.#write(id, entry, body).finally(() => this.#writing.delete(w));
    this.#writing.add(w);
  }

  async #write(id: string, entry: Entry, body: Readable): Promise<void> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(entry.path, 'w');
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (this.#closed) throw new XferError('BadSequenceOfCalls', 'the Orthanc store is closed');
        if (entry.written + chunk.length > entry.size) {
          throw new XferError('NetworkProtocol', `Orthanc sent more than the ${entry.size} bytes of instance ${id}`);
        }
        let done = 0;
        // A regular file takes each write whole; the loop guards against short writes.
        for (let guard = 0; done < chunk.length && guard < 1000; guard++) {
          done += (await fh.write(chunk, done, chunk.length - done, entry.written + done)).bytesWritten;
        }
        entry.written += chunk.length;
        this.#wake(entry);
      }
      if (entry.written !== entry.size) {
        throw new XferError('NetworkProtocol', `Orthanc sent ${entry.written} bytes of instance ${id} instead of ${entry.size}`);
      }
      entry.complete = true;
      entry.body = undefined;
      entry.lastUse = Date.now();
      this.#wake(entry);
    } catch (e) {
      body.destroy();
      if (this.#entries.get(id) === entry) {
        this.#entries.delete(id);
        this.#bytes -= entry.size;
      }
      for (const w of entry.waiters.splice(0)) w.reject(e);
      await unlink(entry.path).catch(() => undefined);
    } finally {
      await fh?.close().catch(() => undefined);
    }
    this.#evict();
  }

  #wake(entry: Entry): void {
    if (entry.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of entry.waiters) w.need <= entry.written ? w.resolve() : still.push(w);
    entry.waiters = still;
  }

  /**
   * The bytes [start, end) of the copy of `id`, once they are written; undefined when there is no copy.
   * Rejects with ParameterOutOfRange when the range is outside the file, and with the failure of the
   * download when the copy could not be completed.
   */
  async read(id: string, start: number, end: number): Promise<Readable | undefined> {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    if (end > entry.size) {
      throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id} (${entry.size} bytes)`);
    }
    entry.lastUse = Date.now();
    entry.pins++;
    try {
      if (entry.written < end) await new Promise<void>((resolve, reject) => entry.waiters.push({ need: end, resolve, reject }));
      if (end === start) {
        entry.pins--;
        return Readable.from([]);
      }
      const fh = await open(entry.path, 'r');
      const stream = createReadStream('', { fd: fh, start, end: end - 1, highWaterMark: 64 * 1024 });
      stream.once('close', () => {
        entry.pins--;
        entry.lastUse = Date.now();
        this.#evict();
      });
      return stream;
    } catch (e) {
      entry.pins--;
      throw e;
    }
  }

  /** Drops the least recently used complete copies nobody reads while over the byte bound. */
  #evict(): void {
    if (this.#bytes <= this.#opts.maxBytes) return;
    const idle = [...this.#entries].filter(([, e]) => e.complete && e.pins === 0).sort((a, b) => a[1].lastUse - b[1].lastUse);
    for (const [id] of idle) {
      if (this.#bytes <= this.#opts.maxBytes) break;
      this.#drop(id);
    }
  }

  #dropIdle(): void {
    const now = Date.now();
    for (const [id, e] of this.#entries) if (e.complete && e.pins === 0 && now - e.lastUse >= this.#opts.idleMs) this.#drop(id);
  }

  #drop(id: string): void {
    const e = this.#entries.get(id);
    if (!e) return;
    this.#entries.delete(id);
    this.#bytes -= e.size;
    // A stream already open on the file keeps reading it after the unlink.
    unlink(e.path).catch(() => undefined);
  }

  /** Stops the downloads, drops every copy and the folder. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const e of this.#entries.values()) e.body?.destroy(new XferError('BadSequenceOfCalls', 'the Orthanc store is closed'));
    await Promise.allSettled([...this.#writing]);
    this.#entries.clear();
    this.#bytes = 0;
    await rm(this.#opts.dir, { recursive: true, force: true });
  }
}
