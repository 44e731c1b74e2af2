// A small DICOM Part-10 writer for the generator: explicit VR little endian data sets with defined
// lengths, the file meta information, and the headers that precede pixel data (native or encapsulated),
// so that callers can stream the pixel bytes after the header instead of holding them in memory.
import { XferError } from '../errors.ts';
import { IMPLEMENTATION_CLASS_UID } from '../version.ts';

export type Vr =
  | 'AE'
  | 'AS'
  | 'AT'
  | 'CS'
  | 'DA'
  | 'DS'
  | 'DT'
  | 'FD'
  | 'FL'
  | 'IS'
  | 'LO'
  | 'LT'
  | 'OB'
  | 'OW'
  | 'PN'
  | 'SH'
  | 'SL'
  | 'SQ'
  | 'SS'
  | 'ST'
  | 'TM'
  | 'UI'
  | 'UL'
  | 'US'
  | 'UT';

/** One item of a sequence: a list of elements (any order; they are sorted when encoded). */
export type Item = readonly Element[];

export type Value = string | readonly string[] | number | readonly number[] | Uint8Array | readonly Item[];

export interface Element {
  /** (group << 16) | element, e.g. 0x00100010 for PatientName. */
  readonly tag: number;
  readonly vr: Vr;
  readonly value: Value;
}

/** Shorthand for an element. */
export function el(tag: number, vr: Vr, value: Value): Element {
  return { tag, vr, value };
}

export const TS_EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const TS_JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
/** Identifies files written by dicom-xfer's generator (fixed 2.25 UID). */
export const IMPLEMENTATION_VERSION = 'DICOMXFER_GEN_1';

const LONG_VRS = new Set<Vr>(['OB', 'OW', 'SQ', 'UT']);
const TEXT_VRS = new Set<Vr>(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UI', 'UT']);
/** Maximum length of one value, per PS3.5 table 6.2-1 (PN per component group, approximated as 64). */
const MAX_LEN: Partial<Record<Vr, number>> = {
  AE: 16,
  AS: 4,
  CS: 16,
  DA: 8,
  DS: 16,
  DT: 26,
  IS: 12,
  LO: 64,
  LT: 10240,
  PN: 64,
  SH: 16,
  ST: 1024,
  TM: 14,
  UI: 64,
};

function bad(what: string): never {
  // A malformed element is a bug in the generator, not bad user input.
  throw new XferError('InternalError', `generator built an invalid element: ${what}`);
}

function tagName(tag: number): string {
  return `(${(tag >>> 16).toString(16).padStart(4, '0')},${(tag & 0xffff).toString(16).padStart(4, '0')})`;
}

function encodeValue(e: Element): Buffer {
  const { vr, value } = e;
  if (TEXT_VRS.has(vr)) {
    const values = typeof value === 'string' ? [value] : Array.isArray(value) ? (value as unknown[]) : bad(tagName(e.tag));
    const max = MAX_LEN[vr];
    for (const v of values) {
      if (typeof v !== 'string') bad(`${tagName(e.tag)} ${vr} needs strings`);
      if (max !== undefined && v.length > max) bad(`${tagName(e.tag)} ${vr} value "${v}" longer than ${max}`);
      if (vr !== 'LT' && vr !== 'ST' && vr !== 'UT' && v.includes('\\')) bad(`${tagName(e.tag)} contains a backslash`);
    }
    let b = Buffer.from((values as string[]).join('\\'), 'latin1');
    if (b.length % 2) b = Buffer.concat([b, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
    return b;
  }
  if (vr === 'OB' || vr === 'OW') {
    if (!(value instanceof Uint8Array)) bad(`${tagName(e.tag)} ${vr} needs bytes`);
    const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return b.length % 2 ? Buffer.concat([b, Buffer.alloc(1)]) : b;
  }
  if (vr === 'SQ') {
    if (!Array.isArray(value)) bad(`${tagName(e.tag)} SQ needs items`);
    const parts: Buffer[] = [];
    for (const item of value as readonly Item[]) {
      const body = encodeDataset(item);
      const h = Buffer.alloc(8);
      h.writeUInt16LE(0xfffe, 0);
      h.writeUInt16LE(0xe000, 2);
      h.writeUInt32LE(body.length, 4);
      parts.push(h, body);
    }
    return Buffer.concat(parts);
  }
  const nums = typeof value === 'number' ? [value] : Array.isArray(value) ? (value as unknown[]) : bad(tagName(e.tag));
  const size = vr === 'FD' ? 8 : vr === 'US' || vr === 'SS' ? 2 : 4;
  const b = Buffer.alloc(nums.length * size);
  nums.forEach((n, i) => {
    if (typeof n !== 'number' || !Number.isFinite(n)) bad(`${tagName(e.tag)} ${vr} needs numbers`);
    const o = i * size;
    switch (vr) {
      case 'US':
        b.writeUInt16LE(n, o);
        break;
      case 'SS':
        b.writeInt16LE(n, o);
        break;
      case 'UL':
        b.writeUInt32LE(n, o);
        break;
      case 'SL':
        b.writeInt32LE(n, o);
        break;
      case 'FL':
        b.writeFloatLE(n, o);
        break;
      case 'FD':
        b.writeDoubleLE(n, o);
        break;
      case 'AT':
        b.writeUInt16LE(n >>> 16, o);
        b.writeUInt16LE(n & 0xffff, o + 2);
        break;
      default:
        bad(`${tagName(e.tag)} unsupported VR ${vr}`);
    }
  });
  return b;
}

/** The 8- or 12-byte explicit VR little endian header of an element with a value of `length` bytes. */
export function elementHeader(tag: number, vr: Vr, length: number): Buffer {
  const long = LONG_VRS.has(vr);
  const h = Buffer.alloc(long ? 12 : 8);
  h.writeUInt16LE(tag >>> 16, 0);
  h.writeUInt16LE(tag & 0xffff, 2);
  h.write(vr, 4, 'latin1');
  if (long) h.writeUInt32LE(length, 8);
  else {
    if (length > 0xffff) bad(`${tagName(tag)} value too long for ${vr}`);
    h.writeUInt16LE(length, 6);
  }
  return h;
}

/** Encodes elements as explicit VR little endian with defined lengths, sorted by tag. */
export function encodeDataset(elements: readonly Element[]): Buffer {
  const sorted = [...elements].sort((a, b) => a.tag - b.tag);
  const parts: Buffer[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i] as Element;
    if (i > 0 && (sorted[i - 1] as Element).tag === e.tag) bad(`duplicate ${tagName(e.tag)}`);
    const v = encodeValue(e);
    parts.push(elementHeader(e.tag, e.vr, v.length), v);
  }
  return Buffer.concat(parts);
}

/** Preamble, "DICM" and the group-0002 file meta information for one instance. */
export function fileMeta(sopClassUid: string, sopInstanceUid: string, transferSyntaxUid: string): Buffer {
  const body = encodeDataset([
    el(0x00020001, 'OB', new Uint8Array([0, 1])),
    el(0x00020002, 'UI', sopClassUid),
    el(0x00020003, 'UI', sopInstanceUid),
    el(0x00020010, 'UI', transferSyntaxUid),
    el(0x00020012, 'UI', IMPLEMENTATION_CLASS_UID),
    el(0x00020013, 'SH', IMPLEMENTATION_VERSION),
  ]);
  const groupLength = encodeDataset([el(0x00020000, 'UL', body.length)]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), groupLength, body]);
}

