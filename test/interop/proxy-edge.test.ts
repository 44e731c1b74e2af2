// dicom-xfer --proxy in front of a real Orthanc 1.10.1 is transparent for what its HTTP layer used to
// refuse: an empty or unknown Expect header, a Content-Type it cannot read, Orthanc's method override
// (`GET ...?_method=PUT` with a body). Each request is sent to Orthanc directly and through the proxy,
// over raw sockets, and the answers compared; a stand-in server shows the request arrives as it was sent.
// Also: IsHttpServerSecure, and cross-site requests refused.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { assertOrthancError, request, type RawAnswer } from '../helpers/raw-http.ts';

const REAL = REAL_DICOM;

const portOf = (url: string): number => Number(new URL(url).port);
const parsed = (a: RawAnswer): unknown => JSON.parse(a.body) as unknown;

describe("dicom-xfer --proxy is transparent for Orthanc's clients", {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let orthanc: OrthancServer;
  let proxy: XferNode;
  let direct: number;
  let through: number;
  let dicom: Buffer;

  before(async () => {
    orthanc = await startOrthanc({ name: 'orthanc-behind-proxy-edge' });
    proxy = await startXferNode({ extraArgs: ['--orthanc', orthanc.url, '--proxy'] });
    direct = portOf(orthanc.url);
    through = proxy.port;
    dicom = await readFile(join(REAL, 'DummyCT.dcm'));
  });
  after(async () => {
    await proxy?.stop();
    await orthanc?.stop();
  });

  test('an empty or unknown Expect header: POST /instances and PUT /modalities/{id} answer as Orthanc does', async () => {
    for (const expect of ['', 'foo']) {
      const a = await request(direct, 'POST', '/instances', { Expect: expect }, dicom);
      const b = await request(through, 'POST', '/instances', { Expect: expect }, dicom);
      assert.equal(a.status, 200, a.body);
      assert.equal(b.status, 200, `Expect: "${expect}": ${b.body}`);
      assert.equal((parsed(b) as { ID: string }).ID, (parsed(a) as { ID: string }).ID);
      const modality = JSON.stringify({ AET: 'EXPECT', Host: '127.0.0.1', Port: 104 });
      const c = await request(direct, 'PUT', '/modalities/expect-direct', { Expect: expect }, modality);
      const d = await request(through, 'PUT', '/modalities/expect-proxy', { Expect: expect }, modality);
      assert.equal(c.status, 200, c.body);
      assert.equal(d.status, c.status, `Expect: "${expect}": ${d.body}`);
    }
    const modalities = (await (await fetch(`${orthanc.url}/modalities`)).json()) as string[];
    assert.ok(modalities.includes('expect-proxy'), JSON.stringify(modalities));
  });

  test('a Content-Type the node cannot read (nope, empty) is forwarded to Orthanc as sent', async () => {
    const uid = '1.2.840.113619.2.176.2025.1499492.7391.1171285944.390';
    for (const ct of ['nope', '']) {
      const a = await request(direct, 'POST', '/tools/lookup', { 'Content-Type': ct }, uid);
      const b = await request(through, 'POST', '/tools/lookup', { 'Content-Type': ct }, uid);
      assert.equal(b.status, a.status, `Content-Type: "${ct}": ${b.body}`);
      assert.deepEqual(parsed(b), parsed(a));
      const c = await request(direct, 'POST', '/instances', { 'Content-Type': ct }, dicom);
      const d = await request(through, 'POST', '/instances', { 'Content-Type': ct }, dicom);
      assert.equal(d.status, c.status, `Content-Type: "${ct}": ${d.body}`);
      assert.deepEqual(parsed(d), parsed(c));
    }
  });

  test("Orthanc's method override: GET ...?_method=PUT with a body reaches Orthanc with its body", async () => {
    const modality = JSON.stringify({ AET: 'OVERRIDE', Host: '127.0.0.1', Port: 105 });
    const a = await request(direct, 'GET', '/modalities/override-direct?_method=PUT', {}, modality);
    const b = await request(through, 'GET', '/modalities/override-proxy?_method=PUT', {}, modality);
    assert.equal(a.status, 200, a.body);
    assert.equal(b.status, 200, b.body);
    const list = (await (await fetch(`${orthanc.url}/modalities?expand`)).json()) as Record<string, { AET: string; Port: number }>;
    assert.equal(list['override-proxy']?.AET, 'OVERRIDE');
    assert.equal(list['override-proxy']?.Port, 105);
    assert.deepEqual(list['override-proxy'], list['override-direct']);
  });

  test('GET /system through the proxy says the setup is secure (loopback only)', async () => {
    const system = (await (await fetch(`${proxy.url}/system`)).json()) as Record<string, unknown>;
    assert.equal(system['IsHttpServerSecure'], true);
  });

  test('a cross-site page cannot change Orthanc through the proxy', async () => {
    const before = ((await (await fetch(`${orthanc.url}/modalities`)).json()) as string[]).length;
    const evil = { Origin: 'http://evil.example.com', 'Content-Type': 'text/plain' };
    assertOrthancError(
      await request(through, 'PUT', '/modalities/evil', evil, '{"AET":"EVIL","Host":"127.0.0.1","Port":1}'),
      403,
      'PUT',
      '/modalities/evil',
    );
    assertOrthancError(
      await request(through, 'GET', '/modalities/expect-proxy?_method=DELETE', evil),
      403,
      'GET',
      '/modalities/expect-proxy',
    );
    assertOrthancError(await request(through, 'GET', '/system', { Host: 'evil.example.com' }), 403, 'GET', '/system');
    assert.equal(((await (await fetch(`${orthanc.url}/modalities`)).json()) as string[]).length, before);
  });
});

