// The HTTP framework of a dicom-xfer node: the Fastify instance, its security (loopback unless remote access
// is allowed, HTTP Basic authentication, HTTPS), Orthanc's JSON errors, the fallback handler and the
// amending of JSON answers. No route of its own: the composition root (src/node.ts) registers them.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { XferError } from '../errors.ts';
import { answerClientError, answerFrameworkError, edgeHook, ignoreUnknownExpectations, limitConnections, unreadBodyHook } from './edge.ts';
import { installErrorHandlers, sendError, type Handler, type RouteInfo } from './http.ts';

/** Rewrites the JSON value a route answers (e.g. Orthanc's plugins beside "transfers"). */
export type Amender = (value: unknown, req: FastifyRequest) => Promise<unknown>;

/** What a route set may change beyond its own routes. */
export interface AppHooks {
  /** Answers every request that no route matches (the proxy to Orthanc); one at most. */
  setFallback(handler: Handler): void;
  /** Has `fn` rewrite what the route at `path` answers (through `amended`); one per path. */
  amend(path: string, fn: Amender): void;
}

export interface HttpAppOptions {
  config: Config;
  logger: Logger;
  /** Seconds without a byte after which a request body is abandoned. */
  httpTimeoutSeconds: number;
  /** PEM text holding the certificate and its private key, when HTTPS is on. */
  sslPem?: string | undefined;
}

export interface HttpApp {
  fastify: FastifyInstance;
  /** Every route registered, with its methods. */
  routes: RouteInfo[];
  hooks: AppHooks;
  /** `value` as the amender of `path` rewrites it (unchanged when none). */
  amended(path: string, value: unknown, req: FastifyRequest): Promise<unknown>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Checks an `Authorization: Basic` header against the registered users, in constant time per user. */
export function checkBasicAuth(header: string | undefined, users: Record<string, string>): boolean {
  if (!header || !/^basic /i.test(header)) return false;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const user = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  let ok = false;
  for (const [u, p] of Object.entries(users)) {
    const match = timingSafeEqual(digest(u), digest(user)) && timingSafeEqual(digest(p), digest(password));
    ok = ok || match;
  }
  return ok;
}

/** The Fastify instance with the options every node needs. */
function newFastify(opts: HttpAppOptions): FastifyInstance {
  // The HTTPS option and pino's Logger type make Fastify infer a narrower instance type than the one the
  // route modules take; they only use the common API, so widen it once here.
  const fastify = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    // One log line per failure is written by the error handler; no line per request.
    logController: new LogController({ disableRequestLogging: true }),
    // Bodies are guarded by an idle timeout in the routes; a slow but live bucket must not be cut off.
    requestTimeout: 0,
    routerOptions: {
      // Orthanc peers send `//transfers/...`; chunk URLs list dozens of instance IDs.
      ignoreDuplicateSlashes: true,
      ignoreTrailingSlash: true,
      maxParamLength: 65_536,
    },
    https: opts.sslPem ? { key: opts.sslPem, cert: opts.sslPem } : null,
    keepAliveTimeout: 30_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // Refusals of the HTTP parser and of fastify's URL decoding, in Orthanc's JSON shape (see edge.ts).
    clientErrorHandler: answerClientError,
    frameworkErrors: answerFrameworkError,
  }) as unknown as FastifyInstance;
  ignoreUnknownExpectations(fastify.server);
  limitConnections(fastify.server, opts.config.HttpMaxConnections);
  // Bodies are read by the routes themselves, as streams, whatever their Content-Type.
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
  return fastify;
}

/** The hooks every request passes: Host and CSRF checks, remote access, Basic authentication. */
function installSecurity(fastify: FastifyInstance, config: Config, idleMs: number): void {
  fastify.addHook(
    'onRequest',
    edgeHook({
      authenticationEnabled: config.AuthenticationEnabled,
      allowedHosts: config.HttpAllowedHosts,
      bindHost: config.HttpHost,
      maxConnections: config.HttpMaxConnections,
      minimumRate: config.HttpRequestMinimumRate,
      idleMs,
    }),
  );
  fastify.addHook('onResponse', unreadBodyHook({ idleMs }));
  fastify.addHook('onRequest', async (req, reply) => {
    const remote = req.socket.remoteAddress ?? '';
    if (!config.RemoteAccessAllowed && !LOOPBACK.test(remote)) {
      sendError(req, reply, new XferError('ForbiddenAccess', 'remote access is not allowed (RemoteAccessAllowed)'));
      return reply;
    }
    if (config.AuthenticationEnabled && !checkBasicAuth(req.headers.authorization, config.RegisteredUsers)) {
      reply.header('WWW-Authenticate', `Basic realm="${config.Name.replace(/"/g, '')}"`);
      sendError(req, reply, new XferError('Unauthorized', 'this node requires HTTP Basic credentials'));
      return reply;
    }
    return undefined;
  });
}

/** A Fastify instance with the node's security and error handling, and no route yet. */
export function createHttpApp(opts: HttpAppOptions): HttpApp {
  const fastify = newFastify(opts);
  let fallback: Handler | undefined;
  const amenders = new Map<string, Amender>();
  const hooks: AppHooks = {
    setFallback(handler) {
      if (fallback) throw new Error('a fallback handler is already set');
      fallback = handler;
    },
    amend(path, fn) {
      if (amenders.has(path)) throw new Error(`${path} is already amended`);
      amenders.set(path, fn);
    },
  };
  installErrorHandlers(fastify, () => fallback);
  installSecurity(fastify, opts.config, opts.httpTimeoutSeconds * 1000);
  return {
    fastify,
    routes: [],
    hooks,
    async amended(path, value, req) {
      const fn = amenders.get(path);
      return fn ? fn(value, req) : value;
    },
  };
}
