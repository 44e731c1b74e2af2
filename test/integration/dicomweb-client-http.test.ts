// The DICOMweb client's HTTP behaviour against a small DICOMweb-like server on loopback: QIDO-RS pages read
// to the end whether the server caps them or ignores `offset`, credentials and HttpHeaders sent, and a 401
// under a bearer token answered by one new token and one more try.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DicomWebClient } from '../../src/dicomweb/client/client.ts';
import type { DicomWebServerConfig } from '../../src/config/types.ts';

const TLS = { HttpTimeout: 10, HttpsVerifyPeers: true, HttpsCACertificates: '' };
const UIDS = Array.from({ length: 7 }, (_v, i) => `1.2.${i}`);

let server: Server;
let base: string;
let dir: string;
const seen: IncomingMessage[] = [];
let mode: 'capped' | 'no-offset' = 'capped';
let validToken = 'a';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dx-dweb-http-'));
  server = createServer((req, res) => {
    seen.push(req);
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname.endsWith('/secured') && req.headers.authorization !== `Bearer ${validToken}`) {
      res.writeHead(401).end();
      return;
    }
    // Three answers at most per page, whatever `limit` asks; `offset` honoured unless told not to.
    const offset = mode === 'capped' ? Number(u.searchParams.get('offset') ?? 0) : 0;
    const page = UIDS.slice(offset, offset + 3).map((uid) => ({ '00080018': { vr: 'UI', Value: [uid] } }));
    res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(page));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  base = `http://127.0.0.1:${a && typeof a === 'object' ? a.port : 0}/dicom-web/`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

const config = (extra: Partial<DicomWebServerConfig> = {}): DicomWebServerConfig => ({
  name: 'here',
  url: base,
  httpHeaders: {},
  maxRequestSize: 0,
  ...extra,
});

test('QIDO-RS pages are read to the end when the server caps them, and once when it ignores offset', async () => {
  const client = new DicomWebClient(config({ username: 'u', password: 'p', httpHeaders: { 'X-Tenant': 't1' } }), TLS);
  try {
    mode = 'capped';
    seen.length = 0;
    const all = await client.qidoAll('studies/1/instances?includefield=00080018');
    assert.deepEqual(
      all.map((x) => (x as Record<string, { Value: string[] }>)['00080018']?.Value[0]),
      UIDS,
    );
    assert.equal(seen.length, 4, 'three pages of answers, then an empty one');
    assert.equal(seen[0]?.headers.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
    assert.equal(seen[0]?.headers['x-tenant'], 't1');
    mode = 'no-offset';
    seen.length = 0;
    assert.equal((await client.qidoAll('studies/1/instances')).length, 3);
    assert.equal(seen.length, 2);
  } finally {
    await client.close();
  }
});

test('a 401 under a bearer token: the token is read again and the call made once more', async () => {
  const file = join(dir, 'token');
  await writeFile(file, 'a');
  validToken = 'a';
  const client = new DicomWebClient(config({ bearerTokenCommand: ['cat', file] }), TLS);
  try {
    seen.length = 0;
    const first = await client.call({ method: 'GET', path: 'secured' });
    first.body.resume();
    assert.equal(first.statusCode, 200);
    await writeFile(file, 'b');
    validToken = 'b';
    seen.length = 0;
    const res = await client.call({ method: 'GET', path: 'secured' });
    res.body.resume();
    assert.equal(res.statusCode, 200);
    assert.deepEqual(
      seen.map((r) => r.headers.authorization),
      ['Bearer a', 'Bearer b'],
    );
    validToken = 'c';
    seen.length = 0;
    // A token that the server never takes: one more try only, and the 401 is answered.
    assert.equal((await client.call({ method: 'GET', path: 'secured' })).statusCode, 401);
    assert.equal(seen.length, 2);
  } finally {
    await client.close();
  }
});
