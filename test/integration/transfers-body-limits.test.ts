// The bounds on JSON bodies, against a real node: each route refuses a body larger than its real use
// with 413 in Orthanc's error shape (from Content-Length before reading it when declared, else once the
// limit is passed), a body of far more objects than such a body holds is refused before it is parsed, a
// push create over Transfers.MaxPushInstances is refused, and none of it changes anything. A create of
// 100,000 instances is accepted, answers without making 100,000 staging files, and leaves nothing once
// discarded.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import { toWirePushCreate, type InstanceInfo } from '../../src/protocol/wire.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { call, getJson, json, postJson, type Answer } from '../helpers/transfer-nodes.ts';

const MiB = 1024 * 1024;
const hex = (n: number): string => randomBytes(n).toString('hex');
const instanceId = (): string => [hex(4), hex(4), hex(4), hex(4), hex(4)].join('-');

/** `n` small synthetic instances (the create need not name real data) and their create body. */
function createBody(n: number, size = 1000): { instances: InstanceInfo[]; body: string } {
  const instances = Array.from({ length: n }, () => ({ ID: instanceId(), Size: size, MD5: hex(16) }));
  const buckets = scheduleBuckets(instances, { bucketSize: 4096 * 1024 });
  return { instances, body: JSON.stringify(toWirePushCreate({ Instances: instances, Buckets: buckets, Compression: 'none' })) };
}

/** Asserts Orthanc's error shape with status 413. */
function assertTooLarge(a: Answer, what: string): void {
  assert.equal(a.status, 413, `${what}: ${a.status} ${a.body.toString().slice(0, 300)}`);
  const e = json(a);
  assert.equal(e.HttpStatus, 413, what);
  assert.equal(e.HttpError, 'Payload Too Large', what);
  assert.equal(typeof e.Message, 'string', what);
  assert.equal(typeof e.OrthancStatus, 'number', what);
}

/**
 * A request that declares `declared` bytes and sends only `sent` (the first bytes of its body), then waits
 * for the answer: a node that reads the whole body first would never answer (the test times out).
 */
function sendDeclared(base: string, method: string, path: string, declared: number, sent: Buffer | string): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: Number(u.port), method, path, agent: false, headers: { 'content-length': String(declared) } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) });
        });
      },
    );
    req.on('error', reject);
    req.write(sent);
  });
}

/** A POST that declares `declared` bytes and sends `sent` spaces of them. */
function postDeclared(base: string, path: string, declared: number, sent: number): Promise<Answer> {
  return sendDeclared(base, 'POST', path, declared, Buffer.alloc(sent, 0x20));
}

/** A POST whose body goes chunked (no Content-Length), `total` bytes of `[` `]` nesting-free filler. */
function postChunked(base: string, path: string, total: number): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: Number(u.port), method: 'POST', path, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    // The node may close the connection once it has answered: that is not a failure of the test.
    req.on('error', (e) => (req.writableEnded ? undefined : reject(e)));
    const piece = Buffer.alloc(MiB, 0x20);
    let left = total;
    const pump = (): void => {
      while (left > 0) {
        left -= piece.length;
        if (!req.write(piece)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    req.once('response', () => {
      left = 0;
    });
    pump();
  });
}

