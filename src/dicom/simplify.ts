// The tags of a DICOM header as Orthanc 1.10 shows them in GET /instances/{id}/tags: the "full" shape
// ({"gggg,eeee": {Name, Type, Value}}) and the `?simplify` shape ({Name: value}), built from dicom-parser's
// elements with the same value conversion as the main DICOM tags.
import type { DataSet, Element } from 'dicom-parser';
import type { TextDecodeFn } from './charset.ts';
import type { ParsedDicom } from './dataset.ts';
import { elementVr, leafValue, leafValueOf, TOO_LONG } from './values.ts';
import { formatTag, lookupTag, tagElement, tagGroup, tagNumber, type TagNumber } from './tags.ts';

/** A value in the `?simplify` shape: a string, null (binary or too long), or a sequence of items. */
export type SimplifiedValue = string | null | SimplifiedTags[];
export interface SimplifiedTags {
  [name: string]: SimplifiedValue;
}

/** One tag in Orthanc's full shape. */
export interface FullTag {
  Name: string;
  PrivateCreator?: string;
  Type: 'String' | 'Null' | 'TooLong' | 'Sequence';
  Value: string | null | FullTags[];
}
export interface FullTags {
  [tag: string]: FullTag;
}

export type TagsFormat = 'simplify' | 'full';

export interface TagsOptions {
  /** Include the file meta information (group 0002, e.g. TransferSyntaxUID). Orthanc's /tags does not. */
  includeMeta?: boolean;
}

/** Deeper sequences than this are shown as null: Orthanc's JSON for them would be unreadable anyway. */
const MAX_DEPTH = 64;
const UNKNOWN_NAME = 'Unknown Tag & Data';

function tagOf(el: Element): TagNumber {
  return parseInt(el.tag.slice(1), 16) >>> 0;
}

function isPrivate(tag: TagNumber): boolean {
  return tagGroup(tag) % 2 === 1;
}

/** The name DCMTK gives a tag: the dictionary keyword, "PrivateCreator" for private creators. */
function nameOf(tag: TagNumber): string {
  if (tagElement(tag) === 0x0000) return isPrivate(tag) ? 'PrivateGroupLength' : 'GenericGroupLength';
  if (isPrivate(tag)) {
    const e = tagElement(tag);
    return e >= 0x0010 && e <= 0x00ff ? 'PrivateCreator' : UNKNOWN_NAME;
  }
  return lookupTag(tag)?.name ?? UNKNOWN_NAME;
}

/** The private creator of a private data element, read from the same data set. */
function privateCreator(ds: DataSet, tag: TagNumber, decode: TextDecodeFn): string | undefined {
  if (!isPrivate(tag) || tagElement(tag) < 0x1000) return undefined;
  const creatorTag = tagNumber(tagGroup(tag), tagElement(tag) >> 8);
  const el = ds.elements[`x${creatorTag.toString(16).padStart(8, '0')}`];
  if (!el) return undefined;
  return leafValue(ds, el, decode) ?? undefined;
}

/** Delimiters and items that dicom-parser keeps as elements of a data set; they are not attributes. */
function isDelimiter(tag: TagNumber): boolean {
  return tagGroup(tag) === 0xfffe;
}

function sortedElements(ds: DataSet): Element[] {
  return Object.values(ds.elements)
    .filter((el) => !isDelimiter(tagOf(el)))
    .sort((a, b) => tagOf(a) - tagOf(b));
}

function isSequence(el: Element): boolean {
  return el.items !== undefined || elementVr(el) === 'SQ';
}

function fullOf(ds: DataSet, decode: TextDecodeFn, depth: number): FullTags {
  const out: FullTags = {};
  for (const el of sortedElements(ds)) {
    const tag = tagOf(el);
    const entry = { Name: nameOf(tag) } as FullTag;
    if (!isSequence(el)) {
      // Orthanc names the private creator of private elements, but not of private sequences.
      const creator = privateCreator(ds, tag, decode);
      if (creator !== undefined) entry.PrivateCreator = creator;
    }
    entry.Type = 'Null';
    entry.Value = null;
    if (isSequence(el)) {
      if (el.items && depth < MAX_DEPTH) {
        entry.Type = 'Sequence';
        entry.Value = el.items.map((item) => (item.dataSet ? fullOf(item.dataSet, decode, depth + 1) : {}));
      } else if (!el.items && elementVr(el) === 'SQ') {
        entry.Type = 'Sequence';
        entry.Value = [];
      }
    } else {
      const v = leafValueOf(ds, el, decode);
      if (typeof v === 'string') {
        entry.Type = 'String';
        entry.Value = v;
      } else if (v === TOO_LONG) {
        entry.Type = 'TooLong';
      }
    }
    out[formatTag(tag)] = entry;
  }
  return out;
}

function simplifyFull(tags: FullTags): SimplifiedTags {
  const out: SimplifiedTags = {};
  for (const entry of Object.values(tags)) {
    out[entry.Name] =
      entry.Type === 'Sequence' && Array.isArray(entry.Value) ? entry.Value.map(simplifyFull) : (entry.Value as string | null);
  }
  return out;
}

/**
 * The tags of a parsed header, in Orthanc's full or `?simplify` shape. Top-level elements up to Pixel Data
 * (shown as null, like Orthanc) with their sequences; names from the standard dictionary, "Unknown Tag &
 * Data" for the tags it does not know (Orthanc also knows DCMTK's private dictionary; dicom-xfer does not).
 */
export function tagsOfParsed(parsed: ParsedDicom, format: TagsFormat, options: TagsOptions = {}): SimplifiedTags | FullTags {
  const decode = parsed.charset.decode;
  let full: FullTags = {};
  if (options.includeMeta && parsed.meta) full = fullOf(parsed.meta, decode, 0);
  Object.assign(full, fullOf(parsed.dataSet, decode, 0));
  if (parsed.reachedPixelData) full['7fe0,0010'] = { Name: 'PixelData', Type: 'Null', Value: null };
  return format === 'full' ? full : simplifyFull(full);
}
