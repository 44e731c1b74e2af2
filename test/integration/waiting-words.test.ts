// The plain words of a wait (src/transfer/waiting.ts) for the failures a peer call really meets, made on
// loopback through the real PeerClient: nothing listening, a connection cut, a server that never answers,
// a self-signed certificate, 401, 403 and 5xx answers. Host-name failures cannot be made without a
// resolver: those are the errors Node raises, as it raises them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PeerClient } from '../../src/peers/client.ts';
import { parsePeerInput } from '../../src/peers/registry.ts';
import { plainCause, waitText, waitingText } from '../../src/transfer/waiting.ts';
import { freePort } from '../helpers/ports.ts';

const SETTINGS = { httpTimeout: 10, verifyPeers: true };

/** The error of one GET through the real client of peer "b" at `url`. */
async function failureOf(url: string, timeoutMs?: number): Promise<unknown> {
  const c = new PeerClient(parsePeerInput('b', { Url: url }), SETTINGS);
  try {
    await c.json({ method: 'GET', path: '/system', ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  } catch (e) {
    return e;
  } finally {
    await c.destroy();
  }
  throw new Error(`GET ${url}/system succeeded`);
}

async function listening<T extends Server | NetServer>(server: T): Promise<{ server: T; port: number }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return { server, port: a.port };
}

describe('why a call to a peer failed, in plain words', () => {
  let status: { server: Server; port: number };
  let cutter: { server: NetServer; port: number };
  let silent: { server: NetServer; port: number };
  let tls: { server: Server; port: number };
  let pkiDir: string;
  const sockets = new Set<Socket>();

  before(async () => {
    // Answers the status named in the path: /401/system -> 401, with Orthanc's error document.
    status = await listening(
      createServer((req, res) => {
        const code = Number((req.url ?? '').split('/')[1]);
        const body = JSON.stringify({ Message: code === 503 ? 'The database is currently not available' : 'Refused', HttpStatus: code });
        res.writeHead(code, { 'content-type': 'application/json' }).end(body);
      }),
    );
    cutter = await listening(createNetServer((s) => s.destroy()));
    silent = await listening(
      createNetServer((s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      }),
    );
    pkiDir = await mkdtemp(join(tmpdir(), 'dx-waiting-pki-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        'k.pem',
        '-out',
        'c.pem',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
      ],
      {
        cwd: pkiDir,
        stdio: 'ignore',
      },
    );
    tls = await listening(
      createHttpsServer({ key: await readFile(join(pkiDir, 'k.pem')), cert: await readFile(join(pkiDir, 'c.pem')) }, (_req, res) =>
        res.end('{}'),
      ),
    );
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all([status, cutter, silent, tls].map((x) => new Promise((r) => x?.server.close(r))));
    await rm(pkiDir, { recursive: true, force: true });
  });

  test('nothing listening: connection refused', async () => {
    const e = await failureOf(`http://127.0.0.1:${await freePort()}/`);
    assert.equal(waitingText('b', e, 8000), 'b does not answer: connection refused; next try in 8 s');
  });

  test('a connection cut by the peer', async () => {
    assert.equal(plainCause('b', await failureOf(`http://127.0.0.1:${cutter.port}/`)), 'b dropped the connection');
  });

  test('a peer that accepts but never answers', async () => {
    assert.equal(plainCause('b', await failureOf(`http://127.0.0.1:${silent.port}/`, 300)), 'b does not answer in time');
  });

  test('a certificate that is not trusted', async () => {
    assert.equal(
      plainCause('b', await failureOf(`https://127.0.0.1:${tls.port}/`)),
      'b cannot be reached securely: its certificate is self-signed and not trusted here',
    );
  });

  test('401, 403 and 5xx answers', async () => {
    const base = `http://127.0.0.1:${status.port}`;
    assert.equal(
      plainCause('b', await failureOf(`${base}/401/`)),
      'b refuses our credentials (HTTP 401: Refused): check its Username and Password',
    );
    assert.equal(
      plainCause('b', await failureOf(`${base}/403/`)),
      'b refuses access (HTTP 403: Refused): check its RemoteAccessAllowed and credentials',
    );
    assert.equal(plainCause('b', await failureOf(`${base}/500/`)), 'b answers with a server error (HTTP 500: Refused)');
    assert.equal(
      plainCause('b', await failureOf(`${base}/503/`)),
      'b is not available for now (HTTP 503: The database is currently not available)',
    );
  });

  test('host names that do not resolve, and connection time-outs, as Node reports them', () => {
    const dns = Object.assign(new Error('getaddrinfo ENOTFOUND pacs.example'), { code: 'ENOTFOUND', syscall: 'getaddrinfo' });
    assert.equal(plainCause('b', dns), 'b cannot be found: its host name does not resolve');
    const slow = Object.assign(new Error('connect ETIMEDOUT 10.0.0.1:8042'), { code: 'ETIMEDOUT' });
    assert.equal(plainCause('b', new Error('fetch failed', { cause: slow })), 'b does not answer: the connection timed out');
  });

  test('waits as people read them', () => {
    assert.equal(waitText(7), 'a moment');
    assert.equal(waitText(500), '0.5 s');
    assert.equal(waitText(8000), '8 s');
    assert.equal(waitText(29_600), '30 s');
    assert.equal(waitText(125_000), '2 min 05 s');
  });
});
