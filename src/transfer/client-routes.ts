// The client side of the protocol as a node module: the jobs engine (persistent, in the storage
// directory), Orthanc's /jobs routes, and the routes that start transfers: /transfers/send (push, or
// send-in-pull-mode through RemoteSelf, followed here by a RemotePullTransfer job) and /transfers/pull.
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { XferError, isXferError } from '../errors.ts';
import { openJobsDb } from '../jobs/db.ts';
import { JobsEngine } from '../jobs/engine.ts';
import { registerJobRoutes } from '../jobs/routes.ts';
import { metricsOf } from '../metrics/metrics.ts';
import { getPeers } from '../peers/routes.ts';
import { parseTransferQuery, toWireJobHandle, type TransferQuery } from '../protocol/wire.ts';
import type { NodeContext, NodeModule } from '../server/app.ts';
import { readBody, route, sendJson, type RouteInfo } from '../server/http.ts';
import { RESOURCES_JSON_BODY, parseJsonBody } from '../server/json-body.ts';
import { senderTransferId, transferRunners, type TransferDeps, type TransferJobQuery } from './jobs.ts';
import { RemotePullFollower, startRemotePull } from './remote-job.ts';
import { assertLocalResources } from './submit-checks.ts';

const engines = new WeakMap<NodeContext, JobsEngine>();

/** The jobs engine of a node (after the module is registered). */
export function getJobs(ctx: NodeContext): JobsEngine {
  const e = engines.get(ctx);
  if (!e) throw new XferError('InternalError', 'the transfers client module is not registered');
  return e;
}

/** Reads a transfer query, checking `Priority` against the raw text (a JSON real such as 1.0 is refused). */
async function readQuery(req: Parameters<typeof readBody>[0], idleMs: number): Promise<TransferQuery> {
  const buf = await readBody(req, RESOURCES_JSON_BODY, idleMs);
  const body = parseJsonBody(buf, RESOURCES_JSON_BODY);
  return parseTransferQuery(body, buf.toString('utf8'));
}

function jobQuery(q: TransferQuery): TransferJobQuery {
  const out: TransferJobQuery = {
    Resources: q.Resources,
    Peer: q.Peer,
    Compression: q.Compression,
    Priority: q.Priority,
    SenderTransferID: senderTransferId(q.SenderTransferID),
  };
  if (q.Originator !== undefined) out.Originator = q.Originator;
  return out;
}

export const transfersClientModule: NodeModule = async (app: FastifyInstance, ctx: NodeContext, routes: RouteInfo[]) => {
  const { config } = ctx;
  const peers = getPeers(ctx);
  const deps: TransferDeps = {
    config,
    store: ctx.store,
    peer(name) {
      const p = peers.get(name);
      if (!p) throw new XferError('UnknownResource', `peer "${name}" is not configured`);
      return { client: peers.client(name), url: p.url };
    },
    // The metrics module registers after this one: look it up when a bucket is done.
    observeBucket: (side, seconds) => metricsOf(ctx)?.observeBucket(side, seconds),
  };
  const runners = transferRunners(deps);
  const follower = new RemotePullFollower(deps);
  const db = openJobsDb(join(config.StorageDirectory, 'jobs.sqlite'));
  const engine = new JobsEngine(db, {
    concurrentJobs: config.ConcurrentJobs,
    historySize: config.JobsHistorySize,
    runners: (type) => (type === 'RemotePullTransfer' ? follower : runners(type)),
    logger: ctx.logger,
  });
  engines.set(ctx, engine);
  registerJobRoutes(app, engine, routes);
  const idleMs = ctx.httpTimeoutSeconds * 1000;

  route(
    app,
    '/transfers/pull',
    {
      POST: async (req, reply) => {
        const q = await readQuery(req, idleMs);
        if (!peers.get(q.Peer)) throw new XferError('UnknownResource', `peer "${q.Peer}" is not configured`);
        const id = engine.submit('PullTransfer', { ...jobQuery(q) }, q.Priority);
        return sendJson(reply, toWireJobHandle(id));
      },
    },
    routes,
  );

  route(
    app,
    '/transfers/send',
    {
      POST: async (req, reply) => {
        const q = await readQuery(req, idleMs);
        const peer = peers.get(q.Peer);
        if (!peer) throw new XferError('UnknownResource', `peer "${q.Peer}" is not configured`);
        // What is sent must be here: a mistyped ID is refused now, not turned into a failed job.
        await assertLocalResources(ctx.store, q.Resources);
        const remoteSelf = peer.userProperties.RemoteSelf;
        if (remoteSelf === undefined) {
          const id = engine.submit('PushTransfer', { ...jobQuery(q) }, q.Priority);
          return sendJson(reply, toWireJobHandle(id));
        }
        // Send in pull mode: ask the peer to pull from us (docs/protocol.md#send-in-pull-mode). Priority is
        // not forwarded; a job here follows the peer's.
        try {
          const handle = await startRemotePull(config, engine, peers.client(q.Peer), peer.url, ctx.originator, remoteSelf, q, senderTransferId(q.SenderTransferID));
          return sendJson(reply, handle);
        } catch (e) {
          const why = isXferError(e) ? (e.details ?? e.message) : String(e);
          req.log.warn({ peer: q.Peer, err: why }, 'send in pull mode failed: does the peer run the transfers plugin?');
          throw new XferError('NetworkProtocol', `peer "${q.Peer}" could not start the pull: ${why}`);
        }
      },
    },
    routes,
  );

  await engine.start();
  return async () => {
    await engine.close();
    db.close();
  };
};
