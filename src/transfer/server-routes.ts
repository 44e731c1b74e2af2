// The server side of the transfers protocol: /transfers/lookup, /transfers/chunks/...
// (data source in pull mode) and the four push-receiver routes, each answering 405 + Allow for other
// methods, with Orthanc's error JSON for every failure. With Transfers.Extensions, also the extension
// routes and headers of capabilities.ts: /transfers/capabilities, /transfers/have,
// /transfers/push/{tx}/buckets and /state, x-dicom-xfer-crc32 on PUTs and chunk answers, and the
// asynchronous commit.
import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { XferError } from '../errors.ts';
import { parseChunkIds, parseChunkQuery } from '../protocol/chunk-url.ts';
import { INSTANCE_ID, parseLookupRequest, parseWire, refuseUnlistedZstd, toWireLookupAnswer } from '../protocol/wire.ts';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { intParam, readJson, route, sendJson, withIdleTimeout, type RouteInfo } from '../server/http.ts';
import type { Store } from '../store/types.ts';
import { RESOURCES_JSON_BODY, createBodyLimit } from '../server/json-body.ts';
import {
  CAPABILITIES_PATH,
  CRC32_MEMBER,
  HEADER_ASYNC_COMMIT,
  HEADER_CRC32,
  HEADER_RECEIVED,
  HEADER_WANT_CRC32,
  capabilitiesDocument,
  extensionsEnabled,
  zstdListed,
} from './capabilities.ts';
import { ChunkServer } from './chunk-server.ts';
import type { InFlight } from './in-flight.ts';
import { lookupInstances } from './lookup.ts';
import type { PushTransactionState } from './push-state/types.ts';
import { PushReceiver } from './receiver.ts';
import type { ArrivalSink } from '../routing/arrivals.ts';
import { basicUser, type RequestSender } from '../routing/origin.ts';

/** The state of a node's transfers server: push transactions and the chunk answers in progress. */
export interface TransfersServer {
  receiver: PushReceiver;
  chunks: ChunkServer;
  /** Stops the expiry timer and waits for commits and removals in progress. */
  close(): Promise<void>;
}

export interface TransfersServerOptions {
  config: Config;
  store: Store;
  logger: Logger;
  /** The node's one budget of requests and bytes in flight, which the chunk answers share with the jobs. */
  inFlight: InFlight;
  /** Told of what each push commit stored (routing), and how to name the peer that sent it. */
  arrivals?: ArrivalSink;
  senderPeer?: (sender: RequestSender) => Promise<string>;
  /** Where the push transactions' state is kept; files beside the staging when absent. */
  pushState?: PushTransactionState;
}

/** Opens the push receiver (reloading the transactions an earlier run kept on disk) and the chunk server. */
export async function openTransfersServer(opts: TransfersServerOptions): Promise<TransfersServer> {
  const { config, store } = opts;
  const receiver = await PushReceiver.open({
    store,
    maxTransactions: config.Transfers.MaxPushTransactions,
    maxTransactionsMemory: config.Transfers.PushTransactionsMemory * 1024 * 1024,
    idleTimeoutSeconds: config.Transfers.IdleTransactionTimeout,
    idleBeforeEvictionSeconds: config.Transfers.IdleBeforeEviction,
    admissionWaitMs: config.Transfers.PushAdmissionWait * 1000,
    maxInstances: config.Transfers.MaxPushInstances,
    zstd: zstdListed(config),
    logger: opts.logger.child({ module: 'transfers-server' }),
    ...(opts.arrivals ? { arrivals: opts.arrivals } : {}),
    ...(opts.senderPeer ? { senderPeer: opts.senderPeer } : {}),
    ...(opts.pushState ? { state: opts.pushState } : {}),
  });
  const chunks = new ChunkServer(store, Math.max(config.Transfers.Threads, config.Transfers.MaxThreads), opts.inFlight);
  return {
    receiver,
    chunks,
    async close() {
      chunks.close();
      await receiver.close();
    },
  };
}

/** What the transfers routes answer from. */
export interface TransfersRouteDeps {
  config: Config;
  store: Store;
  server: Pick<TransfersServer, 'receiver' | 'chunks'>;
  /** This node's random UUID (the plugin's "Originator"). */
  originator: string;
  /** Seconds without a byte after which a request body is abandoned. */
  httpTimeoutSeconds: number;
  /** Paces a chunk answer by the node's bandwidth policy (none: sent as fast as it goes). */
  paceServed?: ((body: Readable, signal: AbortSignal) => Readable) | undefined;
}

/** Most instances one `POST /transfers/have` may ask about (a sender asks in batches). */
export const MAX_HAVE_BATCH = 100_000;

