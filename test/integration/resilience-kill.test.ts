// Transfers of a ~500 MB multi-frame that survive a `kill -9` in the middle: of the sender, of the
// receiver, of a pulling node. The nodes plan buckets of 512 KiB and join them into requests (spans, at
// most BucketSize) with 4 requests in flight. Each job resumes once its node is back and succeeds with
// the right bytes, and the bytes moved again are at most one request per worker (counted per bucket
// index in the proxy's records).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bucketSize } from '../../src/protocol/buckets.ts';
import { parseChunkUrl } from '../../src/protocol/chunk-url.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import { SPAN_UNIT } from '../../src/transfer/spans.ts';
import type { ProxyRecord } from '../helpers/proxy.ts';
import { assertSameInstances, assertStaging, emptyNode, startTransfer, waitJob } from '../helpers/transfer-nodes.ts';
import { mib, pushBuckets, resentSpans, setupLarge, type LargeSetup } from './resilience-common.ts';

const MEGABYTES = 500;
/** BucketSize 4096 KB: the largest request (a span) carries at most 4 MiB. */
const BUCKET_KB = 4096;
const THREADS = 4;
/** Buckets done before the kill: about a third of the transfer. */
const DONE_BEFORE_KILL = 160;

/** The [first, last] bucket indexes of a push PUT (`.../{i}` or `.../{first}-{last}`). */
function putRange(r: ProxyRecord): [number, number] {
  const m = /\/transfers\/push\/[0-9a-f-]+\/(\d+)(?:-(\d+))?$/.exec(r.path);
  assert.ok(m, `a bucket PUT: ${r.path}`);
  return [Number(m[1]), Number(m[2] ?? m[1])];
}

/** The [first, last] bucket indexes a chunk GET of the (single, split) instance asks for. */
function chunkRange(buckets: readonly Bucket[], r: ProxyRecord): [number, number] {
  const q = parseChunkUrl(r.path);
  const first = buckets.findIndex((b) => b[0]?.Offset === q.offset);
  let bytes = 0;
  for (let i = first; i >= 0 && i < buckets.length; i++) {
    bytes += bucketSize(buckets[i] as Bucket);
    if (bytes === q.size) return [first, i];
  }
  return [-1, -1];
}

describe('transfers survive kill -9 in the middle', { timeout: 300_000 }, () => {
  let s: LargeSetup;
  let total: number;
  /** Size of each bucket of a push (compression none: the bytes of its PUT body). */
  let sizes: number[];

  before(async () => {
    s = await setupLarge(MEGABYTES, BUCKET_KB, { common: { Transfers: { MaxThreads: THREADS } } });
    sizes = pushBuckets(s.instances, SPAN_UNIT).map(bucketSize);
    total = sizes.length;
    assert.ok(total >= 400, `${total} buckets`);
  });
  after(async () => {
    await s?.stop();
  });

  const reset = async () => {
    await emptyNode(s.pair.b.url);
    for (const p of [s.pair.toA, s.pair.toB]) {
      p.clearRules();
      p.clearRecords();
    }
  };

  for (const killed of ['a', 'b'] as const) {
    const who = killed === 'a' ? 'sender' : 'receiver';
    test(`a push resumes after kill -9 of the ${who}, sending again at most one request per worker`, async (t) => {
      await reset();
      const { pair } = s;
      const h = await startTransfer(pair.a.url, 'send', { Resources: s.resources, Compression: 'none', Peer: 'b' });
      const puts = () => pair.toB.records({ method: 'PUT' });
      const spanned = (r: ProxyRecord) => putRange(r)[1] - putRange(r)[0] + 1;
      const done = () =>
        puts()
          .filter((r) => r.status === 200)
          .reduce((n, r) => n + spanned(r), 0);
      await pair.toB.waitFor(`${DONE_BEFORE_KILL} buckets put`, () => done() >= DONE_BEFORE_KILL, 60_000);
      const inFlight = puts().filter((r) => r.outcome === undefined).length;
      await pair.crash(killed);
      const doneAtKill = done();
      assert.ok(doneAtKill < total, `the transfer was still running at the kill (${doneAtKill} of ${total} buckets)`);
      await pair.up(killed);
      const job = await waitJob(pair.a.url, h.ID as string, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertSameInstances(pair.b.url, s.source);

      assert.equal(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).length, 1, 'one transaction, kept across the kill');
      const again = resentSpans(puts(), putRange, sizes, 'request');
      assert.ok(
        puts().some((r) => spanned(r) > 1),
        'buckets travel joined in spans',
      );
      const cut = puts().filter((r) => r.outcome !== 'completed').length;
      t.diagnostic(
        `kill -9 of ${killed === 'a' ? 'the sender' : 'the receiver'} after ${doneAtKill}/${total} buckets (${inFlight} PUTs in ` +
          `flight, ` +
          `${cut} cut or refused): ` +
          `${again.indexes.length} buckets sent again (${again.indexes.join(', ')}), ${again.bytes} bytes (${mib(again.bytes)} ` +
          `MiB; the ` +
          `largest request is ${mib(again.largestRequest)} MiB)`,
      );
      assert.ok(again.largestRequest <= s.bucketBytes, `no request above BucketSize: ${again.largestRequest}`);
      assert.ok(again.bytes <= THREADS * again.largestRequest, `at most one request per worker sent again: ${again.bytes} bytes`);
      await assertStaging(pair.b.dataDir, 'push');
    });
  }

  test('a pull resumes after kill -9 of the pulling node, fetching again at most one request per worker', async (t) => {
    await reset();
    const { pair } = s;
    const h = await startTransfer(pair.b.url, 'pull', { Resources: s.resources, Compression: 'none', Peer: 'a' });
    const gets = () => pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    const pullBuckets = pushBuckets(s.instances, SPAN_UNIT);
    const fetched = () =>
      gets()
        .filter((r) => r.outcome === 'completed')
        .reduce((n, r) => n + chunkRange(pullBuckets, r)[1] - chunkRange(pullBuckets, r)[0] + 1, 0);
    await pair.toA.waitFor(`${DONE_BEFORE_KILL} buckets fetched`, () => fetched() >= DONE_BEFORE_KILL, 60_000);
    const inFlight = gets().filter((r) => r.outcome === undefined).length;
    await pair.crash('b');
    const doneAtKill = fetched();
    assert.ok(doneAtKill < total, `the transfer was still running at the kill (${doneAtKill} of ${total} buckets)`);
    await pair.up('b');
    const job = await waitJob(pair.b.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, s.source);

    assert.equal(pair.toA.records({ method: 'POST', path: '/transfers/lookup' }).length, 1, 'no second lookup after the restart');
    const again = resentSpans(gets(), (r) => chunkRange(pullBuckets, r), sizes, 'response');
    const cut = gets().filter((r) => r.outcome !== 'completed').length;
    t.diagnostic(
      `kill -9 of the puller after ${doneAtKill}/${total} buckets (${inFlight} GETs in flight, ${cut} cut): ${again.indexes.length} ` +
        `buckets fetched again ` +
        `(${again.indexes.join(', ')}), ${again.bytes} bytes (${mib(again.bytes)} MiB; the largest request is ` +
        `${mib(again.largestRequest)} MiB)`,
    );
    assert.ok(again.largestRequest <= s.bucketBytes, `no request above BucketSize: ${again.largestRequest}`);
    assert.ok(again.bytes <= THREADS * again.largestRequest, `at most one request per worker fetched again: ${again.bytes} bytes`);
    await assertStaging(pair.b.dataDir, 'pull');
  });
});
