// The HTTP framework base (src/server/app.ts) on its own, without any part of a node: the fallback handler
// and the amending of answers that the composition root hands to the Orthanc proxy, and the security hooks
// every route passes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { createHttpApp, type HttpApp } from '../../src/server/app.ts';
import { route, sendJson } from '../../src/server/http.ts';

describe('the HTTP framework base', () => {
  let app: HttpApp;

  before(async () => {
    const { config } = await loadConfig({ overrides: { HttpPort: 0, AuthenticationEnabled: true, RegisteredUsers: { ann: 'pw' } } });
    app = createHttpApp({ config, logger: pino({ level: 'silent' }), httpTimeoutSeconds: 30 });
    route(app.fastify, '/thing', { GET: async (req, reply) => sendJson(reply, await app.amended('/thing', { Mine: 1 }, req)) }, app.routes);
    app.hooks.amend('/thing', async (value) => ({ ...(value as object), Theirs: 2 }));
    app.hooks.setFallback(async (req, reply) => reply.code(200).header('Content-Type', 'text/plain').send(`fallback ${req.url}`));
    await app.fastify.ready();
  });
  after(async () => {
    await app?.fastify.close();
  });

  const auth = { authorization: `Basic ${Buffer.from('ann:pw').toString('base64')}` };

  test('a route answers what its amender makes of its value', async () => {
    const res = await app.fastify.inject({ method: 'GET', url: '/thing', headers: auth });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(JSON.parse(res.body), { Mine: 1, Theirs: 2 });
    assert.deepEqual(app.routes, [{ path: '/thing', methods: ['GET'] }]);
  });

  test('a request no route matches goes to the fallback; a second fallback or amender is refused', async () => {
    const res = await app.fastify.inject({ method: 'GET', url: '/elsewhere?x=1', headers: auth });
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, 'fallback /elsewhere?x=1');
    assert.throws(() => app.hooks.setFallback(async () => undefined), /already set/);
    assert.throws(() => app.hooks.amend('/thing', async (v) => v), /already amended/);
  });

  test("without credentials, neither a route nor the fallback answers: 401 in Orthanc's error shape", async () => {
    for (const url of ['/thing', '/elsewhere']) {
      const res = await app.fastify.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 401, url);
      assert.match(String(res.headers['www-authenticate']), /^Basic realm=/);
      const body = JSON.parse(res.body) as { HttpStatus: number; Uri: string };
      assert.equal(body.HttpStatus, 401);
      assert.equal(body.Uri, url);
    }
  });
});
