// The routes of the DICOMweb client, as Orthanc's DICOMweb plugin has them under its Root: the servers of
// DicomWeb.Servers (list, describe), STOW-RS of stored resources to one (a DicomWebStow job) and the
// retrieve of studies, series or instances from one into the node (a DicomWebRetrieve job).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../../config/types.ts';
import { jobEnded, jobError, levelOf, parseStoreBody } from '../../api/modalities.ts';
import type { JobsEngine } from '../../jobs/engine.ts';
import { toWireJobHandle } from '../../protocol/wire.ts';
import { flag, readBody, route, sendJson, type RouteInfo } from '../../server/http.ts';
import { RESOURCES_JSON_BODY } from '../../server/json-body.ts';
import type { Store } from '../../store/types.ts';
import { parseRetrieveBody, type RetrieveJobQuery } from './retrieve-job.ts';
import type { DicomWebServers } from './servers.ts';
import type { StowJobQuery } from './stow-job.ts';

export interface DicomWebClientRoutesDeps {
  config: Config;
  store: Store;
  engine: JobsEngine;
  servers: DicomWebServers;
  httpTimeoutSeconds: number;
}

/** What GET {Root}servers/{name} lists: the operations this node has on a server. */
const SERVER_OPERATIONS = ['retrieve', 'stow'];

function nameOf(req: FastifyRequest): string {
  return (req.params as { name?: string }).name ?? '';
}

/** Answers the job's handle at once, or waits for its end (Orthanc's default: synchronous) and answers its Content. */
async function answerJob(engine: JobsEngine, id: string, synchronous: boolean): Promise<Record<string, unknown>> {
  if (!synchronous) return toWireJobHandle(id) as unknown as Record<string, unknown>;
  const job = await jobEnded(engine, id);
  if (job['State'] !== 'Success') throw jobError(job);
  return (job['Content'] ?? {}) as Record<string, unknown>;
}

export function registerDicomWebClientRoutes(app: FastifyInstance, deps: DicomWebClientRoutesDeps, routes: RouteInfo[]): void {
  const { config, engine, servers, store } = deps;
  const idleMs = deps.httpTimeoutSeconds * 1000;
  const root = config.DicomWeb.Root;

  route(
    app,
    `${root}servers`,
    {
      GET: async (req, reply) => {
        const names = servers.names();
        if (!flag(req.query, 'expand')) return sendJson(reply, names);
        const out: Record<string, unknown> = {};
        for (const n of names) out[n] = { Url: servers.get(n).url, HttpHeaders: Object.keys(servers.get(n).httpHeaders) };
        return sendJson(reply, out);
      },
    },
    routes,
  );

  route(
    app,
    `${root}servers/:name`,
    {
      GET: async (req, reply) => {
        servers.get(nameOf(req));
        return sendJson(reply, SERVER_OPERATIONS);
      },
    },
    routes,
  );

  route(
    app,
    `${root}servers/:name/stow`,
    {
      POST: async (req, reply) => {
        const name = nameOf(req);
        servers.get(name);
        const r = parseStoreBody(await readBody(req, RESOURCES_JSON_BODY, idleMs));
        // Every resource must be here: a mistyped ID is refused now (404), and no job starts.
        const resources: StowJobQuery['Resources'] = [];
        for (const id of r.ids) resources.push({ Level: await levelOf(store, id), ID: id });
        const query: StowJobQuery = { Server: name, Resources: resources, Priority: r.priority };
        const id = engine.submit('DicomWebStow', { ...query }, r.priority, {
          Description: 'REST API',
          Server: name,
          ParentResources: r.ids,
        });
        return sendJson(reply, await answerJob(engine, id, r.synchronous));
      },
    },
    routes,
  );

  route(
    app,
    `${root}servers/:name/retrieve`,
    {
      POST: async (req, reply) => {
        const name = nameOf(req);
        servers.get(name);
        const r = parseRetrieveBody(await readBody(req, RESOURCES_JSON_BODY, idleMs));
        const query: RetrieveJobQuery = { Server: name, Resources: r.resources, Priority: r.priority };
        const id = engine.submit('DicomWebRetrieve', { ...query }, r.priority, { Description: 'REST API', Server: name });
        return sendJson(reply, await answerJob(engine, id, r.synchronous));
      },
    },
    routes,
  );
}