// A small loopback server in Orthanc's place echoes what reaches it, byte for byte.
describe('dicom-xfer --proxy passes a request on as it came', () => {
  let server: Server;
  let node: XferNode;

  before(async () => {
    server = createServer((req, res) => {
      const hash = createHash('md5');
      let length = 0;
      req.on('data', (d: Buffer) => {
        hash.update(d);
        length += d.length;
      });
      req.on('end', () => {
        const body = JSON.stringify({ url: req.url, method: req.method, headers: req.headers, length, md5: hash.digest('hex') });
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    node = await startXferNode({ extraArgs: ['--orthanc', `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, '--proxy'] });
  });
  after(async () => {
    await node?.stop();
    server?.closeAllConnections();
    await new Promise<void>((r) => server?.close(() => r()));
  });

  test('method, query, headers, an unreadable Content-Type and the body of a GET reach the server unchanged', async () => {
    const body = Buffer.from('{"AET":"X"}');
    const md5 = createHash('md5').update(body).digest('hex');
    type Seen = { url: string; method: string; headers: Record<string, string>; length: number; md5: string };
    const cases: { method: string; path: string; headers: Record<string, string> }[] = [
      { method: 'POST', path: '/tools/lookup?a=1', headers: { 'Content-Type': 'nope', 'X-Custom': 'kept' } },
      { method: 'POST', path: '/instances', headers: { 'Content-Type': '' } },
      { method: 'GET', path: '/modalities/m?_method=PUT', headers: { 'Content-Type': 'application/json' } },
      { method: 'PUT', path: '/x', headers: { Expect: '', 'Content-Type': 'text/plain; charset=weird' } },
      { method: 'DELETE', path: '/y?z', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } },
    ];
    for (const c of cases) {
      const a = await request(node.port, c.method, c.path, c.headers, body);
      assert.equal(a.status, 200, `${c.method} ${c.path}: ${a.body}`);
      const seen = JSON.parse(a.body) as Seen;
      assert.equal(seen.method, c.method);
      assert.equal(seen.url, c.path);
      assert.equal(seen.length, body.length, `${c.method} ${c.path}`);
      assert.equal(seen.md5, md5);
      assert.equal(seen.headers['content-type'], c.headers['Content-Type'], `${c.method} ${c.path}`);
      if (c.headers['X-Custom']) assert.equal(seen.headers['x-custom'], 'kept');
      assert.equal(seen.headers['expect'], undefined);
    }
  });
});

describe('dicom-xfer --proxy and /modalities', { skip: !orthancInstalled() && 'Orthanc is not installed' }, () => {
  test("Orthanc's modalities stay Orthanc's, unless the node has DicomModalities of its own", async () => {
    const orthanc = await startOrthanc({ config: { DicomModalities: { 'orthanc-own': ['OWN', '127.0.0.1', 104] } } });
    const plain = await startXferNode({ extraArgs: ['--orthanc', orthanc.url, '--proxy'] });
    const own = await startXferNode({
      extraArgs: ['--orthanc', orthanc.url, '--proxy'],
      config: { DicomModalities: { 'node-own': ['NODE', '127.0.0.1', 105] } },
    });
    try {
      const list = async (url: string) => (await (await fetch(`${url}/modalities`)).json()) as string[];
      assert.deepEqual(await list(plain.url), ['orthanc-own'], 'forwarded to Orthanc');
      assert.deepEqual(await list(own.url), ['node-own'], "the node's own");
    } finally {
      await own.stop();
      await plain.stop();
      await orthanc.stop();
    }
  });
});
