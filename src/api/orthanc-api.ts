// The part of Orthanc's REST API that people use to put, list, fetch and delete DICOM, answered from
// the embedded store in Orthanc's shapes; and the store's API as a whole (with /tools/find on either store).
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DEFAULTS, MiB } from '../config/defaults.ts';
import type { Config } from '../config/types.ts';
import { isOrthancId } from '../dicom/ids.ts';
import { readDicomHeaderFromFile, simplifiedTags } from '../dicom/parse.ts';
import type { Level } from '../dicom/types.ts';
import { XferError, isXferError } from '../errors.ts';
import { EmbeddedStore, LEVEL_PATH } from '../store/embedded/store.ts';
import type { IngestResult, Store } from '../store/types.ts';
import { flag, intParam, route, sendJson, withIdleTimeout, type RouteInfo } from '../server/http.ts';
import { bodyCoding, decodedBody } from '../server/content-encoding.ts';
import { IGNORE_ARRIVALS, type Arrival, type ArrivalSink } from '../routing/arrivals.ts';
import { basicUser } from '../routing/origin.ts';
import { registerFind } from './find.ts';
import { ingestSpooled, ingestZip, isZip, sniffUpload, spool, uploadRoom, type ZipEntryOutcome, type ZipLimits } from './ingest.ts';

export interface OrthancApiOptions {
  store: EmbeddedStore;
  /** Seconds without a byte after which an upload is abandoned. */
  httpTimeoutSeconds: number;
  /** Bounds of POST /instances (the configuration's; its defaults when absent). */
  uploadLimits?: UploadLimits;
  routes?: RouteInfo[];
  /** Told of every instance POST /instances stores (routing), with origin rest. */
  arrivals?: ArrivalSink;
}

/** Bounds of what POST /instances takes beyond the room on disk: ZIP archives and gzip-encoded bodies. */
export interface UploadLimits {
  zip: ZipLimits;
  /** See MaximumInflationRatio. */
  maxInflationRatio: number;
}

/** The upload bounds of a configuration (keys MaximumZipEntries, MaximumZipUncompressedSize, MaximumInflationRatio). */
export function uploadLimitsOf(
  config: Pick<Config, 'MaximumZipEntries' | 'MaximumZipUncompressedSize' | 'MaximumInflationRatio'>,
): UploadLimits {
  return {
    zip: { maxEntries: config.MaximumZipEntries, maxUncompressedBytes: config.MaximumZipUncompressedSize * MiB },
    maxInflationRatio: config.MaximumInflationRatio,
  };
}

/** One entry of the answer to a ZIP upload: the instance stored, or why the entry was not. */
function zipEntryAnswer(o: ZipEntryOutcome): Record<string, string> {
  if (o.result) return { ...ingestAnswer(o.result), FileName: o.name };
  const err = o.error ?? new XferError('BadFileFormat');
  return { FileName: o.name, Status: 'Failure', Message: err.spec.message, Details: err.details ?? err.message };
}

const LEVEL_BY_PATH: Record<string, Level> = {
  patients: 'Patient',
  studies: 'Study',
  series: 'Series',
  instances: 'Instance',
};

function ingestAnswer(r: IngestResult): Record<string, string> {
  return {
    ID: r.ids.instance,
    ParentPatient: r.ids.patient,
    ParentSeries: r.ids.series,
    ParentStudy: r.ids.study,
    Path: `/instances/${r.ids.instance}`,
    Status: r.status,
  };
}

/** An instance POST /instances stored, as routing sees it: origin rest, with the client's address and user. */
function arrivalOf(req: FastifyRequest, r: IngestResult): Arrival {
  const user = basicUser(req.headers.authorization);
  return {
    instanceId: r.ids.instance,
    origin: { kind: 'rest', remoteIp: req.ip, ...(user !== undefined ? { user } : {}) },
    alreadyStored: r.status === 'AlreadyStored',
  };
}

/** The `{id}` path parameter, refused as an unknown resource unless it has the shape of an Orthanc ID. */
function idParam(req: FastifyRequest, level: Level): string {
  const id = (req.params as { id?: string }).id ?? '';
  if (!isOrthancId(id)) throw new XferError('UnknownResource', `${level} ${id}`);
  return id;
}

/** The embedded store's own API (resources in Orthanc's shapes), when the node's store is the embedded one. */
export function embeddedApiOf(store: Store): EmbeddedStore | undefined {
  return store.features.resourceApi && store instanceof EmbeddedStore ? store : undefined;
}

/**
 * The store's REST API: Orthanc's resource API when the store is the embedded one (features.resourceApi),
 * and /tools/find on either store (the Orthanc one answers it itself).
 */
