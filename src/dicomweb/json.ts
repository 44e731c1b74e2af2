// The DICOM JSON model (PS3.18 F.2) of a stored instance's data set, as DICOMweb answers carry it: every
// attribute by its 8-hex tag with its VR and values; binary values by reference (BulkDataURI), as Orthanc's
// DICOMweb plugin gives them.
import type { DataSet, Element } from 'dicom-parser';
import type { ParsedDicom } from '../dicom/dataset.ts';
import { lookupTag } from '../dicom/tags.ts';
import { elementVr, isStringVr, pixelValueVr, valueBytes } from '../dicom/values.ts';
import type { TextDecodeFn } from '../dicom/charset.ts';

/** One attribute in DICOM JSON. */
export interface JsonAttribute {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}
/** A data set in DICOM JSON: attributes by tag ("0020000D"). */
export type DicomJson = Record<string, JsonAttribute>;

/** Where an instance's bulk data is served: its path under the instance's URL, per attribute. */
export type BulkUri = (path: string) => string;

const BINARY_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
const NUMBER_VRS = new Set(['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'SV', 'UV']);
/** Text VRs that hold one value, backslashes included. */
const SINGLE_TEXT_VRS = new Set(['LT', 'ST', 'UT', 'UR']);
/** Text VRs whose leading spaces are part of the value. */
const KEEP_LEADING = new Set(['LT', 'ST', 'UT']);
const ASCII_VRS = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'TM']);
const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
/** Deeper sequences are left out: no real data set nests that deep. */
const MAX_DEPTH = 64;

/** "0020000D" for a dicom-parser key ("x0020000d"). */
export function jsonTag(key: string): string {
  return key.slice(1).toUpperCase();
}

/** The VR of an element as DICOM JSON states it: explicit, else the dictionary's with its pseudo-VRs resolved. */
function vrOf(ds: DataSet, el: Element): string {
  if (el.vr === 'UN') {
    // An explicit UN element of a tag the dictionary knows as text is read as that text (as DCMTK does).
    const known = lookupTag(parseInt(el.tag.slice(1), 16) >>> 0)?.vr;
    return known !== undefined && isStringVr(known) ? known : 'UN';
  }
  const vr = elementVr(el);
  if (vr === undefined || vr === 'na') return 'UN';
  if (vr === 'xs') return pixelValueVr(ds, el) ?? 'US';
  if (vr === 'ox' || vr === 'lt') return 'OW';
  if (vr === 'up') return 'UL';
  return vr;
}

function number(s: string): number | null {
  const t = s.trim();
  if (t === '') return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

function textValues(raw: Uint8Array, vr: string, decode: TextDecodeFn): unknown[] {
  let bytes = raw;
  const nul = bytes.indexOf(0);
  if (nul >= 0) bytes = bytes.subarray(0, nul);
  // These VRs hold only ASCII (PS3.5 6.2): the data set's character set does not apply to them.
  const text = vr === 'UI' ? latin1(bytes).replace(/\s/g, '') : ASCII_VRS.has(vr) ? latin1(bytes) : decode(bytes);
  const parts = SINGLE_TEXT_VRS.has(vr) ? [text] : text.split('\\');
  return parts.map((p) => {
    const v = KEEP_LEADING.has(vr) ? p.replace(/ +$/, '') : p.trim();
    if (vr === 'DS' || vr === 'IS') return number(v);
    if (vr === 'PN') return v === '' ? null : personName(v);
    return v === '' ? null : v;
  });
}

const PN_GROUPS = ['Alphabetic', 'Ideographic', 'Phonetic'] as const;

/** PS3.18 F.2.2: a person name's component groups, each one written that the value has (empty ones too, as Orthanc). */
function personName(v: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [i, group] of v.split('=').slice(0, 3).entries()) out[PN_GROUPS[i] as string] = group;
  return out;
}

function numberValues(ds: DataSet, el: Element, vr: string): unknown[] {
  const raw = valueBytes(ds, el);
  const p = el.parser ?? ds.byteArrayParser;
  const size = vr === 'US' || vr === 'SS' ? 2 : vr === 'FD' || vr === 'SV' || vr === 'UV' ? 8 : 4;
  const little = isLittle(p);
  const out: unknown[] = [];
  for (let at = 0; at + size <= raw.length; at += size) {
    const view = new DataView(raw.buffer, raw.byteOffset + at, size);
    if (vr === 'US') out.push(view.getUint16(0, little));
    else if (vr === 'SS') out.push(view.getInt16(0, little));
    else if (vr === 'UL') out.push(view.getUint32(0, little));
    else if (vr === 'SL') out.push(view.getInt32(0, little));
    else if (vr === 'FL') out.push(view.getFloat32(0, little));
    else if (vr === 'FD') out.push(view.getFloat64(0, little));
    else if (vr === 'SV') out.push(Number(view.getBigInt64(0, little)));
    else out.push(Number(view.getBigUint64(0, little)));
  }
  return out;
}

