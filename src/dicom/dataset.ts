// The low level of dicom-xfer's DICOM reading: finds how a byte array is encoded (Part 10 file or raw data
// set; explicit or implicit VR; little or big endian; deflated), lets dicom-parser read the file meta
// information and the data set up to Pixel Data (values.ts turns element values into strings).
import { createRequire } from 'node:module';
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import type { ByteArrayParser, ByteStream, DataSet, Element } from 'dicom-parser';
import { XferError } from '../errors.ts';
import { charsetFor, type CharsetInfo } from './charset.ts';
import { lookupTag, parserKey, TAG, tagGroup, type TagNumber } from './tags.ts';
import { leafValue, valueBytes } from './values.ts';

// dicom-parser is CommonJS whose exports Node cannot name statically; its typings describe the module object.
const dp = createRequire(import.meta.url)('dicom-parser') as typeof import('dicom-parser');
// The typings declare DataSet as an interface only; at run time it is a class that the parser functions need.
type DataSetClass = new (parser: ByteArrayParser, byteArray: Uint8Array, elements: Record<string, Element>) => DataSet;
const DataSetCtor = (dp as unknown as { DataSet: DataSetClass }).DataSet;

/**
 * The bytes ended before the header did. A BadFileFormat error like any other for a whole file; for a
 * prefix of a file it means "read more of the file and try again".
 */
export class DicomTruncatedError extends XferError {
  constructor(details: string, options?: { cause?: unknown }) {
    super('BadFileFormat', details, options);
  }
}

/** True when `e` says that the bytes ended too early (as opposed to bytes that are not DICOM). */
export function isDicomTruncated(e: unknown): e is DicomTruncatedError {
  return e instanceof DicomTruncatedError;
}

export interface ParseOptions {
  /**
   * The bytes may be only the beginning of the file (default false). Then the parse must reach Pixel Data
   * to succeed, and running out of bytes throws DicomTruncatedError. When false, the bytes are the whole
   * file, and a file without Pixel Data (a report, a presentation state) parses to its end.
   */
  prefix?: boolean;
}

export const TS = {
  ImplicitLittle: '1.2.840.10008.1.2',
  ExplicitLittle: '1.2.840.10008.1.2.1',
  DeflatedExplicitLittle: '1.2.840.10008.1.2.1.99',
  ExplicitBig: '1.2.840.10008.1.2.2',
  JpipReferencedDeflate: '1.2.840.10008.1.2.4.95',
} as const;

/** A data set read by dicom-parser, with what is needed to interpret its values. */
export interface ParsedDicom {
  /** File meta information (group 0002, always explicit little endian); undefined for a raw data set. */
  meta: DataSet | undefined;
  /** The data set, read up to (not into) the top-level Pixel Data element. */
  dataSet: DataSet;
  /** From the file meta information, or the one detected for a raw data set. */
  transferSyntaxUid: string;
  explicitVr: boolean;
  littleEndian: boolean;
  deflated: boolean;
  /** Whether the top-level Pixel Data element was reached. */
  reachedPixelData: boolean;
  /** Offset in the input bytes of the Pixel Data element's tag; undefined if not reached or deflated. */
  pixelDataOffset: number | undefined;
  charset: CharsetInfo;
}

const PIXEL_DATA_KEY = parserKey(TAG.PixelData);
const VALID_VRS = new Set([
  'AE',
  'AS',
  'AT',
  'CS',
  'DA',
  'DS',
  'DT',
  'FD',
  'FL',
  'IS',
  'LO',
  'LT',
  'OB',
  'OD',
  'OF',
  'OL',
  'OV',
  'OW',
  'PN',
  'SH',
  'SL',
  'SQ',
  'SS',
  'ST',
  'SV',
  'TM',
  'UC',
  'UI',
  'UL',
  'UN',
  'UR',
  'US',
  'UT',
  'UV',
]);
/** VRs whose explicit length field has 4 bytes (after 2 reserved ones). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UR', 'UT', 'UN', 'SV', 'UV']);
const UNDEFINED_LENGTH = 0xffffffff;

/**
 * A VR that the standard does not know, made of two capital letters: DCMTK (so Orthanc) takes it for a VR of
 * a later edition of the standard, all of which have a 4-byte length, and reads the element as UN.
 */
