// The bucket-class transfers (transfers-large*.test.ts) share one course: generated data of every bucket
// class on a pair of nodes, pushed then pulled, with the proxy's records compared with the buckets the
// scheduler computes. Each file gives its compression, the size of its large multi-frame, and the checks of
// the bytes that depend on the compression.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import type { ProxyRecord } from '../helpers/proxy.ts';
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

const byId = <T extends { ID: string }>(x: T, y: T) => (x.ID < y.ID ? -1 : x.ID > y.ID ? 1 : 0);

export interface ClassesVariant {
  compression: 'none' | 'gzip';
  /** Size of the large multi-frame, in MB. */
  largeMB: number;
  /** Buckets that are a piece of a split instance, at least (the large multi-frame makes most). */
  splitPieces: number;
  suite: string;
  push: string;
  pull: string;
  /** Checks one PUT of the push against its bucket. */
  checkPut(r: ProxyRecord, b: Bucket, s: ClassesSetup): Promise<void>;
  /** Checks one chunk GET of the pull against its bucket. */
  checkGet(r: ProxyRecord, b: Bucket, s: ClassesSetup): Promise<void>;
  /** More checks once the pull is done, with the buckets the puller asked. */
  afterPull?(buckets: Bucket[], s: ClassesSetup): Promise<void>;
}

/** The push and pull tests of one variant. */
export function bucketClassSuite(v: ClassesVariant): void {
  describe(v.suite, { timeout: 240_000 }, () => {
    let s: ClassesSetup;

    before(async () => {
      s = await setupClasses(v.largeMB);
      const { g, instances } = s;
      const sizes = instances.map((i) => i.Size);
      assert.ok(
        sizes.some((x) => x < g),
        'an instance below G',
      );
      assert.ok(
        sizes.some((x) => x >= g && x < 2 * g),
        'an instance in [G, 2G)',
      );
      assert.ok(
        sizes.some((x) => x >= 2 * g && x < 4 * g),
        'a small instance split in two',
      );
      assert.ok(
        sizes.some((x) => x > v.largeMB * 800_000),
        `a ~${v.largeMB} MB instance`,
      );
    });
    after(async () => {
      await s?.stop();
    });

    test(v.push, async () => {
      const { pair, g, instances } = s;
      const buckets = scheduleBuckets(instances, { bucketSize: g });
      assert.ok(
        buckets.some((b) => b.length > 1),
        'a grouped bucket',
      );
      assert.ok(
        buckets.some((b) => b.length === 1 && b[0]!.Offset === 0 && b[0]!.Size >= g && b[0]!.Size < 2 * g),
        'a medium instance alone',
      );
      assert.ok(buckets.filter((b) => b.length === 1 && b[0]!.Offset > 0).length >= v.splitPieces, 'pieces of split instances');

      await emptyNode(pair.b.url);
      pair.toB.clearRecords();
      const h = await startTransfer(pair.a.url, 'send', { Resources: s.resources, Compression: v.compression, Peer: 'b' });
      const job = await waitJob(pair.a.url, h.ID as string, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertSameInstances(pair.b.url, s.source);

      const creates = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
      assert.equal(creates.length, 1);
      const create = JSON.parse((creates[0]!.requestBody as Buffer).toString('utf8')) as Record<string, unknown>;
      assert.equal(create.Compression, v.compression);
      assert.deepEqual(
        create.Instances,
        [...instances].sort(byId).map((i) => ({ ID: i.ID, MD5: i.MD5, Size: String(i.Size) })),
      );
      assert.deepEqual(create.Buckets, buckets.map(wireBucket));

      const puts = pair.toB.records({ method: 'PUT' });
      assert.deepEqual(
        puts.map(putIndex).sort((x, y) => x - y),
        buckets.map((_b, i) => i),
        'one PUT per bucket',
      );
      for (const r of puts) {
        assert.equal(r.status, 200);
        await v.checkPut(r, buckets[putIndex(r)] as Bucket, s);
      }
      assert.equal(job.Content.CompletedHttpQueries, buckets.length);
      assert.equal(job.Content.TotalInstances, instances.length);
    });

    test(v.pull, async () => {
      const { pair, g, instances } = s;
      await emptyNode(pair.b.url);
      pair.toA.clearRecords();
      const h = await startTransfer(pair.b.url, 'pull', { Resources: s.resources, Compression: v.compression, Peer: 'a' });
      const job = await waitJob(pair.b.url, h.ID as string, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertSameInstances(pair.b.url, s.source);

      const lookups = pair.toA.records({ method: 'POST', path: '/transfers/lookup' });
      assert.equal(lookups.length, 1);
      const answer = JSON.parse((lookups[0]!.responseBody as Buffer).toString('utf8')) as {
        Instances: { ID: string; MD5: string; Size: string }[];
      };
      const listed = answer.Instances.map((i) => ({ ID: i.ID, Size: Number(i.Size), MD5: i.MD5 }));
      assert.deepEqual([...listed].sort(byId), [...instances].sort(byId));
      // The puller cuts with its own BucketSize and the URL limit measured on A's URL as B knows it.
      const buckets = scheduleBuckets(listed, { bucketSize: g, pullBaseUrl: `${pair.toA.url}/`, compression: v.compression });
      const byUrl = new Map(buckets.map((b) => [specChunkUrl(b, v.compression), b]));
      assert.equal(byUrl.size, buckets.length);
      const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
      assert.deepEqual(gets.map((r) => r.path).sort(), [...byUrl.keys()].sort(), 'one GET per bucket, URLs as docs/protocol.md#chunk-urls');
      for (const r of gets) {
        assert.equal(r.status, 200);
        assert.equal(r.outcome, 'completed');
        await v.checkGet(r, byUrl.get(r.path) as Bucket, s);
      }
      assert.equal(job.Content.CompletedHttpQueries, buckets.length);
      await v.afterPull?.(buckets, s);
    });
  });
}
