// File output of the generator: a file written at explicit positions, removed when writing fails, and
// frames rendered into reused buffers and written while the next batch renders.
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { dirname } from 'node:path';
import { XferError } from '../errors.ts';

const LITTLE_ENDIAN = endianness() === 'LE';

/** Typed arrays hold host-order samples; DICOM wants little endian. */
export function toLittleEndian16(bytes: Uint8Array): void {
  if (!LITTLE_ENDIAN) Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).swap16();
}

/** A file being written sequentially at explicit positions. */
export class OutFile {
  #fh: FileHandle;
  #pos = 0;
  readonly path: string;

  private constructor(fh: FileHandle, path: string) {
    this.#fh = fh;
    this.path = path;
  }

  static async create(path: string): Promise<OutFile> {
    try {
      await mkdir(dirname(path), { recursive: true });
      return new OutFile(await open(path, 'w'), path);
    } catch (e) {
      throw new XferError('CannotWriteFile', path, { cause: e });
    }
  }

  /** Writes all of `buf` after what was written before. */
  async write(buf: Uint8Array): Promise<void> {
    const at = this.#pos;
    this.#pos += buf.byteLength;
    let done = 0;
    try {
      while (done < buf.byteLength) {
        const { bytesWritten } = await this.#fh.write(buf, done, buf.byteLength - done, at + done);
        if (bytesWritten <= 0) throw new Error('short write');
        done += bytesWritten;
      }
    } catch (e) {
      throw new XferError('CannotWriteFile', this.path, { cause: e });
    }
  }

  get size(): number {
    return this.#pos;
  }

  async close(): Promise<void> {
    try {
      await this.#fh.close();
    } catch (e) {
      throw new XferError('CannotWriteFile', this.path, { cause: e });
    }
  }

  /** Closes and removes the file after a failure. */
  async discard(): Promise<void> {
    await this.#fh.close().catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
  }
}

/** Buffers of about this size collect frames before a write. */
const WRITE_BATCH = 4 * 1024 * 1024;

/** Frame buffers kept for reuse, by size, so thousands of slices do not leave thousands of buffers to GC. */
const spareBuffers = new Map<number, Uint8Array[]>();
const SPARES_PER_SIZE = 4;

function takeBuffer(size: number): Uint8Array {
  return spareBuffers.get(size)?.pop() ?? new Uint8Array(new ArrayBuffer(size));
}

function giveBack(bufs: readonly Uint8Array[]): void {
  for (const b of bufs) {
    const list = spareBuffers.get(b.byteLength) ?? [];
    if (list.length < SPARES_PER_SIZE) list.push(b);
    spareBuffers.set(b.byteLength, list);
  }
}

/**
 * Writes `head`, then `frames` frames of `frameBytes` each, rendered by `render` into a reused buffer, to
 * `path`. Two buffers alternate so one is rendered while the other is written; nothing else is held.
 */
export async function writeFramesFile(
  path: string,
  head: Buffer,
  frames: number,
  frameBytes: number,
  render: (frame: number, into: Uint8Array) => void,
  tail?: Buffer,
): Promise<number> {
  const out = await OutFile.create(path);
  const bufs: Uint8Array[] = [];
  let pending: Promise<void> | undefined;
  try {
    await out.write(head);
    const perBatch = Math.max(1, Math.min(frames, Math.floor(WRITE_BATCH / frameBytes)));
    bufs.push(takeBuffer(perBatch * frameBytes));
    if (frames > perBatch) bufs.push(takeBuffer(perBatch * frameBytes));
    let which = 0;
    for (let f = 0; f < frames; f += perBatch) {
      const n = Math.min(perBatch, frames - f);
      const buf = bufs[which] as Uint8Array;
      for (let k = 0; k < n; k++) render(f + k, buf.subarray(k * frameBytes, (k + 1) * frameBytes));
      if (pending) await pending;
      pending = out.write(n === perBatch ? buf : buf.subarray(0, n * frameBytes));
      which = (which + 1) % bufs.length;
    }
    if (pending) await pending;
    if (tail) await out.write(tail);
    await out.close();
    return out.size;
  } catch (e) {
    // Let a write still in flight finish (or fail) before the file and the buffers go.
    await pending?.catch(() => undefined);
    await out.discard();
    throw e;
  } finally {
    giveBack(bufs);
  }
}