export function isFutureVr(vr: string): boolean {
  return !VALID_VRS.has(vr) && /^[A-Z]{2}$/.test(vr);
}

/**
 * Whether an explicit VR element has 2 reserved bytes and a 4-byte length after its VR, as DCMTK reads it:
 * the long VRs of the standard and the unknown VRs of two capital letters; any other unknown VR (lower case,
 * digits, spaces) has a 2-byte length.
 */
export function hasLongLength(vr: string): boolean {
  return LONG_VRS.has(vr) || isFutureVr(vr);
}
/** Upper bound of what a deflated data set may inflate to while looking for its header. */
const MAX_INFLATED = 256 * 1024 * 1024;

function ascii(bytes: Uint8Array, at: number, n: number): string {
  let s = '';
  for (let i = at; i < at + n && i < bytes.length; i++) s += String.fromCharCode(bytes[i] ?? 0);
  return s;
}

function isVrAt(bytes: Uint8Array, at: number): boolean {
  return at + 2 <= bytes.length && VALID_VRS.has(ascii(bytes, at, 2));
}

function u16(bytes: Uint8Array, at: number, little: boolean): number {
  const a = bytes[at] ?? 0;
  const b = bytes[at + 1] ?? 0;
  return little ? a | (b << 8) : (a << 8) | b;
}

export interface Encoding {
  explicitVr: boolean;
  littleEndian: boolean;
}

/**
 * Guesses the encoding of a data set from its first element, as DCMTK does for raw data sets and for data
 * sets whose declared transfer syntax does not match their bytes. Undefined when the first element does not
 * look like the start of a DICOM data set.
 */
function sniffEncoding(bytes: Uint8Array, at: number, declared: Encoding | undefined): Encoding | undefined {
  if (at + 8 > bytes.length) return undefined;
  const explicit = isVrAt(bytes, at + 4);
  const plausible = (group: number) => group % 2 === 0 && group >= 0x0002 && group <= 0x0028;
  const le = u16(bytes, at, true);
  const be = u16(bytes, at, false);
  if (declared && (declared.littleEndian ? plausible(le) : plausible(be))) {
    return { explicitVr: explicit, littleEndian: declared.littleEndian };
  }
  if (plausible(le)) return { explicitVr: explicit, littleEndian: true };
  if (plausible(be) && explicit) return { explicitVr: true, littleEndian: false };
  return undefined;
}

function transferSyntaxEncoding(ts: string): Encoding & { deflated: boolean } {
  if (ts === TS.ImplicitLittle) return { explicitVr: false, littleEndian: true, deflated: false };
  if (ts === TS.ExplicitBig) return { explicitVr: true, littleEndian: false, deflated: false };
  const deflated = ts === TS.DeflatedExplicitLittle || ts === TS.JpipReferencedDeflate;
  return { explicitVr: true, littleEndian: true, deflated };
}

/** What dicom-parser threw, as text (it throws strings, Errors, and {exception, dataSet} objects). */
function describe(e: unknown): string {
  if (typeof e === 'string') return e;
  if (e instanceof Error) return e.message;
  if (e && typeof e === 'object' && 'exception' in e) return describe((e as { exception: unknown }).exception);
  return String(e);
}

/** Whether a dicom-parser failure is the kind that more bytes could cure. */
function ranOutOfBytes(e: unknown): boolean {
  return /past end|overread|overrun|maxP ?osition|eof/i.test(describe(e));
}

function failure(e: unknown, what: string): XferError {
  if (e instanceof XferError) return e;
  if (e instanceof RangeError && /call stack/i.test(e.message)) {
    return new XferError('BadFileFormat', `${what}: sequences nested too deeply`, { cause: e });
  }
  if (ranOutOfBytes(e)) return new DicomTruncatedError(`${what}: the data ends inside an element`, { cause: e });
  return new XferError('BadFileFormat', `${what}: ${describe(e)}`, { cause: e });
}

/** Tells dicom-parser the VR of an implicit element, so that it knows the sequences. */
function vrCallback(tag: string): string {
  // The typings want a string; undefined (an unknown tag) makes dicom-parser guess from the next bytes.
  return lookupTag(parseInt(tag.slice(1), 16) >>> 0)?.vr as string;
}

