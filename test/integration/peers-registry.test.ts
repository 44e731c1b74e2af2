// PeerRegistry and Peers in-process, on real files and real loopback servers: validation like the
// configuration file, the saved run-time changes, change events, client replacement, probes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerConfig } from '../../src/config/types.ts';
import { XferError } from '../../src/errors.ts';
import { Peers } from '../../src/peers/peers.ts';
import { PeerRegistry, describePeer, parsePeerInput, peerToLongForm, type PeerChange } from '../../src/peers/registry.ts';

function configPeers(entries: Record<string, unknown>): Record<string, PeerConfig> {
  const out: Record<string, PeerConfig> = {};
  for (const [name, input] of Object.entries(entries)) out[name] = parsePeerInput(name, input);
  return out;
}

function badFormat(detail: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof XferError, String(e));
    assert.equal(e.code, 'BadFileFormat');
    assert.equal(e.http, 400);
    assert.match(e.details ?? '', detail);
    return true;
  };
}

describe('parsePeerInput', () => {
  test('accepts the short and long forms as the configuration file does', () => {
    const short = parsePeerInput('a', ['http://h:8042', 'alice', 'pw']);
    assert.deepEqual(short, { name: 'a', url: 'http://h:8042/', username: 'alice', password: 'pw', httpHeaders: {}, userProperties: {} });
    const long = parsePeerInput('b', { URL: 'https://h/orthanc', HttpHeaders: { T: 'x' }, RemoteSelf: 'me', Flag: true, N: 3, Timeout: 7 });
    assert.equal(long.url, 'https://h/orthanc/');
    assert.deepEqual(long.httpHeaders, { T: 'x' });
    assert.deepEqual(long.userProperties, { RemoteSelf: 'me', Flag: '1', N: '3' });
    assert.equal(long.timeout, 7);
  });

  test('refuses bad bodies with 400 naming the key', () => {
    assert.throws(
      () => parsePeerInput('x', { Url: 'ftp://x' }),
      badFormat(/^Url: expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"$/),
    );
    assert.throws(() => parsePeerInput('x', { Url: 'http://x', HttpHeaders: { A: 1 } }), badFormat(/^HttpHeaders\.A: expected a string/));
    assert.throws(() => parsePeerInput('x', { Url: 'http://x', Timeout: -1 }), badFormat(/^Timeout: expected an integer of at least 0/));
    assert.throws(
      () => parsePeerInput('x', { Url: 'http://x', Obj: { a: 1 } }),
      badFormat(/^Obj: expected a string, true, false or an integer/),
    );
    assert.throws(
      () => parsePeerInput('x', { Url: 'http://x', Password: 'p' }),
      badFormat(/^Password: a Password is given without a Username$/),
    );
    assert.throws(() => parsePeerInput('x', { Username: 'u' }), badFormat(/"Url"/));
    assert.throws(() => parsePeerInput('x', ['http://x', 'u']), badFormat(/\[url\] or \[url, username, password\]/));
    assert.throws(() => parsePeerInput('x', 42), badFormat(/\[url\], \[url, username, password\] or an object/));
    assert.throws(() => parsePeerInput('x', undefined), badFormat(/empty/));
    assert.throws(
      () => parsePeerInput('x', { Url: 'http://x', CertificateFile: '/nonexistent/cert.pem' }),
      badFormat(/^CertificateFile: no such file/),
    );
  });

  test('describePeer hides secrets and matches Orthanc 1.10.1 key by key', () => {
    const p = parsePeerInput('long', {
      Url: 'https://h.example/orthanc',
      Username: 'bob',
      Password: 'pw',
      HttpHeaders: { 'X-A': '1' },
      RemoteSelf: 'me',
      Flag: true,
      N: 3,
      CertificateFile: '/etc/hostname',
      CertificateKeyFile: '/etc/hostname',
      CertificateKeyPassword: 'kp',
      Timeout: 5,
    });
    // Observed on Orthanc 1.10.1 (GET /peers?expand) for the same entry.
    const observed = {
      CertificateFile: '/etc/hostname',
      CertificateKeyFile: null,
      CertificateKeyPassword: null,
      Flag: '1',
      HttpHeaders: ['X-A'],
      N: '3',
      Password: null,
      Pkcs11: false,
      RemoteSelf: 'me',
      Timeout: 5,
      Url: 'https://h.example/orthanc/',
      Username: 'bob',
    };
    const d = describePeer(p);
    assert.deepEqual(d, observed);
    assert.deepEqual(Object.keys(d), Object.keys(observed));
    assert.deepEqual(parsePeerInput('long', peerToLongForm(p)), p);
  });
});

describe('PeerRegistry', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-peers-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('configuration peers, run-time overrides and deletions survive a reopen', async () => {
    const file = join(dir, 'a', 'peers.json');
    const cfg = configPeers({ b: ['http://b:1'], a: ['http://a:1'], c: { Url: 'http://c:1', RemoteSelf: 'x' } });
    const r1 = await PeerRegistry.open({ configPeers: cfg, file });
    assert.deepEqual(r1.names(), ['a', 'b', 'c']);
    assert.equal(r1.source('a'), 'config');
    const events: PeerChange[] = [];
    r1.onChange((c) => events.push(c));
    await r1.put('a', { Url: 'http://a2:2', Username: 'u', Password: 'secret' });
    await r1.put('d', ['http://d:4']);
    await r1.remove('b');
    await assert.rejects(r1.remove('b'), (e: unknown) => e instanceof XferError && e.code === 'InexistentItem' && e.http === 404);
    assert.deepEqual(r1.names(), ['a', 'c', 'd']);
    assert.equal(r1.source('a'), 'runtime');
    assert.equal(r1.version, 3);
    assert.deepEqual(
      events.map((e) => [e.name, e.kind, e.version]),
      [
        ['a', 'put', 1],
        ['d', 'put', 2],
        ['b', 'delete', 3],
      ],
    );
    const st = await stat(file);
    assert.equal(st.mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(dir, 'a')), ['peers.json']);
    const saved = JSON.parse(await readFile(file, 'utf8')) as { Peers: Record<string, unknown> };
    assert.deepEqual(saved.Peers, { a: { Url: 'http://a2:2/', Username: 'u', Password: 'secret' }, b: null, d: { Url: 'http://d:4/' } });

    const r2 = await PeerRegistry.open({ configPeers: cfg, file });
    assert.deepEqual(r2.names(), ['a', 'c', 'd']);
    assert.equal(r2.get('a')?.password, 'secret');
    assert.equal(r2.get('c')?.userProperties['RemoteSelf'], 'x');
    // A deleted configuration peer comes back with a PUT; a run-time-only peer leaves no trace.
    await r2.put('b', ['http://b:9']);
    await r2.remove('d');
    const saved2 = JSON.parse(await readFile(file, 'utf8')) as { Peers: Record<string, unknown> };
    assert.deepEqual(Object.keys(saved2.Peers), ['a', 'b']);
  });

  test('concurrent changes all count', async () => {
    const file = join(dir, 'b', 'peers.json');
    const r = await PeerRegistry.open({ configPeers: {}, file });
    await Promise.all(Array.from({ length: 20 }, (_, i) => r.put(`p${String(i).padStart(2, '0')}`, [`http://h:${1000 + i}`])));
    assert.equal(r.names().length, 20);
    const again = await PeerRegistry.open({ configPeers: {}, file });
    assert.equal(again.names().length, 20);
  });

  test('an unreadable saved file is moved aside; a bad entry is skipped', async () => {
    const sub = join(dir, 'c');
    const file = join(sub, 'peers.json');
    await rm(sub, { recursive: true, force: true });
    const { mkdir } = await import('node:fs/promises');
    await mkdir(sub, { recursive: true });
    await writeFile(file, '{ not json');
    const r = await PeerRegistry.open({ configPeers: configPeers({ a: ['http://a:1'] }), file });
    assert.deepEqual(r.names(), ['a']);
    const names = await readdir(sub);
    assert.equal(names.length, 1);
    assert.match(names[0] ?? '', /^peers\.json\.bad-\d+$/);
    await writeFile(file, JSON.stringify({ Peers: { good: ['http://g:1'], bad: { Url: 'ftp://x' } } }));
    const r2 = await PeerRegistry.open({ configPeers: {}, file });
    assert.deepEqual(r2.names(), ['good']);
  });

  test('a failed save changes nothing', async () => {
    const sub = join(dir, 'd');
    const file = join(sub, 'peers.json');
    const r = await PeerRegistry.open({ configPeers: {}, file });
    // A directory where the file should go: the rename over it fails.
    const { mkdir } = await import('node:fs/promises');
    await mkdir(file, { recursive: true });
    await assert.rejects(r.put('x', ['http://x:1']), (e: unknown) => e instanceof XferError && e.code === 'CannotWriteFile');
    assert.deepEqual(r.names(), []);
    assert.equal(r.version, 0);
    assert.deepEqual(await readdir(sub), ['peers.json']);
    // The registry still works once the obstacle is gone.
    await rm(file, { recursive: true });
    await r.put('x', ['http://x:1']);
    assert.deepEqual(r.names(), ['x']);
  });
});

