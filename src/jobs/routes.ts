// Orthanc's jobs REST API over the jobs engine: list, describe, and the four controls.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { XferError } from '../errors.ts';
import { flag, route, sendJson, type RouteInfo } from '../server/http.ts';
import type { JobsEngine } from './engine.ts';

const JOB_ID = /^[0-9a-f-]{1,64}$/;

function jobId(req: FastifyRequest, engine: JobsEngine): string {
  const id = (req.params as { id?: string }).id ?? '';
  if (!JOB_ID.test(id) || !engine.has(id)) throw new XferError('UnknownResource', `job ${id}`);
  return id;
}

export function registerJobRoutes(app: FastifyInstance, engine: JobsEngine, routes: RouteInfo[]): void {
  route(
    app,
    '/jobs',
    {
      GET: async (req, reply) => {
        const ids = engine.list();
        return sendJson(reply, flag(req.query, 'expand') ? ids.map((id) => engine.describe(id)) : ids);
      },
    },
    routes,
  );
  route(
    app,
    '/jobs/:id',
    { GET: async (req, reply) => sendJson(reply, engine.describe(jobId(req, engine))) },
    routes,
  );
  const control = (action: 'pause' | 'resume' | 'cancel' | 'resubmit') => ({
    POST: async (req: FastifyRequest, reply: Parameters<typeof sendJson>[0]) => {
      const id = jobId(req, engine);
      await engine[action](id);
      return sendJson(reply, {});
    },
  });
  for (const action of ['pause', 'resume', 'cancel', 'resubmit'] as const) {
    route(app, `/jobs/:id/${action}`, control(action), routes);
  }
}
