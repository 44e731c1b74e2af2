// STOW-RS on the node: a multipart/related body of DICOM files read as it arrives, each part spooled to disk
// as POST /instances spools an upload; once the whole body is in, each file goes through the same ingest
// path (structure check, store, routing's arrivals). A body that fails midway stores nothing.
import { unlink } from 'node:fs/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ingestSpooled, sniffUpload, spool, uploadRoom, type SpooledFile } from '../../api/ingest.ts';
import type { UploadLimits } from '../../api/orthanc-api.ts';
import { parseDicomHeader } from '../../dicom/parse.ts';
import type { DicomHeader } from '../../dicom/types.ts';
import { XferError, isXferError } from '../../errors.ts';
import { IGNORE_ARRIVALS, type Arrival, type ArrivalSink } from '../../routing/arrivals.ts';
import { basicUser } from '../../routing/origin.ts';
import { bodyCoding, decodedBody } from '../../server/content-encoding.ts';
import { sendJson, withIdleTimeout } from '../../server/http.ts';
import type { EmbeddedStore } from '../../store/embedded/store.ts';
import type { DicomJson, JsonAttribute } from '../json.ts';
import { parseMediaType, parseMultipartType, readMultipart } from '../multipart.ts';
import { publicRoot, retrieveUrl, uidPath } from './resources.ts';

/** PS3.18 table I.2-1 and PS3.4 B.2.3: why an instance was not stored. */
export const FAILURE = { OutOfResources: 0xa700, Mismatch: 0xa900, CannotUnderstand: 0xc000 } as const;

/** Most parts of one STOW-RS body: far beyond any study, short of a flood of empty parts. */
const MAX_PARTS = 100_000;

export interface StowOptions {
  store: EmbeddedStore;
  root: string;
  idleMs: number;
  limits: UploadLimits;
  arrivals?: ArrivalSink | undefined;
}

/** One part of the body, once read: its spooled file, or why it could not be. */
interface ReadPart {
  spooled?: SpooledFile;
  error?: XferError;
}

interface Outcome {
  header?: DicomHeader | undefined;
  failure?: number;
  reason?: string;
}

function uidAttr(v: string): JsonAttribute {
  return { vr: 'UI', Value: [v] };
}

/** Reads every part of the body to its own spooled file; on any failure of the body, removes them all. */
async function readParts(req: FastifyRequest, opts: StowOptions): Promise<ReadPart[]> {
  const { boundary, type } = parseMultipartType(req.headers['content-type']);
  if (type !== undefined && type !== 'application/dicom') {
    throw new XferError('BadRequest', `this server stores application/dicom parts, not ${type}`, { httpStatus: 415 });
  }
  const coding = bodyCoding(req.headers);
  const declared = Number(req.headers['content-length'] ?? NaN);
  const room = await uploadRoom(opts.store.tmpDir());
  if (coding === 'identity' && Number.isFinite(declared) && declared > room) {
    throw new XferError('FullStorage', `the body (${declared} bytes) does not fit in the ${room} bytes left on disk`);
  }
  const body = decodedBody(coding, withIdleTimeout(req, opts.idleMs), { maxRatio: opts.limits.maxInflationRatio });
  const parts: ReadPart[] = [];
  let used = 0;
  try {
    for await (const part of readMultipart(body, boundary, { maxParts: MAX_PARTS })) {
      const ct = parseMediaType(part.headers['content-type'] ?? 'application/dicom').type;
      if (ct !== 'application/dicom') {
        parts.push({ error: new XferError('BadFileFormat', `a part of type ${ct} is not a DICOM file`) });
        continue;
      }
      try {
        const spooled = await spool(part.body, opts.store.tmpDir(), room - used, sniffUpload(false));
        used += spooled.size;
        parts.push({ spooled });
      } catch (e) {
        // Bytes that are not DICOM fail that part; anything else (the disk, the body itself) fails the request.
        if (!isXferError(e, 'BadFileFormat')) throw e;
        parts.push({ error: e });
      }
    }
  } catch (e) {
    await Promise.all(parts.map((p) => (p.spooled ? unlink(p.spooled.path).catch(() => undefined) : undefined)));
    throw e;
  }
  return parts;
}

