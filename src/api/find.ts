// POST /tools/find, Orthanc's search of resources by DICOM tags, on both stores: walked over the embedded
// store's index, or handed to the Orthanc that is the store (after the same checks of the body).
import type { FastifyInstance } from 'fastify';
import { parseFindRequest } from '../store/find.ts';
import { EmbeddedStore } from '../store/embedded/store.ts';
import { OrthancStore } from '../store/orthanc/store.ts';
import type { Store } from '../store/types.ts';
import { readJson, route, sendJson, type RouteInfo } from '../server/http.ts';

/** A find body is a handful of tags: anything near this size is not one. */
const FIND_BODY_LIMIT = 1024 * 1024;

export function registerFind(app: FastifyInstance, store: Store, routes?: RouteInfo[]): void {
  route(
    app,
    '/tools/find',
    {
      POST: async (req, reply) => {
        const body = await readJson(req, FIND_BODY_LIMIT);
        const request = parseFindRequest(body);
        if (store instanceof EmbeddedStore) return sendJson(reply, await store.find(request));
        if (store instanceof OrthancStore) return sendJson(reply, await store.find(body as Record<string, unknown>));
        return sendJson(reply, []);
      },
    },
    routes,
  );
}