describe('bounded JSON bodies', { timeout: 180_000 }, () => {
  let node: XferNode;

  const pushStaging = async (): Promise<string[]> =>
    (await readdir(join(node.dataDir, 'staging', 'push')).catch(() => [] as string[])).sort();
  const snapshot = async () => ({
    jobs: await getJson<string[]>(node.url, '/jobs'),
    instances: await getJson<string[]>(node.url, '/instances'),
    peers: await getJson<string[]>(node.url, '/peers'),
    staging: await pushStaging(),
  });

  before(async () => {
    node = await startXferNode({ config: { OrthancPeers: { b: { Url: 'http://127.0.0.1:9/' } } } });
  });
  after(async () => {
    await node?.stop();
  });

  test('bodies larger than their route takes are refused with 413 from the declared length, before reading', async () => {
    const before = await snapshot();
    const routes: [string, number][] = [
      ['/transfers/push', 64 * MiB],
      ['/transfers/lookup', 16 * MiB],
      ['/transfers/have', 16 * MiB],
      ['/transfers/send', 16 * MiB],
      ['/transfers/pull', 16 * MiB],
      ['/peers/c', 1 * MiB],
      ['/ui/api/send', 16 * MiB],
    ];
    for (const [path, limit] of routes) {
      // Declares a body just past the limit (and far past it) but sends only a few bytes of it.
      for (const declared of [limit + 1, 1024 * MiB]) {
        const method = path.startsWith('/peers/') ? 'PUT' : 'POST';
        const a =
          method === 'POST'
            ? await postDeclared(node.url, path, declared, 1024)
            : await sendDeclared(node.url, method, path, declared, '{');
        assertTooLarge(a, `${method} ${path} declaring ${declared} bytes`);
      }
    }
    assert.deepEqual(await snapshot(), before);
    assert.equal((await call(node.url, 'GET', '/system')).status, 200);
  });

  test('a chunked body is refused with 413 once it passes the limit', async () => {
    const before = await snapshot();
    assertTooLarge(await postChunked(node.url, '/transfers/lookup', 24 * MiB), 'chunked lookup of 24 MiB');
    assertTooLarge(await postChunked(node.url, '/transfers/send', 24 * MiB), 'chunked send of 24 MiB');
    assert.deepEqual(await snapshot(), before);
    assert.equal((await call(node.url, 'GET', '/system')).status, 200);
  });

  test('a body of far more objects than such a body holds is refused before it is parsed', async () => {
    const before = await snapshot();
    // Empty objects, within the byte limits: 4 MiB of them (1.4 million) where a real lookup or have body
    // of 16 MiB holds some 200,000; 6.6 MiB (2.2 million) where a real create of 64 MiB holds some 900,000.
    const bomb = (n: number): string => `[${Array.from({ length: n }, () => '{}').join(',')}]`;
    assertTooLarge(await call(node.url, 'POST', '/transfers/lookup', bomb(1_400_000)), 'lookup of empty objects');
    assertTooLarge(await call(node.url, 'POST', '/transfers/have', bomb(1_400_000)), 'have of empty objects');
    assertTooLarge(await call(node.url, 'POST', '/transfers/send', bomb(1_400_000)), 'send of empty objects');
    assertTooLarge(await call(node.url, 'POST', '/transfers/push', bomb(2_200_000)), 'create of empty objects');
    const nested = '['.repeat(40_000) + ']'.repeat(40_000);
    assertTooLarge(await call(node.url, 'PUT', '/peers/c', nested), 'peer of nested arrays');
    // The same objects inside a string are no objects at all: a plain bad document (400).
    const quoted = await call(node.url, 'POST', '/transfers/lookup', JSON.stringify('{}'.repeat(1_000_000)));
    assert.equal(quoted.status, 400, quoted.body.toString());
    assert.deepEqual(await snapshot(), before);
  });

  test(
    'a create of 100,000 instances is accepted at once, makes no file ahead of its data, and leaves nothing once ' + 'discarded',
    async () => {
      const { instances, body } = createBody(100_000);
      const before = await pushStaging();
      const a = await call(node.url, 'POST', '/transfers/push', body);
      assert.equal(a.status, 200, a.body.toString().slice(0, 300));
      const path = json<{ Path: string }>(a).Path;
      const tx = path.split('/').pop() as string;
      assert.deepEqual(await pushStaging(), [...before, tx].sort());
      const files = async () => (await readdir(join(node.dataDir, 'staging', 'push', tx))).filter((f) => f.endsWith('.dcm'));
      // Files are made by the buckets that write into them, not ahead: a few to check the directory, no more.
      const first = (await files()).length;
      assert.ok(first <= 16, `${first} staging files right after the create`);
      // However long one looks (here: after a few more requests), none appear without data.
      for (let i = 0; i < 20; i++) await call(node.url, 'GET', '/system');
      await new Promise((r) => setTimeout(r, 500));
      assert.ok((await files()).length <= 16, `${(await files()).length} staging files without any bucket`);
      // A bucket makes the files of its instances.
      const sorted = [...instances].sort((x, y) => (x.ID < y.ID ? -1 : 1));
      const firstBucket = scheduleBuckets(instances, { bucketSize: 4096 * 1024 })[0] ?? [];
      const payload = Buffer.alloc(
        firstBucket.reduce((s, c) => s + c.Size, 0),
        7,
      );
      const put = await call(node.url, 'PUT', `${path}/0`, payload);
      assert.equal(put.status, 200, put.body.toString());
      const after = await files();
      for (const c of firstBucket) assert.ok(after.includes(`${c.ID}.dcm`), `file of ${c.ID} made by its bucket`);
      assert.ok(after.length < 16 + firstBucket.length + 1);
      assert.equal(sorted.length, 100_000);
      // Discarded: nothing of it stays.
      assert.equal((await call(node.url, 'DELETE', path)).status, 200);
      assert.deepEqual(await pushStaging(), before);
    },
  );

  test('a create declaring more instances than Transfers.MaxPushInstances is refused with 413, nothing made', async () => {
    const before = await snapshot();
    const { body } = createBody(100_001);
    const a = await call(node.url, 'POST', '/transfers/push', body);
    assertTooLarge(a, 'create of 100,001 instances');
    assert.match(json<{ Details?: string }>(a).Details ?? '', /MaxPushInstances/);
    assert.deepEqual(await snapshot(), before);
    // A create within the cap still works afterwards.
    const ok = await call(node.url, 'POST', '/transfers/push', createBody(10).body);
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal((await call(node.url, 'DELETE', json<{ Path: string }>(ok).Path)).status, 200);
  });

  test('a smaller cap sizes the create limit with it', async () => {
    const small = await startXferNode({ config: { Transfers: { MaxPushInstances: 100 } } });
    try {
      const over = await call(small.url, 'POST', '/transfers/push', createBody(101).body);
      assertTooLarge(over, 'create of 101 instances, cap 100');
      const ok = await postJson(small.url, '/transfers/push', JSON.parse(createBody(100).body));
      assert.equal(ok.status, 200, ok.body.toString());
      // The body limit follows the cap (4 MiB at least): a body declared past it is refused unread.
      assertTooLarge(await postDeclared(small.url, '/transfers/push', 4 * MiB + 1, 16), 'create body past 4 MiB, cap 100');
    } finally {
      await small.stop();
    }
  });
});
