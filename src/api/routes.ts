// The REST API of the routing rules: GET /routes (every rule with its queue, jobs and last error),
// GET, PUT and DELETE /routes/{name}. A rule written here is kept in the routes database and replaces the
// configuration file's entry of the same name, across restarts.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RouteRuleConfig } from '../config/types.ts';
import { isValidPeerName } from '../config/schema.ts';
import { XferError } from '../errors.ts';
import type { RouteEngine } from '../routing/engine.ts';
import { parseRule } from '../routing/rules.ts';
import { readJson, route, sendJson, type RouteInfo } from '../server/http.ts';

function nameOf(req: FastifyRequest): string {
  const name = (req.params as { name?: string }).name ?? '';
  if (!isValidPeerName(name)) throw new XferError('UnknownResource', `routing rule "${name}"`);
  return name;
}

/** A rule as GET answers it: its configuration, where it comes from, and its live figures. */
function describeRule(routing: RouteEngine, rule: RouteRuleConfig): Record<string, unknown> {
  return { ...rule, Source: routing.rules.source(rule.Name), ...routing.figures(rule.Name) };
}

export function registerRoutesApi(app: FastifyInstance, routing: RouteEngine, routes: RouteInfo[]): void {
  route(
    app,
    '/routes',
    {
      GET: async (_req, reply) =>
        sendJson(
          reply,
          routing.rules.all().map((r) => describeRule(routing, r)),
        ),
    },
    routes,
  );
  route(
    app,
    '/routes/:name',
    {
      GET: async (req, reply) => {
        const name = nameOf(req);
        const rule = routing.rules.get(name);
        if (!rule) throw new XferError('UnknownResource', `routing rule "${name}"`);
        return sendJson(reply, describeRule(routing, rule));
      },
      PUT: async (req, reply) => {
        const name = nameOf(req);
        const body = await readJson(req);
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          throw new XferError('BadRequest', 'routing rule: expected a JSON object');
        }
        const given = (body as Record<string, unknown>)['Name'];
        if (given !== undefined && given !== name) {
          throw new XferError('BadRequest', `routing rule: Name "${String(given)}" differs from the name in the path "${name}"`);
        }
        const rule = parseRule({ ...body, Name: name });
        const problem = routing.problem(rule);
        if (problem !== undefined) throw new XferError('BadRequest', problem);
        routing.rules.put(rule);
        req.log.info({ rule: name }, 'routing rule written');
        return sendJson(reply, describeRule(routing, rule));
      },
      DELETE: async (req, reply) => {
        const name = nameOf(req);
        if (!routing.rules.delete(name)) throw new XferError('UnknownResource', `routing rule "${name}"`);
        req.log.info({ rule: name }, 'routing rule deleted');
        return emptyAnswer(reply);
      },
    },
    routes,
  );
}

/** Orthanc's answer to a successful DELETE: 200 with an empty body. */
function emptyAnswer(reply: FastifyReply): FastifyReply {
  return reply.code(200).header('Content-Type', 'text/plain').send('');
}
