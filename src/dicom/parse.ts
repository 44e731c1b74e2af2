// The DICOM header parser of dicom-xfer: from the bytes (or a file) to the UIDs, Orthanc's main DICOM tags
// and the tags in Orthanc's JSON shapes, reading the header only, never the pixel data.
import { type FileHandle, open } from 'node:fs/promises';
import { XferError } from '../errors.ts';
import { DicomTruncatedError, isDicomTruncated, parseDicomBytes, type ParsedDicom, type ParseOptions, topLevelValue } from './dataset.ts';
import { tagsOfParsed, type FullTags, type SimplifiedTags, type TagsFormat, type TagsOptions } from './simplify.ts';
import { MAIN_DICOM_TAGS, TAG } from './tags.ts';
import { LEVELS, type DicomHeader, type Level, type MainTags } from './types.ts';

export { DicomTruncatedError, isDicomTruncated, type ParsedDicom, type ParseOptions };
export type { FullTags, SimplifiedTags, TagsFormat, TagsOptions } from './simplify.ts';

/**
 * The header bytes behind each header (up to the Pixel Data element, copied so that a 64 KiB prefix is not
 * kept alive for a 2 KiB header), so that simplifiedTags(header) needs no second read of the file.
 */
const bytesOf = new WeakMap<DicomHeader, Uint8Array>();

function requiredUid(parsed: ParsedDicom, tag: number, name: string): string {
  const v = topLevelValue(parsed, tag);
  if (v === null) throw new XferError('BadFileFormat', `${name} is not text or longer than 256 bytes`);
  if (v === undefined || v === '') throw new XferError('BadFileFormat', `missing ${name}`);
  return v;
}

/** PatientID, "" when absent; refused when unreadable, as Orthanc refuses it (it cannot hash it). */
function patientIdOf(parsed: ParsedDicom): string {
  const v = topLevelValue(parsed, TAG.PatientID);
  if (v === null) throw new XferError('BadFileFormat', 'PatientID is not text or longer than 256 bytes');
  return v ?? '';
}

function headerOf(parsed: ParsedDicom, bytes: Uint8Array): DicomHeader {
  const studyInstanceUid = requiredUid(parsed, TAG.StudyInstanceUID, 'StudyInstanceUID');
  const seriesInstanceUid = requiredUid(parsed, TAG.SeriesInstanceUID, 'SeriesInstanceUID');
  const sopInstanceUid = requiredUid(parsed, TAG.SOPInstanceUID, 'SOPInstanceUID');
  const patientId = patientIdOf(parsed);
  const mainTags = {} as Record<Level, MainTags>;
  for (const level of LEVELS) {
    const tags: MainTags = {};
    for (const { tag, name } of MAIN_DICOM_TAGS[level]) {
      const v = topLevelValue(parsed, tag);
      // Orthanc indexes only values it could read: absent, binary and too long values are left out.
      if (v !== undefined && v !== null) tags[name] = v;
    }
    mainTags[level] = tags;
  }
  const header: DicomHeader = {
    transferSyntaxUid: parsed.transferSyntaxUid,
    sopClassUid: topLevelValue(parsed, TAG.SOPClassUID) ?? undefined,
    patientId,
    studyInstanceUid,
    seriesInstanceUid,
    sopInstanceUid,
    mainTags,
    pixelDataOffset: parsed.pixelDataOffset,
  };
  const end = parsed.pixelDataOffset === undefined ? bytes.length : Math.min(bytes.length, parsed.pixelDataOffset + 12);
  // A real copy: Buffer#slice is a view, which would keep the whole prefix (64 KiB and more) alive.
  bytesOf.set(header, Uint8Array.prototype.slice.call(bytes, 0, end));
  return header;
}

/**
 * Parses the header of a DICOM file (Part 10 or a raw data set; any transfer syntax, deflated included) and
 * stops before Pixel Data, so `bytes` may be only the beginning of the file.
 *
 * Throws XferError('BadFileFormat') when the bytes are not DICOM or lack StudyInstanceUID,
 * SeriesInstanceUID or SOPInstanceUID; DicomTruncatedError (a BadFileFormat XferError, see
 * isDicomTruncated) when the bytes end before the header does, which with `{ prefix: true }` means
 * "give me more bytes". Throws nothing else, whatever the input.
 */
export function parseDicomHeader(bytes: Uint8Array, options: ParseOptions = {}): DicomHeader {
  return headerOf(parseDicomBytes(bytes, options), bytes);
}

