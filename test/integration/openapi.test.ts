// GET /openapi.json of a node built with the real module list: the document is valid OpenAPI 3.1 (checked
// by a JSON Schema validator of the specification, offline), its paths and methods are exactly the routes
// the node registered, fastify serves each of them, and the schemas say what the code validates.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { buildOpenApi, toOpenApiPath } from '../../src/openapi/openapi.ts';
import { buildNode, type NodeApp } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { listFiles, someDicom } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';

type Doc = {
  openapi: string;
  paths: Record<
    string,
    Record<string, { parameters?: { name: string; in: string }[]; requestBody?: unknown; responses: Record<string, unknown> }>
  >;
  components: { schemas: Record<string, Record<string, unknown>> };
};

describe('the OpenAPI document', { timeout: 60_000 }, () => {
  let dir: string;
  let store: EmbeddedStore;
  let app: NodeApp;
  let doc: Doc;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-openapi-'));
    const { config } = await loadConfig({
      overrides: { StorageDirectory: dir, HttpPort: 0 },
    });
    config.OrthancPeers = {};
    store = await EmbeddedStore.open(dir, { commitThreads: 1 });
    app = await buildNode({ config, store, logger: pino({ level: 'silent' }), originator: randomUUID() });
    await app.fastify.ready();
    const res = await app.fastify.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    doc = JSON.parse(res.body) as Doc;
  });
  after(async () => {
    await app?.close();
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('is valid OpenAPI 3.1', async () => {
    assert.equal(doc.openapi, '3.1.0');
    const validator = new Validator();
    const result = await validator.validate(doc as unknown as Record<string, unknown>);
    assert.equal(validator.version, '3.1');
    assert.deepEqual(result, { valid: true }, JSON.stringify(result.errors, null, 2)?.slice(0, 4000));
  });

  test('lists exactly the paths and methods the node registered, and fastify serves each', async () => {
    const registered = new Map<string, Set<string>>();
    for (const r of app.routes) {
      const p = toOpenApiPath(r.path);
      const set = registered.get(p) ?? new Set<string>();
      for (const m of r.methods) set.add(m.toLowerCase());
      registered.set(p, set);
    }
    assert.deepEqual(Object.keys(doc.paths).sort(), [...registered.keys()].sort());
    for (const [path, item] of Object.entries(doc.paths)) {
      assert.deepEqual(Object.keys(item).sort(), [...(registered.get(path) ?? [])].sort(), `methods of ${path}`);
    }
    for (const r of app.routes) {
      for (const m of r.methods) assert.ok(app.fastify.hasRoute({ method: m, url: r.path }), `fastify serves ${m} ${r.path}`);
    }
    // The routes every node has are there: the protocol, the dashboard, the metrics and the document itself.
    for (const p of [
      '/transfers/push/{tx}/{index}',
      '/transfers/chunks/{ids}',
      '/jobs/{id}/pause',
      '/ui/api/events',
      '/tools/metrics-prometheus',
      '/openapi.json',
    ]) {
      assert.ok(doc.paths[p], `${p} is documented`);
    }
  });

  test('a route added later appears without any change to the document code', () => {
    const more = buildOpenApi([...app.routes, { path: '/custom/:name/thing', methods: ['GET', 'DELETE'] }]);
    const item = (more.paths as Doc['paths'])['/custom/{name}/thing'];
    assert.ok(item?.get && item.delete);
    assert.deepEqual(item.get.parameters, [
      { name: 'name', in: 'path', required: true, description: 'Name of the peer.', schema: { type: 'string' } },
    ]);
  });

  test("bodies: the protocol schemas from zod, the configuration schema, Orthanc's error shape", () => {
    const s = doc.components.schemas;
    const push = s.PushCreate as { properties: Record<string, Record<string, unknown>>; required: string[] };
    assert.deepEqual(push.required.sort(), ['Buckets', 'Compression', 'Instances']);
    assert.deepEqual(push.properties.Compression?.enum, ['gzip', 'none', 'zstd']);
    const send = doc.paths['/transfers/send']?.post;
    assert.deepEqual(send?.requestBody, {
      required: true,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/TransferQuery' } } },
    });
    const config = s.Configuration as { properties: Record<string, unknown> };
    assert.ok(config.properties.HttpPort && config.properties.Transfers && config.properties.OrthancPeers);
    assert.deepEqual((s.OrthancError as { required: string[] }).required.sort(), [
      'HttpError',
      'HttpStatus',
      'Message',
      'Method',
      'OrthancError',
      'OrthancStatus',
      'Uri',
    ]);
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        assert.deepEqual(op.responses.default, { $ref: '#/components/responses/Error' }, `${method} ${path} answers Orthanc's error`);
      }
    }
  });

  test('routing rules and instance metadata are documented', () => {
    const op = (path: string, method: string) => {
      const o = doc.paths[path]?.[method] as (Doc['paths'][string][string] & { summary: string; tags: string[] }) | undefined;
      assert.ok(o, `${method} ${path}`);
      assert.notEqual(o.summary, `${method.toUpperCase()} ${path}`, `${method} ${path} has its own summary`);
      return o;
    };
    const schemaOf = (o: { responses: Record<string, unknown> }, type = 'application/json') =>
      (o.responses['200'] as { content: Record<string, { schema: unknown }> }).content[type]?.schema;
    assert.deepEqual(schemaOf(op('/routes', 'get')), { type: 'array', items: { $ref: '#/components/schemas/RouteRuleState' } });
    assert.deepEqual(schemaOf(op('/routes/{name}', 'get')), { $ref: '#/components/schemas/RouteRuleState' });
    assert.deepEqual(op('/routes/{name}', 'put').requestBody, {
      required: true,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/RouteRule' } } },
    });
    assert.deepEqual(op('/routes/{name}', 'delete').parameters, [
      { name: 'name', in: 'path', required: true, description: 'Name of the routing rule.', schema: { type: 'string' } },
    ]);
    assert.deepEqual(schemaOf(op('/instances/{id}/metadata/{name}', 'get'), 'text/plain'), { type: 'string' });
    assert.deepEqual(op('/modalities/{name}/store', 'post').parameters?.[0], {
      name: 'name',
      in: 'path',
      required: true,
      description: 'Name of the modality in DicomModalities.',
      schema: { type: 'string' },
    });
    assert.ok(op('/instances/{id}/metadata', 'get').parameters?.some((p) => p.name === 'expand' && p.in === 'query'));
  });

  test('an error answer of the node has the documented error shape', async () => {
    const res = await app.fastify.inject({ method: 'GET', url: '/jobs/0000' });
    assert.equal(res.statusCode, 404);
    const body = JSON.parse(res.body) as Record<string, unknown>;
    const required = (doc.components.schemas.OrthancError as { required: string[] }).required;
    for (const k of required) assert.ok(k in body, `the error has ${k}`);
  });
});

