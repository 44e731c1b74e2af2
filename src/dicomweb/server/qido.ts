// QIDO-RS on the node: studies, series and instances searched with the index's /tools/find matching, each
// answered in DICOM JSON with the attributes Orthanc's DICOMweb plugin answers by default (plus includefield),
// read from one stored instance of the resource, and the counts and URLs computed from the index.
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { lookupTag, parseTag, tagOfName } from '../../dicom/tags.ts';
import type { Level } from '../../dicom/types.ts';
import { XferError } from '../../errors.ts';
import type { EmbeddedStore } from '../../store/embedded/store.ts';
import { parseFindRequest, type FindRequest } from '../../store/find.ts';
import type { DicomJson, JsonAttribute } from '../json.ts';
import { headerJson, instanceHeader, publicRoot, retrieveUrl, uidPath, uidQuery, type UidPath } from './resources.ts';

/** The attributes of each level that a QIDO-RS answer holds by default, as 8-hex tags. */
const STUDY_TAGS = [
  '00080005',
  '00080020',
  '00080030',
  '00080050',
  '00080090',
  '00080201',
  '00100010',
  '00100020',
  '00100030',
  '00100040',
  '0020000D',
  '00200010',
];
const SERIES_TAGS = ['00080005', '00080060', '00080201', '0008103E', '0020000E', '00200011', '00400244', '00400245'];
const INSTANCE_TAGS = ['00080005', '00080016', '00080018', '00080201', '00200013', '00280008', '00280010', '00280011', '00280100'];

const CONTROL_KEYS = new Set(['limit', 'offset', 'includefield', 'fuzzymatching']);

/** A checked QIDO-RS query. */
interface QidoQuery {
  find: FindRequest;
  /** Extra attributes asked for with includefield, or 'all'. */
  include: Set<string> | 'all';
}

function badParam(details: string): XferError {
  return new XferError('BadRequest', details);
}

/** A query key (keyword, "gggg,eeee" or 8 hex digits) as the dictionary knows it; undefined when unknown. */
function knownTag(key: string): { hex: string; name: string; vr: string } | undefined {
  const tag = parseTag(key) ?? tagOfName(key);
  const entry = tag === undefined ? undefined : lookupTag(tag);
  if (tag === undefined || !entry) return undefined;
  return { hex: tag.toString(16).padStart(8, '0').toUpperCase(), name: entry.name, vr: entry.vr };
}

function count(params: URLSearchParams, name: string): number {
  const v = params.get(name);
  if (v === null || v === '') return 0;
  if (!/^\d{1,9}$/.test(v)) throw badParam(`QIDO-RS: "${name}" must be a non-negative integer, not "${v.slice(0, 40)}"`);
  return Number(v);
}

/**
 * The query string of a search as a /tools/find request at `level`, within the resource of `path`. Keys
 * that name no attribute are ignored (as Orthanc's plugin does); repeated keys and comma lists of UIDs are
 * lists of values. Person names match without regard to case, other values with it (the plugin's default).
 */
export function parseQido(url: string, level: Level, path: UidPath): QidoQuery {
  const params = new URL(url, 'http://node').searchParams;
  const values = new Map<string, { vr: string; values: string[] }>();
  let include: Set<string> | 'all' = new Set();
  for (const [key, value] of params) {
    if (CONTROL_KEYS.has(key.toLowerCase())) {
      if (key.toLowerCase() !== 'includefield') continue;
      for (const f of value.split(',')) {
        if (f.trim() === 'all') include = 'all';
        else {
          const t = knownTag(f.trim());
          if (!t) throw badParam(`QIDO-RS: includefield names no DICOM attribute: "${f.slice(0, 64)}"`);
          if (include !== 'all') include.add(t.hex);
        }
      }
      continue;
    }
    const t = knownTag(key);
    if (!t) continue;
    const list = values.get(t.name) ?? { vr: t.vr, values: [] };
    list.values.push(...(t.vr === 'UI' ? value.split(',') : [value]));
    values.set(t.name, list);
  }
  const query = (pn: boolean) => {
    const q: Record<string, string> = {};
    for (const [name, v] of values) if ((v.vr === 'PN') === pn) q[name] = v.values.join('\\');
    return q;
  };
  const limit = count(params, 'limit');
  const offset = count(params, 'offset');
  const exact = parseFindRequest({ Level: level, Query: { ...query(false), ...uidQuery(path) }, CaseSensitive: true });
  const names = parseFindRequest({ Level: level, Query: query(true) });
  return { find: { ...exact, constraints: [...exact.constraints, ...names.constraints], limit, since: offset }, include };
}

