// HTTP plumbing shared by every route: one registration helper that answers 405 with `Allow` for the
// other methods, bodies read as bounded streams (no Content-Type needed, as Orthanc), Orthanc's JSON
// error shape for every failure, and JSON answers written the way Orthanc writes them.
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { XferError, errorBody, toXferError } from '../errors.ts';
import { bodyCoding, decodedBody } from './content-encoding.ts';
import { SMALL_JSON_BODY, parseJsonBody } from './json-body.ts';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
export type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

const ALL_METHODS: readonly Method[] = ['GET', 'POST', 'PUT', 'DELETE'];

/** Every route path with the methods it accepts, as registered (for the OpenAPI document and tests). */
export interface RouteInfo {
  path: string;
  methods: Method[];
}

/**
 * Registers `path` for every method: the ones in `handlers` run, the others answer 405 with an
 * `Allow` header naming the accepted methods and an empty body (Orthanc's behaviour).
 */
export function route(app: FastifyInstance, path: string, handlers: Partial<Record<Method, Handler>>, registry?: RouteInfo[]): void {
  const allowed = ALL_METHODS.filter((m) => handlers[m] !== undefined);
  registry?.push({ path, methods: [...allowed] });
  app.route({
    method: [...ALL_METHODS, 'PATCH'],
    url: path,
    handler: async (req, reply) => {
      const h = handlers[req.method as Method];
      if (!h) {
        reply.code(405).header('Allow', allowed.join(',')).send();
        return reply;
      }
      return h(req, reply);
    },
  });
}

/** Sends a JSON answer with status 200 (or `status`), always a non-empty body. */
export function sendJson(reply: FastifyReply, value: unknown, status = 200): FastifyReply {
  return reply
    .code(status)
    .header('Content-Type', 'application/json; charset=utf-8')
    .send(`${JSON.stringify(value, null, 3)}\n`);
}

/** Sends Orthanc's JSON error body for `err`. */
export function sendError(req: FastifyRequest, reply: FastifyReply, err: XferError): FastifyReply {
  const uri = (req.raw.url ?? req.url).split('?')[0] ?? '';
  const body = errorBody(err, req.method, uri);
  return reply
    .code(err.http)
    .header('Content-Type', 'application/json; charset=utf-8')
    .send(`${JSON.stringify(body, null, 3)}\n`);
}

/**
 * Reads a whole request body (at most `limit` bytes, after its Content-Encoding: gzip is inflated, another
 * coding is refused with 415), whatever its Content-Type. A larger body is
 * refused with 413 before it is all read. Stalls longer than `idleMs` abort the request.
 */
export async function readBody(req: FastifyRequest, limit: number, idleMs = 60_000): Promise<Buffer> {
  // A gzip-encoded body is inflated as it arrives; the limit applies to the inflated bytes.
  const coding = bodyCoding(req.headers);
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (coding === 'identity' && Number.isFinite(declared) && declared > limit) {
    throw new XferError('BadRequest', `the body (${declared} bytes) is larger than ${limit} bytes`, {
      httpStatus: 413,
    });
  }
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of decodedBody(coding, withIdleTimeout(req, idleMs))) {
    total += chunk.length;
    if (total > limit) {
      throw new XferError('BadRequest', `the body is larger than ${limit} bytes`, { httpStatus: 413 });
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts, total);
}

/**
 * Reads a JSON body of at most `limit` bytes (413 beyond, see json-body.ts for the limits of each use).
 * Bad JSON is Orthanc's BadFileFormat (400); an empty body is `undefined`.
 */
export async function readJson(req: FastifyRequest, limit = SMALL_JSON_BODY): Promise<unknown> {
  return parseJsonBody(await readBody(req, limit), limit);
}

const MINIMUM_RATE = Symbol('dicom-xfer.minimumRate');
type WithRate = IncomingMessage & { [MINIMUM_RATE]?: number };

/** Sets the slowest average rate (bytes/s) at which the body of `raw` may arrive (HttpRequestMinimumRate). */
export function setMinimumRate(raw: IncomingMessage, bytesPerSecond: number): void {
  (raw as WithRate)[MINIMUM_RATE] = bytesPerSecond;
}

/**
 * The raw request body as an async iterable of buffers that fails with a Timeout error when no byte
 * arrives for `idleMs`, or when, over `idleMs` of waiting, fewer bytes arrive than the request's minimum
 * rate asks (a body that trickles a byte at a time would hold its connection for ever), and with
 * NetworkProtocol when the client goes away mid-body.
 */
