// GET /openapi.json: an OpenAPI 3.1 document of every route the node serves, built from the route registry
// that the app and its modules fill (so a new route can never be missing), with the bodies' schemas where
// the code validates them and Orthanc's error JSON as the answer of every failure.
import type { FastifyInstance } from 'fastify';
import { route, sendJson, type Method, type RouteInfo } from '../server/http.ts';
import { VERSION } from '../version.ts';
import { CATALOG, type OperationDoc } from './catalog.ts';
import { componentSchemas } from './schemas.ts';

type Json = Record<string, unknown>;

export const OPENAPI_PATH = '/openapi.json';

/** A registered route path in OpenAPI's form: `:id` becomes `{id}`, a trailing `*` becomes `{path}`. */
export function toOpenApiPath(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}').replace(/\*$/, '{path}');
}

const PARAM_DOCS: Record<string, string> = {
  id: "Orthanc's ID of the resource or job.",
  name: 'Name of the peer.',
  tx: 'ID of the push transaction.',
  index: 'Index of the bucket, from 0.',
  ids: 'Instance IDs joined by dots.',
  path: 'Path of the file under the dashboard.',
};

function tagOf(path: string): string {
  const first = path.split('/')[1] ?? '';
  return first === '' ? 'System' : first[0]?.toUpperCase() + first.slice(1);
}

function operation(method: Method, path: string, doc: OperationDoc | undefined): Json {
  const params = [...toOpenApiPath(path).matchAll(/\{([^}]+)\}/g)].map((m) => m[1] as string);
  const parameters: Json[] = params.map((name) => ({
    name,
    in: 'path',
    required: true,
    description: doc?.params?.[name] ?? PARAM_DOCS[name] ?? name,
    schema: { type: 'string' },
  }));
  for (const [name, [schema, description]] of Object.entries(doc?.query ?? {})) {
    parameters.push({ name, in: 'query', required: false, description, schema });
  }
  const ok: Json = { description: 'Success.' };
  if (doc?.response) ok.content = { [doc.responseType ?? 'application/json']: { schema: doc.response } };
  const responses: Json = { '200': ok };
  for (const [status, description] of Object.entries(doc?.otherResponses ?? {})) responses[status] = { description };
  responses.default = { $ref: '#/components/responses/Error' };
  const op: Json = {
    operationId:
      method.toLowerCase() + toOpenApiPath(path).replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : '')),
    summary: doc?.summary ?? `${method} ${path}`,
    tags: [doc?.tag ?? tagOf(path)],
  };
  if (doc?.description) op.description = doc.description;
  if (parameters.length > 0) op.parameters = parameters;
  if (doc?.request) {
    op.requestBody = { required: true, content: { [doc.requestType ?? 'application/json']: { schema: doc.request } } };
  }
  op.responses = responses;
  return op;
}

/** The OpenAPI 3.1 document of `routes` (every path with every method it accepts). */
export function buildOpenApi(routes: readonly RouteInfo[], opts: { title?: string; serverUrl?: string } = {}): Json {
  const paths: Record<string, Json> = {};
  for (const r of routes) {
    const p = toOpenApiPath(r.path);
    paths[p] ??= {};
    const item = paths[p];
    for (const m of r.methods) item[m.toLowerCase()] = operation(m, r.path, CATALOG[r.path]?.[m]);
  }
  const sorted: Record<string, Json> = {};
  for (const k of Object.keys(paths).sort()) sorted[k] = paths[k] as Json;
  const doc: Json = {
    openapi: '3.1.0',
    info: {
      title: opts.title ?? 'dicom-xfer node',
      version: VERSION,
      description:
        "The HTTP API of a dicom-xfer node: Orthanc's REST API for the embedded store, the Transfers Accelerator " +
        "protocol (/transfers/...), jobs, peers, metrics and the dashboard. Every failure answers Orthanc's JSON error; " +
        'a method a route does not accept answers 405 with an Allow header.',
    },
    paths: sorted,
    components: {
      schemas: componentSchemas(),
      responses: {
        Error: {
          description: "A failure, in Orthanc's JSON error shape.",
          content: { 'application/json': { schema: { $ref: '#/components/schemas/OrthancError' } } },
        },
      },
      securitySchemes: {
        basicAuth: { type: 'http', scheme: 'basic', description: 'When AuthenticationEnabled is true (RegisteredUsers).' },
      },
    },
    // Basic credentials when the node asks for them, none otherwise.
    security: [{ basicAuth: [] }, {}],
  };
  if (opts.serverUrl) doc.servers = [{ url: opts.serverUrl }];
  return doc;
}

/** GET /openapi.json, built when asked so that it lists every route registered by then in `routes`. */
export function registerOpenApi(app: FastifyInstance, routes: RouteInfo[], title: string): void {
  route(app, OPENAPI_PATH, { GET: async (_req, reply) => sendJson(reply, buildOpenApi(routes, { title })) }, routes);
}
