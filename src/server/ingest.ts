// Ingest of uploaded DICOM: the request body is streamed to a temporary file while hashed, then
// handed to the store; a ZIP body is unpacked entry by entry. Nothing is buffered whole.
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
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
}

/**
 * Writes a stream to a new temporary file in `dir`, computing its MD5 on the way. The file is removed
 * if anything fails. `maxBytes` bounds the size (FullStorage beyond).
 */
export async function spool(source: AsyncIterable<Buffer> | Readable, dir: string, maxBytes: number): Promise<SpooledFile> {
  const path = join(dir, `upload-${randomUUID()}`);
  const hash = createHash('md5');
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) {
        cb(new XferError('FullStorage', `the upload exceeds the ${Math.floor(maxBytes / 1048576)} MB left on disk`));
        return;
      }
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(source, counter, createWriteStream(path, { highWaterMark: 1 << 20 }));
  } catch (e) {
    await unlink(path).catch(() => undefined);
    throw e;
  }
  return { path, size, md5: hash.digest('hex') };
}

/** How many bytes an upload may take on the store's disk now. */
export async function uploadRoom(dir: string): Promise<number> {
  return Math.max(0, (await freeBytes(dir)) - DISK_RESERVE);
}

async function head(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** True when the file is a ZIP archive rather than a DICOM file. */
export async function isZip(path: string): Promise<boolean> {
  const b = await head(path, 132);
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
              const result = await store.ingestFile(spooled.path, spooled.size, spooled.md5);
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
