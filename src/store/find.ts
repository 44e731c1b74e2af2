// Orthanc's `POST /tools/find` as data: the request checked into constraints, and the matching rules of
// Orthanc 1.10.1 (observed on the real server), for a store that walks its own index with them.
import { MAIN_DICOM_TAGS, lookupTag, parseTag, tagOfName, type TagNumber } from '../dicom/tags.ts';
import type { Level, MainTags } from '../dicom/types.ts';
import { XferError } from '../errors.ts';

export const FIND_LEVELS: readonly Level[] = ['Patient', 'Study', 'Series', 'Instance'];

/** A checked `/tools/find` request. */
export interface FindRequest {
  level: Level;
  constraints: Constraint[];
  expand: boolean;
  /** 0: no limit. */
  limit: number;
  since: number;
  caseSensitive: boolean;
  /** Tag names asked for in `RequestedTags` (answered with Expand). */
  requestedTags: string[];
}

/** Where the value a constraint tests lives, for a resource of the query's level. */
export type Source =
  /** A main tag of this level or an ancestor's (0 = the resource itself, 1 = its parent, ...). */
  | { kind: 'main'; up: number }
  /** ModalitiesInStudy: the Modality of any of a study's series. */
  | { kind: 'series-modality' }
  /** A main tag of a lower level: Orthanc matches nothing then. */
  | { kind: 'never' }
  /** Any other tag: read from a DICOM file of the resource. */
  | { kind: 'file' };

export interface Constraint {
  /** The tag's keyword, as main tags and simplified tags name it. */
  name: string;
  source: Source;
  test: (value: string) => boolean;
}

/** VRs on which Orthanc accepts `*` and `?` (DICOM PS3.4 C.2.2.2.4). */
const WILDCARD_VRS = new Set(['AE', 'CS', 'LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UR', 'UT']);
const RANGE_VRS = new Set(['DA', 'DT', 'TM']);

function bad(details: string): XferError {
  return new XferError('BadRequest', details);
}

/** "Study", "study", "STUDIES", "Image"...: Orthanc reads a level name in any case, singular or plural. */
export function parseLevel(s: string): Level | undefined {
  const u = s.trim().toUpperCase();
  if (u === 'PATIENT' || u === 'PATIENTS') return 'Patient';
  if (u === 'STUDY' || u === 'STUDIES') return 'Study';
  if (u === 'SERIES') return 'Series';
  if (u === 'INSTANCE' || u === 'INSTANCES' || u === 'IMAGE' || u === 'IMAGES') return 'Instance';
  return undefined;
}

/** A tag of the query by keyword or "gggg,eeee"; refused when the dictionary does not know it. */
function resolveTag(key: string): { tag: TagNumber; name: string; vr: string } {
  const tag = parseTag(key.trim()) ?? tagOfName(key.trim());
  const entry = tag === undefined ? undefined : lookupTag(tag);
  if (tag === undefined || !entry) throw bad(`Unknown DICOM tag: "${key}"`);
  return { tag, name: entry.name, vr: entry.vr };
}