// dicom-parser 1.8 reads a 2-byte length after any VR it does not list as long, and its list lacks OV, SV
// and UV (added to the standard in 2019) as well as the unknown VRs that DCMTK reads with a 4-byte length: it
// then reads the reserved bytes as the length and everything after as garbage. Its explicit VR readers call
// one another internally, so the element, item and data set readers below replace them for explicit VR,
// with the same results and warnings for every other element; the implicit VR readers and the helpers for
// encapsulated pixel data and undefined lengths are still dicom-parser's.

/** Reads one explicit VR element at the position of `stream`, and its items or value (skipped). */
function readElementExplicit(stream: ByteStream, warnings: string[], untilTag?: string): Element {
  const tag = dp.readTag(stream);
  const vr = stream.readFixedString(2);
  let length: number;
  if (hasLongLength(vr)) {
    stream.seek(2);
    length = stream.readUint32();
  } else {
    length = stream.readUint16();
  }
  const el: Element = { tag, vr, length, dataOffset: stream.position };
  if (length === UNDEFINED_LENGTH) el.hadUndefinedLength = true;
  if (tag === untilTag) return el;
  if (vr === 'SQ') {
    readItemsExplicit(stream, el, warnings);
    return el;
  }
  if (length === UNDEFINED_LENGTH) {
    if (tag === PIXEL_DATA_KEY) {
      dp.findEndOfEncapsulatedElement(stream, el, warnings);
    } else if (vr === 'UN' || isFutureVr(vr)) {
      // Read as UN by DCMTK: the items of an undefined-length UN element are implicit VR little endian.
      dp.readSequenceItemsImplicit(stream, el);
    } else {
      dp.findItemDelimitationItemAndSetElementLength(stream, el);
    }
    return el;
  }
  stream.seek(length);
  return el;
}

/** Reads the items of an explicit VR sequence, up to its sequence delimitation or its length. */
function readItemsExplicit(stream: ByteStream, el: Element, warnings: string[]): void {
  const items: Element[] = [];
  el.items = items;
  if (el.length !== UNDEFINED_LENGTH) {
    const end = el.dataOffset + el.length;
    // Bounded: every item read advances the stream by at least 8 bytes.
    while (stream.position < end) items.push(readItemExplicit(stream, warnings));
    return;
  }
  // Bounded: every round reads an item (at least 8 bytes) or returns.
  while (stream.position + 4 <= stream.byteArray.length) {
    const next = dp.readTag(stream);
    stream.seek(-4);
    if (next === 'xfffee0dd') {
      el.length = stream.position - el.dataOffset;
      stream.seek(8);
      return;
    }
    items.push(readItemExplicit(stream, warnings));
  }
  warnings.push('eof encountered before finding sequence delimitation tag while reading sequence of undefined length');
  el.length = stream.position - el.dataOffset;
}

/** Reads one item of an explicit VR sequence and its data set. */
function readItemExplicit(stream: ByteStream, warnings: string[]): Element {
  const item: Element = dp.readSequenceItem(stream);
  if (item.length === UNDEFINED_LENGTH) {
    item.hadUndefinedLength = true;
    const elements: Record<string, Element> = {};
    let closed = false;
    // Bounded: every element read advances the stream by at least 8 bytes.
    while (stream.position < stream.byteArray.length) {
      const inner = readElementExplicit(stream, warnings);
      elements[inner.tag] = inner;
      if (inner.tag === 'xfffee00d') {
        closed = true;
        break;
      }
    }
    if (!closed) warnings.push('eof encountered before finding item delimiter tag while reading sequence item of undefined length');
    item.dataSet = new DataSetCtor(stream.byteArrayParser, stream.byteArray, elements);
    item.length = stream.position - item.dataOffset;
  } else {
    item.dataSet = new DataSetCtor(stream.byteArrayParser, stream.byteArray, {});
    readDataSetExplicit(item.dataSet, stream, stream.position + item.length);
  }
  return item;
}