/** Stores one spooled part, unless it belongs to another study than the URL's. */
async function storePart(
  part: ReadPart,
  study: string | undefined,
  opts: StowOptions,
  arrivals: Arrival[],
  req: FastifyRequest,
): Promise<Outcome> {
  const spooled = part.spooled;
  if (!spooled) return { failure: FAILURE.CannotUnderstand, reason: part.error?.details ?? 'not a DICOM file' };
  let header: DicomHeader | undefined;
  let consumed = false;
  try {
    header = parseDicomHeader(spooled.head, { prefix: spooled.size > spooled.head.length });
    if (study !== undefined && header.studyInstanceUid !== study) {
      return { header, failure: FAILURE.Mismatch, reason: `the instance belongs to study ${header.studyInstanceUid}` };
    }
    const result = await ingestSpooled(opts.store, spooled);
    consumed = true;
    const user = basicUser(req.headers.authorization);
    arrivals.push({
      instanceId: result.ids.instance,
      origin: { kind: 'rest', remoteIp: req.ip, ...(user !== undefined ? { user } : {}) },
      alreadyStored: result.status === 'AlreadyStored',
    });
    return { header };
  } catch (e) {
    if (!isXferError(e)) throw e;
    const failure = e.code === 'BadFileFormat' ? FAILURE.CannotUnderstand : FAILURE.OutOfResources;
    return { header, failure, reason: e.details ?? e.message };
  } finally {
    if (!consumed) await unlink(spooled.path).catch(() => undefined);
  }
}

/** POST studies[/{study}]: stores each DICOM part; answers what was stored and what failed, and why. */
export function store(opts: StowOptions) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const { study } = uidPath(req);
    const parts = await readParts(req, opts);
    if (parts.length === 0) throw new XferError('EmptyRequest', 'the multipart body holds no part');
    const arrivals: Arrival[] = [];
    const outcomes: Outcome[] = [];
    try {
      for (const [i, part] of parts.entries()) {
        outcomes.push(await storePart(part, study, opts, arrivals, req));
        parts[i] = {};
      }
    } finally {
      await Promise.all(parts.map((p) => (p.spooled ? unlink(p.spooled.path).catch(() => undefined) : undefined)));
    }
    // Recorded for routing before the client learns the instances are stored, as POST /instances does.
    await (opts.arrivals ?? IGNORE_ARRIVALS).arrived(arrivals);
    const base = publicRoot(req, opts.root);
    const referenced: DicomJson[] = [];
    const failed: DicomJson[] = [];
    for (const o of outcomes) {
      const h = o.header;
      const item: DicomJson = {};
      if (h?.sopClassUid !== undefined) item['00081150'] = uidAttr(h.sopClassUid);
      if (h) item['00081155'] = uidAttr(h.sopInstanceUid);
      if (o.failure === undefined && h) {
        item['00081190'] = { vr: 'UR', Value: [retrieveUrl(base, h.studyInstanceUid, h.seriesInstanceUid, h.sopInstanceUid)] };
        referenced.push(item);
      } else {
        item['00081197'] = { vr: 'US', Value: [o.failure ?? FAILURE.CannotUnderstand] };
        failed.push(item);
        req.log.info({ failure: o.failure, reason: o.reason, sop: h?.sopInstanceUid }, 'STOW-RS: instance not stored');
      }
    }
    const answer: DicomJson = {};
    const studyUid = study ?? outcomes.find((o) => o.failure === undefined)?.header?.studyInstanceUid;
    if (studyUid !== undefined) answer['00081190'] = { vr: 'UR', Value: [retrieveUrl(base, studyUid)] };
    if (failed.length > 0) answer['00081198'] = { vr: 'SQ', Value: failed };
    if (referenced.length > 0) answer['00081199'] = { vr: 'SQ', Value: referenced };
    const status = failed.length === 0 ? 200 : referenced.length === 0 ? 409 : 202;
    sendJson(reply, answer, status);
    return reply.header('Content-Type', 'application/dicom+json');
  };
}
