// Forwards requests of a dicom-xfer node to the Orthanc behind its Orthanc store: any method and path, the
// query string kept, bodies streamed both ways with backpressure (memory stays flat for a 1 GB upload or
// download), hop-by-hop headers dropped, redirects rewritten to the node's address, credentials chosen
// as the node's authentication requires. Orthanc down answers 502 in Orthanc's JSON error shape. The
// connection to Orthanc (pool, TLS, timeouts) and the mapping of its failures are the HTTP layer's.
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { XferError } from '../errors.ts';
import { readBounded } from '../http/body.ts';
import { type EndpointResponse, HttpEndpoint } from '../http/endpoint.ts';
import { HttpError, type TransportFailure, transportError } from '../http/errors.ts';
import { originalContentType } from '../server/edge.ts';
import { withIdleTimeout } from '../server/http.ts';

export interface ForwarderOptions {
  /** Base URL of Orthanc's REST API (a path prefix such as `https://h/orthanc/` is kept). */
  url: string;
  /** The credentials configured for Orthanc (OrthancStore.Username / Password). */
  username?: string | undefined;
  password?: string | undefined;
  /**
   * Whether the client's own `Authorization` header goes to Orthanc unchanged (the proxy, when the node
   * has no authentication of its own). Otherwise Orthanc gets the configured credentials, if any.
   */
  passClientAuthorization: boolean;
  /** Milliseconds to wait for Orthanc's answer headers, and the longest silence in its body; 0 = none. */
  timeoutMs: number;
  /** Milliseconds without a byte from the client, inside a request body, before the request is abandoned. */
  clientIdleMs: number;
  /** Scheme of the node's own URL ('https' when SslEnabled), for rewritten redirects. */
  publicScheme: 'http' | 'https';
  /** Most connections open to Orthanc at once. Default 32. */
  connections?: number | undefined;
  /** HttpsVerifyPeers and HttpsCACertificates, for an https:// Orthanc. */
  verifyPeers?: boolean | undefined;
  caFile?: string | undefined;
}

/** Headers that concern one connection only (RFC 9110 §7.6.1), never forwarded in either direction. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Request headers that are not passed on: set by the HTTP client towards Orthanc, or handled here. */
const NOT_FORWARDED = new Set(['host', 'expect', 'authorization', 'content-length']);

/** Largest JSON or text answer of Orthanc read whole (job lists, plugin lists, Orthanc's explorer.js). */
const JSON_LIMIT = 64 * 1024 * 1024;

/** Names listed in a `Connection` header: these are hop-by-hop too. */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const v = headers['connection'];
  const out = new Set<string>();
  for (const part of (Array.isArray(v) ? v.join(',') : (v ?? '')).split(',')) {
    const t = part.trim().toLowerCase();
    if (t) out.add(t);
  }
  return out;
}

/** Whether a request carries a body (RFC 9112 §6.3: Transfer-Encoding, or a Content-Length above 0). */
function hasBody(headers: IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const len = headers['content-length'];
  return len !== undefined && len !== '0';
}

/** Timeouts answer 504, other failures to reach Orthanc 502 (a gateway's statuses). */
function isTimeout(f: TransportFailure): boolean {
  return f === 'timeout' || f === 'connect-timeout';
}

export class OrthancForwarder {
  /** Orthanc's base URL without credentials, for messages. */
  readonly url: string;
  readonly #endpoint: HttpEndpoint;
  readonly #opts: ForwarderOptions;