/** Body of `POST /transfers/have`: the instances a sender is about to send. */
const HaveRequestSchema = z.array(z.object({ ID: z.string().regex(INSTANCE_ID), MD5: z.string() })).max(MAX_HAVE_BATCH);

/** A request header's single value, if any. */
function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Route parameters as Orthanc's route regexes accept them; anything else does not match (404). */
const TX_PARAM = /^[.0-9a-f-]+$/;
const INDEX_PARAM = /^[0-9]+$/;
/** A span of buckets, `first-last` (extension bucket-span). */
const SPAN_PARAM = /^([0-9]+)-([0-9]+)$/;

function param(req: FastifyRequest, name: string): string {
  const v = (req.params as Record<string, string | undefined>)[name];
  return v ?? '';
}

function txParam(req: FastifyRequest): string {
  const tx = param(req, 'tx');
  if (!TX_PARAM.test(tx)) throw new XferError('UnknownResource', `no push transaction ${tx}`);
  return tx;
}

/** The raw query string of a request (after '?'), as sent. */
function rawQuery(req: FastifyRequest): string {
  const url = req.raw.url ?? '';
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
}

/**
 * Registers the transfers routes: those of a data source (lookup, chunks), of a push receiver, and with
 * Transfers.Extensions the extension routes. Transfers.Extensions false: this node answers exactly as an
 * Orthanc with the plugin (no extension route, extension headers ignored).
 */
export function registerTransfersServerRoutes(app: FastifyInstance, deps: TransfersRouteDeps, routes: RouteInfo[]): void {
  const ext = extensionsEnabled(deps.config);
  registerSourceRoutes(app, deps, ext, routes);
  registerPushRoutes(app, deps, ext, routes);
  if (ext) registerExtensionRoutes(app, deps, routes);
}

/** The data source of pull mode: /transfers/lookup and /transfers/chunks/{ids}. */
function registerSourceRoutes(app: FastifyInstance, deps: TransfersRouteDeps, ext: boolean, routes: RouteInfo[]): void {
  const { store, originator } = deps;
  route(
    app,
    '/transfers/lookup',
    {
      POST: async (req, reply) => {
        const resources = parseLookupRequest(await readJson(req, RESOURCES_JSON_BODY));
        const instances = await lookupInstances(store, resources);
        return sendJson(reply, toWireLookupAnswer(instances, originator));
      },
    },
    routes,
  );
  route(app, '/transfers/chunks/:ids', { GET: chunksHandler(deps.server.chunks, ext, zstdListed(deps.config), deps.paceServed) }, routes);
}

/** GET /transfers/chunks/{ids}: the payload streamed, holding one of the chunk server's slots meanwhile. */
function chunksHandler(chunks: ChunkServer, ext: boolean, zstd: boolean, pace: TransfersRouteDeps['paceServed']) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const ids = parseChunkIds(param(req, 'ids'));
    const query = parseChunkQuery(rawQuery(req));
    refuseUnlistedZstd(query.compression, zstd);
    // Waits for a slot and for the answer's bytes in the node's in-flight budget.
    const answer = await chunks.answer({ ids, ...query });
    const { release } = answer;
    let handedOver = false;
    try {
      // Extension bucket-crc32: the payload's CRC-32, read once ahead of the answer (cheap next to
      // the network), so the answer itself still streams; a gzip answer's own trailer is that CRC-32.
      // A puller of version 1 of the extension wants the hexadecimal form whatever the compression.
      const want = ext ? header(req, HEADER_WANT_CRC32) : undefined;
      if (want === '1' || want === '2') {
        const member = want === '2' && query.compression === 'gzip';
        reply.header(HEADER_CRC32, member ? CRC32_MEMBER : (answer.crc32 ?? (await chunks.crc32(answer.plan))));
      }
      // The slot is held until the answer is fully sent or the client went away.
      reply.raw.once('close', release);
      handedOver = true;
      reply.code(200).header('Content-Type', answer.contentType);
      if (answer.length !== undefined) reply.header('Content-Length', String(answer.length));
      if (!pace) return reply.send(answer.stream);
      const gone = new AbortController();
      reply.raw.once('close', () => gone.abort(new XferError('NetworkProtocol', 'the client closed the connection')));
      return reply.send(pace(answer.stream, gone.signal));
    } finally {
      if (!handedOver) release();
    }
  };
}

