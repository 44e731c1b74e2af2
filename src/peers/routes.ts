// Routes about peers: Orthanc's /peers API (list, describe, define and delete peers at run time, call a
// peer's /system) and the plugin's GET /transfers/peers (which peers speak the transfers protocol).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { flag, readJson, route, sendJson, type RouteInfo } from '../server/http.ts';
import type { Peers, PeerTransfersStatus } from './peers.ts';
import { describePeer } from './registry.ts';
import { displayUrl } from '../util/url.ts';

/** What Orthanc 1.10.1 lists under GET /peers/{name}. */
const PEER_OPERATIONS = ['configuration', 'store', 'store-straight', 'system'];

function nameOf(req: FastifyRequest): string {
  return (req.params as { name?: string }).name ?? '';
}

/** Orthanc's answer to a successful PUT or DELETE: 200 with an empty body. */
function sendEmpty(reply: FastifyReply): FastifyReply {
  return reply.code(200).header('Content-Type', 'text/plain').send('');
}

/**
 * A flat object of strings written as the plugin writes `/transfers/peers` (jsoncpp's styled writer:
 * TAB indentation, " : " between key and value).
 */
export function styledStringMap(map: Record<string, string>): string {
  const entries = Object.entries(map);
  if (entries.length === 0) return '{}\n';
  return `{\n${entries.map(([k, v]) => `\t${JSON.stringify(k)} : ${JSON.stringify(v)}`).join(',\n')}\n}\n`;
}

/** The routes about the node's peers (`peers` is opened and closed by the composition root). */
export function registerPeerRoutes(app: FastifyInstance, peers: Peers, logger: Logger, routes: RouteInfo[]): void {
  const { registry } = peers;

  route(
    app,
    '/peers',
    {
      GET: async (req, reply) => {
        if (!flag(req.query, 'expand')) return sendJson(reply, registry.names());
        const out: Record<string, unknown> = {};
        for (const p of registry.list()) out[p.name] = describePeer(p);
        return sendJson(reply, out);
      },
    },
    routes,
  );

  route(
    app,
    '/peers/:name',
    {
      GET: async (req, reply) => {
        registry.require(nameOf(req));
        return sendJson(reply, PEER_OPERATIONS);
      },
      PUT: async (req, reply) => {
        const name = nameOf(req);
        const body = await readJson(req, 1024 * 1024);
        const peer = await registry.put(name, body);
        logger.info({ peer: name, url: displayUrl(peer.url) }, 'peer defined');
        return sendEmpty(reply);
      },
      DELETE: async (req, reply) => {
        const name = nameOf(req);
        await registry.remove(name);
        logger.info({ peer: name }, 'peer deleted');
        return sendEmpty(reply);
      },
    },
    routes,
  );

  route(
    app,
    '/peers/:name/configuration',
    { GET: async (req, reply) => sendJson(reply, describePeer(registry.require(nameOf(req)))) },
    routes,
  );

  route(
    app,
    '/peers/:name/system',
    {
      GET: async (req, reply) => {
        const res = await peers.client(nameOf(req)).json({ method: 'GET', path: '/system' });
        return sendJson(reply, res.body);
      },
    },
    routes,
  );

  route(
    app,
    '/transfers/peers',
    {
      GET: async (_req, reply) => {
        const probes = await peers.probeAll();
        const out: Record<string, PeerTransfersStatus> = {};
        for (const p of probes) out[p.name] = p.status;
        return reply.code(200).header('Content-Type', 'application/json').send(styledStringMap(out));
      },
    },
    routes,
  );
}
