// Transfers of a ~500 MB multi-frame (60 buckets of about 8 MB) that survive a `kill -9` in the middle:
// of the sender, of the receiver, of a pulling node. Each job resumes once its node is back and
// succeeds with the right bytes, and the bytes moved again are at most one bucket per worker (counted
// per bucket index in the proxy's records).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bucketSize } from '../../src/protocol/buckets.ts';
import { assertSameInstances, assertStaging, emptyNode, putIndex, startTransfer, waitJob } from '../helpers/transfer-nodes.ts';
import { mib, pullIndex, pushBuckets, resentBytes, setupLarge, type LargeSetup } from './resilience-common.ts';

const MEGABYTES = 500;
/** BucketSize 4096 KB: the multi-frame is split in pieces of about 8 MB (2 x BucketSize). */
const BUCKET_KB = 4096;
const THREADS = 4;
/** Buckets done before the kill: about a third of the transfer. */
const DONE_BEFORE_KILL = 20;

describe('transfers survive kill -9 in the middle', { timeout: 300_000 }, () => {
  let s: LargeSetup;
  let total: number;
  /** Size of each bucket of a push (compression none: the bytes of its PUT body). */
  let sizes: number[];

  before(async () => {
    s = await setupLarge(MEGABYTES, BUCKET_KB);
    sizes = pushBuckets(s.instances, s.bucketBytes).map(bucketSize);
    total = sizes.length;
    assert.ok(total >= 50, `${total} buckets`);
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
    test(`a push resumes after kill -9 of the ${killed === 'a' ? 'sender' : 'receiver'}, sending again at most one bucket per worker`, async (t) => {
      await reset();
      const { pair } = s;
      const h = await startTransfer(pair.a.url, 'send', { Resources: s.resources, Compression: 'none', Peer: 'b' });
      const puts = () => pair.toB.records({ method: 'PUT' });
      await pair.toB.waitFor(`${DONE_BEFORE_KILL} finished PUTs`, () => puts().filter((r) => r.status === 200).length >= DONE_BEFORE_KILL, 60_000);
      const inFlight = puts().filter((r) => r.outcome === undefined).length;
      await pair.crash(killed);
      const doneAtKill = puts().filter((r) => r.status === 200).length;
      assert.ok(doneAtKill < total, `the transfer was still running at the kill (${doneAtKill} of ${total} buckets)`);
      await pair.up(killed);
      const job = await waitJob(pair.a.url, h.ID as string, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertSameInstances(pair.b.url, s.source);

      assert.equal(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).length, 1, 'one transaction, kept across the kill');
      const again = resentBytes(puts(), putIndex, sizes, 'request');
      const cut = puts().filter((r) => r.outcome !== 'completed').length;
      t.diagnostic(
        `kill -9 of ${killed === 'a' ? 'the sender' : 'the receiver'} after ${doneAtKill}/${total} buckets (${inFlight} PUTs in flight, ${cut} cut or refused): ` +
          `${again.indexes.length} buckets sent again (${again.indexes.join(', ')}), ${again.bytes} bytes (${mib(again.bytes)} MiB; one bucket is ${mib(again.largestBucket)} MiB)`,
      );
      assert.ok(again.indexes.length <= THREADS, `at most ${THREADS} buckets sent again: ${again.indexes.join(', ')}`);
      assert.ok(again.bytes <= THREADS * again.largestBucket, `at most one bucket per worker sent again: ${again.bytes} bytes`);
      await assertStaging(pair.b.dataDir, 'push');
    });
  }

  test('a pull resumes after kill -9 of the pulling node, fetching again at most one bucket per worker', async (t) => {
    await reset();
    const { pair } = s;
    const h = await startTransfer(pair.b.url, 'pull', { Resources: s.resources, Compression: 'none', Peer: 'a' });
    const gets = () => pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    await pair.toA.waitFor(`${DONE_BEFORE_KILL} finished chunk GETs`, () => gets().filter((r) => r.outcome === 'completed').length >= DONE_BEFORE_KILL, 60_000);
    const inFlight = gets().filter((r) => r.outcome === undefined).length;
    await pair.crash('b');
    const doneAtKill = gets().filter((r) => r.outcome === 'completed').length;
    assert.ok(doneAtKill < total, `the transfer was still running at the kill (${doneAtKill} of ${total} buckets)`);
    await pair.up('b');
    const job = await waitJob(pair.b.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, s.source);

    assert.equal(pair.toA.records({ method: 'POST', path: '/transfers/lookup' }).length, 1, 'no second lookup after the restart');
    const pulled = pullIndex(s.instances, s.bucketBytes, `${pair.toA.url}/`, 'none');
    assert.equal(pulled.index.size, total);
    const again = resentBytes(gets(), (r) => pulled.index.get(r.path.replace(/^\/+/, '/')) ?? -1, pulled.sizes, 'response');
    const cut = gets().filter((r) => r.outcome !== 'completed').length;
    t.diagnostic(
      `kill -9 of the puller after ${doneAtKill}/${total} buckets (${inFlight} GETs in flight, ${cut} cut): ${again.indexes.length} buckets fetched again ` +
        `(${again.indexes.join(', ')}), ${again.bytes} bytes (${mib(again.bytes)} MiB; one bucket is ${mib(again.largestBucket)} MiB)`,
    );
    assert.ok(again.indexes.length <= THREADS, `at most ${THREADS} buckets fetched again: ${again.indexes.join(', ')}`);
    assert.ok(again.bytes <= THREADS * again.largestBucket, `at most one bucket per worker fetched again: ${again.bytes} bytes`);
    await assertStaging(pair.b.dataDir, 'pull');
  });
});
