// The HTTP application of a dicom-xfer node: security (loopback unless remote access is allowed,
// HTTP Basic authentication, HTTPS), Orthanc's JSON errors, and the routes of every module.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { XferError } from '../errors.ts';
import { EmbeddedStore } from '../store/embedded/store.ts';
import type { Store } from '../store/types.ts';
import type { Config } from '../config/types.ts';
import { VERSION } from '../version.ts';
import { capabilitiesDocument } from '../transfer/capabilities.ts';
import { installErrorHandlers, route, sendError, sendJson, type Handler, type RouteInfo } from './http.ts';
import { answerClientError, answerFrameworkError, edgeHook, ignoreUnknownExpectations, limitConnections, unreadBodyHook } from './edge.ts';
import { registerFind } from './find.ts';
import { registerOrthancApi, uploadLimitsOf } from './orthanc-api.ts';

/** What every module of a node shares: its configuration, store, logger and identity. */
export interface NodeContext {
  config: Config;
  /** The store of the node: the embedded store or an Orthanc; see embeddedApiOf for the embedded-only API. */
  store: Store;
  logger: Logger;
  /** This node's random UUID, new at every start (the plugin's "Originator"). */
  originator: string;
  /** Seconds without a byte after which a request body is abandoned. */
  httpTimeoutSeconds: number;
}

/** The core routes whose JSON answer a module may amend. */
export type CorePath = '/system' | '/plugins' | '/plugins/transfers';

/** What a module may change beyond its own routes. */
export interface ModuleHooks {
  /** Answers every request that no route matches (the proxy to Orthanc); one module at most. */
  setFallback(handler: Handler): void;
  /** Rewrites the JSON value a core route answers (e.g. Orthanc's plugins beside "transfers"). */
  amend(path: CorePath, fn: (value: unknown, req: FastifyRequest) => Promise<unknown>): void;
}

/** A module adds its routes (through `route()`, recording them in `routes`) and may return a closer. */
export type NodeModule = (
  app: FastifyInstance,
  ctx: NodeContext,
  routes: RouteInfo[],
  hooks: ModuleHooks,
) => void | (() => Promise<void>) | Promise<void | (() => Promise<void>)>;

export interface AppOptions {
  ctx: NodeContext;
  /** PEM text holding the certificate and its private key, when HTTPS is on. */
  sslPem?: string | undefined;
  /** Modules registered after the core API, in order. */
  modules?: NodeModule[];
}

export interface App {
  fastify: FastifyInstance;
  /** Every route registered, with its methods. */
  routes: RouteInfo[];
  /** Stops the modules (jobs, transactions...) after the HTTP server closed. */
  closeModules(): Promise<void>;
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

/** The embedded store's own API (resources in Orthanc's shapes), when the node's store is the embedded one. */
export function embeddedApiOf(store: Store): EmbeddedStore | undefined {
  return store.features.resourceApi && store instanceof EmbeddedStore ? store : undefined;
}

export async function buildApp(opts: AppOptions): Promise<App> {
  const routes: RouteInfo[] = [];
  const { ctx } = opts;
  const { config } = ctx;
  // The HTTPS option and pino's Logger type make Fastify infer a narrower instance type than the one the
  // route modules take; they only use the common API, so widen it once here.
  const fastify = Fastify({
    loggerInstance: ctx.logger as FastifyBaseLogger,
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
  limitConnections(fastify.server, config.HttpMaxConnections);
  // Bodies are read by the routes themselves, as streams, whatever their Content-Type.
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
  let fallback: Handler | undefined;
  const amenders = new Map<CorePath, (value: unknown, req: FastifyRequest) => Promise<unknown>>();
  const hooks: ModuleHooks = {
    setFallback(handler) {
      if (fallback) throw new Error('a fallback handler is already set');
      fallback = handler;
    },
    amend(path, fn) {
      if (amenders.has(path)) throw new Error(`${path} is already amended`);
      amenders.set(path, fn);
    },
  };
  /** The answer of a core route, after the module that amends it (if any). */
  const core = async (path: CorePath, value: unknown, req: FastifyRequest): Promise<unknown> => {
    const fn = amenders.get(path);
    return fn ? fn(value, req) : value;
  };
  installErrorHandlers(fastify, () => fallback);

  fastify.addHook(
    'onRequest',
    edgeHook({
      authenticationEnabled: config.AuthenticationEnabled,
      allowedHosts: config.HttpAllowedHosts,
      bindHost: config.HttpHost,
      maxConnections: config.HttpMaxConnections,
      minimumRate: config.HttpRequestMinimumRate,
      idleMs: ctx.httpTimeoutSeconds * 1000,
    }),
  );
  fastify.addHook('onResponse', unreadBodyHook({ idleMs: ctx.httpTimeoutSeconds * 1000 }));
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

  route(
    fastify,
    '/system',
    {
      GET: async (req, reply) =>
        sendJson(reply, await core('/system', {
          ApiVersion: 16,
          CheckRevisions: false,
          DatabaseBackendPlugin: null,
          DatabaseVersion: 6,
          DicomAet: 'DICOMXFER',
          DicomPort: 0,
          DicomXferVersion: VERSION,
          HttpPort: config.HttpPort,
          // As Orthanc: insecure only when anyone who reaches the port gets in without credentials.
          IsHttpServerSecure: !config.RemoteAccessAllowed || config.AuthenticationEnabled,
          Name: config.Name,
          PluginsEnabled: true,
          StorageAreaPlugin: null,
          Version: '1.10.1',
        }, req)),
    },
    routes,
  );
  route(fastify, '/plugins', { GET: async (req, reply) => sendJson(reply, await core('/plugins', ['transfers'], req)) }, routes);
  route(
    fastify,
    '/plugins/transfers',
    {
      GET: async (req, reply) =>
        sendJson(reply, await core('/plugins/transfers', {
          // The extensions this node lists (as GET /transfers/capabilities); an Orthanc has no such key.
          Capabilities: capabilitiesDocument(config),
          Description: 'dicom-xfer: accelerated, resumable DICOM transfers, wire-compatible with the Transfers Accelerator',
          ExtendsOrthancExplorer: false,
          ID: 'transfers',
          Version: VERSION,
        }, req)),
    },
    routes,
  );

  // Orthanc's resource REST API is answered by the embedded store only (features.resourceApi).
  const embedded = embeddedApiOf(ctx.store);
  if (embedded) registerOrthancApi(fastify, { store: embedded, httpTimeoutSeconds: ctx.httpTimeoutSeconds, uploadLimits: uploadLimitsOf(config), routes });
  // Finding resources works on both stores (the Orthanc one answers it itself).
  registerFind(fastify, ctx.store, routes);
  const closers: (() => Promise<void>)[] = [];
  for (const m of opts.modules ?? []) {
    const closer = await m(fastify, ctx, routes, hooks);
    if (closer) closers.push(closer);
  }
  return {
    fastify,
    routes,
    async closeModules() {
      for (const c of closers.reverse()) await c();
    },
  };
}
