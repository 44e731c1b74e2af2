// PeerClient against real servers on loopback: small node:http / node:https servers written here, and a
// real dicom-xfer node. Credentials, headers, path prefix, TLS (CA, client certificate), timeouts,
// the 200-only rule, JSON answers, cookies, keep-alive, byte counters, streams, and retry() around it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { XferError } from '../../src/errors.ts';
import { PeerClient, PeerHttpError, cookieFromSetCookie, joinPeerUrl, type PeerClientSettings } from '../../src/peers/client.ts';
import { parsePeerInput } from '../../src/peers/registry.ts';
import { isRetryable, retry } from '../../src/util/retry.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { CLIENT_KEY_PASSWORD, makePki, type Pki } from '../helpers/pki.ts';
import { listen, type TestHandler, type TestServer } from '../helpers/test-server.ts';

const SETTINGS: PeerClientSettings = { httpTimeout: 10, verifyPeers: true };

function startHttp(handler: TestHandler): Promise<TestServer> {
  return listen(createServer({ keepAliveTimeout: 5000 }), handler, 'http');
}

function json(res: ServerResponse, status: number, value: unknown, headers: Record<string, string | string[]> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function peer(url: string, extra: Record<string, unknown> = {}) {
  return parsePeerInput('p', { Url: url, ...extra });
}

describe('joining paths and cookies', () => {
  test('one slash between the peer URL and the path, prefix kept', () => {
    assert.equal(joinPeerUrl('http://b/', '/transfers/push'), 'http://b/transfers/push');
    assert.equal(joinPeerUrl('http://b/', '//transfers/push'), 'http://b/transfers/push');
    assert.equal(joinPeerUrl('http://b', 'plugins'), 'http://b/plugins');
    assert.equal(joinPeerUrl('https://h/orthanc/', '/transfers/chunks/a.b?offset=0'), 'https://h/orthanc/transfers/chunks/a.b?offset=0');
  });

  test('every Set-Cookie contributes its name=value; a repeated name keeps the last value', () => {
    assert.equal(cookieFromSetCookie([]), undefined);
    assert.equal(cookieFromSetCookie(['a=1; Path=/; HttpOnly', ' b=2 ', 'a=3; Max-Age=10']), 'a=3; b=2');
  });
});

describe('PeerClient over HTTP', () => {
  let srv: TestServer;
  let hold: ServerResponse[] = [];
  before(async () => {
    srv = await startHttp((req, res, body) => {
      const path = (req.url ?? '').replace(/^\/orthanc\//, '/');
      if (path === '/echo') return json(res, 200, { ok: true, length: body.length, md5: createHash('md5').update(body).digest('hex') });
      if (path === '/created') return json(res, 201, {});
      if (path === '/nocontent') {
        res.writeHead(204);
        return res.end();
      }
      if (path === '/orthanc-error') {
        return json(res, 500, {
          Details: 'disk on fire',
          HttpError: 'Internal Server Error',
          HttpStatus: 500,
          Message: 'Cannot write to file',
          Method: 'POST',
          OrthancError: 'Cannot write to file',
          OrthancStatus: 14,
          Uri: '/orthanc-error',
        });
      }
      if (path === '/busy') return json(res, 503, {}, { 'retry-after': '2' });
      if (path === '/empty') {
        res.writeHead(200, { 'content-length': 0 });
        return res.end();
      }
      if (path === '/notjson') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('hello');
      }
      if (path === '/cookies') {
        return json(
          res,
          200,
          {},
          { 'set-cookie': ['AWSALB=abc; Path=/; Expires=Wed, 01 Jan 2100 00:00:00 GMT', 'session=s1; HttpOnly', 'AWSALB=def; Path=/'] },
        );
      }
      if (path === '/big') {
        const buf = Buffer.alloc(1024 * 1024, 7);
        res.writeHead(200, { 'content-length': buf.length });
        return res.end(buf);
      }
      if (path === '/hang') {
        hold.push(res);
        return;
      }
      if (path === '/stall-body') {
        res.writeHead(200, { 'content-length': 1000 });
        res.write(Buffer.alloc(10));
        hold.push(res);
        return;
      }
      json(res, 404, { Message: 'Unknown resource' });
    });
  });
  after(async () => {
    for (const r of hold) r.destroy();
    hold = [];
    await srv.close();
  });

  test('sends Basic credentials, the peer HttpHeaders and the call headers; no Expect', async () => {
    const c = new PeerClient(
      peer(srv.url, { Username: 'alice', Password: 'orthanctest', HttpHeaders: { 'X-Site': 'lyon', Token: 'abc' } }),
      SETTINGS,
    );
    try {
      const before = srv.seen.length;
      const r = await c.json({
        method: 'POST',
        path: '/echo',
        headers: { 'content-type': 'application/json', Token: 'call' },
        body: '{"a":1}',
      });
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { ok: true, length: 7, md5: createHash('md5').update('{"a":1}').digest('hex') });
      const s = srv.seen[before];
      assert.ok(s);
      assert.equal(s.url, '/echo');
      assert.equal(s.headers.authorization, `Basic ${Buffer.from('alice:orthanctest').toString('base64')}`);
      assert.equal(s.headers['x-site'], 'lyon');
      assert.equal(s.headers['token'], 'call');
      assert.equal(s.headers['content-type'], 'application/json');
      assert.equal(s.headers['content-length'], '7');
      assert.equal(s.headers.expect, undefined);
      assert.match(String(s.headers['user-agent']), /^dicom-xfer\//);
    } finally {
      await c.close();
    }
  });

  test('a peer URL with a path prefix keeps it, with a single slash before the path', async () => {
    const c = new PeerClient(peer(`${srv.url}/orthanc`), SETTINGS);
    try {
      const before = srv.seen.length;
      assert.equal(c.url('/echo'), `${srv.url}/orthanc/echo`);
      await c.json({ method: 'GET', path: '//echo' });
      assert.equal(srv.seen[before]?.url, '/orthanc/echo');
    } finally {
      await c.close();
    }
  });

  test('a POST without a body is sent with Content-Length 0', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      const before = srv.seen.length;
      await c.json({ method: 'POST', path: '/echo' });
      assert.equal(srv.seen[before]?.headers['content-length'], '0');
      assert.equal(srv.seen[before]?.headers['transfer-encoding'], undefined);
    } finally {
      await c.close();
    }
  });

  test('a stream body of known length goes with Content-Length, not chunked, and is counted', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      const data = Buffer.alloc(300_000);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
      const parts = [data.subarray(0, 100_000), data.subarray(100_000, 250_000), data.subarray(250_000)];
      const before = srv.seen.length;
      const r = await c.json<{ length: number; md5: string }>({
        method: 'PUT',
        path: '/echo',
        body: { stream: Readable.from(parts), length: data.length },
      });
      assert.equal(r.body.length, data.length);
      assert.equal(r.body.md5, createHash('md5').update(data).digest('hex'));
      const s = srv.seen[before];
      assert.equal(s?.headers['content-length'], String(data.length));
      assert.equal(s?.headers['transfer-encoding'], undefined);
      assert.equal(c.stats.bytesSent, data.length);
    } finally {
      await c.close();
    }
  });

  test('only 200 succeeds: 201, 204 and 500 are NetworkProtocol errors carrying the status', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      for (const [path, status] of [
        ['/created', 201],
        ['/nocontent', 204],
      ] as const) {
        for (const mode of ['json', 'buffer', 'stream'] as const) {
          await assert.rejects(c[mode]({ method: 'POST', path }), (e: unknown) => {
            assert.ok(e instanceof PeerHttpError);
            assert.equal(e.code, 'NetworkProtocol');
            assert.equal(e.status, status);
            assert.equal(isRetryable(e), false);
            return true;
          });
        }
      }
      await assert.rejects(c.json({ method: 'POST', path: '/orthanc-error' }), (e: unknown) => {
        assert.ok(e instanceof PeerHttpError);
        assert.equal(e.status, 500);
        assert.equal(e.remote?.Message, 'Cannot write to file');
        assert.equal(e.remote?.Details, 'disk on fire');
        assert.match(e.message, /HTTP 500 instead of 200: Cannot write to file: disk on fire/);
        assert.equal(isRetryable(e), true);
        return true;
      });
      await assert.rejects(c.json({ method: 'GET', path: '/busy' }), (e: unknown) => {
        assert.ok(e instanceof PeerHttpError);
        assert.equal(e.retryAfterMs, 2000);
        return true;
      });
      assert.ok(c.stats.failures >= 8);
      assert.match(c.stats.lastError ?? '', /Retry|503/);
    } finally {
      await c.close();
    }
  });

  test('an empty or non-JSON 200 fails a JSON call (retryable) but not a buffer call', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      for (const path of ['/empty', '/notjson']) {
        await assert.rejects(c.json({ method: 'POST', path }), (e: unknown) => {
          assert.ok(e instanceof PeerHttpError);
          assert.equal(e.status, 200);
          assert.equal(e.badBody, true);
          assert.equal(isRetryable(e), true);
          return true;
        });
      }
      const r = await c.buffer({ method: 'POST', path: '/empty' });
      assert.equal(r.body.length, 0);
    } finally {
      await c.close();
    }
  });

  test('every Set-Cookie of the answer is captured', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      const r = await c.json({ method: 'POST', path: '/cookies' });
      assert.equal(r.cookie, 'AWSALB=def; session=s1');
      const plain = await c.json({ method: 'POST', path: '/echo' });
      assert.equal(plain.cookie, undefined);
    } finally {
      await c.close();
    }
  });

  test('a call times out when no answer comes, as a retryable Timeout error', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      await assert.rejects(c.json({ method: 'GET', path: '/hang', timeoutMs: 150 }), (e: unknown) => {
        assert.ok(e instanceof XferError);
        assert.equal(e.code, 'Timeout');
        assert.equal(isRetryable(e), true);
        return true;
      });
      await assert.rejects(
        c.buffer({ method: 'GET', path: '/stall-body', timeoutMs: 150 }),
        (e: unknown) => e instanceof XferError && e.code === 'Timeout',
      );
    } finally {
      await c.destroy();
    }
  });

  test('the peer Timeout (seconds) applies when the call gives none', async () => {
    const c = new PeerClient(peer(srv.url, { Timeout: 1 }), { ...SETTINGS, httpTimeout: 3600 });
    try {
      await assert.rejects(c.json({ method: 'GET', path: '/hang' }), (e: unknown) => e instanceof XferError && e.code === 'Timeout');
    } finally {
      await c.destroy();
    }
  });

  test('a streamed answer that stalls fails with Timeout while being read', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      const r = await c.stream({ method: 'GET', path: '/stall-body', timeoutMs: 200 });
      await assert.rejects(
        (async () => {
          for await (const _ of r.body) {
            // read until it fails
          }
        })(),
        (e: unknown) => e instanceof XferError && e.code === 'Timeout',
      );
    } finally {
      await c.destroy();
    }
  });

  test('the caller signal aborts a call with its own reason', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      const ac = new AbortController();
      const reason = new XferError('CanceledJob', 'paused');
      setTimeout(() => ac.abort(reason), 50);
      await assert.rejects(c.json({ method: 'GET', path: '/hang', signal: ac.signal }), (e) => e === reason);
    } finally {
      await c.destroy();
    }
  });

  test('a streamed answer arrives whole and is counted', async () => {
    const c = new PeerClient(peer(srv.url), SETTINGS);
    try {
      const r = await c.stream({ method: 'GET', path: '/big' });
      let n = 0;
      for await (const chunk of r.body as AsyncIterable<Buffer>) {
        assert.ok(chunk.every((b) => b === 7));
        n += chunk.length;
      }
      assert.equal(n, 1024 * 1024);
      assert.equal(c.stats.bytesReceived, 1024 * 1024);
      assert.ok(c.stats.lastRttMs !== undefined && c.stats.lastRttMs >= 0);
      assert.ok(c.stats.lastSuccessAt);
    } finally {
      await c.close();
    }
  });

  test('keep-alive: sequential calls reuse one connection, parallel ones open a few', async () => {
    const own = await startHttp((_req, res) => json(res, 200, {}));
    const c = new PeerClient(peer(own.url), SETTINGS);
    try {
      for (let i = 0; i < 10; i++) await c.json({ method: 'GET', path: '/x' });
      // undici's pool sees a connection as busy until a tick after its answer ends, so back-to-back calls
      // alternate between two kept-alive connections; what matters is that they are not one per call.
      assert.ok(own.connections <= 2, `${own.connections} connections for 10 calls`);
      await Promise.all(Array.from({ length: 4 }, () => c.json({ method: 'GET', path: '/y' })));
      assert.ok(own.connections <= 2 + 4, `${own.connections} connections`);
      const after4 = own.connections;
      for (let i = 0; i < 5; i++) await c.json({ method: 'GET', path: '/z' });
      assert.equal(own.connections, after4);
    } finally {
      await c.close();
      await own.close();
    }
  });

  test('a connection refused is a retryable NetworkProtocol error; a closed client refuses calls', async () => {
    const dead = await startHttp(() => undefined);
    const url = dead.url;
    await dead.close();
    const c = new PeerClient(peer(url), SETTINGS);
    await assert.rejects(c.json({ method: 'GET', path: '/plugins' }), (e: unknown) => {
      assert.ok(e instanceof XferError);
      assert.equal(e.code, 'NetworkProtocol');
      assert.match(e.message, /ECONNREFUSED/);
      assert.equal(isRetryable(e), true);
      return true;
    });
    await c.close();
    await assert.rejects(
      c.json({ method: 'GET', path: '/plugins' }),
      (e: unknown) => e instanceof XferError && e.code === 'BadSequenceOfCalls',
    );
  });

  test('retry() around the client rides over one 503', async () => {
    let calls = 0;
    const flaky = await startHttp((_req, res) => {
      calls++;
      if (calls === 1) json(res, 503, { Message: 'busy' });
      else json(res, 200, { done: true });
    });
    const c = new PeerClient(peer(flaky.url), SETTINGS);
    try {
      const retries: number[] = [];
      const r = await retry((_n, signal) => c.json({ method: 'POST', path: '/transfers/push', body: '{}', signal }), {
        maxAttempts: 2,
        backoff: { kind: 'fixed', delayMs: 20 },
        onRetry: (i) => retries.push(i.attempt),
      });
      assert.deepEqual(r.body, { done: true });
      assert.deepEqual(retries, [1]);
      assert.equal(calls, 2);
    } finally {
      await c.close();
      await flaky.close();
    }
  });
});

