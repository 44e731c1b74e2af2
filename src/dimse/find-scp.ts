// C-FIND and C-MOVE of the DICOM server: the identifier (keywords and values as the DIMSE library gives
// them) becomes a `/tools/find` request on the node's own store, so a query over DIMSE matches what the REST
// API matches; C-FIND answers the asked keys of each match, C-MOVE hands the matching instances to the
// node's MoveSender.
import { lookupTag, tagOfName } from '../dicom/tags.ts';
import type { Level } from '../dicom/types.ts';
import { isXferError } from '../errors.ts';
import { EmbeddedStore } from '../store/embedded/store.ts';
import { parseFindRequest, parseLevel } from '../store/find.ts';
import { OrthancStore } from '../store/orthanc/store.ts';
import type { Store } from '../store/types.ts';
import type { MoveProgress, MoveSender } from './services.ts';

/** The node's `/tools/find` over its store: a request body in, Orthanc's answer out. */
export type Finder = (body: Record<string, unknown>) => Promise<unknown>;

/** The finder of a store: its own index walk, or the Orthanc that is the store. */
export function storeFinder(store: Store): Finder {
  return async (body) => {
    if (store instanceof EmbeddedStore) return store.find(parseFindRequest(body));
    if (store instanceof OrthancStore) return orthancFind(store, body);
    return [];
  };
}

/** Where Orthanc's REST API gives the resources above one of a level. */
const PARENTS: Partial<Record<string, string[]>> = {
  Series: ['study'],
  Instance: ['series', 'study'],
};

/**
 * Orthanc's own `/tools/find`, with the main tags of the levels above each match added as RequestedTags:
 * Orthanc 1.10 answers neither (RequestedTags came with 1.11), and a C-FIND at series or image level asks
 * for study and patient keys.
 */
async function orthancFind(store: OrthancStore, body: Record<string, unknown>): Promise<unknown> {
  const found = await store.find(body);
  const level = typeof body.Level === 'string' ? parseLevel(body.Level) : undefined;
  const parents = level ? PARENTS[level] : undefined;
  if (!Array.isArray(found) || body.Expand !== true || !parents) return found;
  const path = level === 'Series' ? 'series' : 'instances';
  const asked = Array.isArray(body.RequestedTags) ? body.RequestedTags.filter((t): t is string => typeof t === 'string') : [];
  for (const r of found) {
    if (!isResource(r)) continue;
    const tags: Record<string, unknown> = {};
    for (const parent of parents) {
      const up = (await store.getJson(`/${path}/${r.ID}/${parent}`)) as Record<string, unknown>;
      Object.assign(tags, up.PatientMainDicomTags ?? {}, up.MainDicomTags ?? {});
    }
    Object.assign(tags, r.MainDicomTags ?? {});
    // Keys of no level's main tags (SOPClassUID...): read from the instance, as Orthanc reads them from its file.
    if (level === 'Instance' && asked.some((t) => tags[t] === undefined)) {
      const all = (await store.getJson(`/instances/${r.ID}/simplified-tags`)) as Record<string, unknown>;
      for (const t of asked) if (tags[t] === undefined && typeof all[t] === 'string') tags[t] = all[t];
    }
    r.RequestedTags = tags;
  }
  return found;
}

/** C-FIND statuses (PS3.4 C.4.1.1.4). */
export const FIND_STATUS = {
  Success: 0x0000,
  Pending: 0xff00,
  /** Identifier does not match SOP class (no or an unknown QueryRetrieveLevel). */
  IdentifierMismatch: 0xa900,
  /** Unable to process. */
  UnableToProcess: 0xc000,
} as const;

/** Keys of an identifier that are not matching keys. */
const NOT_KEYS = new Set(['QueryRetrieveLevel', 'SpecificCharacterSet', 'RetrieveAETitle', '_vrMap']);

/** Keys Orthanc computes from the resources below the matched one. */
const COMPUTED = new Set([
  'NumberOfPatientRelatedStudies',
  'NumberOfPatientRelatedSeries',
  'NumberOfPatientRelatedInstances',
  'NumberOfStudyRelatedSeries',
  'NumberOfStudyRelatedInstances',
  'NumberOfSeriesRelatedInstances',
  'ModalitiesInStudy',
  'SOPClassesInStudy',
]);

