// The HTTP edge of a real node (the dicom-xfer command) over raw loopback sockets: Expect headers ignored,
// IsHttpServerSecure as Orthanc computes it, Host names (DNS rebinding) and cross-site requests (CSRF)
// refused while Orthanc, curl and scripts keep working, parser errors in Orthanc's JSON shape, a body that
// trickles cut with 408, and the bound on connections.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSigned } from '../helpers/pki.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc } from '../helpers/orthanc.ts';
import { assertOrthancError, exchange, openSocket, parseAnswer, request, type RawAnswer } from '../helpers/raw-http.ts';

const REAL = REAL_DICOM;
/** Instances stored on the node, asked on a connection that closes after the answer. */
async function instanceCount(node: XferNode): Promise<number> {
  // Under a small HttpMaxConnections, the connection a test just had cut may not be seen closed yet by the
  // node: its 503 is then asked again (bounded) once the close is through.
  let a = await request(node.port, 'GET', '/instances', {});
  for (let i = 0; i < 50 && a.status === 503; i++) {
    await new Promise((r) => setTimeout(r, 100));
    a = await request(node.port, 'GET', '/instances', {});
  }
  assert.equal(a.status, 200, a.body);
  return (JSON.parse(a.body) as string[]).length;
}

describe('HTTP edge of a node', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  let dicom: Buffer;
  let dicom2: Buffer;

  before(async () => {
    node = await startXferNode();
    dicom = await readFile(join(REAL, 'DummyCT.dcm'));
    dicom2 = await readFile(join(REAL, 'ColorTestMalaterre.dcm'));
  });
  after(async () => {
    await node?.stop();
  });

  test('an empty or unknown Expect header is ignored on POST /instances and PUT /peers/{name}', async () => {
    for (const expect of ['', 'foo']) {
      const post = await request(node.port, 'POST', '/instances', { Expect: expect }, dicom);
      assert.equal(post.status, 200, `Expect: "${expect}": ${post.body}`);
      assert.ok(['Success', 'AlreadyStored'].includes((JSON.parse(post.body) as { Status: string }).Status));
      const put = await request(node.port, 'PUT', '/peers/expect-peer', { Expect: expect }, JSON.stringify({ Url: 'http://127.0.0.1:9/' }));
      assert.equal(put.status, 200, `Expect: "${expect}": ${put.body}`);
    }
    const peers = (await (await fetch(`${node.url}/peers`)).json()) as string[];
    assert.ok(peers.includes('expect-peer'));
    // 100-continue still works as HTTP says.
    const cont = await request(node.port, 'POST', '/instances', { Expect: '100-continue' }, dicom);
    assert.match(cont.body, /200 OK|"Status"/);
  });

  test('GET /system: IsHttpServerSecure is true on the default node (no remote access)', async () => {
    const system = (await (await fetch(`${node.url}/system`)).json()) as Record<string, unknown>;
    assert.equal(system['IsHttpServerSecure'], true);
  });

  test("Host: only this node's names are served without authentication (DNS rebinding)", async () => {
    for (const host of ['evil.example.com', `evil.example.com:${node.port}`, 'localhost.evil.example']) {
      const a = await request(node.port, 'GET', '/system', { Host: host });
      const body = assertOrthancError(a, 403, 'GET', '/system');
      assert.match(String(body['Details']), /HttpAllowedHosts/);
    }
    for (const host of [
      `127.0.0.1:${node.port}`,
      `localhost:${node.port}`,
      'LOCALHOST',
      `[::1]:${node.port}`,
      '127.0.0.2',
      'app.localhost',
      hostname(),
    ]) {
      const a = await request(node.port, 'GET', '/system', { Host: host });
      assert.equal(a.status, 200, `${host}: ${a.body}`);
    }
    // A refused host stores nothing.
    const before = await instanceCount(node);
    const a = await request(node.port, 'POST', '/instances', { Host: 'evil.example.com' }, dicom2);
    assertOrthancError(a, 403, 'POST', '/instances');
    assert.equal(await instanceCount(node), before);
  });

  test('cross-site browser requests are refused 403 and change nothing', async () => {
    const before = await instanceCount(node);
    const evil = `http://127.0.0.1:${node.port + 1}`;
    const cases: Record<string, string>[] = [
      { Origin: evil, 'Content-Type': 'text/plain' },
      { Origin: 'http://evil.example.com', 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'no-cors' },
      { Origin: 'null', 'Content-Type': 'application/x-www-form-urlencoded' },
      { 'Sec-Fetch-Site': 'same-site', 'Content-Type': 'multipart/form-data; boundary=x' },
      { Referer: `${evil}/attack.html`, 'Content-Type': 'text/plain' },
    ];
    for (const headers of cases) {
      const a = await request(node.port, 'POST', '/instances', headers, dicom2);
      assertOrthancError(a, 403, 'POST', '/instances');
    }
    // Orthanc's method override is a state change too.
    const over = await request(node.port, 'GET', '/instances?_method=POST', { Origin: evil });
    assertOrthancError(over, 403, 'GET', '/instances');
    const send = await request(node.port, 'POST', '/transfers/send', { Origin: evil, 'Content-Type': 'text/plain' }, '{}');
    assertOrthancError(send, 403, 'POST', '/transfers/send');
    const ui = await request(
      node.port,
      'POST',
      '/ui/api/send',
      { Origin: evil, 'Content-Type': 'application/x-www-form-urlencoded' },
      'a=b',
    );
    assertOrthancError(ui, 403, 'POST', '/ui/api/send');
    assert.equal(await instanceCount(node), before);
    // Reading stays open to any page (answers of another origin are not readable by it anyway).
    assert.equal((await request(node.port, 'GET', '/system', { Origin: evil })).status, 200);
  });

  test('same-origin pages and non-browser clients keep working', async () => {
    const own = `http://127.0.0.1:${node.port}`;
    const ok: Record<string, string>[] = [
      { Origin: own, 'Sec-Fetch-Site': 'same-origin', 'Content-Type': 'application/octet-stream' },
      { Origin: `http://localhost:${node.port}`, Host: `localhost:${node.port}` },
      // Orthanc's own peer store: a form content type, no Origin.
      { 'Content-Type': 'application/x-www-form-urlencoded' },
      // A script without a content type; curl's defaults.
      {},
      { 'User-Agent': 'curl/8.5.0', Accept: '*/*', 'Content-Type': 'application/x-www-form-urlencoded' },
      { 'Sec-Fetch-Site': 'none' },
      { Referer: `${own}/ui/`, 'Content-Type': 'text/plain' },
      // The dashboard behind a reverse proxy that passes on the name it received.
      { Origin: 'https://dicom.example.org', 'X-Forwarded-Host': 'dicom.example.org', 'Sec-Fetch-Site': 'same-origin' },
    ];
    for (const headers of ok) {
      const a = await request(node.port, 'POST', '/instances', headers, dicom);
      assert.equal(a.status, 200, `${JSON.stringify(headers)}: ${a.body}`);
    }
    const find = await request(node.port, 'POST', '/tools/find', {}, JSON.stringify({ Level: 'Instance', Query: {} }));
    assert.notEqual(find.status, 403, find.body);
  });

  test("requests the HTTP parser refuses are answered in Orthanc's JSON shape", async () => {
    const bad = await exchange(node.port, [`GET /%zz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`]);
    assertOrthancError(bad, 400, 'GET', '/%zz');
    const big = await exchange(node.port, [`GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`]);
    assertOrthancError(big, 431, 'GET', '/system');
    const garbage = await exchange(node.port, ['NOT HTTP AT ALL\r\n\r\n']);
    assert.equal(garbage.status, 400);
    assert.equal((JSON.parse(garbage.body) as Record<string, unknown>)['HttpStatus'], 400);
    const badHeader = await exchange(node.port, [`GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n`]);
    assertOrthancError(badHeader, 400, 'GET', '/system');
    // The node still serves.
    assert.equal((await fetch(`${node.url}/system`)).status, 200);
  });
});