// ---- HTTPS ---------------------------------------------------------------------------------------------

describe('PeerClient over HTTPS', () => {
  let pki: Pki;
  let srv: TestServer;
  before(async () => {
    pki = await makePki();
    const { readFile } = await import('node:fs/promises');
    const server = createHttpsServer({
      key: await readFile(pki.serverKey),
      cert: await readFile(pki.serverCert),
      ca: await readFile(pki.caFile),
      requestCert: true,
      rejectUnauthorized: false,
    });
    srv = await listen(
      server,
      (req, res) => {
        const sock = req.socket as TLSSocket;
        const cert = sock.getPeerCertificate();
        json(res, 200, { clientCN: cert.subject?.CN ?? null, authorized: sock.authorized });
      },
      'https',
    );
  });
  after(async () => {
    await srv.close();
    await rm(pki.dir, { recursive: true, force: true });
  });

  test('verifies the server with HttpsCACertificates and presents the client certificate', async () => {
    const c = new PeerClient(
      peer(srv.url, { CertificateFile: pki.clientCert, CertificateKeyFile: pki.clientKey, CertificateKeyPassword: CLIENT_KEY_PASSWORD }),
      { ...SETTINGS, caFile: pki.caFile },
    );
    try {
      const r = await c.json({ method: 'GET', path: '/whoami' });
      assert.deepEqual(r.body, { clientCN: 'peer-client', authorized: true });
    } finally {
      await c.close();
    }
  });

  test('without a client certificate the server sees none', async () => {
    const c = new PeerClient(peer(srv.url), { ...SETTINGS, caFile: pki.caFile });
    try {
      const r = await c.json({ method: 'GET', path: '/whoami' });
      assert.deepEqual(r.body, { clientCN: null, authorized: false });
    } finally {
      await c.close();
    }
  });

  test('fails without the CA (not retryable), and succeeds when HttpsVerifyPeers is false', async () => {
    const strict = new PeerClient(peer(srv.url), SETTINGS);
    try {
      await assert.rejects(strict.json({ method: 'GET', path: '/whoami' }), (e: unknown) => {
        assert.ok(e instanceof XferError);
        assert.equal(e.code, 'NetworkProtocol');
        assert.match(e.message, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|unable to verify/i);
        assert.equal(isRetryable(e), false);
        return true;
      });
    } finally {
      await strict.close();
    }
    const lax = new PeerClient(peer(srv.url), { ...SETTINGS, verifyPeers: false });
    try {
      const r = await lax.json({ method: 'GET', path: '/whoami' });
      assert.equal((r.body as { authorized: boolean }).authorized, false);
    } finally {
      await lax.close();
    }
  });

  test('a wrong key password or a missing CA file fails the call, not the process', async () => {
    const bad = new PeerClient(
      peer(srv.url, { CertificateFile: pki.clientCert, CertificateKeyFile: pki.clientKey, CertificateKeyPassword: 'wrong' }),
      { ...SETTINGS, caFile: pki.caFile },
    );
    try {
      await assert.rejects(bad.json({ method: 'GET', path: '/whoami' }), (e: unknown) => e instanceof XferError);
    } finally {
      await bad.destroy();
    }
    const noCa = new PeerClient(peer(srv.url), { ...SETTINGS, caFile: join(pki.dir, 'missing.pem') });
    try {
      await assert.rejects(
        noCa.json({ method: 'GET', path: '/whoami' }),
        (e: unknown) => e instanceof XferError && e.code === 'InexistentFile',
      );
    } finally {
      await noCa.close();
    }
  });
});