describe('Peers', () => {
  let plugins: Server;
  let url: string;
  before(async () => {
    plugins = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.url === '/other/plugins' ? '["dicom-web"]' : '["transfers","dicom-web"]');
    });
    await new Promise<void>((r) => plugins.listen(0, '127.0.0.1', () => r()));
    const addr = plugins.address();
    if (!addr || typeof addr === 'string') throw new Error('no address');
    url = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    await new Promise<void>((r) => plugins.close(() => r()));
  });

  async function open(entries: Record<string, unknown>): Promise<Peers> {
    const registry = await PeerRegistry.open({ configPeers: configPeers(entries) });
    return new Peers(registry, { settings: { httpTimeout: 5, verifyPeers: true }, connectivityTimeout: 2, probeConcurrency: 4 });
  }

  test('probes keep their result and round-trip time; a change drops them and the client', async () => {
    const peers = await open({ t: [url], bi: { Url: url, RemoteSelf: 'me' }, other: [`${url}/other`] });
    try {
      assert.equal(peers.lastProbe('t'), undefined);
      const all = await peers.probeAll();
      assert.deepEqual(
        all.map((p) => [p.name, p.status, p.reachable]),
        [
          ['bi', 'bidirectional', true],
          ['other', 'disabled', true],
          ['t', 'installed', true],
        ],
      );
      const t = peers.lastProbe('t');
      assert.deepEqual(t?.plugins, ['transfers', 'dicom-web']);
      assert.ok(t?.rttMs !== undefined && t.rttMs >= 0);
      assert.ok((peers.stats('t')?.bytesReceived ?? 0) > 0);

      const before = peers.client('t');
      assert.equal(peers.client('t'), before);
      await peers.registry.put('t', { Url: url, Username: 'u', Password: 'p' });
      assert.equal(peers.lastProbe('t'), undefined);
      const afterChange = peers.client('t');
      assert.notEqual(afterChange, before);
      await assert.rejects(
        before.json({ method: 'GET', path: '/plugins' }),
        (e: unknown) => e instanceof XferError && e.code === 'BadSequenceOfCalls',
      );
      assert.equal((await afterChange.json({ method: 'GET', path: '/plugins' })).status, 200);

      await peers.registry.remove('t');
      assert.throws(
        () => peers.client('t'),
        (e: unknown) => e instanceof XferError && e.code === 'InexistentItem',
      );
      assert.equal(peers.stats('t'), undefined);
    } finally {
      await peers.close();
    }
  });
});