describe('HTTP edge: remote access without authentication is insecure', () => {
  test('GET /system says IsHttpServerSecure false, and true again with authentication', async () => {
    const open = await startXferNode({ config: { RemoteAccessAllowed: true, AuthenticationEnabled: false, HttpHost: '127.0.0.1' } });
    try {
      const system = (await (await fetch(`${open.url}/system`)).json()) as Record<string, unknown>;
      assert.equal(system['IsHttpServerSecure'], false);
    } finally {
      await open.stop();
    }
    const auth = { username: 'u', password: 'p' };
    const closed = await startXferNode({
      config: { RemoteAccessAllowed: true, AuthenticationEnabled: true, RegisteredUsers: { u: 'p' }, HttpHost: '127.0.0.1' },
      auth,
    });
    try {
      const r = await fetch(`${closed.url}/system`, { headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` } });
      assert.equal(((await r.json()) as Record<string, unknown>)['IsHttpServerSecure'], true);
      // With authentication, any host name is served (the credentials protect it).
      const a = await request(closed.port, 'GET', '/system', {
        Host: 'dicom.example.org',
        Authorization: `Basic ${Buffer.from('u:p').toString('base64')}`,
      });
      assert.equal(a.status, 200, a.body);
    } finally {
      await closed.stop();
    }
  });
});

describe('HTTP edge: HttpAllowedHosts', { skip: needs(REAL_DICOM) }, () => {
  test('a listed host name is served, others still refused', async () => {
    const n = await startXferNode({ config: { HttpAllowedHosts: ['dicom.example.org'] } });
    try {
      assert.equal((await request(n.port, 'GET', '/system', { Host: `DICOM.example.org:${n.port}` })).status, 200);
      assertOrthancError(await request(n.port, 'GET', '/system', { Host: 'other.example.org' }), 403, 'GET', '/system');
      // A page of a listed name may post (a reverse proxy that gives the node its own Host).
      const dicom = await readFile(join(REAL, 'DummyCT.dcm'));
      assert.equal((await request(n.port, 'POST', '/instances', { Origin: 'https://dicom.example.org' }, dicom)).status, 200);
      assertOrthancError(
        await request(n.port, 'POST', '/instances', { Origin: 'https://other.example.org' }, dicom),
        403,
        'POST',
        '/instances',
      );
    } finally {
      await n.stop();
    }
  });
});

describe('HTTP edge: slow bodies and connections', () => {
  let node: XferNode;
  before(async () => {
    // Windows of 2 s (HttpTimeout) at 64 bytes/s at least: a byte every 300 ms is cut, never idle for 2 s.
    node = await startXferNode({ config: { HttpTimeout: 2, HttpRequestMinimumRate: 64, HttpMaxConnections: 2 } });
  });
  after(async () => {
    await node?.stop();
  });

  test("a body that trickles is answered 408 in Orthanc's shape", async () => {
    const head = `POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n`;
    // At most 200 bytes (a minute at this pace) before the node must have answered.
    const parts: string[] = [head, ...Array.from({ length: 200 }, () => 'x')];
    const a = await exchange(node.port, parts, 300);
    assertOrthancError(a, 408, 'POST', '/instances');
    assert.equal(await instanceCount(node), 0);
  });

  test('the rest of a body no route reads may not trickle for ever after the answer', async () => {
    const head = `GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n`;
    const parts: string[] = [head, ...Array.from({ length: 200 }, () => 'x')];
    const a = await exchange(node.port, parts, 300, true);
    assert.equal(a.status, 200);
    assert.ok(a.closed, 'the node closed the connection');
  });

  test('past HttpMaxConnections, a new connection gets 503 and is closed; later ones are served again', async () => {
    // The earlier tests' connections (fetch keeps its own open for a few seconds) may still count: wait until
    // a new connection is served, so that at most one other is open, then give its close time to be seen.
    let ready = 0;
    for (let i = 0; i < 100 && ready !== 200; i++) {
      ready = (await exchange(node.port, [`GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`])).status;
      if (ready !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(ready, 200);
    await new Promise((r) => setTimeout(r, 300));
    const held: Socket[] = [];
    let refused: RawAnswer | undefined;
    try {
      // Connections held open with a keep-alive request each, until one is refused. One other connection
      // may still be open, so one or two are served first.
      for (let i = 0; i < 5 && !refused; i++) {
        const s = await openSocket(node.port);
        held.push(s);
        const answer = new Promise<RawAnswer>((resolve) => {
          let text = '';
          s.on('data', (d: Buffer) => {
            text += d.toString('latin1');
            const a = parseAnswer(text, false);
            if (a.status && Buffer.byteLength(a.body, 'latin1') >= Number(a.headers['content-length'] ?? 0)) resolve(a);
          });
        });
        s.write(`GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        const a = await answer;
        if (a.status !== 200) refused = a;
      }
      assert.ok(refused, 'no connection was refused');
      assert.ok(held.length === 2 || held.length === 3, `refused after ${held.length - 1} served connections`);
      assertOrthancError(refused, 503, 'GET', '/system');
      assert.equal(refused.headers['retry-after'], '5');
      assert.equal(refused.headers['connection'], 'close');
      const last = held[held.length - 1] as Socket;
      await new Promise<void>((r) => (last.destroyed || last.readableEnded ? r() : last.once('close', () => r())));
    } finally {
      for (const s of held) s.destroy();
    }
    // Once the held connections are gone, a new one is served (bounded wait for the close to be seen).
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await exchange(node.port, [`GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`])).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 200);
  });
});

