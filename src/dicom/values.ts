// Element values as Orthanc shows them: the VR an element is read with, its bytes, and its value as a
// string (text as DCMTK hands it over, numbers of binary VRs printed the way Orthanc prints them).
import type { ByteArrayParser, DataSet, Element } from 'dicom-parser';
import type { TextDecodeFn } from './charset.ts';
import { lookupTag, tagGroup } from './tags.ts';

/** The VR of an element for interpretation: the explicit one, else the dictionary's (implicit VR). */
export function elementVr(el: Element): string | undefined {
  if (el.vr !== undefined) return el.vr;
  const tag = parseInt(el.tag.slice(1), 16) >>> 0;
  // Private creators (gggg,0010-00FF of an odd group) are LO by definition.
  if (tagGroup(tag) % 2 === 1 && (tag & 0xffff) >= 0x0010 && (tag & 0xffff) <= 0x00ff) return 'LO';
  return lookupTag(tag)?.vr;
}

/** The bytes of an element's value, cut at the end of the input if the element runs past it. */
export function valueBytes(ds: DataSet, el: Element): Uint8Array {
  const start = Math.min(el.dataOffset, ds.byteArray.length);
  const end = Math.min(el.dataOffset + (el.hadUndefinedLength ? 0 : el.length), ds.byteArray.length);
  return ds.byteArray.subarray(start, Math.max(start, end));
}

/** Orthanc's limit on the length of a value (ORTHANC_MAXIMUM_TAG_LENGTH): longer ones are null. */
export const MAX_VALUE_LENGTH = 256;

/** Why a leaf has no value to show: binary (or unreadable), or longer than MAX_VALUE_LENGTH. */
export const BINARY = Symbol('binary');
export const TOO_LONG = Symbol('too long');
export type LeafValue = string | typeof BINARY | typeof TOO_LONG;

const STRING_VRS = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);

export function isStringVr(vr: string | undefined): boolean {
  return vr !== undefined && STRING_VRS.has(vr);
}

/** Whether a byte is white space for C's isspace(). */
function isSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d);
}

/**
 * A text value the way DCMTK hands it to Orthanc. `raw` is already padded to an even length with a NUL
 * (see evenLength). UI: every white-space byte is removed (DCMTK's correction of badly written UIDs), then
 * the value is cut at the first NUL. Other VRs: trailing spaces are removed, then the value is cut at the
 * first NUL; so an odd-length value keeps its trailing spaces, hidden behind the added NUL, as in Orthanc.
 * `fromUn`: a value stored with VR UN and read through the dictionary's text VR, which Orthanc takes as it
 * is, only cut at the first NUL.
 */
function stringValue(raw: Uint8Array, vr: string, decode: TextDecodeFn, fromUn: boolean): LeafValue {
  let bytes = raw;
  if (vr === 'UI' && !fromUn) {
    bytes = raw.filter((b) => !isSpace(b));
  } else if (!fromUn) {
    let end = raw.length;
    while (end > 0 && raw[end - 1] === 0x20) end--;
    bytes = raw.subarray(0, end);
  }
  const nul = bytes.indexOf(0);
  const s = decode(nul >= 0 ? bytes.subarray(0, nul) : bytes);
  return Buffer.byteLength(s, 'utf8') > MAX_VALUE_LENGTH ? TOO_LONG : s;
}

/** DCMTK makes every value even-length on reading, adding a NUL byte to an odd-length one. */
function evenLength(raw: Uint8Array): Uint8Array {
  if (raw.length % 2 === 0) return raw;
  const out = new Uint8Array(raw.length + 1);
  out.set(raw);
  return out;
}

/** The exact decimal value of a finite non-zero double: |x| = digits * 10^scale. */
function exactDecimal(x: number): { digits: string; scale: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  const fraction = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  const mant = biased === 0 ? fraction : fraction | (1n << 52n);
  const exp = biased === 0 ? -1074 : biased - 1075;
  if (exp >= 0) return { digits: (mant << BigInt(exp)).toString(), scale: 0 };
  // mant / 2^k = mant * 5^k / 10^k, exactly.
  return { digits: (mant * 5n ** BigInt(-exp)).toString(), scale: exp };
}

/**
 * C's "%.{precision}g" of a double, as Orthanc prints binary floating-point values: rounded from the exact
 * binary value with ties to even (JavaScript's toPrecision rounds ties up, and differs on such values).
 */