  constructor(opts: ForwarderOptions) {
    this.#endpoint = new HttpEndpoint({
      url: opts.url,
      username: opts.username,
      password: opts.password,
      connections: opts.connections ?? 32,
      timeoutMs: opts.timeoutMs,
      connectTimeoutMs: 10_000,
      tls: { verifyPeers: opts.verifyPeers ?? true, caFile: opts.caFile },
    });
    this.url = this.#endpoint.url;
    this.#opts = opts;
  }

  /** The `Authorization` header Orthanc gets for a request of this client (undefined: none). */
  authorizationFor(req: FastifyRequest): string | undefined {
    return this.#opts.passClientAuthorization ? req.headers.authorization : this.#endpoint.authorization;
  }

  /**
   * Forwards `req` to Orthanc (at `path`, default the request's own path and query) and streams Orthanc's
   * answer back, whatever its status. Rejects with an XferError (502, or 504 on a timeout) when Orthanc
   * cannot be reached; the error handler then answers in Orthanc's JSON shape.
   */
  async forward(req: FastifyRequest, reply: FastifyReply, path?: string): Promise<FastifyReply> {
    const target = path ?? req.raw.url ?? '/';
    if (!target.startsWith('/')) throw new XferError('UriSyntax', `cannot forward the request target "${target.slice(0, 100)}"`);
    const raw = req.raw.headers;
    const drop = connectionTokens(raw);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(raw)) {
      if (value === undefined || HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name) || drop.has(name)) continue;
      headers[name] = value;
    }
    // A Content-Type that the node's HTTP layer could not read (`nope`) goes on as the client wrote it.
    const contentType = originalContentType(req.raw);
    if (contentType !== undefined) headers['content-type'] = contentType;
    const auth = this.authorizationFor(req);
    if (auth !== undefined) headers['authorization'] = auth;
    // A GET may carry a body too: Orthanc reads it with `?_method=PUT` (its method override).
    const withBody = hasBody(raw) && req.method !== 'HEAD';
    if (withBody && raw['content-length'] !== undefined && raw['transfer-encoding'] === undefined) {
      headers['content-length'] = raw['content-length'];
    }
    // The client going away stops the call to Orthanc too (a download it no longer reads, a slow answer).
    const abort = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort(new XferError('NetworkProtocol', 'the client closed the connection'));
    };
    reply.raw.once('close', onClose);
    let res: EndpointResponse;
    try {
      res = await this.#endpoint.request({
        path: this.#endpoint.prefix + target,
        method: req.method as 'GET',
        headers,
        // Pulled chunk by chunk as Orthanc's socket drains: the upload never piles up in memory.
        body: withBody ? Readable.from(withIdleTimeout(req, this.#opts.clientIdleMs), { objectMode: false }) : null,
        signal: abort.signal,
      });
    } catch (e) {
      reply.raw.off('close', onClose);
      throw this.#transportError(`${req.method} ${target.split('?')[0] ?? ''}`, e);
    }
    if (res.statusCode === 401 && !this.#opts.passClientAuthorization) {
      // The node vouched for the client with its own credentials for Orthanc: Orthanc's refusal is a
      // configuration error of the node, not a question for the client (whose browser would prompt again).
      res.body.resume();
      reply.raw.off('close', onClose);
      const what = `${req.method} ${target.split('?')[0] ?? ''}`;
      throw new HttpError({
        code: 'NetworkProtocol',
        method: req.method,
        url: this.url + target.split('?')[0],
        status: res.statusCode,
        details: `Orthanc at ${this.url} refused the credentials of OrthancStore (Username, Password) for ${what}`,
        httpStatus: 502,
      });
    }
    reply.code(res.statusCode);
    const dropBack = connectionTokens(res.headers);
    for (const [name, value] of Object.entries(res.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || dropBack.has(name)) continue;
      reply.header(name, name === 'location' ? this.#rewriteLocation(String(value), req) : value);
    }
    res.body.once('close', () => reply.raw.off('close', onClose));
    if (req.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304) {
      res.body.resume();
      return reply.send();
    }
    return reply.send(res.body);
  }

  /**
   * GET `path` of Orthanc with this client's credentials and parse the JSON answer; undefined when Orthanc
   * cannot be reached within `timeoutMs` or answers anything but 2xx with JSON (callers then answer
   * without Orthanc's part).
   */
  async getJson(req: FastifyRequest, path: string, timeoutMs: number): Promise<unknown> {
    const text = await this.getText(req, path, timeoutMs);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  }

  /** GET `path` of Orthanc as text (at most 64 MB, within `timeoutMs`); undefined on any failure or non-2xx. */
  async getText(req: FastifyRequest, path: string, timeoutMs: number): Promise<string | undefined> {
    const headers = this.#endpoint.baseHeaders();
    delete headers['authorization'];
    const auth = this.authorizationFor(req);
    if (auth !== undefined) headers['authorization'] = auth;
    try {
      const signal = AbortSignal.timeout(timeoutMs);
      const res = await this.#endpoint.request({ path: this.#endpoint.prefix + path, method: 'GET', headers, signal });
      if (res.statusCode < 200 || res.statusCode >= 300) {
        res.body.resume();
        return undefined;
      }
      return (await readBounded(res.body, JSON_LIMIT)).toString('utf8');
    } catch (e) {
      req.log.debug({ err: e, path }, 'Orthanc did not answer');
      return undefined;
    }
  }

  /**
   * A redirect of Orthanc pointing at Orthanc itself (absolute URL, or a path under its prefix) is made to
   * point at the node; a relative one is kept, as it resolves against the node's URL already.
   */
  #rewriteLocation(location: string, req: FastifyRequest): string {
    const base = this.url;
    const host = req.headers.host;
    if (host && (location === base || location.startsWith(`${base}/`) || location.startsWith(`${base}?`))) {
      return `${this.#opts.publicScheme}://${host}${location.slice(base.length) || '/'}`;
    }
    const prefix = this.#endpoint.prefix;
    if (prefix && location.startsWith(`${prefix}/`)) return location.slice(prefix.length);
    return location;
  }

  #transportError(what: string, e: unknown): XferError {
    return transportError(
      e,
      (info) =>
        isTimeout(info.failure)
          ? `Orthanc at ${this.url} did not answer in time (${what}): ${info.detail}`
          : `Orthanc at ${this.url} cannot be reached (${what}): ${info.detail}`,
      { httpStatus: (f) => (isTimeout(f) ? 504 : 502) },
    );
  }

  /** Lets calls in flight finish, then closes the connections. */
  async close(): Promise<void> {
    await this.#endpoint.close();
  }
}