describe('HTTP edge: a real Orthanc stores into the node', {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  test("Orthanc's peer store (form content type, no Origin) is accepted", async () => {
    const node = await startXferNode();
    const orthanc = await startOrthanc({ config: { OrthancPeers: { node: [node.url] } } });
    try {
      const up = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: await readFile(join(REAL, 'DummyCT.dcm')) });
      assert.equal(up.status, 200);
      const { ID } = (await up.json()) as { ID: string };
      const store = await fetch(`${orthanc.url}/peers/node/store`, { method: 'POST', body: ID });
      assert.equal(store.status, 200, await store.clone().text());
      assert.deepEqual(await (await fetch(`${node.url}/instances`)).json(), [ID]);
    } finally {
      await orthanc.stop();
      await node.stop();
    }
  });
});

describe('HTTP edge: HTTPS', () => {
  test('the connection bound holds over TLS too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-edge-tls-'));
    const { key, crt } = selfSigned(dir, 'IP:127.0.0.1');
    const pem = join(dir, 'both.pem');
    await writeFile(pem, (await readFile(crt, 'utf8')) + (await readFile(key, 'utf8')));
    const ca = await readFile(crt, 'utf8');
    const node = await startXferNode({ config: { SslEnabled: true, SslCertificate: pem, HttpMaxConnections: 1 }, https: true });
    const sockets: TLSSocket[] = [];
    /** A GET /system on a new TLS connection kept open; its status. */
    const ask = (): Promise<number> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: node.port, ca }, () => s.write('GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
        sockets.push(s);
        s.once('data', (d: Buffer) => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'))?.[1] ?? 0)));
        s.once('error', reject);
      });
    try {
      assert.equal(await ask(), 200);
      assert.equal(await ask(), 503);
    } finally {
      for (const s of sockets) s.destroy();
      await node.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