function attr(vr: string, value: unknown): JsonAttribute {
  return { vr, Value: [value] };
}

/** The attributes of `tags` (and the included ones) taken from an instance's DICOM JSON. */
function pick(all: DicomJson, tags: readonly string[], include: Set<string> | 'all', level: Level): DicomJson {
  const out: DicomJson = {};
  // "all" of an instance is its whole data set but bulk data. A study or series has no data set of its own
  // (one instance's would claim attributes of other levels): there it answers the defaults, as the plugin does.
  if (include === 'all' && level === 'Instance') {
    for (const [k, v] of Object.entries(all)) if (v.BulkDataURI === undefined) out[k] = v;
    return out;
  }
  for (const t of [...tags, ...(include === 'all' ? [] : include)]) {
    const v = all[t];
    if (v !== undefined) out[t] = v;
  }
  return out;
}

/** Sorts the attributes of a DICOM JSON object by tag, as answers list them. */
function sorted(json: DicomJson): DicomJson {
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The DICOM JSON of one resource found by a search. */
async function resourceJson(store: EmbeddedStore, level: Level, id: string, q: QidoQuery, base: string): Promise<DicomJson | undefined> {
  const instances = await store.listInstances(level, id);
  const first = instances[0];
  const h = first === undefined ? undefined : await instanceHeader(store, first);
  if (!h) return undefined;
  const all = headerJson(h.header, base);
  const { studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop } = h.header;
  let tags: string[];
  const out: DicomJson = {};
  if (level === 'Study') {
    tags = STUDY_TAGS;
    const seriesRows = (await store.childrenOf('Study', id)) ?? [];
    const modalities = new Set<string>();
    for (const s of seriesRows) {
      const m = (s.MainDicomTags as Record<string, string> | undefined)?.Modality;
      if (m) modalities.add(m);
    }
    out['00080061'] = modalities.size > 0 ? { vr: 'CS', Value: [...modalities].sort() } : { vr: 'CS' };
    out['00081190'] = attr('UR', retrieveUrl(base, study));
    out['00201206'] = attr('IS', seriesRows.length);
    out['00201208'] = attr('IS', instances.length);
  } else if (level === 'Series') {
    // A series carries its study's attributes too, within a study's URL as well (as the plugin answers).
    tags = [...STUDY_TAGS, ...SERIES_TAGS];
    out['00081190'] = attr('UR', retrieveUrl(base, study, series));
    out['00201209'] = attr('IS', instances.length);
  } else {
    tags = [...STUDY_TAGS, ...SERIES_TAGS, ...INSTANCE_TAGS];
    out['00081190'] = attr('UR', retrieveUrl(base, study, series, sop));
  }
  // Without SpecificCharacterSet the node reads text as Latin-1 (Orthanc's default), and says so as Orthanc does.
  if (all['00080005'] === undefined) out['00080005'] = attr('CS', 'ISO_IR 100');
  return sorted({ ...pick(all, tags, q.include, level), ...out });
}

/** GET studies, series, instances (and within a study or series): a search, answered in DICOM JSON. */
export function search(store: EmbeddedStore, root: string, level: Level) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const path = uidPath(req);
    const q = parseQido(req.raw.url ?? req.url, level, path);
    const ids = (await store.find(q.find)) as string[];
    const base = publicRoot(req, root);
    // Written result by result: a search without a limit over a large index is never held whole.
    async function* json(): AsyncGenerator<string> {
      yield '[';
      let first = true;
      for (const id of ids) {
        const one = await resourceJson(store, level, id, q, base);
        if (!one) continue;
        yield `${first ? '' : ','}\n${JSON.stringify(one)}`;
        first = false;
      }
      yield '\n]\n';
    }
    reply.header('Content-Type', 'application/dicom+json');
    return reply.send(Readable.from(json()));
  };
}
