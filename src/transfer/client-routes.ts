// The routes that start transfers on the client side of the protocol: /transfers/send (push, or
// send-in-pull-mode through RemoteSelf, followed here by a RemotePullTransfer job) and /transfers/pull.
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/types.ts';
import { XferError, isXferError } from '../errors.ts';
import type { JobsEngine } from '../jobs/engine.ts';
import type { Peers } from '../peers/peers.ts';
import { parseTransferQuery, refuseUnlistedZstd, toWireJobHandle, type TransferQuery } from '../protocol/wire.ts';
import { readBody, route, sendJson, type RouteInfo } from '../server/http.ts';
import { RESOURCES_JSON_BODY, parseJsonBody } from '../server/json-body.ts';
import type { Store } from '../store/types.ts';
import { zstdListed } from './capabilities.ts';
import { senderTransferId, type TransferJobQuery } from './jobs.ts';
import { startRemotePull } from './remote-job.ts';
import { assertLocalResources } from './submit-checks.ts';

/**
 * Reads a transfer query, checking `Priority` against the raw text (a JSON real such as 1.0 is refused).
 * "zstd" is taken when this node lists the extension (`zstd`: gzip with a peer that does not), refused as by
 * the plugin otherwise.
 */
async function readQuery(req: Parameters<typeof readBody>[0], idleMs: number, zstd: boolean): Promise<TransferQuery> {
  const buf = await readBody(req, RESOURCES_JSON_BODY, idleMs);
  const body = parseJsonBody(buf, RESOURCES_JSON_BODY);
  const q = parseTransferQuery(body, buf.toString('utf8'));
  refuseUnlistedZstd(q.Compression, zstd);
  return q;
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

/** What the routes that start transfers need. */
export interface TransfersClientDeps {
  config: Config;
  store: Store;
  peers: Peers;
  engine: JobsEngine;
  /** This node's random UUID (the plugin's "Originator"). */
  originator: string;
  /** Seconds without a byte after which a request body is abandoned. */
  httpTimeoutSeconds: number;
}

/** POST /transfers/pull and /transfers/send: each checks its query and submits a job to the engine. */
export function registerTransfersClientRoutes(app: FastifyInstance, deps: TransfersClientDeps, routes: RouteInfo[]): void {
  const { config, engine, peers } = deps;
  const idleMs = deps.httpTimeoutSeconds * 1000;
  const zstd = zstdListed(config);

  route(
    app,
    '/transfers/pull',
    {
      POST: async (req, reply) => {
        const q = await readQuery(req, idleMs, zstd);
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
        const q = await readQuery(req, idleMs, zstd);
        const peer = peers.get(q.Peer);
        if (!peer) throw new XferError('UnknownResource', `peer "${q.Peer}" is not configured`);
        // What is sent must be here: a mistyped ID is refused now, not turned into a failed job.
        await assertLocalResources(deps.store, q.Resources);
        const remoteSelf = peer.userProperties.RemoteSelf;
        if (remoteSelf === undefined) {
          const id = engine.submit('PushTransfer', { ...jobQuery(q) }, q.Priority);
          return sendJson(reply, toWireJobHandle(id));
        }
        // Send in pull mode: ask the peer to pull from us (docs/protocol.md#send-in-pull-mode). Priority is
        // not forwarded; a job here follows the peer's.
        try {
          const handle = await startRemotePull(
            config,
            engine,
            peers.client(q.Peer),
            peer.url,
            deps.originator,
            remoteSelf,
            q,
            senderTransferId(q.SenderTransferID),
          );
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
}
