// End to end on generated data of every bucket class, without compression: instances below BucketSize
// (grouped), between one and two BucketSize (one bucket each) and beyond (split), one a ~300 MB
// multi-frame. Push and pull deliver identical bytes, and the proxy sees exactly the buckets of
// docs/protocol.md#bucket-scheduling: the PUT bodies and the chunk URLs (docs/protocol.md#chunk-urls) and
// answers that the scheduler computes from the instances.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import {
  assertSameInstances,
  bucketMd5,
  emptyNode,
  putIndex,
  setupClasses,
  specChunkUrl,
  startTransfer,
  waitJob,
  wireBucket,
  type ClassesSetup,
} from '../helpers/transfer-nodes.ts';

const byId = <T extends { ID: string }>(x: T, y: T) => (x.ID < y.ID ? -1 : x.ID > y.ID ? 1 : 0);
const total = (b: Bucket) => b.reduce((s, c) => s + c.Size, 0);

describe('transfers of every bucket class, no compression', { timeout: 240_000 }, () => {
  let s: ClassesSetup;

  before(async () => {
    s = await setupClasses();
    const { g, instances } = s;
    const sizes = instances.map((i) => i.Size);
    assert.ok(sizes.some((x) => x < g), 'an instance below G');
    assert.ok(sizes.some((x) => x >= g && x < 2 * g), 'an instance in [G, 2G)');
    assert.ok(sizes.some((x) => x >= 2 * g && x < 4 * g), 'a small instance split in two');
    assert.ok(sizes.some((x) => x > 250_000_000), 'a ~300 MB instance');
  });
  after(async () => {
    await s?.stop();
  });

  test('push: the create body and the PUT bodies are exactly the scheduled buckets; B has the same bytes', async () => {
    const { pair, g, instances, imported } = s;
    const buckets = scheduleBuckets(instances, { bucketSize: g });
    assert.ok(buckets.some((b) => b.length > 1), 'a grouped bucket');
    assert.ok(buckets.some((b) => b.length === 1 && b[0]!.Offset === 0 && b[0]!.Size >= g && b[0]!.Size < 2 * g), 'a medium instance alone');
    assert.ok(buckets.filter((b) => b.length === 1 && b[0]!.Offset > 0).length > 100, 'pieces of split instances');

    await emptyNode(pair.b.url);
    pair.toB.clearRecords();
    const h = await startTransfer(pair.a.url, 'send', { Resources: s.resources, Compression: 'none', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, s.source);

    const creates = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
    assert.equal(creates.length, 1);
    const create = JSON.parse((creates[0]!.requestBody as Buffer).toString('utf8')) as Record<string, unknown>;
    assert.equal(create.Compression, 'none');
    assert.deepEqual(create.Instances, [...instances].sort(byId).map((i) => ({ ID: i.ID, MD5: i.MD5, Size: String(i.Size) })));
    assert.deepEqual(create.Buckets, buckets.map(wireBucket));

    const puts = pair.toB.records({ method: 'PUT' });
    assert.deepEqual(puts.map(putIndex).sort((x, y) => x - y), buckets.map((_b, i) => i), 'one PUT per bucket');
    for (const r of puts) {
      const b = buckets[putIndex(r)] as Bucket;
      assert.equal(r.status, 200);
      assert.equal(r.requestBytes, total(b), `length of bucket ${putIndex(r)}`);
      assert.equal(r.requestMd5, await bucketMd5(b, imported.path), `bytes of bucket ${putIndex(r)}`);
    }
    assert.equal(job.Content.CompletedHttpQueries, buckets.length);
    assert.equal(job.Content.TotalInstances, instances.length);
  });

  test('pull: the chunk URLs and answers are exactly the scheduled buckets; B has the same bytes', async () => {
    const { pair, g, instances, imported } = s;
    await emptyNode(pair.b.url);
    pair.toA.clearRecords();
    const h = await startTransfer(pair.b.url, 'pull', { Resources: s.resources, Compression: 'none', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, s.source);

    const lookups = pair.toA.records({ method: 'POST', path: '/transfers/lookup' });
    assert.equal(lookups.length, 1);
    const answer = JSON.parse((lookups[0]!.responseBody as Buffer).toString('utf8')) as { Instances: { ID: string; MD5: string; Size: string }[] };
    const listed = answer.Instances.map((i) => ({ ID: i.ID, Size: Number(i.Size), MD5: i.MD5 }));
    assert.deepEqual([...listed].sort(byId), [...instances].sort(byId));
    // The puller cuts with its own BucketSize and the URL limit measured on A's URL as B knows it.
    const buckets = scheduleBuckets(listed, { bucketSize: g, pullBaseUrl: `${pair.toA.url}/`, compression: 'none' });
    const byUrl = new Map(buckets.map((b) => [specChunkUrl(b, 'none'), b]));
    assert.equal(byUrl.size, buckets.length);
    const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    assert.deepEqual(gets.map((r) => r.path).sort(), [...byUrl.keys()].sort(), 'one GET per bucket, URLs as SPEC §5.4');
    for (const r of gets) {
      const b = byUrl.get(r.path) as Bucket;
      assert.equal(r.status, 200);
      assert.equal(r.outcome, 'completed');
      assert.equal(r.responseBytes, total(b));
      assert.equal(r.responseMd5, await bucketMd5(b, imported.path));
    }
    assert.equal(job.Content.CompletedHttpQueries, buckets.length);
  });
});
