// What a staging area knows of its instances' bytes as they land: each instance's MD5 computed while it is
// written (whole in one chunk, or piece by piece in order), so that the commit need not read back the files
// that matched, and the header parsed from those bytes. Every instance is hashed in the MD5 worker thread
// from its file (the page cache), off the event loop: whole once its chunk is written, in pieces as they land.
import { open } from 'node:fs/promises';
import { parseDicomHeader } from '../dicom/parse.ts';
import type { DicomHeader } from '../dicom/types.ts';
import type { InstanceInfo } from '../protocol/wire.ts';
import { md5Worker } from './md5-worker.ts';

/** Bytes of an instance's beginning kept to parse its header from. */
export const HEAD_BYTES = 64 * 1024;
/** The running hash of an instance written in pieces. */
interface Running {
  /** The key of its hash in the MD5 worker. */
  key: number;
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

export class InstanceChecks {
  readonly #instance: (id: string) => InstanceInfo | undefined;
  readonly #pathOf: (id: string) => string;
  /** Instances whose whole file was hashed while written and matched the declared MD5. */
  readonly #verified = new Set<string>();
  /** Writes into each instance so far, to tell whether another bucket wrote while one was hashed. */
  readonly #epochs = new Map<string, number>();
  /** Instances written in pieces, hashed in order as their pieces land (see advance). */
  readonly #running = new Map<string, Running>();
  /** Headers parsed from the bytes of verified instances: the commit need not read them again. */
  readonly #headers = new Map<string, DicomHeader>();

  /** Hashes of whole instances under way in the worker. */
  readonly #wholes = new Set<Promise<void>>();
  /** Told of each instance verified with its header (the commit's work for it may start). */
  readonly #onVerified: ((id: string) => void) | undefined;

  constructor(instance: (id: string) => InstanceInfo | undefined, pathOf: (id: string) => string, onVerified?: (id: string) => void) {
    this.#instance = instance;
    this.#pathOf = pathOf;
    this.#onVerified = onVerified;
  }

  /** Writes into `id` so far. */
  epoch(id: string): number {
    return this.#epochs.get(id) ?? 0;
  }

  /** A write into `id` is about to happen: what was verified of it no longer holds. */
  beforeWrite(id: string): void {
    this.#verified.delete(id);
    this.#headers.delete(id);
    this.#epochs.set(id, this.epoch(id) + 1);
  }

  /**
   * A chunk that is the whole of instance `id` was written (`writes` writes, the first when the epoch was
   * `epoch`), with these first bytes: its file is hashed in the MD5 worker, and the instance is verified
   * when that matches the declared MD5 and no other write went into it from its chunk's start to the
   * digest. In the background; settled() waits for it.
   */
  wholeWritten(id: string, epoch: number, writes: number, head: readonly Buffer[]): void {
    const inst = this.#instance(id);
    if (!inst || this.epoch(id) !== epoch + writes) return;
    const done = md5Worker.hash(md5Worker.newKey(), this.#pathOf(id), 0, inst.Size, true).then(
      (md5) => this.#wholeHashed(id, inst, epoch + writes, md5, head),
      // A file that cannot be read back is left unverified: the commit reads it and says what is wrong.
      () => undefined,
    );
    this.#wholes.add(done);
    void done.finally(() => this.#wholes.delete(done));
  }

  #wholeHashed(id: string, inst: InstanceInfo, epoch: number, md5: string, head: readonly Buffer[]): void {
    if (this.epoch(id) !== epoch || md5 !== inst.MD5) return;
    this.#verified.add(id);
    const header = headerFrom(head, inst.Size);
    if (!header) return;
    this.#headers.set(id, header);
    this.#onVerified?.(id);
  }

  /**
   * Feeds a piece just written at `offset` into its instance's running hash: the bytes are read back
   * from the file (the page cache; nothing is held in memory meanwhile) as soon as every byte before
   * them is in, so pieces may land in any order. When the whole instance is in and matches its MD5 it is
   * verified, and the commit need not read it again. A piece written over bytes already counted (a bucket
   * sent again) spoils the instance: the commit reads it then. Runs in order per instance, in the
   * background; settled() waits for it.
   */
  advance(id: string, offset: number, length: number): void {
    const inst = this.#instance(id);
    if (!inst) return;
    let run = this.#running.get(id);
    if (!run) {
      run = { key: md5Worker.newKey(), at: 0, ahead: new Map(), spoiled: false, done: false, queue: Promise.resolve() };
      this.#running.set(id, run);
    }
    const r = run;
    if (r.spoiled) return;
    r.queue = r.queue
      .then(() => this.#step(id, inst, r, offset, offset + length))
      .catch(() => {
        r.spoiled = true;
      });
  }

  /** One piece [offset, end) of a running hash: counted, or waiting for the bytes before it. */
  async #step(id: string, inst: InstanceInfo, run: Running, offset: number, end: number): Promise<void> {
    if (run.spoiled) return;
    if (run.done || offset < run.at || [...run.ahead].some(([a, b]) => offset < b && a < end)) {
      this.spoil(id);
      return;
    }
    run.ahead.set(offset, end);
    for (let e = run.ahead.get(run.at); e !== undefined; e = run.ahead.get(run.at)) {
      run.ahead.delete(run.at);
      await md5Worker.hash(run.key, this.#pathOf(id), run.at, e, false);
      if (run.spoiled) return;
      run.at = e;
    }
    if (run.at !== inst.Size) return;
    run.done = true;
    if ((await md5Worker.hash(run.key, this.#pathOf(id), 0, 0, true)) !== inst.MD5 || run.spoiled) return;
    this.#verified.add(id);
    // The file holds exactly the bytes counted (a later write would spoil it): its header from there.
    const header = headerFrom([await readHead(this.#pathOf(id), inst.Size)], inst.Size);
    if (!header || run.spoiled) return;
    this.#headers.set(id, header);
    this.#onVerified?.(id);
  }

  /** Stops trusting what was hashed of an instance so far (it is read again at commit). */
  spoil(id: string): void {
    const r = this.#running.get(id);
    if (r && !r.spoiled) {
      r.spoiled = true;
      // The worker forgets its hash once the steps queued before are through.
      if (!r.done) r.queue = r.queue.then(() => md5Worker.hash(r.key, '', 0, 0, true).then(() => undefined)).catch(() => undefined);
    }
    this.#verified.delete(id);
    this.#headers.delete(id);
  }

  /** Settles once every running hash has counted what was written. */
  async settled(): Promise<void> {
    await Promise.all([...this.#running.values()].map((r) => r.queue));
    await Promise.all([...this.#wholes]);
  }

  /** Whether an instance was verified while written, and then its header. */
  verdict(id: string): { verified: boolean; header?: DicomHeader } {
    const header = this.#headers.get(id);
    return this.#verified.has(id) ? { verified: true, ...(header ? { header } : {}) } : { verified: false };
  }
}

/** The header of an instance from its first bytes, or undefined when they do not hold all of it. */
function headerFrom(parts: readonly Buffer[], size: number): DicomHeader | undefined {
  const first = parts[0];
  if (parts.length > 1 && first) {
    // The first piece mostly holds the whole header: read as a prefix, it gives a header only when it reaches
    // Pixel Data (the very header the longer prefix gives), and the 64 KiB copy of every instance is spared.
    try {
      return parseDicomHeader(first, { prefix: true });
    } catch {
      // Cut short (or not DICOM): all the first bytes, as below.
    }
  }
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