// ---- a real dicom-xfer node -------------------------------------------------------------------------------

describe('PeerClient against a dicom-xfer node', () => {
  let node: XferNode;
  before(async () => {
    node = await startXferNode({
      config: { AuthenticationEnabled: true, RegisteredUsers: { alice: 'orthanctest' } },
      auth: { username: 'alice', password: 'orthanctest' },
    });
  });
  after(async () => {
    await node?.stop();
  });

  test('GET /plugins with credentials lists "transfers"; Orthanc error bodies are read', async () => {
    const c = new PeerClient(parsePeerInput('n', [node.url, 'alice', 'orthanctest']), SETTINGS);
    try {
      const r = await c.json<string[]>({ method: 'GET', path: '/plugins' });
      assert.ok(r.body.includes('transfers'));
      await assert.rejects(c.json({ method: 'GET', path: '/instances/0000' }), (e: unknown) => {
        assert.ok(e instanceof PeerHttpError);
        assert.equal(e.status, 404);
        assert.equal(typeof e.remote?.Message, 'string');
        return true;
      });
    } finally {
      await c.close();
    }
  });

  test('wrong credentials give a 401 that is not retried', async () => {
    const c = new PeerClient(parsePeerInput('n', [node.url, 'alice', 'nope']), SETTINGS);
    try {
      await assert.rejects(c.json({ method: 'GET', path: '/plugins' }), (e: unknown) => {
        assert.ok(e instanceof PeerHttpError);
        assert.equal(e.status, 401);
        assert.equal(isRetryable(e), false);
        return true;
      });
    } finally {
      await c.close();
    }
  });
});
