// Orthanc's instance metadata of reception (GET /instances/{id}/metadata and /metadata/{name}): Origin,
// ReceptionDate, RemoteAET, CalledAET, RemoteIP, HttpUsername, served for the embedded store from the
// arrivals routing records.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isOrthancId } from '../dicom/ids.ts';
import { XferError } from '../errors.ts';
import { flag, route, sendJson, type RouteInfo } from '../server/http.ts';
import type { EmbeddedStore } from '../store/embedded/store.ts';

/** The metadata of an instance that the store holds; UnknownResource (404) when it does not. */
async function metadataOf(
  req: FastifyRequest,
  store: EmbeddedStore,
  metadata: (id: string) => Record<string, string> | undefined,
): Promise<Record<string, string>> {
  const id = (req.params as { id?: string }).id ?? '';
  if (!isOrthancId(id) || !(await store.instanceFile(id))) throw new XferError('UnknownResource', `Instance ${id}`);
  return metadata(id) ?? {};
}

export function registerArrivalMetadata(
  app: FastifyInstance,
  store: EmbeddedStore,
  metadata: (id: string) => Record<string, string> | undefined,
  routes: RouteInfo[],
): void {
  route(
    app,
    '/instances/:id/metadata',
    {
      GET: async (req, reply) => {
        const m = await metadataOf(req, store, metadata);
        const names = Object.keys(m).sort();
        if (flag(req.query, 'expand')) return sendJson(reply, Object.fromEntries(names.map((n) => [n, m[n]])));
        return sendJson(reply, names);
      },
    },
    routes,
  );
  route(
    app,
    '/instances/:id/metadata/:name',
    {
      GET: async (req, reply) => {
        const m = await metadataOf(req, store, metadata);
        const name = (req.params as { name?: string }).name ?? '';
        const value = m[name];
        if (value === undefined) throw new XferError('InexistentItem', `metadata "${name}" of instance`);
        return reply.header('Content-Type', 'text/plain').send(value);
      },
    },
    routes,
  );
}
