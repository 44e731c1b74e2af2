// Ingest of uploaded DICOM: the request body is streamed to a temporary file while hashed (junk refused
// from its first bytes), its structure checked, then handed to the store; a ZIP body is unpacked entry by
// entry within bounds. Nothing is buffered whole.
import { createHash, randomUUID } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { dataSetLayout, isDicomTruncated } from '../dicom/dataset.ts';
import { checkDicomFile } from '../dicom/structure.ts';
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
 * Says from the first bytes of an upload whether to go on: true (go on), undefined (too few bytes to tell
 * yet), or the error that refuses it. Called with more bytes each time until it decides, and with `ended`
 * when the upload has no more bytes.
 */
export type Sniffer = (head: Buffer, ended: boolean) => true | undefined | XferError;

/**
 * Writes a stream to a new temporary file in `dir`, computing its MD5 on the way, and flushes it to
 * disk. The file is removed if anything fails. `maxBytes` bounds the size (FullStorage beyond). With
 * `sniff`, the file is made only once the first bytes have passed it: bytes it refuses are never written.
 */
export async function spool(
  source: AsyncIterable<Buffer> | Readable,
  dir: string,
  maxBytes: number,
  sniff?: Sniffer,
): Promise<SpooledFile> {
  const path = join(dir, `upload-${randomUUID()}`);
  const hash = createHash('md5');
  const headParts: Buffer[] = [];
  let headLength = 0;
  let size = 0;
  let fh: FileHandle | undefined;
  // Sniffing again at every small piece of a slow upload would copy the head over and over: only when it
  // has doubled since the last try.
  let decided = sniff === undefined;
  let sniffAt = 132;
  const decide = (ended: boolean) => {
    const verdict = (sniff as Sniffer)(Buffer.concat(headParts, headLength), ended);
    if (verdict instanceof XferError) throw verdict;
    if (verdict === true || ended || headLength >= HEAD_BYTES) decided = true;
    sniffAt = Math.max(sniffAt, headLength * 2);
  };
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
      fh ??= await open(path, 'wx');
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
      if (!decided && (headLength >= sniffAt || headLength >= HEAD_BYTES)) decide(false);
      batch.push(chunk);
      batched += chunk.length;
      if (decided && batched >= WRITE_BATCH) await flush();
    }
    if (!decided) decide(true);
    await flush();
    fh ??= await open(path, 'wx');
    await fh.sync();
  } catch (e) {
    await fh?.close().catch(() => undefined);
    if (fh) await unlink(path).catch(() => undefined);
    throw e;
  }
  await fh.close();
  return { path, size, md5: hash.digest('hex'), head: Buffer.concat(headParts, headLength) };
}

/**
 * The sniffer of POST /instances (see spool): a ZIP archive, a Part 10 file or a plausible raw data set
 * goes on; anything else is refused from its first bytes, before it is written anywhere.
 */
