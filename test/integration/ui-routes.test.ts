// The dashboard's server side in-process, on a node built with the real module list and a real embedded
// store: its files (types, ETag, no way out of web/ui/), the store search, the send route's refusals, the
// configuration without secrets, and the live events stream.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { makePatient, makeSeries, makeStudy, writeCtSlice, writeMrImage } from '../../src/generate/index.ts';
import { buildNode, type NodeApp } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { extensionNames } from '../../src/transfer/peer-directory.ts';
import { publicConfig } from '../../src/ui/module.ts';

describe('dashboard routes', { timeout: 60_000 }, () => {
  let dir: string;
  let store: EmbeddedStore;
  let app: NodeApp;
  let port: number;
  const studies: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-ui-routes-'));
    const { config } = await loadConfig({
      overrides: { StorageDirectory: join(dir, 'data'), HttpPort: 0, Name: 'routes-node', RegisteredUsers: { bob: 'hunter2' } },
    });
    config.OrthancPeers = { far: { name: 'far', url: 'http://127.0.0.1:9/', httpHeaders: {}, userProperties: {} } };
    store = await EmbeddedStore.open(config.StorageDirectory, { commitThreads: 1 });
    app = await buildNode({ config, store, logger: pino({ level: 'silent' }), originator: randomUUID() });
    await app.fastify.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.fastify.server.address();
    port = addr && typeof addr === 'object' ? addr.port : 0;
    // Two patients: an MR study and a CT study, on known dates.
    const mrPatient = { ...makePatient(41, 0), name: 'ROUTES^MARIA', id: 'RT-MR-1' };
    const mrStudy = { ...makeStudy(41, mrPatient, 0, 'BRAIN'), date: '20190305' };
    const ctPatient = { ...makePatient(42, 0), name: 'ROUTES^CARLOS', id: 'RT-CT-2' };
    const ctStudy = { ...makeStudy(42, ctPatient, 0, 'CHEST'), date: '20230711' };
    const files = [
      (
        await writeMrImage(join(dir, 'mr.dcm'), {
          seed: 41,
          index: 0,
          slices: 1,
          patient: mrPatient,
          study: mrStudy,
          series: makeSeries(mrStudy, 1, 'AX'),
        })
      ).path,
      (
        await writeCtSlice(join(dir, 'ct.dcm'), {
          seed: 42,
          index: 0,
          slices: 1,
          patient: ctPatient,
          study: ctStudy,
          series: makeSeries(ctStudy, 1, 'AXIAL'),
        })
      ).path,
    ];
    for (const [key, f] of [
      ['mr', files[0]],
      ['ct', files[1]],
    ] as const) {
      const res = await raw('POST', '/instances', await readFile(f as string));
      assert.equal(res.statusCode, 200, res.body);
      studies[key] = (JSON.parse(res.body) as { ParentStudy: string }).ParentStudy;
    }
  });
  after(async () => {
    await app?.close();
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  interface Res {
    statusCode: number;
    headers: Record<string, string | string[] | undefined>;
    body: string;
  }
  /** One request with the path sent exactly as written (no client-side normalization of `..`). */
  function raw(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Res> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () =>
          resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }),
        );
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }
  const get = (url: string, headers: Record<string, string> = {}) => raw('GET', url, undefined, headers);

  test('the files: media types, security headers, ETag revalidation, and a redirect to the trailing slash', async () => {
    const redirect = await get('/ui');
    assert.equal(redirect.statusCode, 302);
    assert.equal(redirect.headers.location, 'ui/');
    const index = await get('/ui/');
    assert.equal(index.statusCode, 200);
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(index.body, /<script type="module" src="app.js">/);
    assert.match(String(index.headers['content-security-policy']), /default-src 'self'/);
    assert.equal(index.headers['x-content-type-options'], 'nosniff');
    assert.equal(index.headers['cache-control'], 'no-cache');
    const etag = String(index.headers.etag);
    assert.equal((await get('/ui/', { 'if-none-match': etag })).statusCode, 304);
    for (const [file, type] of [
      ['app.js', 'text/javascript; charset=utf-8'],
      ['pages/transfers.js', 'text/javascript; charset=utf-8'],
      ['styles.css', 'text/css; charset=utf-8'],
      ['pages.css', 'text/css; charset=utf-8'],
      ['favicon.svg', 'image/svg+xml'],
    ]) {
      const res = await get(`/ui/${file}`);
      assert.equal(res.statusCode, 200, file);
      assert.equal(res.headers['content-type'], type, file);
    }
    assert.equal((await raw('POST', '/ui/app.js', '')).statusCode, 405);
  });

  test('nothing outside web/ui/, nor of an unknown type, is served', async () => {
    for (const url of [
      '/ui/..%2fpackage.json',
      '/ui/%2e%2e/%2e%2e/package.json',
      '/ui/../../src/errors.ts',
      '/ui/index.html.bak',
      '/ui/missing.js',
      '/ui/%E0%A4%A',
    ]) {
      const res = await get(url);
      // A malformed escape is refused by the router itself (400); the rest are unknown files (404).
      assert.ok(res.statusCode === 404 || (url.endsWith('%A') && res.statusCode === 400), `${url}: ${res.statusCode}`);
      assert.doesNotMatch(res.body, /"dependencies"|XferError/);
    }
  });

  test('the store search: by name or ID, by date range, by modality', async () => {
    const search = async (q: string) => {
      const res = await get(`/ui/api/studies${q}`);
      assert.equal(res.statusCode, 200, res.body);
      return (JSON.parse(res.body) as { Studies: { ID: string; Modalities: string[]; Series: unknown[] }[] }).Studies.map(
        (s) => s.ID,
      ).sort();
    };
    assert.deepEqual(await search(''), [studies.mr, studies.ct].sort());
    assert.deepEqual(await search('?q=maria'), [studies.mr]);
    assert.deepEqual(await search('?q=routes%20carlos'), [studies.ct]);
    assert.deepEqual(await search('?q=RT-CT'), [studies.ct]);
    assert.deepEqual(await search('?from=2020-01-01'), [studies.ct]);
    assert.deepEqual(await search('?to=20200101'), [studies.mr]);
    assert.deepEqual(await search('?from=20190305&to=20190305'), [studies.mr]);
    assert.deepEqual(await search('?modality=ct'), [studies.ct]);
    assert.deepEqual(await search('?modality=MR&q=carlos'), []);
    assert.equal((await get('/ui/api/studies?from=yesterday')).statusCode, 400);
    assert.equal((await get('/ui/api/studies?limit=0')).statusCode, 400);
    assert.equal((await get('/ui/api/studies?offset=-1')).statusCode, 400);
  });

  test('the store search pages: a count of every match, the page asked for, newest first', async () => {
    const page = async (q: string) =>
      JSON.parse((await get(`/ui/api/studies${q}`)).body) as {
        Total: number;
        Offset: number;
        Limit: number;
        Studies: { ID: string; StudyDate: string }[];
      };
    const all = await page('');
    assert.equal(all.Total, 2);
    assert.deepEqual(
      all.Studies.map((s) => s.ID),
      [studies.ct, studies.mr],
    );
    const first = await page('?limit=1');
    assert.deepEqual([first.Total, first.Offset, first.Limit, first.Studies.map((s) => s.ID)], [2, 0, 1, [studies.ct]]);
    const second = await page('?limit=1&offset=1');
    assert.deepEqual([second.Total, second.Offset, second.Studies.map((s) => s.ID)], [2, 1, [studies.mr]]);
    const past = await page('?limit=1&offset=5');
    assert.deepEqual([past.Total, past.Studies], [2, []]);
  });

  test('send refuses an unknown peer, a bad mode, and a pull by a peer without RemoteSelf', async () => {
    const send = (body: unknown) => raw('POST', '/ui/api/send', JSON.stringify(body));
    const resources = [{ Level: 'Study', ID: studies.mr }];
    const unknown = await send({ Resources: resources, Peer: 'nobody' });
    assert.equal(unknown.statusCode, 404);
    assert.equal((await send({ Resources: resources, Peer: 'far', Mode: 'sideways' })).statusCode, 400);
    const pull = await send({ Resources: resources, Peer: 'far', Mode: 'pull' });
    assert.equal(pull.statusCode, 400);
    assert.match((JSON.parse(pull.body) as { Details: string }).Details, /RemoteSelf/);
    assert.equal((await send({ Resources: resources, Peer: 'far', Compression: 'zip' })).statusCode, 400);
    assert.equal((await send([1, 2])).statusCode, 400);
  });

  test('the configuration leaves secrets out; the overview counts the store', async () => {
    const config = JSON.parse((await get('/ui/api/config')).body) as Record<string, unknown>;
    assert.deepEqual(config.RegisteredUsers, { bob: '********' });
    assert.doesNotMatch(JSON.stringify(config), /hunter2/);
    assert.deepEqual(Object.keys(config.OrthancPeers as object), ['far']);
    const overview = JSON.parse((await get('/ui/api/overview')).body) as {
      Name: string;
      Statistics: { CountStudies: number };
      Peers: string[];
      StoreSearch: boolean;
    };
    assert.equal(overview.Name, 'routes-node');
    assert.equal(overview.Statistics.CountStudies, 2);
    assert.deepEqual(overview.Peers, ['far']);
    assert.equal(overview.StoreSearch, true);
    assert.equal((await get('/ui/api/jobs/0123-abc/history')).statusCode, 404);
    const cfg = publicConfig({
      ...(await loadConfig({ overrides: { StorageDirectory: dir } })).config,
      OrthancStore: { url: 'http://o:8042', username: 'u', password: 'p', timeout: 1, rangeCacheSize: 1, proxy: false },
    });
    assert.deepEqual(cfg.OrthancStore, { Url: 'http://o:8042', Timeout: 1, RangeCacheSize: 1, Proxy: false, Username: 'u' });
  });

  test('the events stream opens with the job list', async () => {
    const first = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/ui/api/events', agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        assert.match(String(res.headers['content-type']), /^text\/event-stream/);
        let text = '';
        res.on('data', (b: Buffer) => {
          text += b.toString();
          if (text.includes('event: jobs\n')) {
            req.destroy();
            resolve(text);
          }
        });
      });
      req.on('error', reject);
      req.end();
    });
    assert.match(first, /^retry: 2000\n\nevent: jobs\ndata: \[\]\n\n/);
  });

  test('the extensions of a capabilities answer, whatever its shape', () => {
    assert.deepEqual(extensionNames({ Name: 'dicom-xfer', Extensions: { resume: 1, dedupe: 1, old: 0 } }), ['dedupe', 'resume']);
    assert.deepEqual(extensionNames(['b', 'a', 3]), ['a', 'b']);
    assert.deepEqual(extensionNames({ Extensions: {} }), []);
    assert.deepEqual(extensionNames('nonsense'), []);
  });
});