/** A value of the identifier as the text a DICOM element holds: lists joined by '\', names by their alphabetic group. */
function textOf(v: unknown): string | undefined {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v.replace(/\0+$/, '').trim();
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) {
    if (v.some((x) => typeof x === 'object' && x !== null && !('Alphabetic' in x))) return undefined; // a sequence
    return v.map((x) => textOf(x) ?? '').join('\\');
  }
  if (typeof v === 'object' && 'Alphabetic' in v) return textOf((v as { Alphabetic: unknown }).Alphabetic);
  return undefined;
}

/** The keys of an identifier the node can match and answer, with their query text ('' = universal). */
export function identifierKeys(elements: Record<string, unknown>): Map<string, string> {
  const keys = new Map<string, string>();
  for (const [key, value] of Object.entries(elements)) {
    if (NOT_KEYS.has(key)) continue;
    const tag = tagOfName(key);
    if (tag === undefined || !lookupTag(tag)) continue;
    const text = textOf(value);
    if (text === undefined) continue;
    keys.set(key, text);
  }
  return keys;
}

export function levelOf(elements: Record<string, unknown>): Level | undefined {
  const v = textOf(elements.QueryRetrieveLevel);
  return v ? parseLevel(v) : undefined;
}

type Resource = Record<string, unknown> & { ID: string; MainDicomTags?: Record<string, string> };

function isResource(r: unknown): r is Resource {
  return typeof r === 'object' && r !== null && typeof (r as { ID?: unknown }).ID === 'string';
}

/** The matching resources of an identifier, in Orthanc's expanded shape with the asked tags. */
async function matching(find: Finder, level: Level, keys: Map<string, string>): Promise<Resource[]> {
  const query: Record<string, string> = {};
  for (const [k, v] of keys) if (v !== '' && !COMPUTED.has(k)) query[k] = v;
  if (keys.get('ModalitiesInStudy')) query.ModalitiesInStudy = keys.get('ModalitiesInStudy') as string;
  const requested = [...keys.keys()].filter((k) => !COMPUTED.has(k));
  const answer = await find({ Level: level, Query: query, Expand: true, RequestedTags: requested });
  return Array.isArray(answer) ? answer.filter(isResource) : [];
}

/** What a C-FIND answers: one data set per match, then the final status. */
export interface FindAnswers {
  matches: Record<string, unknown>[];
  status: number;
  comment?: string;
}

/** The counts and lists Orthanc computes, for the keys asked among them. */
async function computed(find: Finder, level: Level, r: Resource, asked: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const want = asked.filter((k) => COMPUTED.has(k));
  if (want.length === 0) return out;
  const own = r.MainDicomTags ?? {};
  const parentKey: Partial<Record<Level, string>> = { Patient: 'PatientID', Study: 'StudyInstanceUID', Series: 'SeriesInstanceUID' };
  const key = parentKey[level];
  const under = async (l: Level): Promise<Resource[]> => {
    if (!key || own[key] === undefined) return [];
    const a = await find({ Level: l, Query: { [key]: own[key] }, Expand: true });
    return Array.isArray(a) ? a.filter(isResource) : [];
  };
  for (const k of want) {
    if (k === 'NumberOfPatientRelatedStudies' && level === 'Patient') out[k] = String((await under('Study')).length);
    if (k === 'NumberOfPatientRelatedSeries' && level === 'Patient') out[k] = String((await under('Series')).length);
    if (k === 'NumberOfPatientRelatedInstances' && level === 'Patient') out[k] = String((await under('Instance')).length);
    if (k === 'NumberOfStudyRelatedSeries' && level === 'Study') out[k] = String((await under('Series')).length);
    if (k === 'NumberOfStudyRelatedInstances' && level === 'Study') out[k] = String((await under('Instance')).length);
    if (k === 'NumberOfSeriesRelatedInstances' && level === 'Series') out[k] = String((await under('Instance')).length);
    if (k === 'ModalitiesInStudy' && level === 'Study') {
      const modalities = new Set((await under('Series')).map((s) => s.MainDicomTags?.Modality).filter((m): m is string => !!m));
      out[k] = [...modalities].sort().join('\\');
    }
  }
  return out;
}