/** Reads explicit VR elements into `dataSet` up to `maxPosition`, or up to the element `untilTag`. */
function readDataSetExplicit(dataSet: DataSet, stream: ByteStream, maxPosition: number, untilTag?: string): void {
  if (maxPosition < stream.position || maxPosition > stream.byteArray.length) {
    // Worded as dicom-parser words it: ranOutOfBytes takes it for bytes that end too early.
    throw new Error(`invalid value for parameter 'maxPosition' (${maxPosition})`);
  }
  // Bounded: every element read advances the stream by at least 8 bytes.
  while (stream.position < maxPosition) {
    const el = readElementExplicit(stream, dataSet.warnings, untilTag);
    dataSet.elements[el.tag] = el;
    if (el.tag === untilTag) return;
  }
  if (stream.position > maxPosition) throw new Error('buffer overrun');
}

/** Reads the file meta information (explicit VR little endian, group 0002) starting at `at`. */
function readMeta(bytes: Uint8Array, at: number): { meta: DataSet; end: number } {
  const elements: Record<string, Element> = {};
  const stream = new dp.ByteStream(dp.littleEndianByteArrayParser, bytes, at);
  // The group length, when present, says where the meta information ends (as DCMTK reads it): a data set
  // may itself start with group 0002 elements, which belong to the data set. Reading stops at the first
  // element boundary at or after that end, so a wrong group length cannot cut an element in two.
  let end = Infinity;
  // Bounded: every element read advances the stream by at least 8 bytes.
  while (stream.position + 8 <= bytes.length && stream.position < end && u16(bytes, stream.position, true) === 0x0002) {
    const el = readElementExplicit(stream, stream.warnings);
    if (el.tag === 'x00020000' && el.length === 4 && el.dataOffset + 4 <= bytes.length) {
      const groupLength = dp.littleEndianByteArrayParser.readUint32(bytes, el.dataOffset);
      if (groupLength < 1024 * 1024) end = stream.position + groupLength;
    }
    if (el.dataOffset + el.length > bytes.length) {
      throw new DicomTruncatedError('the file meta information is cut short');
    }
    el.parser = dp.littleEndianByteArrayParser;
    elements[el.tag] = el;
  }
  const meta = new DataSetCtor(dp.littleEndianByteArrayParser, bytes, elements);
  return { meta, end: stream.position };
}

function inflate(compressed: Uint8Array): Buffer {
  try {
    // SYNC_FLUSH: a prefix of a deflated stream inflates to a prefix of the data set instead of failing.
    return inflateRawSync(compressed, {
      finishFlush: zlibConstants.Z_SYNC_FLUSH,
      maxOutputLength: MAX_INFLATED,
    });
  } catch (e) {
    throw new XferError('BadFileFormat', 'the deflated data set cannot be inflated', { cause: e });
  }
}

/** The transfer syntax UID text of the meta information, or undefined. */
function metaTransferSyntax(meta: DataSet): string | undefined {
  const el = meta.elements[parserKey(TAG.TransferSyntaxUID)];
  if (!el) return undefined;
  const raw = meta.byteArray.subarray(el.dataOffset, Math.min(el.dataOffset + el.length, meta.byteArray.length));
  return trimUid(ascii(raw, 0, raw.length));
}

function trimUid(s: string): string {
  const nul = s.indexOf('\0');
  return (nul >= 0 ? s.slice(0, nul) : s).trim();
}

