// The dashboard: the files of web/ui/ under /ui/, and the few JSON routes the pages need
// beyond the node's REST API (overview, live job events, job history, peers with their extensions, the
// bandwidth policy in force, store search on either store, sending with a choice of push or pull).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { embeddedApiOf } from '../api/orthanc-api.ts';
import type { Config } from '../config/types.ts';
import type { DestinationDirectory } from '../destinations/types.ts';
import { XferError, isXferError } from '../errors.ts';
import type { JobsEngine } from '../jobs/engine.ts';
import type { Throughput } from '../metrics/throughput.ts';
import type { Peers } from '../peers/peers.ts';
import { describePeer } from '../peers/registry.ts';
import { parseTransferQuery, toWireJobHandle, type Resource } from '../protocol/wire.ts';
import { readJson, route, sendJson, type RouteInfo } from '../server/http.ts';
import type { Store } from '../store/types.ts';
import { senderTransferId, type TransferJobQuery } from '../transfer/jobs.ts';
import { startRemotePull } from '../transfer/remote-job.ts';
import { assertLocalResources } from '../transfer/submit-checks.ts';
import { VERSION } from '../version.ts';
import { describeResources, peerGetter, storeGetter, type JobAbout } from './about.ts';
import { bandwidthStatus, type BandwidthView } from './bandwidth.ts';
import { LiveJobs } from './live.ts';
import { searchStudies, studySource, type StudySearch } from './search.ts';
import { securityHeaders, sendUiFile } from './static.ts';

const JOB_ID = /^[0-9a-f-]{1,64}$/;
const DATE = /^[0-9]{8}$/;

/** The configuration as the dashboard shows it: secrets left out, peers as Orthanc describes them. */
export function publicConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  out.RegisteredUsers = Object.fromEntries(Object.keys(config.RegisteredUsers).map((u) => [u, '********']));
  out.OrthancPeers = Object.fromEntries(Object.values(config.OrthancPeers).map((p) => [p.name, describePeer(p)]));
  if (config.OrthancStore) {
    const s = config.OrthancStore;
    const store: Record<string, unknown> = { Url: s.url, Timeout: s.timeout, RangeCacheSize: s.rangeCacheSize, Proxy: s.proxy };
    if (s.username !== undefined) store.Username = s.username;
    out.OrthancStore = store;
  }
  return out;
}

