// The node's HTTP layer (src/http/) on real loopback servers, plain and HTTPS with certificates made by
// openssl: one pool per endpoint reused across calls, TLS verification with a CA file and a client
// certificate, bounded bodies, Orthanc's error document becoming the one HttpError in every client, and
// transport failures becoming their codes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { NodeClient, NodeConnectionError, resolveTarget } from '../../src/cli/http.ts';
import { XferError } from '../../src/errors.ts';
import { ERROR_BODY_LIMIT, readBounded, readErrorAnswer } from '../../src/http/body.ts';
import { HttpEndpoint, type EndpointOptions } from '../../src/http/endpoint.ts';
import { HttpError, TransportError, codeOfAnswer, transportError } from '../../src/http/errors.ts';
import { PeerClient, PeerHttpError } from '../../src/peers/client.ts';
import { parsePeerInput } from '../../src/peers/registry.ts';
import { OrthancClient } from '../../src/store/orthanc/client.ts';
import { isRetryable } from '../../src/util/retry.ts';
import { CLIENT_KEY_PASSWORD, makePki, type Pki } from '../helpers/pki.ts';
import { listen, type TestHandler, type TestServer } from '../helpers/test-server.ts';

function startHttp(handler: TestHandler): Promise<TestServer> {
  return listen(createServer({ keepAliveTimeout: 5000 }), handler, 'http');
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** A GET through the endpoint, its body read whole. */
async function get(ep: HttpEndpoint, path: string): Promise<{ status: number; text: string }> {
  const res = await ep.request({ method: 'GET', path: ep.path(path), headers: ep.baseHeaders() });
  return { status: res.statusCode, text: (await readBounded(res.body, 1 << 20)).toString('utf8') };
}

/** What a call that fails below HTTP becomes in the layer. */
async function failure(ep: HttpEndpoint, path: string): Promise<XferError> {
  try {
    await get(ep, path);
  } catch (e) {
    return transportError(e, (info) => `GET ${path}: ${info.detail}`);
  }
  throw new Error(`GET ${path} succeeded`);
}

/** Orthanc's answer to a file that is not DICOM, as Orthanc 1.10 writes it. */
const BAD_FILE = {
  HttpError: 'Bad Request',
  HttpStatus: 400,
  Message: 'Bad file format',
  Details: 'Cannot parse an invalid DICOM file (size: 4 bytes)',
  Method: 'POST',
  OrthancError: 'Bad file format',
  OrthancStatus: 15,
  Uri: '/instances',
};

describe('the HTTP layer over plain HTTP', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startHttp((req, res) => {
      if (req.url?.endsWith('/instances')) return sendJson(res, 400, BAD_FILE);
      if (req.url?.endsWith('/big')) {
        res.writeHead(200, { 'content-length': 100_000 });
        return res.end(Buffer.alloc(100_000, 1));
      }
      if (req.url?.endsWith('/huge-error')) {
        res.writeHead(500, { 'content-type': 'text/plain', 'content-length': 1_000_000 });
        return res.end(Buffer.alloc(1_000_000, 'x'));
      }
      if (req.url?.endsWith('/busy')) return sendJson(res, 503, {});
      if (req.url?.endsWith('/drop')) return req.socket.destroy();
      if (req.url?.endsWith('/silent')) return; // never answers
      sendJson(res, 200, { path: req.url });
    });
  });
  after(() => srv.close());

  test('one pool per endpoint: sequential calls reuse kept-alive connections; prefix and credentials kept', async () => {
    const ep = new HttpEndpoint({ url: `${srv.url}/orthanc/`, username: 'alice', password: 's3cret' });
    const before = srv.connections;
    const seen = srv.seen.length;
    try {
      for (let i = 0; i < 10; i++) assert.equal((await get(ep, '/system')).text, '{"path":"/orthanc/system"}');
      // undici marks a connection busy until a tick after its answer ends, so back-to-back calls may
      // alternate between two connections; what matters is that there is not one per call.
      assert.ok(srv.connections - before <= 2, `${srv.connections - before} connections for 10 calls`);
      const auth = srv.seen[seen]?.headers.authorization;
      assert.equal(auth, `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
      assert.equal(ep.url, `${srv.url}/orthanc`);
      assert.equal(ep.urlOf('transfers/push'), `${srv.url}/orthanc/transfers/push`);
    } finally {
      await ep.close();
    }
    await assert.rejects(get(ep, '/system'), (e: unknown) => e instanceof XferError && e.code === 'BadSequenceOfCalls');
  });

  test('credentials in the URL are used when none are given, and never kept in its display form', async () => {
    const u = new URL(srv.url);
    u.username = 'bob';
    u.password = 'p%40ss';
    const ep = new HttpEndpoint({ url: u.toString() });
    const seen = srv.seen.length;
    try {
      await get(ep, '/x');
      assert.equal(srv.seen[seen]?.headers.authorization, `Basic ${Buffer.from('bob:p@ss').toString('base64')}`);
      assert.ok(!ep.url.includes('bob'));
    } finally {
      await ep.close();
    }
  });

  test('a body over the limit fails with NotEnoughMemory; an error answer is read only up to 64 KiB', async () => {
    const ep = new HttpEndpoint({ url: srv.url });
    try {
      const big = await ep.request({ method: 'GET', path: '/big' });
      await assert.rejects(readBounded(big.body, 65_536), (e: unknown) => e instanceof XferError && e.code === 'NotEnoughMemory');
      assert.equal(big.body.destroyed, true);
      const huge = await ep.request({ method: 'GET', path: '/huge-error' });
      const answer = await readErrorAnswer(huge);
      assert.equal(huge.statusCode, 500);
      assert.equal(answer.text.length, ERROR_BODY_LIMIT);
      assert.equal(answer.remote, undefined);
      // The client of a peer applies its maxBodyBytes the same way.
      const peer = new PeerClient(parsePeerInput('p', { Url: srv.url }), { httpTimeout: 10, verifyPeers: true, maxBodyBytes: 65_536 });
      try {
        await assert.rejects(peer.buffer({ method: 'GET', path: '/big' }), (e: unknown) => {
          assert.ok(e instanceof PeerHttpError);
          assert.match(e.message, /larger than 65536 bytes/);
          return true;
        });
      } finally {
        await peer.close();
      }
    } finally {
      await ep.close();
    }
  });

  test("Orthanc's error document becomes the one HttpError, with its code, in each client", async () => {
    const store = new OrthancClient({ url: srv.url, timeoutMs: 10_000, attempts: 1 });
    const peer = new PeerClient(parsePeerInput('b', { Url: srv.url }), { httpTimeout: 10, verifyPeers: true });
    const cli = new NodeClient(resolveTarget({ url: srv.url }, {}));
    try {
      const fromStore = await store.json({ method: 'POST', path: '/instances', body: 'junk' }).catch((e: unknown) => e);
      assert.ok(fromStore instanceof HttpError);
      assert.equal(fromStore.code, 'BadFileFormat');
      assert.equal(fromStore.status, 400);
      assert.deepEqual(fromStore.remote, BAD_FILE);
      assert.match(fromStore.message, /Orthanc answered POST .*\/instances with HTTP 400: Cannot parse an invalid DICOM file/);

      const fromPeer = await peer.json({ method: 'POST', path: '/instances', body: 'junk' }).catch((e: unknown) => e);
      assert.ok(fromPeer instanceof HttpError && fromPeer instanceof PeerHttpError);
      // A job that called a peer sees a protocol failure; what the peer itself said stays readable.
      assert.equal(fromPeer.code, 'NetworkProtocol');
      assert.equal(fromPeer.remoteCode, 'BadFileFormat');
      assert.equal(fromPeer.remote?.Details, BAD_FILE.Details);
      assert.equal(fromPeer.reason, 'Bad file format: Cannot parse an invalid DICOM file (size: 4 bytes)');

      const fromCli = await cli.json('POST', '/instances', { body: 'junk' }).catch((e: unknown) => e);
      assert.ok(fromCli instanceof HttpError);
      assert.equal(fromCli.code, 'BadFileFormat');
      assert.equal(fromCli.remote?.OrthancStatus, 15);
      assert.equal(
        fromCli.message,
        'POST /instances failed with HTTP 400: Bad file format: Cannot parse an invalid DICOM file (size: 4 bytes)',
      );
      assert.equal(fromCli.advice, fromCli.message);

      // Without a document the status decides; the store keeps its own reading of a 503.
      const busy = await store.json({ method: 'POST', path: '/busy' }).catch((e: unknown) => e);
      assert.ok(busy instanceof HttpError);
      assert.equal(busy.code, 'DatabaseUnavailable');
      assert.equal(isRetryable(busy), true);
      assert.equal(codeOfAnswer(404, undefined), 'UnknownResource');
      assert.equal(codeOfAnswer(500, { OrthancStatus: 20 }), 'CorruptedFile');
    } finally {
      await store.close();
      await peer.close();
      await cli.close();
    }
  });

  test('a connection refused becomes its code: NetworkProtocol for a peer, DatabaseUnavailable for the store', async () => {
    const dead = await startHttp(() => undefined);
    const url = dead.url;
    await dead.close();
    const ep = new HttpEndpoint({ url });
    const store = new OrthancClient({ url, timeoutMs: 10_000, attempts: 1 });
    const cli = new NodeClient(resolveTarget({ url }, {}));
    try {
      const e = await failure(ep, '/system');
      assert.ok(e instanceof TransportError);
      assert.equal(e.failure, 'refused');
      assert.equal(e.errno, 'ECONNREFUSED');
      assert.equal(e.code, 'NetworkProtocol');
      assert.equal(e.unreachable, true);
      assert.equal(isRetryable(e), true);

      const s = await store.text('/system').catch((err: unknown) => err);
      assert.ok(s instanceof TransportError);
      assert.equal(s.code, 'DatabaseUnavailable');
      assert.match(s.message, /Orthanc at http:\/\/127\.0\.0\.1:\d+ cannot be reached \(GET \S+\/system\): connect ECONNREFUSED/);

      const c = await cli.json('GET', '/system').catch((err: unknown) => err);
      assert.ok(c instanceof NodeConnectionError && c instanceof TransportError);
      assert.equal(c.unreachable, true);
      assert.equal(c.retryable, false);
      assert.match(c.message, /^Cannot connect to .* \(connection refused\): is the node running\?/);
    } finally {
      await ep.close();
      await store.close();
      await cli.close();
    }
  });

  test('no answer in time is a Timeout; a connection dropped mid-call is a reset worth another try', async () => {
    const ep = new HttpEndpoint({ url: srv.url, timeoutMs: 300 });
    try {
      const slow = await failure(ep, '/silent');
      assert.ok(slow instanceof TransportError);
      assert.equal(slow.failure, 'timeout');
      assert.equal(slow.errno, 'UND_ERR_HEADERS_TIMEOUT');
      assert.equal(slow.code, 'Timeout');
      assert.equal(slow.transient, true);

      const dropped = await failure(ep, '/drop');
      assert.ok(dropped instanceof TransportError);
      assert.equal(dropped.failure, 'reset');
      assert.equal(dropped.code, 'NetworkProtocol');
      assert.equal(isRetryable(dropped), true);
    } finally {
      await ep.destroy();
    }
  });
});

describe('the HTTP layer over HTTPS', () => {
  let pki: Pki;
  let srv: TestServer;
  before(async () => {
    pki = await makePki();
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
        sendJson(res, 200, { clientCN: sock.getPeerCertificate().subject?.CN ?? null, authorized: sock.authorized });
      },
      'https',
    );
  });
  after(async () => {
    await srv.close();
    await rm(pki.dir, { recursive: true, force: true });
  });

  async function whoami(opts: Omit<EndpointOptions, 'url'>): Promise<unknown> {
    const ep = new HttpEndpoint({ url: srv.url, ...opts });
    try {
      return JSON.parse((await get(ep, '/whoami')).text);
    } finally {
      await ep.close();
    }
  }

  test('verifies the server with the CA file and presents the client certificate with its key password', async () => {
    const tls = {
      caFile: pki.caFile,
      certificateFile: pki.clientCert,
      certificateKeyFile: pki.clientKey,
      certificateKeyPassword: CLIENT_KEY_PASSWORD,
    };
    assert.deepEqual(await whoami({ tls }), { clientCN: 'peer-client', authorized: true });
    assert.deepEqual(await whoami({ tls: { caFile: pki.caFile } }), { clientCN: null, authorized: false });
  });

  test('verification on without the CA is a TLS failure, not retried; verification off connects', async () => {
    const ep = new HttpEndpoint({ url: srv.url, tls: { verifyPeers: true } });
    try {
      const e = await failure(ep, '/whoami');
      assert.ok(e instanceof TransportError);
      assert.equal(e.failure, 'tls');
      assert.match(e.errno ?? '', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
      assert.equal(isRetryable(e), false);
    } finally {
      await ep.close();
    }
    assert.deepEqual(await whoami({ tls: { verifyPeers: false } }), { clientCN: null, authorized: false });
  });

  test('a CA file that cannot be read fails the call with InexistentFile; once it is there, the next call works', async () => {
    const later = join(pki.dir, 'later.pem');
    const ep = new HttpEndpoint({ url: srv.url, owner: 'peer "b"', tls: { caFile: later } });
    try {
      await assert.rejects(get(ep, '/whoami'), (e: unknown) => {
        assert.ok(e instanceof XferError);
        assert.equal(e.code, 'InexistentFile');
        assert.match(e.message, /HttpsCACertificates of peer "b" cannot be read/);
        return true;
      });
      await copyFile(pki.caFile, later);
      assert.equal((await get(ep, '/whoami')).status, 200);
    } finally {
      await ep.close();
    }
  });
});
