// End to end on generated data of every bucket class, with gzip (one member per bucket,
// docs/protocol.md#compression): push and pull deliver identical bytes, with one PUT per scheduled bucket and
// exactly the scheduled chunk URLs. The large multi-frame is 100 MB here (gzip runs at ~15 MB/s per core on
// the test machine); the 300 MB one travels uncompressed in transfers-large.test.ts.
import assert from 'node:assert/strict';
import { createGunzip } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import {
  assertSameInstances,
  emptyNode,
  putIndex,
  setupClasses,
  specChunkUrl,
  startTransfer,
  waitJob,
  wireBucket,
  type ClassesSetup,
} from '../helpers/transfer-nodes.ts';

describe('transfers of every bucket class, gzip', { timeout: 240_000 }, () => {
  let s: ClassesSetup;

  before(async () => {
    s = await setupClasses(100);
  });
  after(async () => {
    await s?.stop();
  });

  test('push: one gzip PUT per scheduled bucket; B has the same bytes', async () => {
    const { pair, g, instances } = s;
    const buckets = scheduleBuckets(instances, { bucketSize: g });
    await emptyNode(pair.b.url);
    pair.toB.clearRecords();
    const h = await startTransfer(pair.a.url, 'send', { Resources: s.resources, Compression: 'gzip', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, s.source);
    const create = JSON.parse((pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ })[0]!.requestBody as Buffer).toString('utf8')) as Record<string, unknown>;
    assert.equal(create.Compression, 'gzip');
    assert.deepEqual(create.Buckets, buckets.map(wireBucket));
    const puts = pair.toB.records({ method: 'PUT' });
    assert.deepEqual(puts.map(putIndex).sort((x, y) => x - y), buckets.map((_b, i) => i));
    assert.ok(puts.every((r) => r.status === 200 && r.headers['content-encoding'] === undefined));
  });

  test('pull: exactly the scheduled chunk URLs, answered as one gzip member each; B has the same bytes', async () => {
    const { pair, g, instances } = s;
    await emptyNode(pair.b.url);
    pair.toA.clearRecords();
    const h = await startTransfer(pair.b.url, 'pull', { Resources: s.resources, Compression: 'gzip', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, s.source);
    const buckets = scheduleBuckets(instances, { bucketSize: g, pullBaseUrl: `${pair.toA.url}/`, compression: 'gzip' });
    const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    assert.deepEqual(gets.map((r) => r.path).sort(), buckets.map((b) => specChunkUrl(b, 'gzip')).sort());
    assert.ok(gets.every((r) => r.status === 200 && r.outcome === 'completed'));

    // A chunk answer asked again by hand is a gzip stream of exactly the bucket's length.
    const small = buckets.find((b) => b.length > 1);
    assert.ok(small);
    const res = await fetch(`${pair.a.url}${specChunkUrl(small, 'gzip')}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/gzip');
    let inflated = 0;
    const gunzip = createGunzip();
    gunzip.on('data', (d: Buffer) => (inflated += d.length));
    const done = new Promise<void>((r, j) => (gunzip.on('end', r), gunzip.on('error', j)));
    gunzip.end(Buffer.from(await res.arrayBuffer()));
    await done;
    assert.equal(inflated, small.reduce((x, c) => x + c.Size, 0));
  });
});