/**
 * The whole parse behind a header made here (parseDicomHeader, readDicomHeaderFromFile): every element up to
 * Pixel Data, for the callers that need more than the main tags (DICOMweb's DICOM JSON) without a second read.
 */
export function parsedHeader(header: DicomHeader): ParsedDicom {
  const bytes = bytesOf.get(header);
  if (!bytes) throw new XferError('BadRequest', 'this header was not produced by the DICOM parser');
  return parseDicomBytes(bytes);
}

/** First prefix that readDicomHeaderFromFile reads; each retry reads 4 times more. */
export const FIRST_PREFIX = 64 * 1024;

/** A header read from a file, with how much of the file was read to get it. */
export interface FileHeader {
  header: DicomHeader;
  /** Bytes read from the start of the file (the last prefix tried). */
  bytesRead: number;
  fileSize: number;
}

/**
 * Reads and parses the header of a DICOM file: a 64 KiB prefix, then 4 times more while the header is cut
 * short, up to the whole file, so a large file is not read much beyond its header (at most 4 times the
 * header, or 64 KiB). Throws XferError('InexistentFile') if the file cannot be opened or read, and what
 * parseDicomHeader throws.
 */
export async function readDicomHeaderPrefix(path: string): Promise<FileHeader> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw new XferError('InexistentFile', path, { cause: e });
  }
  try {
    let size: number;
    try {
      size = (await handle.stat()).size;
    } catch (e) {
      throw new XferError('InexistentFile', path, { cause: e });
    }
    // Bounded: the prefix grows 4x per round and stops at the file size.
    for (let want = Math.min(FIRST_PREFIX, size); ; want = Math.min(want * 4, size)) {
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        let bytesRead: number;
        try {
          ({ bytesRead } = await handle.read(buf, got, want - got, got));
        } catch (e) {
          throw new XferError('InexistentFile', `${path}: ${(e as Error).message}`, { cause: e });
        }
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const whole = got >= size || got < want;
      try {
        const header = parseDicomHeader(buf.subarray(0, got), { prefix: !whole });
        return { header, bytesRead: got, fileSize: size };
      } catch (e) {
        if (whole || !isDicomTruncated(e)) throw e;
      }
    }
  } finally {
    await handle.close();
  }
}

/** readDicomHeaderPrefix, the header only. */
export async function readDicomHeaderFromFile(path: string): Promise<DicomHeader> {
  return (await readDicomHeaderPrefix(path)).header;
}

/**
 * The tags of a DICOM header in Orthanc's shapes, for GET /instances/{id}/tags: `'simplify'` (the default,
 * {Name: value}) or `'full'` ({"gggg,eeee": {Name, Type, Value}}). `source` is the bytes of the file (or a
 * prefix of it that reaches Pixel Data), or a header returned by parseDicomHeader / readDicomHeaderFromFile
 * (which remember their parse). Values as in `MainDicomTags`; binary and too long values are null.
 * The file meta information is left out, as Orthanc does, unless `options.includeMeta`.
 * Throws what parseDicomHeader throws, and XferError('BadRequest') for a header built elsewhere.
 */
export function simplifiedTags(source: Uint8Array | DicomHeader, format: 'simplify', options?: TagsOptions): SimplifiedTags;
export function simplifiedTags(source: Uint8Array | DicomHeader, format: 'full', options?: TagsOptions): FullTags;
export function simplifiedTags(source: Uint8Array | DicomHeader, format?: TagsFormat, options?: TagsOptions): SimplifiedTags | FullTags;
export function simplifiedTags(
  source: Uint8Array | DicomHeader,
  format: TagsFormat = 'simplify',
  options: TagsOptions = {},
): SimplifiedTags | FullTags {
  let bytes: Uint8Array | undefined;
  if (source instanceof Uint8Array) {
    bytes = source;
  } else {
    bytes = bytesOf.get(source);
    if (!bytes) throw new XferError('BadRequest', 'this header was not produced by the DICOM parser');
  }
  return tagsOfParsed(parseDicomBytes(bytes), format, options);
}

/**
 * The tags of a DICOM file in Orthanc's shapes (see simplifiedTags), reading only the header of the file
 * (see readDicomHeaderPrefix). Throws what readDicomHeaderFromFile throws.
 */
export async function readDicomTagsFromFile(
  path: string,
  format: TagsFormat = 'simplify',
  options: TagsOptions = {},
): Promise<SimplifiedTags | FullTags> {
  const { header } = await readDicomHeaderPrefix(path);
  return simplifiedTags(header, format, options);
}