/** Answers a C-FIND identifier from the store: per match, the asked keys with their values ('' when unknown). */
export async function findAnswers(find: Finder, elements: Record<string, unknown>, retrieveAet: string): Promise<FindAnswers> {
  const level = levelOf(elements);
  if (!level) return { matches: [], status: FIND_STATUS.IdentifierMismatch, comment: 'no or an unknown QueryRetrieveLevel' };
  const keys = identifierKeys(elements);
  let found: Resource[];
  try {
    found = await matching(find, level, keys);
  } catch (e) {
    if (isXferError(e)) return { matches: [], status: FIND_STATUS.UnableToProcess, comment: e.details ?? e.message };
    throw e;
  }
  const matches: Record<string, unknown>[] = [];
  for (const r of found) {
    const tags: Record<string, unknown> = {
      ...((r.PatientMainDicomTags as Record<string, string> | undefined) ?? {}),
      ...(r.MainDicomTags ?? {}),
      ...((r.RequestedTags as Record<string, unknown> | undefined) ?? {}),
      ...(await computed(find, level, r, [...keys.keys()])),
    };
    const answer: Record<string, unknown> = { SpecificCharacterSet: 'ISO_IR 192', QueryRetrieveLevel: textOf(elements.QueryRetrieveLevel) };
    for (const k of keys.keys()) {
      const v = tags[k];
      answer[k] = typeof v === 'string' ? v : '';
    }
    answer.RetrieveAETitle = retrieveAet;
    matches.push(answer);
  }
  return { matches, status: FIND_STATUS.Success };
}

/** C-MOVE statuses (PS3.4 C.4.2.1.5). */
export const MOVE_STATUS = {
  Success: 0x0000,
  Pending: 0xff00,
  Cancel: 0xfe00,
  /** Sub-operations complete, one or more failures. */
  SomeFailed: 0xb000,
  MoveDestinationUnknown: 0xa801,
  IdentifierMismatch: 0xa900,
  UnableToProcess: 0xc000,
} as const;

export interface MoveAnswer extends MoveProgress {
  status: number;
  comment?: string;
}

/** The instances (Orthanc IDs) of every resource an identifier matches at its level. */
export async function instancesOf(find: Finder, elements: Record<string, unknown>): Promise<string[]> {
  const keys = identifierKeys(elements);
  const query: Record<string, string> = {};
  for (const [k, v] of keys) if (v !== '' && !COMPUTED.has(k)) query[k] = v;
  // Every instance below the matches: found at the instance level with the same keys (they are the
  // keys of the level and its ancestors).
  const answer = await find({ Level: 'Instance', Query: query });
  return Array.isArray(answer) ? answer.filter((x): x is string => typeof x === 'string') : [];
}

/**
 * Runs a C-MOVE: the matching instances handed to `move` for the destination AET, each progress report
 * passed to `pending` (answered as a pending response), the final counts and status returned.
 */
export async function moveInstances(
  find: Finder,
  move: MoveSender | undefined,
  elements: Record<string, unknown>,
  destination: string,
  signal: AbortSignal,
  pending: (p: MoveAnswer) => void,
): Promise<MoveAnswer> {
  const none = { remaining: 0, completed: 0, failed: 0, warning: 0 };
  if (!move) return { ...none, status: MOVE_STATUS.MoveDestinationUnknown, comment: 'this node sends to no modality (no C-MOVE sender)' };
  const level = levelOf(elements);
  if (!level) return { ...none, status: MOVE_STATUS.IdentifierMismatch, comment: 'no or an unknown QueryRetrieveLevel' };
  let ids: string[];
  try {
    ids = await instancesOf(find, elements);
  } catch (e) {
    if (isXferError(e)) return { ...none, status: MOVE_STATUS.UnableToProcess, comment: e.details ?? e.message };
    throw e;
  }
  if (ids.length === 0) return { ...none, status: MOVE_STATUS.Success };
  let final: MoveProgress;
  try {
    final = await move.sendTo(destination, ids, (p) => pending({ ...p, status: MOVE_STATUS.Pending }), signal);
  } catch (e) {
    if (isXferError(e, 'UnknownResource')) {
      return { ...none, remaining: ids.length, status: MOVE_STATUS.MoveDestinationUnknown, comment: `unknown destination ${destination}` };
    }
    throw e;
  }
  if (signal.aborted) return { ...final, status: MOVE_STATUS.Cancel };
  return { ...final, remaining: 0, status: final.failed > 0 ? MOVE_STATUS.SomeFailed : MOVE_STATUS.Success };
}