export function sniffUpload(allowZip: boolean): Sniffer {
  return (head, ended) => {
    if (allowZip && isZip(head)) return true;
    // An empty body is the caller's to refuse (EmptyRequest).
    if (head.length === 0 && ended) return true;
    try {
      dataSetLayout(head, !ended);
      return true;
    } catch (e) {
      if (isDicomTruncated(e) && !ended) return undefined;
      if (isXferError(e)) {
        const why = (e.details ?? e.message).replace(/^not a DICOM file: /, '');
        return new XferError('BadFileFormat', `not a DICOM file${allowZip ? ' nor a ZIP archive' : ''}: ${why}`);
      }
      return new XferError('BadFileFormat', 'not a DICOM file');
    }
  };
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

/**
 * Stores a spooled upload: its structure is checked to the end of the file first (elements that run past
 * the end, garbage after the first elements: BadFileFormat, nothing stored), then the store takes it.
 * The file belongs to the store afterwards, or is left to the caller when this throws.
 */
export async function ingestSpooled(store: Store, spooled: SpooledFile): Promise<IngestResult> {
  await checkDicomFile(spooled.path, spooled.head);
  return store.ingestFile(spooled.path, spooled.size, spooled.md5, { head: spooled.head, synced: true });
}

/** Bounds of a ZIP upload, checked from its central directory before any entry is read; 0 means none. */
export interface ZipLimits {
  /** Most entries (files and folders). */
  maxEntries: number;
  /** Most bytes of all its entries once uncompressed. */
  maxUncompressedBytes: number;
}

export interface ZipEntryOutcome {
  name: string;
  result?: IngestResult;
  error?: XferError;
}

function zipRefusal(details: string): XferError {
  return new XferError('BadRequest', details, { httpStatus: 413 });
}

/**
 * Ingests every file entry of a ZIP archive, one at a time, each spooled to its own temporary file. The
 * entry count and the total uncompressed size are checked first, from the central directory (413 beyond
 * `limits`, 507 beyond the room on disk); an entry that holds more bytes than its directory says is cut
 * off there by the ZIP reader. Each entry is stored or rejected on its own: the outcomes say which.
 */
export async function ingestZip(zipPath: string, store: Store, tmpDir: string, limits: ZipLimits): Promise<ZipEntryOutcome[]> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.open(zipPath, { lazyEntries: true, autoClose: false, strictFileNames: false, validateEntrySizes: true }, (err, z) => {
      if (err || !z) reject(new XferError('BadFileFormat', `not a readable ZIP archive: ${err?.message ?? 'unknown'}`));
      else resolve(z);
    });
  });
  try {
    if (limits.maxEntries > 0 && zip.entryCount > limits.maxEntries) {
      throw zipRefusal(`the ZIP archive has ${zip.entryCount} entries, more than the ${limits.maxEntries} allowed (MaximumZipEntries)`);
    }
    // The central directory first, whole (bounded by the entry count): nothing is stored unless the
    // archive as a whole fits.
    const entries = await new Promise<yauzl.Entry[]>((resolve, reject) => {
      const files: yauzl.Entry[] = [];
      let total = 0;
      zip.on('error', (e: Error) => reject(new XferError('BadFileFormat', `corrupt ZIP archive: ${e.message}`)));
      zip.on('end', () => resolve(files));
      zip.on('entry', (entry: yauzl.Entry) => {
        if (!entry.fileName.endsWith('/')) {
          files.push(entry);
          total += entry.uncompressedSize;
          if (limits.maxUncompressedBytes > 0 && total > limits.maxUncompressedBytes) {
            reject(
              zipRefusal(
                `the ZIP archive uncompresses to more than ${Math.floor(limits.maxUncompressedBytes / 1048576)} MB ` +
                  `(MaximumZipUncompressedSize)`,
              ),
            );
            return;
          }
        }
        zip.readEntry();
      });
      zip.readEntry();
    });
    const total = entries.reduce((n, e) => n + e.uncompressedSize, 0);
    const room = await uploadRoom(tmpDir);
    if (total > room) {
      throw new XferError('FullStorage', `the ZIP archive uncompresses to ${total} bytes, more than the ${room} bytes left on disk`);
    }
    const outcomes: ZipEntryOutcome[] = [];
    for (const entry of entries) {
      const name = entry.fileName;
      let stream: Readable;
      try {
        stream = await new Promise<Readable>((resolve, reject) => {
          zip.openReadStream(entry, (err, s) => (err || !s ? reject(err ?? new Error('no stream')) : resolve(s)));
        });
      } catch (e) {
        outcomes.push({ name, error: new XferError('BadFileFormat', `cannot read the ZIP entry: ${(e as Error).message}`) });
        continue;
      }
      let spooled: SpooledFile;
      try {
        spooled = await spool(stream, tmpDir, await uploadRoom(tmpDir), sniffUpload(false));
      } catch (e) {
        stream.destroy();
        if (isXferError(e)) {
          if (e.code !== 'BadFileFormat') throw e;
          outcomes.push({ name, error: e });
        } else {
          // The ZIP reader's own refusals: a bad CRC, an entry longer than its directory says.
          outcomes.push({ name, error: new XferError('BadFileFormat', `corrupt ZIP entry: ${(e as Error).message}`) });
        }
        continue;
      }
      try {
        outcomes.push({ name, result: await ingestSpooled(store, spooled) });
      } catch (e) {
        await unlink(spooled.path).catch(() => undefined);
        if (!isXferError(e, 'BadFileFormat')) throw e;
        outcomes.push({ name, error: e });
      }
    }
    return outcomes;
  } finally {
    zip.close();
  }
}