export async function* withIdleTimeout(req: FastifyRequest, idleMs: number): AsyncGenerator<Buffer> {
  const raw = req.raw;
  const minRate = (raw as WithRate)[MINIMUM_RATE] ?? 0;
  // Time spent waiting for the peer (finished waits) and bytes received, then the same at the start of
  // the current rate window.
  let waited = 0;
  let received = 0;
  let windowWaited = 0;
  let windowBytes = 0;
  // Not destroyed when the consumer stops early: a refused body is then read to its end and dropped
  // (discardRest), so that the client reads the refusal instead of a reset connection.
  const it = raw.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>;
  // One watchdog per body rather than a timer per piece: a slow link delivers a body in thousands of
  // small pieces. Only the wait for the peer counts as silence, not the time the consumer takes. The
  // request is left open when it fires, so that the 408 can still be answered.
  let last = performance.now();
  let giveUp: ((e: XferError) => void) | undefined;
  const watchdog = setInterval(
    () => {
      if (giveUp && performance.now() - last >= idleMs) {
        giveUp(new XferError('Timeout', `no data received for ${Math.round(idleMs / 1000)} s`, { httpStatus: 408 }));
      } else if (giveUp && minRate > 0) {
        const w = waited + performance.now() - last;
        if (w - windowWaited >= idleMs) {
          if (received - windowBytes < (minRate * (w - windowWaited)) / 1000) {
            giveUp(
              new XferError('Timeout', `the body arrives at less than ${minRate} bytes/s (HttpRequestMinimumRate)`, { httpStatus: 408 }),
            );
          } else {
            windowWaited = w;
            windowBytes = received;
          }
        }
      }
    },
    Math.max(10, Math.min(idleMs / 4, 1000)),
  );
  try {
    for (;;) {
      const next = it.next();
      // When the watchdog wins, this read stays pending until the connection closes; never let it go unhandled.
      next.catch(() => undefined);
      last = performance.now();
      let r: IteratorResult<Buffer>;
      try {
        r = await new Promise<IteratorResult<Buffer>>((resolve, reject) => {
          giveUp = reject;
          next.then(resolve, reject);
        });
      } catch (e) {
        if (e instanceof XferError) throw e;
        throw new XferError('NetworkProtocol', 'the request body was cut short', { cause: e });
      } finally {
        giveUp = undefined;
        waited += performance.now() - last;
      }
      if (r.done) break;
      received += r.value.length;
      yield r.value;
    }
  } finally {
    clearInterval(watchdog);
    // Lets go of the body (its listeners) without destroying it; a read still pending (the watchdog
    // fired) ends with the connection.
    it.return?.().catch(() => undefined);
  }
  if (!raw.complete) throw new XferError('NetworkProtocol', 'the client closed the connection mid-body');
}

/**
 * Most bytes of a refused body read and dropped after the answer, and for how long; past either, the
 * connection is closed. A client that reads an early answer (undici, curl) stops sending at once.
 */
export const DISCARD_LIMIT_BYTES = 64 * 1024 * 1024;
const DISCARD_LIMIT_MS = 30_000;

/**
 * Reads the rest of a body that was refused before its end and drops it, so that the connection can
 * carry the answer and then the next request. Closing it instead, with the client's bytes still
 * arriving, makes the kernel reset it, and the client (or a proxy between) may lose the answer: a
 * bucket refused for its checksum (to be sent again) would then look like a broken connection. Answers
 * false when the body cannot be read any more (the connection is gone).
 */
function discardRest(raw: IncomingMessage): boolean {
  const socket = raw.socket as IncomingMessage['socket'] | null;
  if (raw.complete || raw.destroyed || !socket || socket.destroyed) return false;
  let bytes = 0;
  const giveUp = () => {
    done();
    socket.destroy();
  };
  const timer = setTimeout(giveUp, DISCARD_LIMIT_MS);
  timer.unref();
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > DISCARD_LIMIT_BYTES) giveUp();
  };
  const done = () => {
    clearTimeout(timer);
    raw.off('data', onData);
  };
  raw.on('data', onData);
  raw.once('end', done);
  raw.once('close', done);
  // A client that goes away meanwhile is no failure of ours.
  raw.on('error', done);
  raw.resume();
  return true;
}

/** Query-string flag as Orthanc reads it: present (any value but "false" / "0") means true. */
export function flag(query: unknown, name: string): boolean {
  if (query === null || typeof query !== 'object') return false;
  const v = (query as Record<string, unknown>)[name];
  if (v === undefined) return false;
  const s = Array.isArray(v) ? String(v[0]) : String(v);
  return s !== 'false' && s !== '0';
}

/** Non-negative integer query parameter, or `fallback` when absent; 400 when malformed. */
export function intParam(query: unknown, name: string, fallback: number): number {
  if (query === null || typeof query !== 'object') return fallback;
  const v = (query as Record<string, unknown>)[name];
  if (v === undefined || v === '') return fallback;
  const s = Array.isArray(v) ? String(v[0]) : String(v);
  if (!/^\d{1,15}$/.test(s)) throw new XferError('BadParameterType', `"${name}" must be a non-negative integer`);
  return Number(s);
}

/**
 * Installs the handlers that turn any failure into Orthanc's JSON error shape. A request that no route
 * matches goes to `fallback()` when it returns a handler (e.g. the proxy to Orthanc), else it is a 404.
 */
export function installErrorHandlers(app: FastifyInstance, fallback?: () => Handler | undefined): void {
  app.setErrorHandler((error, req, reply) => {
    let err: XferError;
    if (error instanceof XferError) err = error;
    else {
      const e = error as { statusCode?: number; code?: string; message?: string };
      if (e.statusCode === 413) err = new XferError('BadRequest', e.message, { httpStatus: 413 });
      else if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
        err = new XferError('BadRequest', e.message, { httpStatus: e.statusCode });
      } else {
        err = toXferError(error);
        req.log.error({ err: error, url: req.url }, 'unexpected error');
      }
    }
    if (err.http >= 500) req.log.warn({ code: err.code, details: err.details, url: req.url }, 'request failed');
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy();
      return;
    }
    // A body not read to its end must not be left on the connection: the rest is read and dropped
    // (bounded), except after a silence (408) or for a body too large (413), where the connection closes.
    if (!req.raw.complete && (err.http === 408 || err.http === 413 || !discardRest(req.raw))) reply.header('Connection', 'close');
    sendError(req, reply, err);
  });
  app.setNotFoundHandler(async (req, reply) => {
    const handler = fallback?.();
    if (handler) return handler(req, reply);
    return sendError(req, reply, new XferError('UnknownResource', `no route for ${req.method} ${req.url.split('?')[0]}`));
  });
}