/** Reads the data set that starts at `at` in `bytes`, up to Pixel Data. */
function readBody(
  bytes: Uint8Array,
  at: number,
  enc: Encoding,
  prefix: boolean,
): { dataSet: DataSet; reachedPixelData: boolean; pixelDataOffset: number | undefined } {
  const parser: ByteArrayParser = enc.littleEndian ? dp.littleEndianByteArrayParser : dp.bigEndianByteArrayParser;
  const dataSet = new DataSetCtor(parser, bytes, {});
  if (at >= bytes.length) {
    if (prefix) throw new DicomTruncatedError('the data set is missing');
    return { dataSet, reachedPixelData: false, pixelDataOffset: undefined };
  }
  const stream = new dp.ByteStream(parser, bytes, at);
  // dicom-parser appends to the warnings of the data set when a sequence ends with the bytes.
  dataSet.warnings = stream.warnings;
  try {
    if (enc.explicitVr) {
      readDataSetExplicit(dataSet, stream, bytes.length, PIXEL_DATA_KEY);
    } else {
      dp.parseDicomDataSetImplicit(dataSet, stream, bytes.length, { untilTag: PIXEL_DATA_KEY, vrCallback });
    }
  } catch (e) {
    throw failure(e, 'cannot read the data set');
  }
  const pixel = dataSet.elements[PIXEL_DATA_KEY];
  if (pixel === undefined && stream.position > bytes.length) {
    throw new DicomTruncatedError('the data set ends inside an element');
  }
  if (pixel === undefined && prefix) throw new DicomTruncatedError('Pixel Data not reached');
  let pixelDataOffset: number | undefined;
  if (pixel) {
    const headerSize = enc.explicitVr && pixel.vr !== undefined && hasLongLength(pixel.vr) ? 12 : 8;
    pixelDataOffset = pixel.dataOffset - headerSize;
    delete dataSet.elements[PIXEL_DATA_KEY];
  }
  return { dataSet, reachedPixelData: pixel !== undefined, pixelDataOffset };
}

/**
 * Parses the header of a DICOM file (or of a raw data set) with dicom-parser: file meta information and the
 * data set up to Pixel Data, never the pixel data. Throws XferError('BadFileFormat') for bytes that are not
 * DICOM, DicomTruncatedError when they end too early. Never throws anything else, never recurses without
 * bound (dicom-parser's own recursion into nested sequences ends in a caught RangeError at worst).
 */
export function parseDicomBytes(bytes: Uint8Array, options: ParseOptions = {}): ParsedDicom {
  const prefix = options.prefix ?? false;
  try {
    return parseUnchecked(bytes, prefix);
  } catch (e) {
    throw failure(e, 'not a DICOM file');
  }
}

/** Where the data set of a file starts and how it is encoded, as found from the file's first bytes. */
export interface DataSetLayout {
  /** File meta information; undefined for a raw data set. */
  meta: DataSet | undefined;
  /** Offset of the data set (after the meta information). */
  start: number;
  /** Undefined when the data set is deflated: its encoding is then explicit little endian, once inflated. */
  encoding: Encoding | undefined;
  /** The declared transfer syntax, or the one detected. */
  transferSyntaxUid: string;
  deflated: boolean;
}

/**
 * Finds where the data set starts and how it is encoded: Part 10 file (with or without preamble or DICM),
 * or raw data set. Throws BadFileFormat for bytes that are not DICOM, DicomTruncatedError (with `prefix`)
 * when more bytes are needed to tell.
 */
export function dataSetLayout(bytes: Uint8Array, prefix = false): DataSetLayout {
  try {
    return layoutUnchecked(bytes, prefix);
  } catch (e) {
    throw failure(e, 'not a DICOM file');
  }
}

function layoutUnchecked(bytes: Uint8Array, prefix: boolean): DataSetLayout {
  let metaStart: number | undefined;
  if (bytes.length >= 132 && ascii(bytes, 128, 4) === 'DICM') {
    metaStart = 132;
  } else if (ascii(bytes, 0, 4) === 'DICM') {
    metaStart = 4; // meta information without the 128-byte preamble
  } else if (bytes.length >= 8 && u16(bytes, 0, true) === 0x0002 && isVrAt(bytes, 4)) {
    metaStart = 0; // meta information without preamble nor magic
  }

  let meta: DataSet | undefined;
  let bodyStart = 0;
  let ts: string | undefined;
  if (metaStart !== undefined) {
    const r = readMeta(bytes, metaStart);
    meta = r.meta;
    bodyStart = r.end;
    ts = metaTransferSyntax(meta);
    if (bodyStart >= bytes.length && prefix) throw new DicomTruncatedError('the file ends after its meta information');
  } else if (bytes.length < 132 && prefix) {
    throw new DicomTruncatedError('too few bytes to recognise a DICOM file');
  }

  const declared = ts !== undefined ? transferSyntaxEncoding(ts) : undefined;
  if (declared?.deflated) {
    return { meta, start: bodyStart, encoding: undefined, transferSyntaxUid: ts ?? TS.DeflatedExplicitLittle, deflated: true };
  }
  let enc: Encoding;
  const sniffed = sniffEncoding(bytes, bodyStart, declared);
  if (sniffed) {
    enc = sniffed;
  } else if (declared && bodyStart >= bytes.length) {
    enc = declared; // nothing after the meta information
  } else if (metaStart === undefined) {
    if (prefix && bytes.length < 8) throw new DicomTruncatedError('too few bytes to recognise a DICOM file');
    throw new XferError('BadFileFormat', 'not a DICOM file: no DICM prefix and no recognisable data set');
  } else if (declared) {
    enc = declared;
  } else {
    throw new XferError('BadFileFormat', 'the data set after the meta information is not recognisable');
  }
  if (ts === undefined) {
    ts = enc.explicitVr ? (enc.littleEndian ? TS.ExplicitLittle : TS.ExplicitBig) : TS.ImplicitLittle;
  }
  return { meta, start: bodyStart, encoding: enc, transferSyntaxUid: ts, deflated: false };
}

