// The transfers server in-process (fastify on a loopback port, real embedded stores), where its inner
// state can be watched: chunk answers queueing for the Transfers.Threads slots, the receiver's counters
// and bucketsDone, the chunk walk with sizes past 2^31, and a real 2.2 GB instance (sparse on disk)
// served from offsets past 2 GiB and pushed into another node.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, open, readFile, rm, statfs } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import type { ConfigOverrides } from '../../src/config/types.ts';
import { gunzipBuffer, gzipBuffer } from '../../src/protocol/compression.ts';
import { toWirePushCreate, type Bucket } from '../../src/protocol/wire.ts';
import { zstdDecompress } from '../../src/protocol/zstd.ts';
import { buildNode, type NodeApp } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { HEADER_CRC32, HEADER_WANT_CRC32, crc32Hex } from '../../src/transfer/capabilities.ts';
import { planChunkRead } from '../../src/transfer/chunk-server.ts';
import { md5File } from '../../src/util/fs.ts';
import { waitFor } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

const BRAINIX = join(REAL_DICOM, 'Brainix/Flair');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

interface Node {
  app: NodeApp;
  store: EmbeddedStore;
  url: string;
  port: number;
  dir: string;
  close(): Promise<void>;
}

async function startNode(overrides: ConfigOverrides = {}): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-inproc-'));
  const { config } = await loadConfig({ overrides: { StorageDirectory: dir, HttpPort: 0, ...overrides } });
  const store = await EmbeddedStore.open(dir, { commitThreads: 2 });
  const app = await buildNode({ config, store, logger: pino({ level: 'silent' }), originator: randomUUID() });
  await app.fastify.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.fastify.server.address();
  const port = addr && typeof addr === 'object' ? addr.port : 0;
  return {
    app,
    store,
    dir,
    port,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await app.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function raw(node: Node, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: node.port, method, path, headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function json(a: Answer): Record<string, unknown> {
  return JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
}

async function ingest(node: Node, data: Buffer): Promise<string> {
  const r = await raw(node, 'POST', '/instances', data);
  assert.equal(r.status, 200, r.body.toString());
  return json(r).ID as string;
}

describe('chunk walk with sizes past 2^31', () => {
  const GB = 2 ** 30;
  const sizes = new Map([
    ['a', 3 * GB + 7],
    ['b', 5],
    ['c', 2 * GB],
  ]);

  test('ranges at offsets past 2 GiB, across instances, exact to the byte', () => {
    const from = 2 ** 31 + 3;
    assert.deepEqual(planChunkRead({ ids: ['a'], offset: from, size: 100 }, sizes), {
      ranges: [{ ID: 'a', start: from, end: from + 100 }],
      total: 100,
    });
    const tail = planChunkRead({ ids: ['a', 'b', 'c'], offset: 3 * GB, size: 2 * GB }, sizes);
    assert.deepEqual(tail.ranges, [
      { ID: 'a', start: 3 * GB, end: 3 * GB + 7 },
      { ID: 'b', start: 0, end: 5 },
      { ID: 'c', start: 0, end: 2 * GB - 12 },
    ]);
    assert.equal(tail.total, 2 * GB);
    // Size 0: to the end of the last instance, here 5 GiB + 12 bytes past an offset inside b.
    const all = planChunkRead({ ids: ['a', 'b', 'c'], offset: 3 * GB + 9, size: 0 }, sizes);
    assert.deepEqual(all.ranges, [
      { ID: 'b', start: 2, end: 5 },
      { ID: 'c', start: 0, end: 2 * GB },
    ]);
    assert.equal(all.total, 2 * GB + 3);
  });

  test('an absent instance is 404 only when the walk reaches it', () => {
    assert.throws(() => planChunkRead({ ids: ['a', 'zz'], offset: 3 * GB + 7, size: 1 }, sizes), /Unknown resource/);
    assert.deepEqual(planChunkRead({ ids: ['a', 'zz'], offset: 0, size: 10 }, sizes).ranges, [{ ID: 'a', start: 0, end: 10 }]);
  });
});

describe('transfers server in-process', { skip: needs(REAL_DICOM) }, () => {
  let node: Node;
  const files: Buffer[] = [];
  const ids: string[] = [];

  before(async () => {
    node = await startNode({ Transfers: { Threads: 1, MaxThreads: 1, MaxPushTransactions: 3 } });
    for (const n of ['IM-0001-0001.dcm', 'IM-0001-0002.dcm', 'IM-0001-0003.dcm']) {
      const data = await readFile(join(BRAINIX, n));
      files.push(data);
      ids.push(await ingest(node, data));
    }
  });
  after(async () => {
    await node?.close();
  });

  test('chunk answers beyond the slots (the larger of Threads and MaxThreads) wait in a queue, then are served', async () => {
    const server = node.app.parts.transfers;
    assert.ok(server);
    // About 50 MB from one instance listed 300 times (a 13.5 KB URL, under Node's 16 KB header limit):
    // far more than the socket buffers hold.
    const big = Array.from({ length: 300 }, () => ids[0]).join('.');
    const req = httpRequest({ host: '127.0.0.1', port: node.port, path: `/transfers/chunks/${big}`, agent: false });
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', reject);
      req.end();
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(300 * (files[0] as Buffer).length));
    res.pause(); // the answer cannot finish: its slot stays taken
    assert.deepEqual(server.chunks.load, { running: 1, queued: 0, limit: 1 });
    const second = raw(node, 'GET', `/transfers/chunks/${ids[1]}?compression=gzip`);
    await waitFor('the second chunk request to queue', async () => server.chunks.load.queued === 1, 10_000, 10);
    assert.equal(server.chunks.load.running, 1);
    // The first client goes away: its slot passes to the waiting request.
    req.destroy();
    res.destroy();
    const r = await second;
    assert.equal(r.status, 200);
    assert.ok((await gunzipBuffer(r.body)).equals(files[1] as Buffer));
    await waitFor('the slots to be free', async () => server.chunks.load.running === 0, 10_000, 10);
    assert.equal(server.chunks.load.queued, 0);
  });

  test('a zstd chunk answer across instances from an offset: one frame of exactly the payload, its CRC-32, its bytes counted', async () => {
    const server = node.app.parts.transfers;
    assert.ok(server);
    const all = Buffer.concat(files);
    const offset = 1000;
    const size = all.length - offset - 500;
    const before = server.chunks.counters.bytes;
    const r = await raw(node, 'GET', `/transfers/chunks/${ids.join('.')}?offset=${offset}&size=${size}&compression=zstd`, undefined, {
      [HEADER_WANT_CRC32]: '2',
    });
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['content-type'], 'application/zstd');
    assert.equal(r.headers['content-length'], String(r.body.length));
    const payload = all.subarray(offset, offset + size);
    assert.ok(r.body.length < payload.length / 2, `${r.body.length} bytes for ${payload.length}`);
    assert.ok((await zstdDecompress(r.body, size)).equals(payload));
    assert.equal(r.headers[HEADER_CRC32], crc32Hex(crc32(payload)));
    assert.equal(server.chunks.counters.bytes - before, size);
    // An instance the walk reaches and the store lacks: 404 in Orthanc's error shape, nothing served.
    const gone = await raw(node, 'GET', `/transfers/chunks/${ids[0]}.${Array(5).fill('0'.repeat(8)).join('-')}?offset=10&compression=zstd`);
    assert.equal(gone.status, 404, gone.body.toString());
    assert.equal(json(gone).HttpStatus, 404);
    assert.equal(server.chunks.counters.bytes - before, size);
    assert.deepEqual(server.chunks.load, { running: 0, queued: 0, limit: 1 });
  });

  test('counts what the receiver does and exposes the buckets done', async () => {
    const server = node.app.parts.transfers;
    assert.ok(server);
    const c0 = { ...server.receiver.counters };
    const [a, b] = files as [Buffer, Buffer];
    // Instances the node does not hold yet: copies under new UIDs are not needed, a fresh node is.
    const other = await startNode({ Transfers: { MaxPushTransactions: 4 } });
    try {
      const receiver = other.app.parts.transfers.receiver;
      assert.ok(receiver);
      const half = Math.floor(a.length / 2);
      const buckets: Bucket[] = [
        [{ ID: ids[0] as string, Offset: 0, Size: half }],
        [{ ID: ids[0] as string, Offset: half, Size: a.length - half }],
        [{ ID: ids[1] as string, Offset: 0, Size: b.length }],
      ];
      const body = toWirePushCreate({
        Instances: [
          { ID: ids[0] as string, Size: a.length, MD5: md5(a) },
          { ID: ids[1] as string, Size: b.length, MD5: md5(b) },
        ],
        Buckets: buckets,
        Compression: 'gzip',
      });
      const created = json(await raw(other, 'POST', '/transfers/push', JSON.stringify(body))) as { ID: string; Path: string };
      assert.equal(receiver.held, 1);
      assert.equal(receiver.available, 3);
      const payloads = [a.subarray(0, half), a.subarray(half), b];
      let wire = 0;
      for (const i of [2, 0]) {
        const gz = gzipBuffer(payloads[i] as Buffer);
        wire += gz.length;
        assert.equal((await raw(other, 'PUT', `${created.Path}/${i}`, gz)).status, 200);
      }
      assert.deepEqual(receiver.bucketsDone(created.ID), [0, 2]);
      assert.equal(receiver.info(created.ID).bucketsDone, 2);
      assert.equal((await raw(other, 'PUT', `${created.Path}/1`, gzipBuffer(payloads[1] as Buffer))).status, 200);
      wire += gzipBuffer(payloads[1] as Buffer).length;
      assert.deepEqual(receiver.bucketsDone(created.ID), [0, 1, 2]);
      // A second commit while the first runs (a sender's retry) shares its outcome.
      const first = receiver.commit(created.ID);
      const again = receiver.commit(created.ID);
      await Promise.all([first, again]);
      assert.equal((await raw(other, 'POST', `${created.Path}/commit`)).status, 404);
      assert.throws(() => receiver.bucketsDone(created.ID), /Unknown resource/);
      const dropped = json(await raw(other, 'POST', '/transfers/push', JSON.stringify(body))) as { Path: string };
      assert.equal((await raw(other, 'DELETE', dropped.Path)).status, 200);
      const k = receiver.counters;
      assert.equal(k.created, 2);
      assert.equal(k.committed, 1);
      assert.equal(k.discarded, 1);
      assert.equal(k.failedCommits, 0);
      assert.equal(k.evicted + k.expired, 0);
      assert.equal(k.receivedBytes, a.length + b.length);
      assert.equal(k.buckets, 3);
      assert.equal(k.bucketBytes, a.length + b.length);
      assert.equal(k.wireBytes, wire);
      assert.ok(k.receptionMs >= 0 && k.commitMs >= 0);
      assert.equal(receiver.held, 0);
    } finally {
      await other.close();
    }
    // The first node's receiver saw none of it.
    assert.deepEqual(server.receiver.counters, c0);
  });
});

