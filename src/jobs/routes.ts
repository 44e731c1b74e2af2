// Orthanc's jobs REST API over the jobs engine: list, describe, and the four controls. Beside an Orthanc
// store, the jobs of that Orthanc are listed too, and requests about them are forwarded to it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { XferError } from '../errors.ts';
import { flag, route, sendJson, type RouteInfo } from '../server/http.ts';
import type { JobsEngine } from './engine.ts';

const JOB_ID = /^[0-9a-f-]{1,64}$/;

/** Jobs owned by another system (the Orthanc behind an Orthanc store), shown beside the engine's. */
export interface ForeignJobs {
  /** Its job IDs (or expanded jobs); undefined when they cannot be had now (only the engine's are listed). */
  list(req: FastifyRequest, expand: boolean): Promise<unknown[] | undefined>;
  /** Answers a request about a job that the engine does not own, as the other system answers it. */
  forward(req: FastifyRequest, reply: FastifyReply): Promise<unknown>;
}

function jobId(req: FastifyRequest, engine: JobsEngine): string {
  const id = (req.params as { id?: string }).id ?? '';
  if (!JOB_ID.test(id) || !engine.has(id)) throw new XferError('UnknownResource', `job ${id}`);
  return id;
}

/** Orthanc's /jobs routes over `engine`; with `foreignJobs`, the other system's jobs are listed and forwarded too. */
export function registerJobRoutes(app: FastifyInstance, engine: JobsEngine, routes: RouteInfo[], foreignJobs?: ForeignJobs): void {
  /** The other system's answer, for a job ID that is not the engine's; undefined when it is ours. */
  const foreign = (req: FastifyRequest, reply: FastifyReply): Promise<unknown> | undefined => {
    const id = (req.params as { id?: string }).id ?? '';
    return foreignJobs && !engine.has(id) ? foreignJobs.forward(req, reply) : undefined;
  };
  route(
    app,
    '/jobs',
    {
      GET: async (req, reply) => {
        const expand = flag(req.query, 'expand');
        const ids = engine.list();
        const ours: unknown[] = expand ? ids.map((id) => engine.describe(id)) : ids;
        const theirs = (await foreignJobs?.list(req, expand)) ?? [];
        return sendJson(reply, [...ours, ...theirs]);
      },
    },
    routes,
  );
  route(
    app,
    '/jobs/:id',
    { GET: async (req, reply) => foreign(req, reply) ?? sendJson(reply, engine.describe(jobId(req, engine))) },
    routes,
  );
  const control = (action: 'pause' | 'resume' | 'cancel' | 'resubmit') => ({
    POST: async (req: FastifyRequest, reply: FastifyReply) => {
      const elsewhere = foreign(req, reply);
      if (elsewhere) return elsewhere;
      const id = jobId(req, engine);
      await engine[action](id);
      return sendJson(reply, {});
    },
  });
  for (const action of ['pause', 'resume', 'cancel', 'resubmit'] as const) {
    route(app, `/jobs/:id/${action}`, control(action), routes);
  }
}