export function registerStoreApi(
  app: FastifyInstance,
  store: Store,
  config: Config,
  httpTimeoutSeconds: number,
  routes: RouteInfo[],
  arrivals?: ArrivalSink,
): void {
  const embedded = embeddedApiOf(store);
  if (embedded) {
    registerOrthancApi(app, {
      store: embedded,
      httpTimeoutSeconds,
      uploadLimits: uploadLimitsOf(config),
      routes,
      ...(arrivals ? { arrivals } : {}),
    });
  }
  registerFind(app, store, routes);
}

export function registerOrthancApi(app: FastifyInstance, opts: OrthancApiOptions): void {
  const { store } = opts;
  const reg = opts.routes;
  route(
    app,
    '/instances',
    {
      GET: async (req, reply) => listLevel(store, req, reply, 'Instance'),
      POST: upload(store, opts.httpTimeoutSeconds * 1000, opts.uploadLimits ?? uploadLimitsOf(DEFAULTS), opts.arrivals ?? IGNORE_ARRIVALS),
    },
    reg,
  );
  registerResources(app, store, reg);
  registerInstanceFile(app, store, reg);
  route(app, '/statistics', { GET: async (_req, reply) => sendJson(reply, await store.statistics()) }, reg);
}

/** POST /instances: one DICOM file or a ZIP archive of them, spooled to disk before the store takes it. */
function upload(store: EmbeddedStore, idleMs: number, limits: UploadLimits, arrivals: ArrivalSink) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    // Checked before any byte is read: an unknown Content-Encoding is refused (415).
    const coding = bodyCoding(req.headers);
    const declared = Number(req.headers['content-length'] ?? NaN);
    const room = await uploadRoom(store.tmpDir());
    if (coding === 'identity' && Number.isFinite(declared) && declared > room) {
      throw new XferError('FullStorage', `the upload (${declared} bytes) does not fit in the ${room} bytes left on disk`);
    }
    const body = decodedBody(coding, withIdleTimeout(req, idleMs), { maxRatio: limits.maxInflationRatio });
    // Junk is refused from its first bytes, before anything is written.
    const spooled = await spool(body, store.tmpDir(), room, sniffUpload(true));
    let consumed = false;
    try {
      if (spooled.size === 0) throw new XferError('EmptyRequest', 'the body is empty');
      if (isZip(spooled.head)) return sendJson(reply, await uploadZip(req, store, spooled.path, limits, arrivals));
      const result = await ingestSpooled(store, spooled);
      consumed = true;
      // Recorded for routing before the client learns the instance is stored.
      await arrivals.arrived([arrivalOf(req, result)]);
      req.log.debug({ id: result.ids.instance, status: result.status }, 'instance received');
      return sendJson(reply, ingestAnswer(result));
    } finally {
      if (!consumed) await unlink(spooled.path).catch(() => undefined);
    }
  };
}

/** Orthanc's answer to a ZIP (one object per instance), with the entries that were not stored too. */
async function uploadZip(
  req: FastifyRequest,
  store: EmbeddedStore,
  path: string,
  limits: UploadLimits,
  arrivals: ArrivalSink,
): Promise<Record<string, string>[]> {
  const outcomes = await ingestZip(path, store, store.tmpDir(), limits.zip);
  await arrivals.arrived(outcomes.flatMap((o) => (o.result ? [arrivalOf(req, o.result)] : [])));
  const stored = outcomes.filter((o) => o.result).length;
  const rejected = outcomes.filter((o) => o.error);
  if (stored === 0 && rejected.length > 0) {
    const first = rejected[0] as ZipEntryOutcome;
    throw new XferError(
      'BadFileFormat',
      `no DICOM file in the ZIP archive: ${rejected.length} entries rejected (${first.name}: ` +
        `${first.error?.details ?? first.error?.message})`,
    );
  }
  if (rejected.length > 0) req.log.info({ stored, rejected: rejected.length }, 'ZIP archive stored in part');
  return outcomes.map(zipEntryAnswer);
}

/** The lists, descriptions, deletions and children of patients, studies, series and instances. */
function registerResources(app: FastifyInstance, store: EmbeddedStore, reg: RouteInfo[] | undefined): void {
  for (const path of ['patients', 'studies', 'series'] as const) {
    const level = LEVEL_BY_PATH[path] as Level;
    route(app, `/${path}`, { GET: async (req, reply) => listLevel(store, req, reply, level) }, reg);
  }
  for (const path of ['patients', 'studies', 'series', 'instances'] as const) {
    const level = LEVEL_BY_PATH[path] as Level;
    route(
      app,
      `/${path}/:id`,
      {
        GET: async (req, reply) => {
          const id = idParam(req, level);
          const r = await store.getResource(level, id);
          if (!r) throw new XferError('UnknownResource', `${level} ${id}`);
          return sendJson(reply, r);
        },
        DELETE: async (req, reply) => {
          const id = idParam(req, level);
          const r = await store.deleteResource(level, id);
          if (!r) throw new XferError('UnknownResource', `${level} ${id}`);
          req.log.info({ level, id }, 'resource deleted');
          return sendJson(reply, r);
        },
      },
      reg,
    );
    if (level !== 'Instance') {
      route(
        app,
        `/${path}/:id/instances`,
        {
          GET: async (req, reply) => {
            const id = idParam(req, level);
            const list = await store.instancesOf(level, id);
            if (!list) throw new XferError('UnknownResource', `${level} ${id}`);
            return sendJson(reply, list);
          },
        },
        reg,
      );
    }
  }
  route(app, '/patients/:id/studies', { GET: children(store, 'Patient') }, reg);
  route(app, '/studies/:id/series', { GET: children(store, 'Study') }, reg);
}

