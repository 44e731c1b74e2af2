// The peer routes of a real dicom-xfer node: GET /transfers/peers (docs/protocol.md#peers, orthanc-tests'
// test_list_peers), and GET/PUT/DELETE /peers at run time, persisted across a restart, in the shapes the
// real Orthanc 1.10.1 gives (compared side by side when Orthanc is installed).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort } from '../helpers/ports.ts';

const ALICE = { username: 'alice', password: 'orthanctest' };
const AUTH = { authorization: `Basic ${Buffer.from('alice:orthanctest').toString('base64')}` };

/** A loopback server answering every request with `body`; `hang` keeps requests open instead. */
async function tinyServer(body: string | 'hang'): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((_req, res) => {
    if (body === 'hang') return;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  return {
    url: `http://127.0.0.1:${addr.port}/`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown; text: string }> {
  const r = await fetch(url, { headers });
  const text = await r.text();
  return { status: r.status, body: text === '' ? undefined : (JSON.parse(text) as unknown), text };
}

async function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, text, json: text.trim() === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
}

describe('GET /transfers/peers', () => {
  let node: XferNode;
  const servers: { close(): Promise<void> }[] = [];

  before(async () => {
    const port = await freePort();
    const self = `http://127.0.0.1:${port}/`;
    const closed = () => freePort().then((p) => `http://127.0.0.1:${p}/`);
    const noTransfers = await tinyServer('["dicom-web","gdcm"]');
    const notArray = await tinyServer('{"transfers":true}');
    const hang1 = await tinyServer('hang');
    const hang2 = await tinyServer('hang');
    servers.push(noTransfers, notArray, hang1, hang2);
    node = await startXferNode({
      port,
      auth: ALICE,
      config: {
        AuthenticationEnabled: true,
        RegisteredUsers: { alice: 'orthanctest' },
        // As orthanc-tests' IntegrationTestsConfiguration.json: the node itself under three names, and
        // "peer" where nothing runs the plugin.
        OrthancPeers: {
          peer: [await closed(), 'alice', 'orthanctest'],
          'transfers-bidirectional': { Url: self, RemoteSelf: 'transfers-bidirectional', Username: 'alice', Password: 'orthanctest' },
          'transfers-simple': { Url: self, Username: 'alice', Password: 'orthanctest' },
          self: { Url: self, Username: 'alice', Password: 'orthanctest' },
          // Beyond that test: unreachable peers sorted before a good one, with a single worker as the
          // plugin would have (Threads 1), must not make the good one "disabled".
          'a-closed-1': [await closed()],
          'a-closed-2': [await closed()],
          'a-hang-1': [hang1.url],
          'a-hang-2': [hang2.url],
          'a-no-transfers': [noTransfers.url],
          'a-not-an-array': [notArray.url],
          'a-wrong-password': [self, 'alice', 'nope'],
          'b-good': [self, 'alice', 'orthanctest'],
        },
        Transfers: { Threads: 1, PeerConnectivityTimeout: 1 },
      },
    });
  });
  after(async () => {
    await node?.stop();
    for (const s of servers) await s.close();
  });

  test('installed, bidirectional and disabled, every peer probed on its own', async () => {
    const r = await fetch(`${node.url}/transfers/peers`, { headers: AUTH });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    const text = await r.text();
    // The plugin's styled writer: TAB indentation, " : " separators, names sorted.
    assert.match(text, /^\{\n\t"a-closed-1" : "disabled",\n/);
    assert.deepEqual(JSON.parse(text), {
      'a-closed-1': 'disabled',
      'a-closed-2': 'disabled',
      'a-hang-1': 'disabled',
      'a-hang-2': 'disabled',
      'a-no-transfers': 'disabled',
      'a-not-an-array': 'disabled',
      'a-wrong-password': 'disabled',
      'b-good': 'installed',
      peer: 'disabled',
      self: 'installed',
      'transfers-bidirectional': 'bidirectional',
      'transfers-simple': 'installed',
    });
  });

  test('a peer defined at run time is probed too; other methods get 405', async () => {
    const put = await call(
      'PUT',
      `${node.url}/peers/zz-new`,
      { Url: `${node.url}/`, Username: 'alice', Password: 'orthanctest', RemoteSelf: 'x' },
      AUTH,
    );
    assert.equal(put.status, 200);
    const r = await getJson(`${node.url}/transfers/peers`, AUTH);
    assert.equal((r.body as Record<string, string>)['zz-new'], 'bidirectional');
    const post = await fetch(`${node.url}/transfers/peers`, { method: 'POST', headers: AUTH });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET');
  });

  test('GET /peers/{name}/system calls the peer', async () => {
    const r = await getJson(`${node.url}/peers/self/system`, AUTH);
    assert.equal(r.status, 200);
    assert.equal((r.body as { Name: string }).Name, `node-${node.port}`);
    const down = await getJson(`${node.url}/peers/peer/system`, AUTH);
    assert.equal(down.status, 500);
    assert.equal((down.body as { OrthancStatus: number }).OrthancStatus, 9);
  });
});

describe('/peers at run time', () => {
  let dir: string;
  let cert: string;
  let node: XferNode;
  let orthanc: OrthancServer | undefined;
  const PASSWORDS = ['cfg-secret', 'put-secret', 'arr-secret', 'key-secret'];
  let peersConfig: Record<string, unknown>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-peers-routes-'));
    cert = join(dir, 'client.pem');
    await writeFile(cert, 'not read until the peer is called\n');
    peersConfig = {
      short1: ['http://127.0.0.1:1/'],
      short3: ['http://127.0.0.1:2', 'alice', 'cfg-secret'],
      long: {
        Url: 'https://h.example/orthanc',
        Username: 'bob',
        Password: 'cfg-secret',
        HttpHeaders: { 'X-A': '1', 'B-Header': 'b' },
        RemoteSelf: 'me',
        Flag: true,
        N: 3,
        CertificateFile: cert,
        CertificateKeyFile: cert,
        CertificateKeyPassword: 'key-secret',
        Timeout: 5,
      },
    };
    await mkdir(join(dir, 'node'));
    node = await startXferNode({ dir: join(dir, 'node'), config: { OrthancPeers: peersConfig } });
    if (orthancInstalled()) orthanc = await startOrthanc({ config: { OrthancPeers: peersConfig } });
  });
  after(async () => {
    await node?.stop();
    await orthanc?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs the same request on the node and, when installed, on the real Orthanc; returns both. */
  async function both(method: string, path: string, body?: unknown) {
    const ours = await call(method, node.url + path, body);
    const theirs = orthanc ? await call(method, orthanc.url + path, body) : undefined;
    return { ours, theirs };
  }

  function noSecrets(text: string) {
    for (const p of PASSWORDS) assert.ok(!text.includes(p), `"${p}" is revealed`);
  }

  test("GET /peers, ?expand, /peers/{name} and /configuration have Orthanc's shapes", async () => {
    for (const path of [
      '/peers',
      '/peers?expand',
      '/peers/long',
      '/peers/short3',
      '/peers/long/configuration',
      '/peers/short1/configuration',
    ]) {
      const { ours, theirs } = await both('GET', path);
      assert.equal(ours.status, 200, path);
      noSecrets(ours.text);
      if (theirs) {
        assert.equal(theirs.status, 200, path);
        assert.deepEqual(ours.json, theirs.json, path);
        assert.deepEqual(Object.keys(ours.json ?? {}), Object.keys(theirs.json ?? {}), `key order of ${path}`);
      }
    }
    const expand = (await call('GET', `${node.url}/peers?expand`)).json as Record<string, Record<string, unknown>>;
    assert.deepEqual(expand['long'], {
      CertificateFile: cert,
      CertificateKeyFile: null,
      CertificateKeyPassword: null,
      Flag: '1',
      HttpHeaders: ['B-Header', 'X-A'],
      N: '3',
      Password: null,
      Pkcs11: false,
      RemoteSelf: 'me',
      Timeout: 5,
      Url: 'https://h.example/orthanc/',
      Username: 'bob',
    });
  });

  test('PUT defines and replaces peers (long and short forms), DELETE removes them, as Orthanc', async () => {
    const steps: [string, string, unknown?][] = [
      [
        'PUT',
        '/peers/new',
        { Url: 'http://127.0.0.1:5/x', Username: 'u', Password: 'put-secret', RemoteSelf: 'zz', HttpHeaders: { A: 'b' } },
      ],
      ['PUT', '/peers/arr', ['http://127.0.0.1:6', 'u', 'arr-secret']],
      ['PUT', '/peers/arr1', ['http://127.0.0.1:6']],
      ['PUT', '/peers/nourl', { URL: 'http://127.0.0.1:9' }],
      ['PUT', '/peers/short1', { Url: 'http://127.0.0.1:7', Timeout: 9 }],
      ['DELETE', '/peers/short3'],
      ['DELETE', '/peers/arr1'],
    ];
    for (const [method, path, body] of steps) {
      const { ours, theirs } = await both(method, path, body);
      assert.equal(ours.status, 200, `${method} ${path}: ${ours.text}`);
      assert.equal(ours.text, '');
      if (theirs) assert.equal(theirs.status, 200, `${method} ${path} on Orthanc`);
    }
    const { ours, theirs } = await both('GET', '/peers?expand');
    noSecrets(ours.text);
    if (theirs) assert.deepEqual(ours.json, theirs.json);
    assert.deepEqual(Object.keys(ours.json ?? {}), ['arr', 'long', 'new', 'nourl', 'short1']);
  });

  test('unknown peers are 404; bad bodies are 400 naming the key; other methods 405', async () => {
    const { ours: del, theirs: delO } = await both('DELETE', '/peers/unknown');
    assert.equal(del.status, 404);
    if (delO) assert.deepEqual(del.json, delO.json);
    assert.equal((await call('GET', `${node.url}/peers/unknown`)).status, 404);
    assert.equal((await call('GET', `${node.url}/peers/unknown/configuration`)).status, 404);

    const bad: [unknown, RegExp][] = [
      [{ Username: 'x' }, /"Url"/],
      [{ Url: 42 }, /^Url: expected a string, got 42$/],
      [['a', 'b'], /\[url\] or \[url, username, password\]/],
      [{ Url: 'ftp://x' }, /^Url: /],
      [{ Url: 'http://x', HttpHeaders: { A: 1 } }, /^HttpHeaders\.A: /],
      [{ Url: 'http://x', Timeout: -1 }, /^Timeout: /],
      [{ Url: 'http://x', Obj: { a: 1 } }, /^Obj: /],
      [{ Url: 'http://x', CertificateFile: join(dir, 'missing.pem') }, /^CertificateFile: no such file/],
      [42, /expected/],
      ['not json', /not valid JSON/],
      ['', /empty/],
    ];
    for (const [body, detail] of bad) {
      const { ours, theirs } = await both('PUT', '/peers/bad', body);
      assert.equal(ours.status, 400, JSON.stringify(body));
      assert.equal(ours.json?.['OrthancStatus'], 15);
      assert.match(String(ours.json?.['Details']), detail, JSON.stringify(body));
      // Orthanc answers 400 too, except for a body that is not JSON at all and for a missing certificate
      // file (404 there: Orthanc's InexistentFile; a bad body is a 400 here, naming the key).
      const orthancStatus = typeof body === 'string' || JSON.stringify(body).includes('missing.pem') ? 404 : 400;
      if (theirs) assert.equal(theirs.status, orthancStatus, `Orthanc for ${JSON.stringify(body)}`);
    }
    assert.equal((await call('GET', `${node.url}/peers/bad`)).status, 404);
    for (const [method, path] of [
      ['POST', '/peers'],
      ['PUT', '/peers'],
      ['POST', '/peers/long'],
    ] as const) {
      const { ours, theirs } = await both(method, path);
      assert.equal(ours.status, 405, `${method} ${path}`);
      if (theirs) assert.equal(theirs.status, 405);
    }
  });

  test('run-time changes survive a restart; the file is private', async () => {
    const before = (await call('GET', `${node.url}/peers?expand`)).json;
    const mode = (await stat(join(node.dataDir, 'peers.json'))).mode & 0o777;
    assert.equal(mode, 0o600);
    await node.stop({ keep: true });
    node = await startXferNode({ dir: node.dir, config: { OrthancPeers: peersConfig } });
    const afterRestart = await call('GET', `${node.url}/peers?expand`);
    assert.deepEqual(afterRestart.json, before);
    assert.deepEqual(Object.keys(afterRestart.json ?? {}), ['arr', 'long', 'new', 'nourl', 'short1']);
    // And the saved credentials are really used: the defined peer's password reaches the peer.
    const cfg = (await call('GET', `${node.url}/peers/new/configuration`)).json;
    assert.equal(cfg?.['Password'], null);
  });
});
