// What the DICOMweb routes share: the studies, series and instances named by their UIDs in a URL, found
// through the store's index (/tools/find's matching), the DICOM JSON of a stored instance, and the URLs
// DICOMweb answers carry.
import type { FastifyRequest } from 'fastify';
import { parsedHeader, readDicomHeaderFromFile } from '../../dicom/parse.ts';
import type { DicomHeader, Level } from '../../dicom/types.ts';
import { XferError } from '../../errors.ts';
import type { EmbeddedStore } from '../../store/embedded/store.ts';
import { parseFindRequest } from '../../store/find.ts';
import { instanceJson, type DicomJson } from '../json.ts';

/** The UIDs of a WADO-RS or QIDO-RS URL (those present). */
export interface UidPath {
  study?: string | undefined;
  series?: string | undefined;
  instance?: string | undefined;
}

/** A UID as PS3.5 9.1 allows it; anything else names nothing here. */
const UID = /^[0-9.]{1,64}$/;

/** The UIDs of the route's parameters, each checked (404 for one that cannot be a UID). */
export function uidPath(req: FastifyRequest): UidPath {
  const p = req.params as Record<string, string | undefined>;
  for (const key of ['study', 'series', 'instance'] as const) {
    const v = p[key];
    if (v !== undefined && !UID.test(v)) throw new XferError('InexistentItem', `not a DICOM UID: "${v.slice(0, 80)}"`);
  }
  return { study: p.study, series: p.series, instance: p.instance };
}

/** The /tools/find query that names the resource of a UID path. */
export function uidQuery(path: UidPath): Record<string, string> {
  const q: Record<string, string> = {};
  if (path.study !== undefined) q.StudyInstanceUID = path.study;
  if (path.series !== undefined) q.SeriesInstanceUID = path.series;
  if (path.instance !== undefined) q.SOPInstanceUID = path.instance;
  return q;
}

function levelOf(path: UidPath): Level {
  return path.instance !== undefined ? 'Instance' : path.series !== undefined ? 'Series' : 'Study';
}

/**
 * The Orthanc IDs of the instances a UID path names, in the store's order; 404 (in Orthanc's words) when
 * it names nothing. A study UID shared by two patients names both.
 */
export async function instancesOfPath(store: EmbeddedStore, path: UidPath): Promise<string[]> {
  const level = levelOf(path);
  const ids = (await store.find(parseFindRequest({ Level: level, Query: uidQuery(path) }))) as string[];
  if (ids.length === 0) {
    const what = level === 'Instance' ? 'instance' : level === 'Series' ? 'series' : 'study';
    const uid = path.instance ?? path.series ?? path.study;
    throw new XferError('InexistentItem', `Accessing an inexistent ${what} with WADO-RS: ${uid}`);
  }
  const out: string[] = [];
  for (const id of ids) out.push(...(await store.listInstances(level, id)));
  return out;
}

/** A stored instance's file and its parsed header; undefined when it went away meanwhile. */
export async function instanceHeader(
  store: EmbeddedStore,
  id: string,
): Promise<{ path: string; size: number; header: DicomHeader } | undefined> {
  const file = await store.instanceFile(id);
  if (!file) return undefined;
  return { path: file.path, size: file.size, header: await readDicomHeaderFromFile(file.path) };
}

/** The DICOMweb root as the client reached it ("http://host:port/dicom-web/"), for the URLs of answers. */
export function publicRoot(req: FastifyRequest, root: string): string {
  const host = req.headers.host ?? 'localhost';
  return `${req.protocol}://${host}${root}`;
}

/** The WADO-RS URL of a study, series or instance under `base` (publicRoot). */
export function retrieveUrl(base: string, study: string, series?: string, instance?: string): string {
  let url = `${base}studies/${study}`;
  if (series !== undefined) url += `/series/${series}`;
  if (instance !== undefined) url += `/instances/${instance}`;
  return url;
}

/** The DICOM JSON of an instance's header, its bulk data referred to under its WADO-RS URL. */
export function headerJson(header: DicomHeader, base: string): DicomJson {
  const url = retrieveUrl(base, header.studyInstanceUid, header.seriesInstanceUid, header.sopInstanceUid);
  return instanceJson(parsedHeader(header), (p) => `${url}/bulk/${p}`);
}