function sourceOf(tag: TagNumber, name: string, level: Level): Source {
  if (name === 'ModalitiesInStudy') return level === 'Study' ? { kind: 'series-modality' } : { kind: 'never' };
  const at = FIND_LEVELS.indexOf(level);
  // The query's level first (ImageOrientationPatient is main at both Series and Instance), then upwards.
  for (let up = 0; up <= at; up++) {
    const l = FIND_LEVELS[at - up] as Level;
    if (MAIN_DICOM_TAGS[l].some((m) => m.tag === tag)) return { kind: 'main', up };
  }
  for (let l = at + 1; l < FIND_LEVELS.length; l++) {
    if (MAIN_DICOM_TAGS[FIND_LEVELS[l] as Level].some((m) => m.tag === tag)) return { kind: 'never' };
  }
  return { kind: 'file' };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The test of one query value, as Orthanc builds it: a range on dates and times with '-', a list with
 * '\' (and always for ModalitiesInStudy), '*'/'?' wildcards where the VR allows them, else equality.
 * Without CaseSensitive every comparison ignores case (accents kept).
 */
export function valueTest(name: string, vr: string, query: string, caseSensitive: boolean): (value: string) => boolean {
  const fold = caseSensitive ? (s: string) => s : (s: string) => s.toUpperCase();
  if (RANGE_VRS.has(vr) && query.includes('-')) {
    const cut = query.indexOf('-');
    const lower = fold(query.slice(0, cut));
    const upper = fold(query.slice(cut + 1));
    return (v) => {
      const x = fold(v);
      return (lower === '' || x >= lower) && (upper === '' || x <= upper);
    };
  }
  if (name === 'ModalitiesInStudy' || query.includes('\\')) {
    const items = new Set(query.split('\\').map(fold));
    return (v) => items.has(fold(v));
  }
  if (query.includes('*') || query.includes('?')) {
    if (!WILDCARD_VRS.has(vr)) {
      throw new XferError('ParameterOutOfRange', `Wildcards are not allowed on tag ${name}`);
    }
    const pattern = fold(query)
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : escapeRegex(c)))
      .join('');
    const re = new RegExp(`^${pattern}$`, 'su');
    return (v) => re.test(fold(v));
  }
  const want = fold(query);
  return (v) => fold(v) === want;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks a `/tools/find` body as Orthanc does, with its messages; throws BadRequest/ParameterOutOfRange. */
export function parseFindRequest(body: unknown): FindRequest {
  if (!isObject(body)) throw bad('The body must contain a JSON object');
  if (typeof body.Level !== 'string') throw bad('Field "Level" is missing, or should be a string');
  if (!isObject(body.Query)) throw bad('Field "Query" is missing, or should be a JSON object');
  if (body.CaseSensitive !== undefined && typeof body.CaseSensitive !== 'boolean') throw bad('Field "CaseSensitive" should be a Boolean');
  if (body.Expand !== undefined && typeof body.Expand !== 'boolean') throw bad('Field "Expand" should be a Boolean');
  const int = (key: 'Limit' | 'Since'): number => {
    const v = body[key];
    if (v === undefined) return 0;
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(`Field "${key}" should be an integer`);
    if (v < 0) throw new XferError('ParameterOutOfRange', `Field "${key}" should be a positive integer`);
    return v;
  };
  const limit = int('Limit');
  const since = int('Since');
  let requestedTags: string[] = [];
  if (body.RequestedTags !== undefined) {
    if (!Array.isArray(body.RequestedTags) || body.RequestedTags.some((t) => typeof t !== 'string')) {
      throw bad('Field "RequestedTags" should be a list of strings');
    }
    requestedTags = (body.RequestedTags as string[]).map((t) => resolveTag(t).name);
  }
  const level = parseLevel(body.Level);
  if (!level) throw new XferError('ParameterOutOfRange', `Unknown resource level "${body.Level}"`);
  const caseSensitive = body.CaseSensitive === true;
  const constraints: Constraint[] = [];
  for (const [key, value] of Object.entries(body.Query)) {
    if (typeof value !== 'string') throw bad(`Tag "${key}" should be associated with a string`);
    const { tag, name, vr } = resolveTag(key);
    if (vr === 'SQ') throw new XferError('ParameterOutOfRange', `Cannot search on the sequence ${name}`);
    // An empty value asks for nothing: Orthanc ignores it, as a C-FIND universal match.
    if (value === '') continue;
    constraints.push({ name, source: sourceOf(tag, name, level), test: valueTest(name, vr, value, caseSensitive) });
  }
  return { level, constraints, expand: body.Expand === true, limit, since, caseSensitive, requestedTags };
}

/** Whether a constraint on main tags holds; `tagsUp[i]` are the main tags i levels above the resource. */
export function mainTagMatch(c: Constraint, tagsUp: readonly MainTags[]): boolean {
  if (c.source.kind !== 'main') return false;
  const v = tagsUp[c.source.up]?.[c.name];
  return v !== undefined && c.test(v);
}
