// The typed peer client (src/transfer/peer-api.ts) against a real HTTP server on loopback: the paths and
// headers it sends, the answers it reads through the wire schemas, and a clear error naming the peer and
// the field for each answer of the wrong shape; the link's round-trip time as its small calls measure it.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { PeerClient } from '../../src/peers/client.ts';
import { PeerAnswerError, PeerApi } from '../../src/transfer/peer-api.ts';

const MD5 = 'd41d8cd98f00b204e9800998ecf8427e';
const ID = '1a2b3c4d-5e6f7a8b-9c0d1e2f-3a4b5c6d-7e8f9a0b';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** What the server answers to `METHOD path` (path with its query): a JSON value, or raw text. */
type Answers = Map<string, unknown>;

async function serve(answers: Answers, seen: Seen[]): Promise<{ url: string; server: Server }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(parts).toString('utf8') });
      const key = `${req.method} ${req.url}`;
      if (!answers.has(key)) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      const a = answers.get(key);
      const text = typeof a === 'string' ? a : JSON.stringify(a);
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'route=r1; Path=/' }).end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

function client(url: string): PeerClient {
  return new PeerClient({ name: 'far', url, httpHeaders: {}, userProperties: {} }, { httpTimeout: 10, verifyPeers: true });
}

/** Rejects with a PeerAnswerError naming peer "far" and `field`. */
async function malformed(p: Promise<unknown>, field: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PeerAnswerError, `not a PeerAnswerError: ${String(e)}`);
    assert.equal(e.code, 'BadFileFormat');
    assert.equal(e.peer, 'far');
    assert.equal(e.field, field);
    assert.match(e.message, /peer "far" answered .* with a malformed document/);
    if (field !== '') assert.ok(e.message.includes(field), e.message);
    return true;
  });
}