function parseUnchecked(bytes: Uint8Array, prefix: boolean): ParsedDicom {
  const layout = layoutUnchecked(bytes, prefix);
  const { meta, start: bodyStart } = layout;
  const ts = layout.transferSyntaxUid;
  if (layout.encoding === undefined) return parseDeflated(bytes, meta, bodyStart, ts, prefix);
  const enc = layout.encoding;
  const body = readBody(bytes, bodyStart, enc, prefix);
  return {
    meta,
    dataSet: body.dataSet,
    transferSyntaxUid: ts,
    explicitVr: enc.explicitVr,
    littleEndian: enc.littleEndian,
    deflated: false,
    reachedPixelData: body.reachedPixelData,
    pixelDataOffset: body.pixelDataOffset,
    charset: charsetFor(rawCharset(body.dataSet)),
  };
}

/**
 * A deflated data set: inflates growing prefixes of the compressed bytes (64 KiB, then 4 times more) until
 * the header is complete, so that memory stays bounded by the header, not by the file.
 */
function parseDeflated(bytes: Uint8Array, meta: DataSet | undefined, bodyStart: number, ts: string, prefix: boolean): ParsedDicom {
  const compressed = bytes.subarray(bodyStart);
  const enc: Encoding = { explicitVr: true, littleEndian: true };
  // Bounded: n grows 4x per round up to the length of the compressed bytes.
  for (let n = Math.min(64 * 1024, compressed.length); ; n = Math.min(n * 4, compressed.length)) {
    const inflated = inflate(compressed.subarray(0, n));
    const joined = new Uint8Array(bodyStart + inflated.length);
    joined.set(bytes.subarray(0, bodyStart), 0);
    joined.set(inflated, bodyStart);
    const last = n >= compressed.length;
    try {
      const body = readBody(joined, bodyStart, enc, last ? prefix : true);
      return {
        meta,
        dataSet: body.dataSet,
        transferSyntaxUid: ts,
        explicitVr: true,
        littleEndian: true,
        deflated: true,
        reachedPixelData: body.reachedPixelData,
        pixelDataOffset: undefined, // offsets in the inflated data set mean nothing in the file
        charset: charsetFor(rawCharset(body.dataSet)),
      };
    } catch (e) {
      if (last || !isDicomTruncated(e)) throw e;
    }
  }
}

/** SpecificCharacterSet as raw text (trailing padding removed), or undefined when absent. */
function rawCharset(ds: DataSet): string | undefined {
  const el = ds.elements[parserKey(TAG.SpecificCharacterSet)];
  if (!el) return undefined;
  const raw = valueBytes(ds, el);
  return ascii(raw, 0, raw.length).replace(/[\0 ]+$/, '');
}

/** The value of a top-level element of the data set by tag, or undefined when the element is absent. */
export function topLevelValue(parsed: ParsedDicom, tag: TagNumber): string | null | undefined {
  const ds = tagGroup(tag) === 0x0002 && parsed.meta ? parsed.meta : parsed.dataSet;
  const el = ds.elements[parserKey(tag)];
  if (!el) return undefined;
  return leafValue(ds, el, parsed.charset.decode);
}