describe('the OpenAPI document of a running node', { timeout: 60_000 }, () => {
  let node: XferNode;
  before(async () => {
    node = await startXferNode({ config: { DicomModalities: { pacs: ['PACS', '127.0.0.1', 104] } } });
  });
  after(async () => {
    await node?.stop();
  });

  test('is served at /openapi.json, valid, and names the node', async () => {
    const res = await fetch(`${node.url}/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as Doc & { info: { title: string } };
    assert.match(doc.info.title, new RegExp(`node-${node.port}`));
    assert.deepEqual(await new Validator().validate(doc as unknown as Record<string, unknown>), { valid: true });
  });

  test('a routing rule and the metadata of an instance, as the node answers them, have the documented shape', async () => {
    // A rule written and read back: every key documented, every required key there.
    const doc = (await (await fetch(`${node.url}/openapi.json`)).json()) as Doc;
    const s = doc.components.schemas;
    const put = await fetch(`${node.url}/routes/to-pacs`, {
      method: 'PUT',
      body: JSON.stringify({ Send: ['pacs'], Match: { Modality: 'CT' } }),
    });
    const putBody = await put.text();
    assert.equal(put.status, 200, putBody);
    const state = s.RouteRuleState as { properties: Record<string, unknown>; required: string[] };
    for (const answer of [JSON.parse(putBody), await (await fetch(`${node.url}/routes/to-pacs`)).json()]) {
      for (const k of Object.keys(answer)) assert.ok(k in state.properties, `${k} is documented`);
      for (const k of state.required) assert.ok(k in answer, `${k} is answered`);
    }
    const rule = s.RouteRule as { properties: Record<string, unknown>; required: string[] };
    assert.deepEqual(rule.required, ['Send']);
    assert.deepEqual(
      Object.keys(rule.properties).sort(),
      Object.keys(state.properties)
        .filter((k) => k in rule.properties)
        .sort(),
    );
    assert.equal((await fetch(`${node.url}/routes/to-pacs`, { method: 'DELETE' })).status, 200);

    // An instance's metadata: names as documented, values as text.
    const [file] = await listFiles(await someDicom());
    assert.ok(file);
    const dicom = await readFile(file);
    const stored = await fetch(`${node.url}/instances`, { method: 'POST', body: dicom });
    assert.equal(stored.status, 200);
    const id = ((await stored.json()) as { ID: string }).ID;
    const names = (await (await fetch(`${node.url}/instances/${id}/metadata`)).json()) as string[];
    assert.ok(names.includes('Origin'), JSON.stringify(names));
    const documented = String((doc.paths['/instances/{id}/metadata']?.get as { summary?: string } | undefined)?.summary);
    for (const n of names) assert.ok(documented.includes(n), `metadata ${n} is documented`);
    const origin = await fetch(`${node.url}/instances/${id}/metadata/Origin`);
    assert.match(String(origin.headers.get('content-type')), /^text\/plain/);
    assert.equal(await origin.text(), 'RestApi');
  });
});
