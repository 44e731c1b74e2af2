// dicom-xfer --proxy without a real Orthanc: Orthanc down answered with 502, --proxy refused without a
// store, and (with a stand-in server) redirects, a path prefix and connection-specific headers.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BIN, startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { describe } from '../helpers/data.ts';
import { basic, call, getJson, json } from '../helpers/proxy-calls.ts';

describe('dicom-xfer --proxy with Orthanc down', () => {
  let node: XferNode;

  before(async () => {
    const port = await freePort();
    // The configuration key this time, rather than the flag.
    node = await startXferNode({ config: { OrthancStore: { Url: `http://127.0.0.1:${port}`, Proxy: true } } });
  });

  after(async () => {
    await node?.stop();
  });

  test("forwarded requests answer 502 in Orthanc's JSON error shape; dicom-xfer's routes still answer", async () => {
    for (const [method, path] of [
      ['GET', '/patients'],
      ['POST', '/instances'],
      ['GET', '/app/explorer.html'],
    ] as const) {
      const a = await call(node.url, method, path, method === 'POST' ? Buffer.alloc(1000) : undefined);
      assert.equal(a.status, 502, `${method} ${path}: ${a.body.toString()}`);
      const body = json(a);
      assert.equal(body['HttpStatus'], 502);
      assert.equal(body['Method'], method);
      assert.equal(body['Uri'], path);
      assert.match(String(body['Details']), /cannot be reached/);
    }
    assert.deepEqual(await getJson(node.url, '/jobs'), []);
    assert.deepEqual(await getJson(node.url, '/plugins'), ['transfers']);
    const script = await call(node.url, 'GET', '/plugins/explorer.js');
    assert.equal(script.status, 200);
    assert.match(script.body.toString(), /Transfers accelerator/);
  });

  test('--proxy without an Orthanc store is refused at start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-proxy-flag-'));
    try {
      const out = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, 'serve', '--proxy', '--port', '0', '--data', join(dir, 'data')], {
          cwd: dir,
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.on('error', reject);
        child.on('exit', (code) => {
          clearTimeout(t);
          resolve({ code, stderr });
        });
      });
      assert.equal(out.code, 1);
      assert.match(out.stderr, /--proxy needs --orthanc/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// What Orthanc 1.10.1 never does but a server behind a reverse proxy may: absolute redirects, a path
// prefix, and connection-specific headers. A small HTTP server on loopback plays that Orthanc here.
describe('dicom-xfer --proxy to an Orthanc under a path prefix', () => {
  let server: Server;
  let node: XferNode;
  let origin: string;

  before(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? '';
      if (url === '/orthanc/redirect-absolute') {
        res.writeHead(302, { location: `${origin}/orthanc/app/explorer.html` }).end();
      } else if (url === '/orthanc/redirect-path') {
        res.writeHead(302, { location: '/orthanc/app/explorer.html' }).end();
      } else if (url.startsWith('/orthanc/echo')) {
        const parts: Buffer[] = [];
        req.on('data', (d: Buffer) => parts.push(d));
        req.on('end', () => {
          const body = JSON.stringify({ url, method: req.method, headers: req.headers, length: Buffer.concat(parts).length });
          res
            .writeHead(200, { 'content-type': 'application/json', connection: 'x-drop, keep-alive', 'x-drop': '1', 'x-kept': '1' })
            .end(body);
        });
      } else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    node = await startXferNode({ extraArgs: ['--orthanc', `${origin}/orthanc/`, '--proxy'] });
  });

  after(async () => {
    await node?.stop();
    server?.closeAllConnections();
    await new Promise<void>((r) => server?.close(() => r()));
  });

  test('redirects to the server itself point at the node; the prefix is added and removed', async () => {
    const abs = await call(node.url, 'GET', '/redirect-absolute');
    assert.equal(abs.status, 302);
    assert.equal(abs.headers['location'], `http://127.0.0.1:${node.port}/app/explorer.html`);
    const path = await call(node.url, 'GET', '/redirect-path');
    assert.equal(path.headers['location'], '/app/explorer.html');
  });

  test('the path and query go on as sent; connection-specific headers stop at the node', async () => {
    const body = Buffer.alloc(300_000, 7);
    const a = await call(node.url, 'PATCH', '/echo?x=1&y', body, {
      connection: 'x-secret',
      'x-secret': 'hop',
      'x-visible': 'end-to-end',
      authorization: basic('u', 'p'),
    });
    assert.equal(a.status, 200);
    const seen = json<{ url: string; method: string; headers: Record<string, string>; length: number }>(a);
    assert.equal(seen.url, '/orthanc/echo?x=1&y');
    assert.equal(seen.method, 'PATCH');
    assert.equal(seen.length, body.length);
    assert.equal(seen.headers['content-length'], String(body.length));
    assert.equal(seen.headers['x-secret'], undefined);
    assert.equal(seen.headers['x-visible'], 'end-to-end');
    assert.equal(seen.headers['authorization'], basic('u', 'p'));
    assert.equal(a.headers['x-drop'], undefined);
    assert.equal(a.headers['x-kept'], '1');
  });
});