/** The four routes of a push receiver: create, DELETE, PUT a bucket (or a span), commit. */
function registerPushRoutes(app: FastifyInstance, deps: TransfersRouteDeps, ext: boolean, routes: RouteInfo[]): void {
  const { receiver } = deps.server;
  const createLimit = createBodyLimit(deps.config.Transfers.MaxPushInstances);
  const idleMs = deps.httpTimeoutSeconds * 1000;
  route(
    app,
    '/transfers/push',
    {
      POST: async (req, reply) => {
        // Sized from the instances a transaction may hold: a larger create is refused before it is read.
        const body = await readJson(req, createLimit);
        return sendJson(reply, await receiver.create(body));
      },
    },
    routes,
  );
  route(
    app,
    '/transfers/push/:tx',
    {
      DELETE: async (req, reply) => {
        await receiver.discard(txParam(req));
        return sendJson(reply, {});
      },
    },
    routes,
  );
  route(app, '/transfers/push/:tx/:index', { PUT: putBucketHandler(receiver, ext, idleMs) }, routes);
  route(
    app,
    '/transfers/push/:tx/commit',
    {
      POST: async (req, reply) => {
        // The body is ignored (an Orthanc sender posts none, without Content-Type); drain what came.
        req.raw.resume();
        // Who committed: the origin of what the commit stores (routing's peer:NAME).
        const sender = { remoteIp: req.ip, user: basicUser(req.headers.authorization) };
        if (ext && header(req, HEADER_ASYNC_COMMIT) === '1') return sendJson(reply, await receiver.commitAsync(txParam(req), sender));
        await receiver.commit(txParam(req), sender);
        return sendJson(reply, {});
      },
    },
    routes,
  );
}

/** PUT /transfers/push/{tx}/{index}, or `{first}-{last}` with the extension bucket-span. */
function putBucketHandler(receiver: PushReceiver, ext: boolean, idleMs: number) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const tx = txParam(req);
    const indexText = param(req, 'index');
    // A span "first-last" (extension bucket-span) or one index.
    const span = ext ? SPAN_PARAM.exec(indexText) : null;
    if (!span && !INDEX_PARAM.test(indexText)) throw new XferError('UnknownResource', `no route for PUT ${req.url.split('?')[0]}`);
    // Digits beyond 2^53 become an index that is simply out of range.
    const toIndex = (t: string): number => (t.length > 15 ? Number.MAX_SAFE_INTEGER : Number(t));
    const index = toIndex(span ? (span[1] as string) : indexText);
    const last = span ? toIndex(span[2] as string) : undefined;
    const crc32 = ext ? header(req, HEADER_CRC32) : undefined;
    const received = await receiver.putBucket(tx, index, withIdleTimeout(req, idleMs), { crc32, last });
    if (ext) reply.header(HEADER_RECEIVED, `${received.bytes} ${received.at}`);
    return sendJson(reply, {});
  };
}

/** The extension routes: capabilities, have (dedupe), the buckets held (resume) and a transaction's state. */
function registerExtensionRoutes(app: FastifyInstance, deps: TransfersRouteDeps, routes: RouteInfo[]): void {
  const { config, store } = deps;
  const { receiver } = deps.server;
  route(app, CAPABILITIES_PATH, { GET: async (_req, reply) => sendJson(reply, capabilitiesDocument(config)) }, routes);

  // Extension dedupe: which of these instances this node already stores with the same MD5.
  route(
    app,
    '/transfers/have',
    {
      POST: async (req, reply) => {
        const asked = parseWire(HaveRequestSchema, await readJson(req, RESOURCES_JSON_BODY), 'the body of /transfers/have');
        const found = await store.findInstances([...new Set(asked.map((i) => i.ID))]);
        const held = new Set<string>();
        for (const i of asked) if (found.get(i.ID)?.md5 === i.MD5) held.add(i.ID);
        const ids = [...held].sort();
        return sendJson(reply, { Count: ids.length, Instances: ids });
      },
    },
    routes,
  );

  // Extension resume: the buckets a transaction holds, for a sender that resumes it.
  route(
    app,
    '/transfers/push/:tx/buckets',
    {
      GET: async (req, reply) => {
        const done = receiver.bucketsHeld(txParam(req));
        return sendJson(reply, { Buckets: done, Count: done.length });
      },
    },
    routes,
  );

  // Extension async-commit: where a transaction stands (open, committing, or its commit's outcome).
  // `?wait=N` (seconds, at most 30): answer when a running commit ends, or after N seconds.
  route(
    app,
    '/transfers/push/:tx/state',
    {
      GET: async (req, reply) => {
        const wait = Math.min(30, intParam(req.query, 'wait', 0));
        return sendJson(reply, await receiver.waitState(txParam(req), wait * 1000));
      },
    },
    routes,
  );
}