function oneQuery(query: unknown, name: string): string | undefined {
  const v = (query as Record<string, unknown> | undefined)?.[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' && s.trim() !== '' ? s.trim() : undefined;
}

function searchFrom(query: unknown): StudySearch {
  const s: StudySearch = {};
  const q = oneQuery(query, 'q');
  if (q !== undefined) s.text = q;
  for (const k of ['from', 'to'] as const) {
    const v = oneQuery(query, k);
    if (v === undefined) continue;
    const d = v.replace(/-/g, '');
    if (!DATE.test(d)) throw new XferError('BadParameterType', `"${k}" must be a date as YYYYMMDD or YYYY-MM-DD`);
    s[k] = d;
  }
  const modality = oneQuery(query, 'modality');
  if (modality !== undefined) s.modality = modality;
  const limit = oneQuery(query, 'limit');
  if (limit !== undefined) {
    if (!/^[1-9][0-9]{0,2}$/.test(limit)) throw new XferError('BadParameterType', '"limit" must be an integer from 1 to 999');
    s.limit = Number(limit);
  }
  const offset = oneQuery(query, 'offset');
  if (offset !== undefined) {
    if (!/^[0-9]{1,6}$/.test(offset)) throw new XferError('BadParameterType', '"offset" must be a whole number');
    s.offset = Number(offset);
  }
  return s;
}

/**
 * POST /ui/api/send: a push job, or a pull by the peer (send in pull mode: the peer then needs RemoteSelf,
 * the name under which it knows this node). Unlike /transfers/send, a peer with RemoteSelf can be pushed to.
 */
async function send(req: FastifyRequest, deps: UiDeps): Promise<unknown> {
  const { engine, peers } = deps;
  const body = await readJson(req, 16 * 1024 * 1024);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new XferError('BadFileFormat', 'expected a JSON object');
  const { Mode = 'push', ...rest } = body as Record<string, unknown>;
  if (Mode !== 'push' && Mode !== 'pull') throw new XferError('ParameterOutOfRange', 'Mode must be "push" or "pull"');
  const q = parseTransferQuery({ Compression: 'gzip', ...rest });
  const peer = peers.get(q.Peer);
  if (!peer) throw new XferError('UnknownResource', `peer "${q.Peer}" is not configured`);
  await assertLocalResources(deps.store, q.Resources);
  const sender = senderTransferId(q.SenderTransferID);
  if (Mode === 'push') {
    const query: TransferJobQuery = {
      Resources: q.Resources,
      Peer: q.Peer,
      Compression: q.Compression,
      Priority: q.Priority,
      SenderTransferID: sender,
    };
    return toWireJobHandle(engine.submit('PushTransfer', { ...query }, q.Priority));
  }
  const remoteSelf = peer.userProperties.RemoteSelf;
  if (remoteSelf === undefined) {
    throw new XferError(
      'BadRequest',
      `peer "${q.Peer}" cannot pull from this node: its definition has no RemoteSelf (the name under which the peer knows this node)`,
    );
  }
  try {
    return await startRemotePull(deps.config, engine, peers.client(q.Peer), peer.url, deps.originator, remoteSelf, q, sender);
  } catch (e) {
    const why = isXferError(e) ? (e.details ?? e.message) : String(e);
    throw new XferError('NetworkProtocol', `peer "${q.Peer}" could not start the pull: ${why}`);
  }
}

/**
 * What the dashboard shows and acts on, handed in by the composition root: the peers it lists and sends to,
 * the jobs engine, and the node's throughput (when metrics are kept).
 */
export interface UiDeps {
  config: Config;
  store: Store;
  /** The peers: a pull's data is described from its peer, and send in pull mode asks the peer to pull. */
  peers: Peers;
  /** Where this node sends: the peers page lists them with their status. */
  destinations: Pick<DestinationDirectory<unknown>, 'names' | 'statusAll'>;
  engine: JobsEngine;
  throughput?: Throughput | undefined;
  /** This node's random UUID (the plugin's "Originator"). */
  originator: string;
  /** The node's bandwidth policy, on its clock: the peers page shows the limits in force. */
  bandwidth?: BandwidthView | undefined;
}

/** The dashboard: its files, its JSON routes and its live events; the closer ends the event streams. */
export function registerUi(app: FastifyInstance, deps: UiDeps, routes: RouteInfo[]): () => Promise<void> {
  const live = new LiveJobs(deps.engine, deps.throughput);
  // Open event streams would keep the HTTP server from closing.
  app.addHook('preClose', (done) => {
    live.endStreams();
    done();
  });
  registerUiFiles(app, routes);
  registerNodeRoutes(app, deps, routes);
  registerUiJobRoutes(app, deps, live, routes);
  route(app, '/ui/api/peers', { GET: async (_req, reply) => sendJson(reply, await deps.destinations.statusAll()) }, routes);
  const { bandwidth, peers, config } = deps;
  if (bandwidth) {
    const limits = () => peers.names().map((name) => ({ name, rateLimit: peers.get(name)?.rateLimit }));
    route(app, '/ui/api/bandwidth', { GET: async (_req, reply) => sendJson(reply, bandwidthStatus(config, bandwidth, limits())) }, routes);
  }
  route(
    app,
    '/ui/api/studies',
    {
      GET: async (req, reply) => {
        const source = studySource(deps.store);
        if (!source) throw new XferError('NotImplemented', 'this store cannot be searched');
        return sendJson(reply, await searchStudies(source, searchFrom(req.query)));
      },
    },
    routes,
  );
  route(app, '/ui/api/send', { POST: async (req, reply) => sendJson(reply, await send(req, deps)) }, routes);
  return async () => live.close();
}

/** The files of web/ui/ under /ui/. */
function registerUiFiles(app: FastifyInstance, routes: RouteInfo[]): void {
  route(
    app,
    '/ui',
    {
      GET: async (req, reply) => {
        // Relative links in the pages need the trailing slash.
        const path = (req.raw.url ?? '/ui').split('?')[0] ?? '/ui';
        if (!path.endsWith('/')) return securityHeaders(reply).code(302).header('Location', 'ui/').send();
        return sendUiFile(req, reply, '');
      },
    },
    routes,
  );
  route(
    app,
    '/ui/*',
    {
      GET: async (req, reply) => {
        try {
          return await sendUiFile(req, reply, (req.params as { '*'?: string })['*'] ?? '');
        } catch (e) {
          // Not a dashboard file: answered as any unknown path (a 404, or the Orthanc behind --proxy, whose
          // Orthanc Explorer 2 lives under /ui/app/).
          if (e instanceof XferError && e.code === 'UnknownResource') return reply.callNotFound();
          throw e;
        }
      },
    },
    routes,
  );
}

/** The node as a whole: overview and configuration. */
function registerNodeRoutes(app: FastifyInstance, deps: UiDeps, routes: RouteInfo[]): void {
  const { config, store, engine, throughput } = deps;
  route(
    app,
    '/ui/api/overview',
    {
      GET: async (_req, reply) => {
        const embedded = embeddedApiOf(store);
        const states: Record<string, number> = { Pending: 0, Running: 0, Paused: 0, Success: 0, Failure: 0 };
        for (const id of engine.list()) {
          const s = engine.state(id);
          states[s] = (states[s] ?? 0) + 1;
        }
        return sendJson(reply, {
          Name: config.Name,
          Version: VERSION,
          Store: store.kind,
          StoreSearch: studySource(store) !== undefined,
          Statistics: embedded ? await embedded.statistics() : null,
          Peers: deps.destinations.names(),
          Jobs: states,
          Throughput: throughput ? throughput.now() : null,
          ThroughputHistory: throughput ? throughput.history() : [],
          Transfers: { BucketSize: config.Transfers.BucketSize, Threads: config.Transfers.Threads },
        });
      },
    },
    routes,
  );
  route(app, '/ui/api/config', { GET: async (_req, reply) => sendJson(reply, publicConfig(config)) }, routes);
}

/** A job ID of the path that the engine knows; UnknownResource otherwise. */
function knownJob(req: FastifyRequest, engine: JobsEngine): string {
  const id = (req.params as { id?: string }).id ?? '';
  if (!JOB_ID.test(id) || !engine.has(id)) throw new XferError('UnknownResource', `job ${id}`);
  return id;
}

/** Live job events, a job's history of figures, and what a job moves. */
function registerUiJobRoutes(app: FastifyInstance, deps: UiDeps, live: LiveJobs, routes: RouteInfo[]): void {
  const { engine, peers } = deps;
  route(
    app,
    '/ui/api/events',
    {
      GET: async (req, reply) => {
        live.open(req, reply);
        return reply;
      },
    },
    routes,
  );
  route(
    app,
    '/ui/api/jobs/:id/history',
    {
      GET: async (req, reply) => {
        const id = knownJob(req, engine);
        return sendJson(reply, { ID: id, Points: live.history(id) });
      },
    },
    routes,
  );
  // What each job moves (patient, study), once found: it does not change.
  const about = new Map<string, JobAbout>();
  const local = storeGetter(deps.store);
  route(
    app,
    '/ui/api/jobs/:id/about',
    {
      GET: async (req, reply) => {
        const id = knownJob(req, engine);
        let found = about.get(id);
        if (!found) {
          const job = engine.describe(id);
          const c = (job.Content ?? {}) as { Resources?: Resource[]; Peer?: string };
          const resources = Array.isArray(c.Resources) ? c.Resources : [];
          // A pull's data is on the peer until it arrives.
          const getters = [local];
          if (job.Type === 'PullTransfer' && typeof c.Peer === 'string') getters.push(peerGetter(peers, c.Peer));
          const d = await describeResources(resources, getters);
          if (!d) throw new XferError('UnknownResource', `what job ${id} moves is not known here`);
          found = { ...d, From: d.From === 0 ? 'store' : 'peer' };
          if (about.size >= 10_000) about.delete(about.keys().next().value as string);
          about.set(id, found);
        }
        return sendJson(reply, found);
      },
    },
    routes,
  );
}