/** Whether a dicom-parser byte array parser reads little endian numbers. */
function isLittle(p: DataSet['byteArrayParser']): boolean {
  return p.readUint16(new Uint8Array([1, 0]), 0) === 1;
}

function attribute(ds: DataSet, el: Element, decode: TextDecodeFn, path: string, bulk: BulkUri, depth: number): JsonAttribute {
  const vr = el.items !== undefined ? 'SQ' : vrOf(ds, el);
  if (vr === 'SQ') {
    const items = (el.items ?? []).map((item, i) =>
      item.dataSet && depth < MAX_DEPTH ? dataSetJson(item.dataSet, decode, `${path}/${i + 1}`, bulk, depth + 1) : {},
    );
    return items.length > 0 ? { vr, Value: items } : { vr };
  }
  if (BINARY_VRS.has(vr)) return el.length === 0 ? { vr } : { vr, BulkDataURI: bulk(path) };
  if (el.length === 0 || el.hadUndefinedLength) return { vr };
  if (NUMBER_VRS.has(vr)) return { vr, Value: numberValues(ds, el, vr) };
  if (vr === 'AT') {
    const raw = valueBytes(ds, el);
    const p = el.parser ?? ds.byteArrayParser;
    const out: string[] = [];
    for (let at = 0; at + 4 <= raw.length; at += 4) {
      const g = p.readUint16(raw, at).toString(16).padStart(4, '0');
      const e = p
        .readUint16(raw, at + 2)
        .toString(16)
        .padStart(4, '0');
      out.push(`${g}${e}`.toUpperCase());
    }
    return { vr, Value: out };
  }
  const values = textValues(valueBytes(ds, el), vr, decode);
  return values.every((v) => v === null) ? { vr } : { vr, Value: values };
}

function dataSetJson(ds: DataSet, decode: TextDecodeFn, prefix: string, bulk: BulkUri, depth: number): DicomJson {
  const out: DicomJson = {};
  const keys = Object.keys(ds.elements)
    .filter((k) => !k.startsWith('xfffe'))
    .sort();
  for (const key of keys) {
    const el = ds.elements[key] as Element;
    const tag = parseInt(key.slice(1), 16) >>> 0;
    // Group lengths are an encoding detail, not attributes (PS3.18 F.2 leaves them out).
    if ((tag & 0xffff) === 0) continue;
    const hex = jsonTag(key);
    out[hex] = attribute(ds, el, decode, `${prefix}/${hex.toLowerCase()}`.replace(/^\//, ''), bulk, depth);
  }
  return out;
}

/**
 * The DICOM JSON of a parsed instance: its data set (not the file meta information), each binary value as
 * a BulkDataURI made by `bulk` from the attribute's path ("7fe00010", "00081140/1/00081155"), Pixel Data
 * included when the parse reached it. Attributes in tag order.
 */
export function instanceJson(parsed: ParsedDicom, bulk: BulkUri): DicomJson {
  const out = dataSetJson(parsed.dataSet, parsed.charset.decode, '', bulk, 0);
  if (parsed.reachedPixelData) out['7FE00010'] = { vr: pixelDataVr(parsed), BulkDataURI: bulk('7fe00010') };
  return out;
}

/** The VR of Pixel Data: written in the file when explicit, else OW (OB for 8-bit samples), as DCMTK reads it. */
function pixelDataVr(parsed: ParsedDicom): string {
  const at = parsed.pixelDataOffset;
  const bytes = parsed.dataSet.byteArray;
  if (parsed.explicitVr && at !== undefined && at + 6 <= bytes.length) {
    return String.fromCharCode(bytes[at + 4] ?? 0x4f, bytes[at + 5] ?? 0x57);
  }
  if (parsed.explicitVr) return 'OB';
  return (parsed.dataSet.uint16('x00280100') ?? 16) <= 8 ? 'OB' : 'OW';
}