/** An instance's file (with ranges), its tags, and its attachment's MD5 and size. */
function registerInstanceFile(app: FastifyInstance, store: EmbeddedStore, reg: RouteInfo[] | undefined): void {
  const fileOf = async (req: FastifyRequest) => {
    const id = idParam(req, 'Instance');
    const f = await store.instanceFile(id);
    if (!f) throw new XferError('UnknownResource', `Instance ${id}`);
    return f;
  };
  route(
    app,
    '/instances/:id/file',
    {
      GET: async (req, reply) => {
        const f = await fileOf(req);
        return sendFileRange(req, reply, f.path, f.size, 'application/dicom');
      },
    },
    reg,
  );
  const tagsRoute = (forceSimplify: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const header = await readDicomHeaderFromFile((await fileOf(req)).path);
    const simplify = forceSimplify || flag(req.query, 'simplify') || flag(req.query, 'short');
    return sendJson(reply, simplifiedTags(header, simplify ? 'simplify' : 'full'));
  };
  route(app, '/instances/:id/tags', { GET: tagsRoute(false) }, reg);
  route(app, '/instances/:id/simplified-tags', { GET: tagsRoute(true) }, reg);
  const attachmentInfo = (what: 'md5' | 'size') => async (req: FastifyRequest, reply: FastifyReply) => {
    const f = await fileOf(req);
    return reply.header('Content-Type', 'text/plain').send(what === 'md5' ? f.md5 : String(f.size));
  };
  route(app, '/instances/:id/attachments/dicom/md5', { GET: attachmentInfo('md5') }, reg);
  route(app, '/instances/:id/attachments/dicom/size', { GET: attachmentInfo('size') }, reg);
}

async function listLevel(store: EmbeddedStore, req: FastifyRequest, reply: FastifyReply, level: Level) {
  const since = intParam(req.query, 'since', 0);
  const limit = intParam(req.query, 'limit', 0);
  const ids = await store.listResources(level, since, limit);
  if (!flag(req.query, 'expand')) return sendJson(reply, ids);
  return sendJson(
    reply,
    (await Promise.all(ids.map((id) => store.getResource(level, id)))).filter((r) => r !== undefined),
  );
}

function children(store: EmbeddedStore, level: Level) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const id = idParam(req, level);
    const list = await store.childrenOf(level, id);
    if (!list) throw new XferError('UnknownResource', `${level} ${id}`);
    return sendJson(reply, list);
  };
}

/**
 * Sends a file, honouring a single `Range: bytes=` request (206 with Content-Range; 416 when it
 * cannot be satisfied). Several ranges are answered with the whole file, as HTTP allows.
 */
export async function sendFileRange(
  req: FastifyRequest,
  reply: FastifyReply,
  path: string,
  size: number,
  contentType: string,
): Promise<FastifyReply> {
  reply.header('Content-Type', contentType).header('Accept-Ranges', 'bytes');
  const range = req.headers.range;
  let start = 0;
  let end = size; // exclusive
  let partial = false;
  if (typeof range === 'string' && range.trim() !== '') {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (m && (m[1] !== '' || m[2] !== '')) {
      if (m[1] === '') {
        const suffix = Number(m[2]);
        start = Math.max(0, size - suffix);
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(size, Number(m[2]) + 1);
      }
      if (start >= size || start >= end) {
        reply.header('Content-Range', `bytes */${size}`);
        throw new XferError('BadRange', `range ${range} of a ${size}-byte file`);
      }
      partial = true;
    } else if (!range.includes(',')) {
      throw new XferError('BadRange', `unsupported range ${range}`);
    }
  }
  if (partial) reply.code(206).header('Content-Range', `bytes ${start}-${end - 1}/${size}`);
  reply.header('Content-Length', String(end - start));
  if (end === start || req.method === 'HEAD') return reply.send('');
  const stream = createReadStream(path, { start, end: end - 1, highWaterMark: 256 * 1024 });
  stream.on('error', (e) => {
    if (!isXferError(e)) req.log.warn({ err: e, path }, 'file read failed');
  });
  return reply.send(stream);
}

export { LEVEL_BY_PATH, LEVEL_PATH };
