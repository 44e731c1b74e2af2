// What the HTTP server of a node decides before any route runs: Expect headers ignored as Orthanc ignores
// them, requests refused by the HTTP parser answered in Orthanc's JSON error shape, a bound on connections,
// Host names checked against DNS rebinding, and cross-site state changes from browsers refused (CSRF).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { Server as TlsServer } from 'node:tls';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { XferError, errorBody } from '../errors.ts';
import { sendError, setMinimumRate } from './http.ts';

/** What the edge needs to know of the node's configuration. */
export interface EdgeOptions {
  /** Without authentication, Host must name this node: loopback names, IP literals, the bound address, the machine's name or these. */
  authenticationEnabled: boolean;
  /** HttpAllowedHosts: host names accepted beside those; "*" accepts any. */
  allowedHosts: readonly string[];
  /** The address the server listens on (HttpHost). */
  bindHost: string;
  /** HttpMaxConnections: connections served at once; 0 = no bound. */
  maxConnections: number;
  /** HttpRequestMinimumRate, in bytes per second; 0 = none. */
  minimumRate: number;
  /** Milliseconds (HttpTimeout) the rest of a body that no route reads may take after the answer. */
  idleMs: number;
}

// ---- Expect --------------------------------------------------------------------------------------------

/**
 * Node answers 417 to any `Expect` but `100-continue`. Orthanc ignores the header, and some clients send
 * it empty on every POST and PUT (Python's httplib2): such requests take the ordinary path instead.
 */
export function ignoreUnknownExpectations(server: Server): void {
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    server.emit('request', req, res);
  });
}

// ---- errors of the HTTP parser ---------------------------------------------------------------------------

/** Method and target of a request line the parser gave up on, as far as they can be read. */
function requestLineOf(raw: unknown): { method: string; uri: string } {
  if (!Buffer.isBuffer(raw)) return { method: '', uri: '' };
  const line = raw.subarray(0, 8192).toString('latin1').split('\r\n')[0] ?? '';
  const m = /^([A-Z]{1,20}) (\S{1,4096})/.exec(line);
  if (!m) return { method: '', uri: '' };
  // Printable ASCII only: the target is echoed in the answer.
  return { method: m[1] ?? '', uri: (m[2] ?? '').split('?')[0]?.replace(/[^\x21-\x7e]/g, '') ?? '' };
}

/**
 * Answers a request the HTTP parser refused (headers too large, a malformed request line, headers that
 * took too long) with Orthanc's JSON error, then closes the connection. Fastify's clientErrorHandler.
 */
export function answerClientError(err: NodeJS.ErrnoException & { rawPacket?: unknown }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  let status = 400;
  let code: ConstructorParameters<typeof XferError>[0] = 'BadRequest';
  let details = 'the request cannot be parsed as HTTP';
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    details = 'the request line and headers are too large';
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    code = 'Timeout';
    details = 'the request headers did not arrive in time';
  } else if (err.code === 'HPE_INVALID_URL') {
    code = 'UriSyntax';
    details = 'the request target is not a valid URI';
  }
  const { method, uri } = requestLineOf(err.rawPacket);
  const body = `${JSON.stringify(errorBody(new XferError(code, details, { httpStatus: status }), method, uri), null, 3)}\n`;
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status] ?? 'Error';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Fastify's frameworkErrors: a URL it cannot decode (`/%zz`) and the like, in Orthanc's shape. */
export function answerFrameworkError(error: Error & { code?: string }, req: FastifyRequest, reply: FastifyReply): void {
  const err =
    error.code === 'FST_ERR_BAD_URL'
      ? new XferError('UriSyntax', 'the request target is not a valid URI')
      : new XferError('BadRequest', error.message);
  sendError(req, reply, err);
}

// ---- connections -----------------------------------------------------------------------------------------

/** Connections accepted past the bound: their requests are answered 503 and they are closed. */
const overflow = new WeakSet<Socket>();

/**
 * Bounds the connections served at once. Past `max`, a new connection is still read, so that its
 * request gets a clean 503 in Orthanc's shape (with Retry-After) before it is closed; past twice `max`,
 * new connections are closed as soon as they are accepted, so that sockets stay bounded whatever clients do.
 */
export function limitConnections(server: Server, max: number): void {
  if (max <= 0) return;
  let open = 0;
  server.maxConnections = 2 * max;
  // Over HTTPS, requests arrive on the TLS socket made once the handshake is done, not on the TCP one.
  const event = server instanceof TlsServer ? 'secureConnection' : 'connection';
  server.on(event, (socket: Socket) => {
    open++;
    if (open > max) overflow.add(socket);
    socket.once('close', () => open--);
  });
}

// ---- Host and cross-site requests ------------------------------------------------------------------------

