// The push receiver on real node processes: the captured push of an Orthanc sender replayed, buckets in
// any order and twice, every error answer, an atomic commit that stores all or nothing, the free-disk check,
// and PUTs of several transactions (and of one) processed at the same time.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import { gzipBuffer } from '../../src/protocol/compression.ts';
import { DISCARD_LIMIT_BYTES } from '../../src/server/http.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/ports.ts';
import { CAPTURES, describe, needs, REAL_DICOM } from '../helpers/data.ts';
import {
  type Answer,
  create,
  createBody,
  exists,
  instanceMd5,
  json,
  loadInstances,
  payload,
  pushDir,
  raw,
  slowPut,
  type TestInstance,
  waitStaged,
} from '../helpers/push-receiver.ts';

/** Fails if `p` has not settled within `ms`: a bound on a wait, not a timing assertion. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One HTTP/1.1 connection written by hand, so a test controls when each byte of a body goes and sees
 * answers that come before the body ends. Answers must carry a Content-Length (all of ours do).
 */
class RawConnection {
  readonly socket: Socket;
  #buffered = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | undefined;
  readonly closed: Promise<void>;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.#buffered = Buffer.concat([this.#buffered, d]);
      this.#wake?.();
    });
    // The server may reset the connection (the test of the bound on a discarded body).
    this.socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      this.socket.on('close', () => {
        this.#closed = true;
        this.#wake?.();
        resolve();
      }),
    );
  }

  /** Writes and waits until the kernel took the bytes (or the connection is gone). */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.write(data, () => resolve());
    });
  }

  /** One chunk of a chunked body. */
  chunk(data: Buffer): Promise<void> {
    return this.write(Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]));
  }

  /** The next answer on the connection; fails if the connection closes before it is whole. */
  async answer(): Promise<Answer> {
    for (let i = 0; i < 10_000; i++) {
      const end = this.#buffered.indexOf('\r\n\r\n');
      if (end >= 0) {
        const lines = this.#buffered.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1]);
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const c = l.indexOf(':');
          headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
        const length = Number(headers['content-length']);
        assert.ok(Number.isSafeInteger(length), `an answer with a Content-Length: ${lines.join(' | ')}`);
        if (this.#buffered.length >= end + 4 + length) {
          const body = this.#buffered.subarray(end + 4, end + 4 + length);
          this.#buffered = this.#buffered.subarray(end + 4 + length);
          return { status, headers, body };
        }
      }
      if (this.#closed) throw new Error(`the connection closed before an answer was whole (${this.#buffered.length} bytes)`);
      await within(new Promise<void>((resolve) => (this.#wake = resolve)), 20_000, 'an answer');
    }
    throw new Error('no whole answer after 10,000 reads');
  }
}
describe('transfers server: push receiver', { skip: needs(REAL_DICOM, CAPTURES) }, () => {
  let node: XferNode;
  let knee: TestInstance[];
  let brainix: TestInstance[];

  before(async () => {
    node = await startXferNode({ config: { HttpTimeout: 60, Transfers: { MaxPushTransactions: 4 } } });
    knee = await loadInstances('Knee/T1', 30);
    brainix = await loadInstances('Brainix/Flair', 10);
  });
  after(async () => {
    await node?.stop();
  });

  test('accepts the captured push of an Orthanc sender and stores the 50 instances', async () => {
    const createBytes = await readFile(join(CAPTURES, '18143-0003-POST-req.bin'));
    const declared = JSON.parse(createBytes.toString('utf8')) as {
      Buckets: unknown[][];
      Compression: string;
      Instances: { ID: string; MD5: string; Size: string }[];
    };
    assert.equal(declared.Buckets.length, 1);
    assert.equal(declared.Compression, 'gzip');
    const r = await raw(node, 'POST', '//transfers/push', createBytes, {
      'Content-Type': 'application/json',
      'sender-transfer-id': 'replay',
    });
    assert.equal(r.status, 200, r.body.toString());
    const handle = json(r) as { ID: string; Path: string };
    assert.match(handle.ID, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(handle.Path, `/transfers/push/${handle.ID}`);
    assert.ok(await exists(pushDir(node, handle.ID)));

    const bucket = await readFile(join(CAPTURES, '18143-0004-PUT-req.bin'));
    const put = await raw(node, 'PUT', `/${handle.Path}/0`, bucket, {
      'Content-Type': 'application/octet-stream',
      'sender-transfer-id': 'replay',
    });
    assert.equal(put.status, 200, put.body.toString());
    assert.deepEqual(json(put), {});

    // The commit as an Orthanc sender posts it: empty body, a form Content-Type or none.
    const commit = await raw(node, 'POST', `/${handle.Path}/commit`, '', { 'Content-Type': 'application/x-www-form-urlencoded' });
    assert.equal(commit.status, 200, commit.body.toString());
    assert.deepEqual(json(commit), {});
    for (const i of declared.Instances) {
      const m = await instanceMd5(node, i.ID);
      assert.equal(m.status, 200, i.ID);
      assert.equal(m.body.toString().trim(), i.MD5);
    }
    const stats = json(await raw(node, 'GET', '/statistics'));
    assert.equal(stats.CountInstances, 50);
    assert.equal(stats.TotalDiskSize, String(declared.Instances.reduce((s, i) => s + Number(i.Size), 0)));
    // The transaction is gone, its staging too.
    assert.equal((await raw(node, 'POST', `${handle.Path}/commit`)).status, 404);
    assert.equal(await exists(pushDir(node, handle.ID)), false);
  });

  test('takes buckets in any order and more than once, and commits', async () => {
    // 64 KB buckets split these ~130-170 KB files; the small group threshold mixes whole and partial.
    const instances = brainix.slice(0, 4);
    const buckets = scheduleBuckets(instances, { bucketSize: 64 * 1024 });
    assert.ok(buckets.length >= 8, `${buckets.length} buckets`);
    const { Path } = await create(node, createBody(instances, buckets, 'none'));
    const order = buckets.map((_, i) => i).reverse();
    for (const i of [...order, 0, 3]) {
      const r = await raw(node, 'PUT', `${Path}/${i}`, payload(instances, buckets[i] as Bucket));
      assert.equal(r.status, 200, `bucket ${i}: ${r.body.toString()}`);
    }
    const c = await raw(node, 'POST', `${Path}/commit`);
    assert.equal(c.status, 200, c.body.toString());
    for (const i of instances) assert.equal((await instanceMd5(node, i.ID)).body.toString().trim(), i.MD5);
  });

  test('answers a wrong size with 500 NetworkProtocol, a bad index with 400, corrupt gzip with 400', async () => {
    const [a] = knee as [TestInstance];
    const half = Math.floor(a.Size / 2);
    const buckets: Bucket[] = [[{ ID: a.ID, Offset: 0, Size: half }], [{ ID: a.ID, Offset: half, Size: a.Size - half }]];
    const { ID, Path } = await create(node, createBody([a], buckets, 'none'));
    const wrong = await raw(node, 'PUT', `${Path}/0`, 'xyz', { 'Content-Type': 'application/octet-stream' });
    assert.equal(wrong.status, 500);
    const e = json(wrong);
    assert.equal(e.OrthancStatus, 9);
    assert.equal(e.Message, 'Error in the network protocol');
    assert.equal(e.Details, `WriteUncompressedBucket: 3 != ${half}`);
    assert.equal(e.Method, 'PUT');
    assert.equal(e.Uri, `${Path}/0`);
    const range = await raw(node, 'PUT', `${Path}/7`, payload([a], buckets[0] as Bucket));
    assert.equal(range.status, 400);
    assert.equal(json(range).OrthancStatus, 3);
    const huge = await raw(node, 'PUT', `${Path}/99999999999999999999999`, 'x');
    assert.equal(huge.status, 400);
    const notIndex = await raw(node, 'PUT', `${Path}/abc`, 'x');
    assert.equal(notIndex.status, 404);
    // Still usable after the errors.
    for (const i of [1, 0]) assert.equal((await raw(node, 'PUT', `${Path}/${i}`, payload([a], buckets[i] as Bucket))).status, 200);
    assert.equal((await raw(node, 'DELETE', Path)).status, 200);
    assert.equal(await exists(pushDir(node, ID)), false);

    const gz = await create(node, createBody([a], [[{ ID: a.ID, Offset: 0, Size: a.Size }]], 'gzip'));
    const plain = await raw(node, 'PUT', `${gz.Path}/0`, a.data);
    assert.equal(plain.status, 400, 'a plain body in a gzip transaction is corrupt gzip');
    assert.equal(json(plain).OrthancStatus, 15);
    const packed = gzipBuffer(a.data);
    const cut = await raw(node, 'PUT', `${gz.Path}/0`, packed.subarray(0, packed.length - 20));
    assert.equal(cut.status, 400);
    const ok = await raw(node, 'PUT', `${gz.Path}/0`, packed);
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal((await raw(node, 'DELETE', gz.Path)).status, 200);
  });

  test(
    'a body refused before its end is answered at once, read to its end and dropped; the connection carries the next ' + 'request',
    async () => {
      const [a] = knee.slice(3, 4) as [TestInstance];
      const tx = await create(node, createBody([a], [[{ ID: a.ID, Offset: 0, Size: a.Size }]], 'gzip'));
      const packed = gzipBuffer(a.data);
      const damaged = Buffer.from(packed);
      damaged[0] = (damaged[0] as number) ^ 0xff; // not gzip from the first byte: refused before the rest comes
      const conn = new RawConnection(node.port);
      try {
        await conn.write(
          `PUT ${tx.Path}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n` +
            'x-dicom-xfer-crc32: member\r\nTransfer-Encoding: chunked\r\n\r\n',
        );
        await conn.chunk(damaged.subarray(0, 4096));
        // The refusal comes while most of the body has not been sent.
        const refused = await conn.answer();
        assert.equal(refused.status, 422, refused.body.toString());
        assert.equal(json(refused).OrthancStatus, 20);
        assert.notEqual(refused.headers['connection'], 'close');
        // The rest of the body still goes, and is dropped.
        for (let at = 4096; at < damaged.length; at += 64 * 1024) await conn.chunk(damaged.subarray(at, at + 64 * 1024));
        await conn.write('0\r\n\r\n');
        // The same connection then carries the bucket again, whole, and it is taken.
        await conn.write(
          `PUT ${tx.Path}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n` +
            `x-dicom-xfer-crc32: member\r\nContent-Length: ${packed.length}\r\n\r\n`,
        );
        await conn.write(packed);
        const taken = await conn.answer();
        assert.equal(taken.status, 200, taken.body.toString());
        // The receiver counts the bytes of both bodies: the dropped rest went through the body's counter
        // only as far as the refusal, the whole second body all of it.
        const received = Number(/^(\d+) \d+$/.exec(String(taken.headers['x-dicom-xfer-received']))?.[1]);
        assert.ok(received >= packed.length && received < packed.length + damaged.length, String(taken.headers['x-dicom-xfer-received']));
      } finally {
        conn.socket.destroy();
      }
      const c = await raw(node, 'POST', `${tx.Path}/commit`);
      assert.equal(c.status, 200, c.body.toString());
      assert.equal((await instanceMd5(node, a.ID)).body.toString().trim(), a.MD5);
    },
  );

  test('a refused body is dropped only up to a bound: past it the connection closes', async () => {
    const [a] = knee.slice(4, 5) as [TestInstance];
    const tx = await create(node, createBody([a], [[{ ID: a.ID, Offset: 0, Size: a.Size }]], 'gzip'));
    const conn = new RawConnection(node.port);
    try {
      await conn.write(`PUT ${tx.Path}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nx-dicom-xfer-crc32: member\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const junk = Buffer.alloc(1024 * 1024, 0x55);
      await conn.chunk(junk);
      assert.equal((await conn.answer()).status, 422);
      // A client that ignores the answer and keeps sending is cut off once the bound is passed.
      const most = Math.ceil(DISCARD_LIMIT_BYTES / junk.length) + 8;
      let sent = 1;
      for (; sent < most && !conn.socket.destroyed; sent++) await conn.chunk(junk);
      await within(conn.closed, 20_000, 'the connection to close');
      assert.ok(sent * junk.length > DISCARD_LIMIT_BYTES, `closed after ${sent} MiB`);
    } finally {
      conn.socket.destroy();
    }
    // The transaction is untouched and still takes the bucket.
    const ok = await raw(node, 'PUT', `${tx.Path}/0`, gzipBuffer(a.data));
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal((await raw(node, 'DELETE', tx.Path)).status, 200);
  });

  test('refuses buckets naming undeclared instances (404) or running past one (400)', async () => {
    const [a, b] = knee as [TestInstance, TestInstance];
    const buckets: Bucket[] = [[{ ID: b.ID, Offset: 0, Size: 10 }], [{ ID: a.ID, Offset: a.Size - 5, Size: 10 }]];
    const { Path } = await create(node, createBody([a], buckets, 'none'));
    const unknown = await raw(node, 'PUT', `${Path}/0`, Buffer.alloc(10));
    assert.equal(unknown.status, 404);
    assert.equal(json(unknown).OrthancStatus, 17);
    const outside = await raw(node, 'PUT', `${Path}/1`, Buffer.alloc(10));
    assert.equal(outside.status, 400);
    assert.equal(json(outside).OrthancStatus, 3);
    assert.equal((await raw(node, 'DELETE', Path)).status, 200);
  });

  test('unknown transactions are 404, other methods 405, bad create bodies 400', async () => {
    const none = '/transfers/push/00000000-0000-0000-0000-000000000000';
    for (const [method, path] of [
      ['PUT', `${none}/0`],
      ['POST', `${none}/commit`],
      ['DELETE', none],
      ['DELETE', '/transfers/push/ABC'],
    ] as const) {
      const r = await raw(node, method, path, method === 'PUT' ? 'xyz' : undefined);
      assert.equal(r.status, 404, `${method} ${path}`);
      const e = json(r);
      assert.equal(e.OrthancStatus, 17);
      assert.equal(e.Uri, path);
    }
    for (const [method, path, allow] of [
      ['GET', '/transfers/push', 'POST'],
      ['GET', none, 'DELETE'],
      ['PUT', `${none}/commit`, 'POST'],
      ['GET', `${none}/3`, 'PUT'],
    ] as const) {
      const r = await raw(node, method, path);
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.allow, allow);
    }
    const [a] = knee as [TestInstance];
    const info = { ID: a.ID, MD5: a.MD5, Size: String(a.Size) };
    const bad: [unknown, number][] = [
      [[], 15],
      [{ Instances: [info], Buckets: [] }, 15],
      [{ Instances: [{ ...info, Size: a.Size }], Buckets: [], Compression: 'none' }, 15],
      [{ Instances: [{ ...info, MD5: a.MD5.toUpperCase() }], Buckets: [], Compression: 'none' }, 15],
      [{ Instances: [info], Buckets: [{ ID: a.ID, Offset: '0', Size: '1' }], Compression: 'none' }, 15],
      [{ Instances: [info], Buckets: [], Compression: 'bzip2' }, 3],
    ];
    const before = await readdir(pushDir(node));
    for (const [body, orthanc] of bad) {
      const r = await raw(node, 'POST', '/transfers/push', JSON.stringify(body));
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(json(r).OrthancStatus, orthanc, JSON.stringify(body));
    }
    assert.equal((await raw(node, 'POST', '/transfers/push', '{"Instances":')).status, 400);
    assert.equal((await raw(node, 'POST', '/transfers/push')).status, 400);
    assert.deepEqual(await readdir(pushDir(node)), before);
  });

  test('refuses with 507 a transfer larger than the free disk, creating nothing', async () => {
    const [a] = knee as [TestInstance];
    const before = await readdir(pushDir(node));
    const body = JSON.stringify({
      Buckets: [],
      Compression: 'none',
      Instances: [{ ID: a.ID, MD5: a.MD5, Size: String(2 ** 50) }],
    });
    const r = await raw(node, 'POST', '/transfers/push', body);
    assert.equal(r.status, 507, r.body.toString());
    const e = json(r);
    assert.equal(e.OrthancStatus, 19);
    assert.equal(e.HttpStatus, 507);
    assert.deepEqual(await readdir(pushDir(node)), before);
  });

  test('a corrupted bucket fails the commit with 500, stores nothing and ends the transaction', async () => {
    const instances = brainix.slice(4, 9);
    const buckets = scheduleBuckets(instances, { bucketSize: 256 * 1024 });
    const statsBefore = json(await raw(node, 'GET', '/statistics'));
    const { ID, Path } = await create(node, createBody(instances, buckets, 'gzip'));
    // Flip one byte of the pixel data of the last bucket's last instance, then send it gzipped as usual.
    const lastIndex = buckets.length - 1;
    const last = buckets[lastIndex] as Bucket;
    const victim = last[last.length - 1]?.ID as string;
    for (const [i, b] of buckets.entries()) {
      const body = payload(instances, b);
      if (i === lastIndex) body[body.length - 100] = (body[body.length - 100] ?? 0) ^ 0x01;
      assert.equal((await raw(node, 'PUT', `${Path}/${i}`, gzipBuffer(body))).status, 200);
    }
    const c = await raw(node, 'POST', `${Path}/commit`);
    assert.equal(c.status, 500, c.body.toString());
    const e = json(c);
    assert.equal(e.OrthancStatus, 20);
    assert.equal(e.Message, 'Corrupted file (e.g. inconsistent MD5 hash)');
    assert.match(String(e.Details), new RegExp(victim));
    for (const other of instances.filter((i) => i.ID !== victim)) assert.doesNotMatch(String(e.Details), new RegExp(other.ID));
    // Nothing of the transfer is visible.
    assert.deepEqual(json(await raw(node, 'GET', '/statistics')), statsBefore);
    for (const i of instances) assert.equal((await raw(node, 'GET', `/instances/${i.ID}`)).status, 404, i.ID);
    // The transaction is gone, with its staging.
    assert.equal((await raw(node, 'POST', `${Path}/commit`)).status, 404);
    assert.equal((await raw(node, 'PUT', `${Path}/0`, 'x')).status, 404);
    assert.equal((await raw(node, 'DELETE', Path)).status, 404);
    assert.equal(await exists(pushDir(node, ID)), false);
  });

  test('a missing bucket also fails the commit (unwritten bytes are zeros)', async () => {
    const instances = brainix.slice(4, 6);
    const buckets = scheduleBuckets(instances, { bucketSize: 64 * 1024 });
    const { Path } = await create(node, createBody(instances, buckets, 'none'));
    for (const [i, b] of buckets.entries()) {
      if (i !== 1) assert.equal((await raw(node, 'PUT', `${Path}/${i}`, payload(instances, b))).status, 200);
    }
    const c = await raw(node, 'POST', `${Path}/commit`);
    assert.equal(c.status, 500);
    assert.equal(json(c).OrthancStatus, 20);
    for (const i of instances) assert.equal((await raw(node, 'GET', `/instances/${i.ID}`)).status, 404);
  });

  test('PUTs of two transactions, and of one, are processed at the same time', async () => {
    const [x, y] = knee.slice(20, 22) as [TestInstance, TestInstance];
    const xHalf = Math.floor(x.Size / 2);
    const tx1 = await create(
      node,
      createBody([x], [[{ ID: x.ID, Offset: 0, Size: xHalf }], [{ ID: x.ID, Offset: xHalf, Size: x.Size - xHalf }]], 'none'),
    );
    const tx2 = await create(node, createBody([y], [[{ ID: y.ID, Offset: 0, Size: y.Size }]], 'none'));
    const events: string[] = [];
    // Bucket 0 of tx1 stays open: the first 20000 bytes now, the rest later.
    const slow = slowPut(node, `${tx1.Path}/0`, x.data.subarray(0, 20_000), x.data.subarray(20_000, xHalf));
    void slow.answer.then(() => events.push('tx1/0 answered'));
    await waitStaged(node, tx1.ID, x.ID, 0, x.data.subarray(0, 20_000));
    events.push('tx1/0 half written');
    // With a global lock these two would wait for tx1/0 to finish, which only happens after them.
    const other = await within(raw(node, 'PUT', `${tx2.Path}/0`, y.data), 20_000, 'a PUT of another transaction');
    assert.equal(other.status, 200);
    events.push('tx2/0 answered');
    const sibling = await within(
      raw(node, 'PUT', `${tx1.Path}/1`, x.data.subarray(xHalf)),
      20_000,
      'a PUT of another bucket of the same transaction',
    );
    assert.equal(sibling.status, 200);
    events.push('tx1/1 answered');
    const first = await slow.finish();
    assert.equal(first.status, 200, first.body.toString());
    assert.deepEqual(events, ['tx1/0 half written', 'tx2/0 answered', 'tx1/1 answered', 'tx1/0 answered']);
    for (const tx of [tx1, tx2]) assert.equal((await raw(node, 'POST', `${tx.Path}/commit`)).status, 200);
    for (const i of [x, y]) assert.equal((await instanceMd5(node, i.ID)).body.toString().trim(), i.MD5);
  });

  test('a commit that arrives while a bucket is being written waits for it', async () => {
    const [x] = knee.slice(22, 23) as [TestInstance];
    const half = Math.floor(x.Size / 2);
    const buckets: Bucket[] = [[{ ID: x.ID, Offset: 0, Size: half }], [{ ID: x.ID, Offset: half, Size: x.Size - half }]];
    const tx = await create(node, createBody([x], buckets, 'none'));
    assert.equal((await raw(node, 'PUT', `${tx.Path}/0`, x.data.subarray(0, half))).status, 200);
    const events: string[] = [];
    const slow = slowPut(node, `${tx.Path}/1`, x.data.subarray(half, half + 5000), x.data.subarray(half + 5000));
    void slow.answer.then((a) => events.push(`bucket 1 answered ${a.status}`));
    await waitStaged(node, tx.ID, x.ID, half, x.data.subarray(half, half + 5000));
    const commit = raw(node, 'POST', `${tx.Path}/commit`);
    void commit.then((a) => events.push(`commit answered ${a.status}`));
    // Once the commit has started, a new PUT of this transaction is refused (400): that is the sign.
    await waitFor(
      'the commit to start',
      async () => (await raw(node, 'PUT', `${tx.Path}/0`, x.data.subarray(0, half))).status === 400,
      20_000,
      20,
    );
    assert.deepEqual(events, []);
    // Meanwhile a DELETE is refused.
    const del = await raw(node, 'DELETE', tx.Path);
    assert.equal(del.status, 400);
    assert.equal(json(del).OrthancStatus, 6);
    await slow.finish();
    await within(commit, 20_000, 'the commit');
    assert.deepEqual(events, ['bucket 1 answered 200', 'commit answered 200']);
    assert.equal((await instanceMd5(node, x.ID)).body.toString().trim(), x.MD5);
  });
});