/** Header of native Pixel Data holding `length` bytes (must be even; callers pad). */
export function nativePixelDataHeader(vr: 'OB' | 'OW', length: number): Buffer {
  if (length % 2 || length > 0xfffffffe) bad(`pixel data length ${length}`);
  return elementHeader(0x7fe00010, vr, length);
}

/** Largest native Pixel Data value: its length field is 32 bits and 0xFFFFFFFF means "undefined". */
export const MAX_NATIVE_PIXEL_BYTES = 0xfffffffe;

/** Header of encapsulated Pixel Data: undefined length, then the basic offset table item. */
export function encapsulatedPixelDataStart(frameOffsets: readonly number[] = []): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16LE(0x7fe0, 0);
  h.writeUInt16LE(0x0010, 2);
  h.write('OB', 4, 'latin1');
  h.writeUInt32LE(0xffffffff, 8);
  const table = Buffer.alloc(frameOffsets.length * 4);
  for (const [i, o] of frameOffsets.entries()) table.writeUInt32LE(o, i * 4);
  return Buffer.concat([h, itemHeader(table.length), table]);
}

/** Header of one item (a fragment of encapsulated pixel data) of `length` bytes. */
export function itemHeader(length: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0xfffe, 0);
  h.writeUInt16LE(0xe000, 2);
  h.writeUInt32LE(length, 4);
  return h;
}

/** The sequence delimitation item that closes encapsulated pixel data. */
export function sequenceDelimiter(): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0xfffe, 0);
  h.writeUInt16LE(0xe0dd, 2);
  return h;
}

/** A decimal string of at most 16 characters, with at most `decimals` decimals and no trailing zeros. */
export function ds(n: number, decimals = 6): string {
  for (let d = decimals; d >= 0; d--) {
    let s = n.toFixed(d);
    if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
    if (s === '-0') s = '0';
    if (s.length <= 16) return s;
  }
  return bad(`number ${n} does not fit a DS`);
}