/** A Content-Type that fastify can read; any other is set aside so that the body still reaches its route. */
const MEDIA_TYPE = /^\s*[\w!#$%&'*+.^`|~-]+\/[\w!#$%&'*+.^`|~-]+\s*(?:;.*)?$/s;
const ORIGINAL_CONTENT_TYPE = Symbol('dicom-xfer.originalContentType');
type WithOriginal = IncomingMessage & { [ORIGINAL_CONTENT_TYPE]?: string };

/** The Content-Type the client sent, when the edge replaced it (see MEDIA_TYPE); the proxy passes it on. */
export function originalContentType(raw: IncomingMessage): string | undefined {
  return (raw as WithOriginal)[ORIGINAL_CONTENT_TYPE];
}

/** The host name of a Host header, lowercase, without its port or the brackets of an IPv6 address. */
export function hostNameOf(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.indexOf(':');
  return colon >= 0 && h.indexOf(':', colon + 1) < 0 ? h.slice(0, colon) : h;
}

/**
 * Whether a Host header may be served by a node without authentication. A page of another site can reach
 * a loopback node under its own name once its DNS answers 127.0.0.1 (DNS rebinding), and read the answers
 * as its own: only names that are this node's are served. An IP address is always this node's from the
 * browser's point of view (no other site has that origin), so IP literals need no listing.
 */
export function hostAllowed(host: string | undefined, opts: Pick<EdgeOptions, 'allowedHosts' | 'bindHost'>): boolean {
  if (host === undefined) return true; // HTTP/1.0 without Host: not a browser
  const name = hostNameOf(host);
  if (name === 'localhost' || name.endsWith('.localhost') || isIP(name) !== 0) return true;
  if (name === opts.bindHost.toLowerCase()) return true;
  // This machine's own name (Debian maps it to 127.0.1.1): no other site can own it.
  const self = hostname().toLowerCase();
  if (name === self || name === self.split('.')[0]) return true;
  return opts.allowedHosts.some((h) => h === '*' || h.toLowerCase() === name);
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The method a request acts with: Orthanc honours `?_method=` and X-HTTP-Method-Override. */
function effectiveMethod(req: FastifyRequest): string {
  const q = req.query as Record<string, unknown> | undefined;
  const over = q?.['_method'] ?? req.headers['x-http-method-override'];
  const v = Array.isArray(over) ? over[0] : over;
  return typeof v === 'string' && v !== '' ? v.toUpperCase() : req.method;
}

/**
 * Whether `url` (an Origin or a Referer) names this node: the host the request was sent to, the one a
 * reverse proxy says it received (X-Forwarded-Host: a page of another site cannot add that header without
 * a CORS preflight, which this node never grants), or a name listed in HttpAllowedHosts.
 */
function sameOrigin(url: string, req: FastifyRequest, allowedHosts: readonly string[]): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
  const forwarded = req.headers['x-forwarded-host'];
  const hosts = [req.headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',') : [])];
  for (const h of hosts) {
    if (!h?.trim()) continue;
    try {
      if (new URL(`${u.protocol}//${h.trim()}`).host === u.host) return true;
    } catch {
      // a malformed header names nothing
    }
  }
  const name = hostNameOf(u.host);
  return allowedHosts.some((h) => h !== '*' && h.toLowerCase() === name);
}

/**
 * Why a request is a cross-site state change from a browser, or undefined when it is not. Browsers name
 * the page that made a request (Origin on every POST, Sec-Fetch-Site, Referer for older ones); other
 * clients (Orthanc, curl, scripts, peers) name none and are served whatever their Content-Type.
 */
export function crossSiteReason(req: FastifyRequest, allowedHosts: readonly string[] = []): string | undefined {
  if (SAFE_METHODS.has(effectiveMethod(req))) return undefined;
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return `a page of another origin (Sec-Fetch-Site: ${site})`;
  const origin = req.headers.origin;
  if (origin !== undefined) {
    return sameOrigin(origin, req, allowedHosts) ? undefined : `a page of another origin (Origin: ${origin.slice(0, 200)})`;
  }
  const referer = req.headers.referer;
  if (referer !== undefined && site === undefined && !sameOrigin(referer, req, allowedHosts)) return 'a page of another origin (Referer)';
  return undefined;
}

/**
 * The first hook of every request: the connection bound, the Content-Type set aside when fastify cannot
 * read it, the body's minimum rate, then Host and cross-site checks. Refusals are thrown, so that the error
 * handler answers them (and reads and drops a body already on its way).
 */
export function edgeHook(opts: EdgeOptions): (req: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return async (req, reply) => {
    if (overflow.has(req.raw.socket)) {
      reply.header('Connection', 'close').header('Retry-After', '5');
      throw new XferError(
        'NetworkProtocol',
        `this node serves at most ${opts.maxConnections} connections at once (HttpMaxConnections); try again later`,
        {
          httpStatus: 503,
        },
      );
    }
    const ct = req.headers['content-type'];
    if (ct !== undefined && !MEDIA_TYPE.test(ct)) {
      (req.raw as WithOriginal)[ORIGINAL_CONTENT_TYPE] = ct;
      req.raw.headers['content-type'] = 'application/octet-stream';
    }
    if (opts.minimumRate > 0) setMinimumRate(req.raw, opts.minimumRate);
    if (!opts.authenticationEnabled && !hostAllowed(req.headers.host, opts)) {
      throw new XferError(
        'ForbiddenAccess',
        `the host name "${hostNameOf(req.headers.host ?? '').slice(0, 200)}" is not this node's: list it in HttpAllowedHosts (a ` +
          `protection against DNS rebinding when authentication is off)`,
      );
    }
    const why = crossSiteReason(req, opts.allowedHosts);
    if (why !== undefined) {
      throw new XferError('ForbiddenAccess', `cross-site request refused: ${req.method} from ${why} may not change this node`);
    }
  };
}

/**
 * After the answer, the rest of a body that the route did not read (a GET with a body, a refusal) is read
 * and dropped by Node to keep the connection; a body that trickles would hold it for ever. It gets
 * `idleMs` to end, then the connection is closed.
 */
export function unreadBodyHook(opts: Pick<EdgeOptions, 'idleMs'>): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    const raw = req.raw;
    if (raw.complete || raw.destroyed) return;
    const timer = setTimeout(() => {
      if (!raw.complete) raw.socket?.destroy();
    }, opts.idleMs);
    timer.unref();
    const done = () => clearTimeout(timer);
    raw.once('end', done);
    raw.once('close', done);
  };
}