describe('typed peer API', () => {
  const seen: Seen[] = [];
  const good: Answers = new Map<string, unknown>([
    ['POST /transfers/lookup', { Instances: [{ ID, MD5, Size: '12' }], Originator: 'o-1', CountInstances: 1 }],
    ['POST /transfers/have', { Count: 1, Instances: [ID] }],
    ['POST /transfers/push', { ID: 'tx1', Path: '/transfers/push/tx1' }],
    ['GET /transfers/push/tx1/buckets', { Buckets: [0, 2], Count: 2 }],
    [
      'GET /transfers/push/tx1/state?wait=5',
      { State: 'Open', Buckets: 3, BucketsDone: 2, LastCommitStatus: 507, LastCommitDetails: 'full' },
    ],
    ['POST /transfers/push/tx1/commit', { State: 'Committing' }],
    [`GET /instances/${ID}/attachments/dicom/md5`, `${MD5}\n`],
    ['POST /transfers/pull', { ID: 'job-1', Path: '/jobs/job-1' }],
    ['GET /jobs/job-1', { State: 'Running', Progress: 40, Content: { Peer: 'x' }, ErrorCode: 0 }],
  ]);
  const bad: Answers = new Map<string, unknown>([
    ['POST /transfers/lookup', { Instances: [{ ID, MD5: MD5.toUpperCase(), Size: '12' }], Originator: 'o-1' }],
    ['POST /transfers/have', { Count: 1, Instances: [7] }],
    ['POST /transfers/push', { ID: 'tx1' }],
    ['GET /transfers/push/tx1/buckets', { Buckets: ['0'] }],
    ['GET /transfers/push/tx1/state', { State: 'Sleeping' }],
    ['POST /transfers/push/tx1/commit', [1, 2]],
    [`GET /instances/${ID}/attachments/dicom/md5`, 'not an md5'],
    ['POST /transfers/pull', { ID: 'job-1', Path: 5 }],
    ['GET /jobs/job-1', { Progress: 40 }],
  ]);
  let goodApi: PeerApi;
  let badApi: PeerApi;
  const servers: Server[] = [];

  before(async () => {
    const g = await serve(good, seen);
    const b = await serve(bad, []);
    servers.push(g.server, b.server);
    goodApi = new PeerApi(client(g.url), 'sender-7');
    badApi = new PeerApi(client(b.url), 'sender-7');
  });
  after(async () => {
    await goodApi.client.close();
    await badApi.client.close();
    for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
  });

  test('well-formed answers come back typed, from the protocol paths with its headers', async () => {
    const lookup = await goodApi.lookup([{ Level: 'Study', ID: 'abc' }]);
    assert.deepEqual(lookup, { Instances: [{ ID, MD5, Size: 12 }], Originator: 'o-1' });
    const l = seen.at(-1);
    assert.equal(l?.headers['sender-transfer-id'], 'sender-7');
    assert.deepEqual(JSON.parse(l?.body ?? ''), [{ ID: 'abc', Level: 'Study' }]);

    assert.deepEqual(await goodApi.have([{ ID, MD5 }]), [ID]);
    const tx = await goodApi.createPush({
      Instances: [{ ID, MD5, Size: 12 }],
      Buckets: [[{ ID, Offset: 0, Size: 12 }]],
      Compression: 'none',
    });
    assert.deepEqual(tx, { path: '/transfers/push/tx1', cookie: 'route=r1' });
    assert.deepEqual([...(await goodApi.heldBuckets(tx))], [0, 2]);
    assert.equal(seen.at(-1)?.headers.cookie, 'route=r1');
    assert.deepEqual(await goodApi.commitState(tx, 5), { State: 'Open', LastCommitStatus: 507, LastCommitDetails: 'full' });
    assert.deepEqual(await goodApi.commitAsync(tx), { State: 'Committing' });
    assert.equal(seen.at(-1)?.headers['x-dicom-xfer-async-commit'], '1');
    assert.equal(await goodApi.instanceMd5(ID), MD5);
    const handle = await goodApi.submitPull({
      Compression: 'gzip',
      Originator: 'me',
      Peer: 'back',
      Resources: [{ Level: 'Study', ID: 'abc' }],
    });
    assert.deepEqual(handle, { ID: 'job-1', Path: '/jobs/job-1' });
    assert.deepEqual(JSON.parse(seen.at(-1)?.body ?? ''), {
      Compression: 'gzip',
      Originator: 'me',
      Peer: 'back',
      Resources: [{ ID: 'abc', Level: 'Study' }],
    });
    const job = await goodApi.job(handle.Path);
    assert.equal(job.State, 'Running');
    assert.equal(job.Progress, 40);
    assert.deepEqual(job.Content, { Peer: 'x' });
  });

  test('each answer of the wrong shape is refused, naming the peer and the field', async () => {
    const tx = { path: '/transfers/push/tx1' };
    await malformed(badApi.lookup([{ Level: 'Study', ID: 'abc' }]), 'Instances[0].MD5');
    await malformed(badApi.have([{ ID, MD5 }]), 'Instances[0]');
    await malformed(badApi.createPush({ Instances: [], Buckets: [], Compression: 'none' }), 'Path');
    await malformed(badApi.heldBuckets(tx), 'Buckets[0]');
    await malformed(badApi.commitState(tx, 0), 'State');
    await malformed(badApi.commitAsync(tx), '');
    await malformed(badApi.instanceMd5(ID), '');
    await malformed(badApi.submitPull({ Compression: 'none', Originator: 'me', Peer: 'back', Resources: [] }), 'Path');
    await malformed(badApi.job('/jobs/job-1'), 'State');
  });

  test("the round-trip time: none before a call, the shortest of the small calls' times, never a bucket's upload", async () => {
    // The lookup is answered 200 ms late, a PUT 400 ms late, the rest at once.
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const late = req.method === 'PUT' ? 400 : req.url === '/transfers/lookup' ? 200 : 0;
        setTimeout(() => {
          const key = `${req.method} ${req.url}`;
          const body = req.method === 'PUT' ? '{}' : JSON.stringify(good.get(key) ?? {});
          res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        }, late);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const api = new PeerApi(client(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`), 'sender-7');
    try {
      assert.equal(api.rttMs, undefined, 'no figure before a call');
      /** The figure now (-1 when none: the asserts below then fail). */
      const rtt = (): number => api.rttMs ?? -1;
      await api.lookup([{ Level: 'Study', ID: 'abc' }]);
      const afterLookup = rtt();
      assert.ok(afterLookup >= 199, `no answer before the server's 200 ms: ${afterLookup}`);
      // A later call that answers at once can only lower it (the shortest is kept).
      await api.have([{ ID, MD5 }]);
      const afterHave = rtt();
      assert.ok(afterHave > 0 && afterHave <= afterLookup, `${afterHave} after ${afterLookup}`);
      // A bucket's PUT holds its upload and the peer's write: not a round trip, not counted.
      await api.putBucket({ path: '/transfers/push/tx1' }, '0', Buffer.alloc(1024));
      assert.equal(rtt(), afterHave);
    } finally {
      await api.client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