export function formatG(x: number, precision: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x < 0 ? '-inf' : 'inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const sign = x < 0 ? '-' : '';
  const { digits, scale } = exactDecimal(Math.abs(x));
  let e10 = digits.length - 1 + scale; // decimal exponent of the first digit
  let head = digits.slice(0, precision);
  if (digits.length > precision) {
    const rest = digits.slice(precision);
    const first = rest.charCodeAt(0) - 48;
    const tail = /[1-9]/.test(rest.slice(1));
    const lastOdd = (head.charCodeAt(head.length - 1) - 48) % 2 === 1;
    if (first > 5 || (first === 5 && (tail || lastOdd))) {
      head = (BigInt(head) + 1n).toString();
      if (head.length > precision) {
        head = head.slice(0, precision);
        e10++;
      }
    }
  } else {
    head = head.padEnd(precision, '0');
  }
  if (e10 < -4 || e10 >= precision) {
    const frac = head.slice(1).replace(/0+$/, '');
    const mant = frac ? `${head[0]}.${frac}` : `${head[0]}`;
    return `${sign}${mant}e${e10 < 0 ? '-' : '+'}${String(Math.abs(e10)).padStart(2, '0')}`;
  }
  const intPart = e10 >= 0 ? head.slice(0, e10 + 1) : '0';
  const frac = (e10 >= 0 ? head.slice(e10 + 1) : '0'.repeat(-e10 - 1) + head).replace(/0+$/, '');
  return frac ? `${sign}${intPart}.${frac}` : `${sign}${intPart}`;
}

type NumReader = (p: ByteArrayParser, b: Uint8Array, at: number) => string;

const NUMERIC: Record<string, { size: number; read: NumReader }> = {
  US: { size: 2, read: (p, b, at) => String(p.readUint16(b, at)) },
  SS: { size: 2, read: (p, b, at) => String(p.readInt16(b, at)) },
  UL: { size: 4, read: (p, b, at) => String(p.readUint32(b, at)) },
  SL: { size: 4, read: (p, b, at) => String(p.readInt32(b, at)) },
  // Orthanc prints both through a double with 17 significant digits: 0.679f shows as 0.67900002002716064.
  FL: { size: 4, read: (p, b, at) => formatG(p.readFloat(b, at), 17) },
  FD: { size: 8, read: (p, b, at) => formatG(p.readDouble(b, at), 17) },
  AT: {
    size: 4,
    read: (p, b, at) =>
      `${p.readUint16(b, at).toString(16).padStart(4, '0')},${p
        .readUint16(b, at + 2)
        .toString(16)
        .padStart(4, '0')}`,
  },
};

/** Implicit "US or SS" elements that DCMTK resolves with PixelRepresentation (0028,0103). */
const PIXEL_VALUE_TAGS = new Set([
  'x00280106',
  'x00280107',
  'x00280108',
  'x00280109',
  'x00280110',
  'x00280111',
  'x00280120',
  'x00280121',
  'x00603004',
  'x00603006',
  'x00409211',
  'x00409216',
]);

/** The VR that DCMTK gives an implicit "US or SS" element (undefined for any other element). */
export function pixelValueVr(ds: DataSet, el: Element): string | undefined {
  if (!PIXEL_VALUE_TAGS.has(el.tag)) return undefined;
  const rep = ds.elements['x00280103'];
  if (!rep || rep.length < 2 || rep.dataOffset + 2 > ds.byteArray.length) return 'US';
  return (rep.parser ?? ds.byteArrayParser).readUint16(ds.byteArray, rep.dataOffset) === 1 ? 'SS' : 'US';
}

/**
 * The value of a leaf element as Orthanc shows it (in `MainDicomTags` and in `?simplify`): a string, or why
 * there is none (BINARY: binary VRs and values that cannot be read; TOO_LONG: over 256 bytes). Multiple
 * values of a string are kept as written ("a\\b"); numbers in binary VRs are printed and joined with "\\".
 */
export function leafValueOf(ds: DataSet, el: Element, decode: TextDecodeFn): LeafValue {
  // The dictionary's pseudo-VRs (xs, ox, lt, up: implicit elements whose VR depends on context) are
  // not in the lists below, so they are binary as in Orthanc, except pixel values (see pixelValueVr).
  let vr = elementVr(el);
  if (vr === 'xs') vr = pixelValueVr(ds, el);
  let fromUn = false;
  if (vr === 'UN' && el.vr === 'UN') {
    // Orthanc reads an explicit UN element through the dictionary when the dictionary says it is text.
    const dictVr = lookupTag(parseInt(el.tag.slice(1), 16) >>> 0)?.vr;
    if (!isStringVr(dictVr)) return BINARY;
    vr = dictVr;
    fromUn = true;
  }
  if (vr === undefined) return BINARY;
  const raw = evenLength(valueBytes(ds, el));
  if (isStringVr(vr)) return stringValue(raw, vr, decode, fromUn);
  const num = NUMERIC[vr];
  if (!num) return BINARY;
  const parser = el.parser ?? ds.byteArrayParser;
  const count = Math.floor(raw.length / num.size);
  if (count === 0) return BINARY;
  // Orthanc prints every number when the length is a multiple of the size, else only the first; for AT
  // always only the first.
  const n = vr !== 'AT' && raw.length > num.size && raw.length % num.size === 0 ? count : 1;
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(num.read(parser, raw, i * num.size));
  const s = parts.join('\\');
  return s.length > MAX_VALUE_LENGTH ? TOO_LONG : s;
}

/** leafValueOf with null for "no value to show". */
export function leafValue(ds: DataSet, el: Element, decode: TextDecodeFn): string | null {
  const v = leafValueOf(ds, el, decode);
  return typeof v === 'string' ? v : null;
}
