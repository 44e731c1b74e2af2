// Ingest of uploaded DICOM: the request body is streamed to a temporary file while hashed, then
// handed to the store; a ZIP body is unpacked entry by entry. Nothing is buffered whole.
import { createHash, randomUUID } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { XferError, isXferError } from '../errors.ts';
import type { IngestResult, Store } from '../store/types.ts';
import { freeBytes } from '../util/fs.ts';

/** Bytes kept free on the store's disk whatever happens. */
export const DISK_RESERVE = 64 * 1024 * 1024;

export interface SpooledFile {
  path: string;
  size: number;
  md5: string;
  /** The first bytes of the file (up to HEAD_BYTES), for sniffing and header parsing without a read. */
  head: Buffer;
}

/** How much of the start of an upload is kept in memory. */
export const HEAD_BYTES = 256 * 1024;
/** Writes are gathered up to this size before they go to the file. */
const WRITE_BATCH = 1024 * 1024;

/**
 * Writes a stream to a new temporary file in `dir`, computing its MD5 on the way, and flushes it to
 * disk. The file is removed if anything fails. `maxBytes` bounds the size (FullStorage beyond).
 */
export async function spool(source: AsyncIterable<Buffer> | Readable, dir: string, maxBytes: number): Promise<SpooledFile> {
  const path = join(dir, `upload-${randomUUID()}`);
  const hash = createHash('md5');
  const headParts: Buffer[] = [];
  let headLength = 0;
  let size = 0;
  const fh = await open(path, 'wx');
  try {
    let batch: Buffer[] = [];
    let batched = 0;
    let position = 0;
    const flush = async () => {
      if (batched === 0) return;
      const buffers = batch;
      batch = [];
      const n = batched;
      batched = 0;
      const { bytesWritten } = await fh.writev(buffers, position);
      if (bytesWritten !== n) throw new XferError('CannotWriteFile', `short write (${bytesWritten} of ${n} bytes)`);
      position += n;
    };
    for await (const chunk of source) {
      size += chunk.length;
      if (size > maxBytes) {
        throw new XferError('FullStorage', `the upload exceeds the ${Math.floor(maxBytes / 1048576)} MB left on disk`);
      }
      hash.update(chunk);
      if (headLength < HEAD_BYTES) {
        const part = chunk.subarray(0, HEAD_BYTES - headLength);
        headParts.push(Buffer.from(part));
        headLength += part.length;
      }
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH) await flush();
    }
    await flush();
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw e;
  }
  await fh.close();
  return { path, size, md5: hash.digest('hex'), head: Buffer.concat(headParts, headLength) };
}

let roomCache: { dir: string; at: number; free: number } | undefined;

/** How many bytes an upload may take on the store's disk now (free space read at most once a second). */
export async function uploadRoom(dir: string): Promise<number> {
  const now = Date.now();
  if (!roomCache || roomCache.dir !== dir || now - roomCache.at > 1000) {
    roomCache = { dir, at: now, free: await freeBytes(dir) };
  }
  return Math.max(0, roomCache.free - DISK_RESERVE);
}

/** True when the bytes start a ZIP archive rather than a DICOM file. */
export function isZip(b: Buffer): boolean {
  const zipMagic = b.length >= 4 && b.readUInt32LE(0) === 0x04034b50;
  const dicm = b.length >= 132 && b.toString('latin1', 128, 132) === 'DICM';
  return zipMagic && !dicm;
}

export interface ZipEntryOutcome {
  name: string;
  result?: IngestResult;
  error?: XferError;
}

/** Ingests every file entry of a ZIP archive, one at a time, each spooled to its own temporary file. */
export async function ingestZip(zipPath: string, store: Store, tmpDir: string): Promise<ZipEntryOutcome[]> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.open(zipPath, { lazyEntries: true, autoClose: false, strictFileNames: false }, (err, z) => {
      if (err || !z) reject(new XferError('BadFileFormat', `not a readable ZIP archive: ${err?.message ?? 'unknown'}`));
      else resolve(z);
    });
  });
  const outcomes: ZipEntryOutcome[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', (e: Error) => reject(new XferError('BadFileFormat', `corrupt ZIP archive: ${e.message}`)));
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        if (entry.fileName.endsWith('/')) {
          zip.readEntry();
          return;
        }
        zip.openReadStream(entry, (err, stream) => {
          if (err || !stream) {
            outcomes.push({ name: entry.fileName, error: new XferError('BadFileFormat', `cannot read ZIP entry: ${err?.message}`) });
            zip.readEntry();
            return;
          }
          (async () => {
            const room = await uploadRoom(tmpDir);
            const spooled = await spool(stream, tmpDir, room);
            try {
              const result = await store.ingestFile(spooled.path, spooled.size, spooled.md5, { head: spooled.head, synced: true });
              outcomes.push({ name: entry.fileName, result });
            } catch (e) {
              await unlink(spooled.path).catch(() => undefined);
              if (!isXferError(e, 'BadFileFormat')) throw e;
              outcomes.push({ name: entry.fileName, error: e });
            }
          })().then(
            () => zip.readEntry(),
            (e: unknown) => reject(e),
          );
        });
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return outcomes;
}