describe('a 2.2 GB instance (sparse on disk)', { skip: needs(REAL_DICOM) }, () => {
  const SIZE = 2_200_000_000;
  const MARK_AT = 2 ** 31 + 12_345;
  let source: Node | undefined;
  let target: Node | undefined;
  let skip = '';
  let id = '';
  let head: Buffer;
  const mark = randomBytes(1 << 20);
  const tail = randomBytes(4096);
  let fileMd5 = '';

  before(async () => {
    const fs = await statfs(tmpdir());
    const free = Number(fs.bavail) * Number(fs.bsize);
    if (free < 10 * 2 ** 30) {
      skip = `needs 10 GB free in ${tmpdir()}, has ${Math.floor(free / 2 ** 30)} GB`;
      return;
    }
    source = await startNode();
    target = await startNode();
    // A real DICOM file whose Pixel Data (the last element, OW) is stretched to make the file 2.2 GB.
    const real = await readFile(join(BRAINIX, 'IM-0001-0004.dcm'));
    const tag = real.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57, 0, 0]));
    assert.ok(tag > 0 && tag + 12 + real.readUInt32LE(tag + 8) === real.length, 'Pixel Data is the last element');
    head = Buffer.from(real);
    head.writeUInt32LE(SIZE - (tag + 12), tag + 8);
    const path = join(source.store.tmpDir(), 'big.dcm');
    const fh = await open(path, 'w');
    try {
      await fh.write(head, 0, head.length, 0);
      await fh.truncate(SIZE);
      await fh.write(mark, 0, mark.length, MARK_AT);
      await fh.write(tail, 0, tail.length, SIZE - tail.length);
    } finally {
      await fh.close();
    }
    fileMd5 = await md5File(path);
    id = (await source.store.ingestFile(path, SIZE, fileMd5)).ids.instance;
  });
  after(async () => {
    await source?.close();
    await target?.close();
  });

  test('is looked up with its size and served from offsets past 2 GiB', async (t) => {
    if (skip || !source) return t.skip(skip);
    const look = json(await raw(source, 'POST', '/transfers/lookup', JSON.stringify([{ Level: 'Instance', ID: id }])));
    assert.deepEqual(look.Instances, [{ ID: id, MD5: fileMd5, Size: String(SIZE) }]);
    assert.equal(look.TotalSize, String(SIZE));
    const r = await raw(source, 'GET', `/transfers/chunks/${id}?offset=${MARK_AT - 10}&size=${mark.length + 20}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(mark.length + 20));
    assert.ok(r.body.equals(Buffer.concat([Buffer.alloc(10), mark, Buffer.alloc(10)])));
    const gz = await raw(source, 'GET', `/transfers/chunks/${id}?offset=${SIZE - 100}&compression=gzip`);
    assert.ok((await gunzipBuffer(gz.body)).equals(tail.subarray(tail.length - 100)));
    const start = await raw(source, 'GET', `/transfers/chunks/${id}?offset=0&size=${head.length}`);
    assert.ok(start.body.equals(head));
  });

  test('is pushed into another node with buckets past 2 GiB, and commits', async (t) => {
    if (skip || !source || !target) return t.skip(skip);
    // Only the regions that hold data travel: the staged file is sparse, so the rest is already zeros.
    const buckets: Bucket[] = [
      [{ ID: id, Offset: 0, Size: head.length }],
      [{ ID: id, Offset: MARK_AT, Size: mark.length }],
      [{ ID: id, Offset: SIZE - tail.length, Size: tail.length }],
    ];
    const body = toWirePushCreate({ Instances: [{ ID: id, Size: SIZE, MD5: fileMd5 }], Buckets: buckets, Compression: 'gzip' });
    const created = json(await raw(target, 'POST', '/transfers/push', JSON.stringify(body))) as { Path: string };
    for (const [i, data] of [head, mark, tail].entries()) {
      const r = await raw(target, 'PUT', `${created.Path}/${i}`, gzipBuffer(data));
      assert.equal(r.status, 200, r.body.toString());
    }
    const c = await raw(target, 'POST', `${created.Path}/commit`);
    assert.equal(c.status, 200, c.body.toString());
    const m = await raw(target, 'GET', `/instances/${id}/attachments/dicom/md5`);
    assert.equal(m.body.toString().trim(), fileMd5);
    const back = await raw(target, 'GET', `/transfers/chunks/${id}?offset=${MARK_AT}&size=${mark.length}`);
    assert.ok(back.body.equals(mark));
  });
});
