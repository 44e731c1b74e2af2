// Transfers under faults injected by a proxy between two nodes: corrupted buckets and chunk answers make
// the job fail with nothing visible at the destination; pause and resume mid-transfer send no finished
// bucket again; cancel discards the remote transaction; a job failed while its peer was down completes
// once resubmitted; transient errors, cut connections, slow answers and a lost commit answer are retried.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { FaultProxy, ProxyRecord } from '../helpers/proxy.ts';
import {
  REAL_DICOM,
  assertEachOnce,
  assertSameInstances,
  assertStaging,
  call,
  chunkId,
  emptyNode,
  getJson,
  importFiles,
  listFiles,
  putIndex,
  startPair,
  stagingEntries,
  startTransfer,
  storedMd5s,
  waitJob,
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { describe, needs } from '../helpers/data.ts';

/** BucketSize 128 KB: each Brainix file (131-170 KB) lies in [G, 2G) and travels alone in its bucket. */
const BUCKET_KB = 128;

type WireBucket = { ID: string; Offset: string; Size: string }[];

/** The buckets of the (single) push create seen by a proxy since its records were cleared. */
function createdBuckets(p: FaultProxy): WireBucket[] {
  const creates = p.records({ method: 'POST', path: /^\/+transfers\/push$/ });
  assert.equal(creates.length, 1, 'one push transaction');
  return (JSON.parse((creates[0]!.requestBody as Buffer).toString('utf8')) as { Buckets: WireBucket[] }).Buckets;
}

/** The path of a chunk GET without its leading slashes, to find the same request again. */
function chunkPathOf(r: ProxyRecord): string {
  return r.path.replace(/^\/+/, '/');
}

async function assertNothingAt(pair: Pair): Promise<void> {
  assert.deepEqual(await getJson<string[]>(pair.b.url, '/instances'), [], 'no instance at B');
  assert.deepEqual(await getJson<string[]>(pair.b.url, '/patients'), [], 'no patient at B');
}

describe('transfer faults (no retries)', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let resources: { Level: string; ID: string }[];

  before(async () => {
    pair = await startPair({
      // The plugin's protocol (no extension): these faults as an Orthanc peer meets them. With the
      // extensions, a corrupted bucket is sent again instead (test/integration/resilience-*.test.ts).
      common: { Transfers: { BucketSize: BUCKET_KB, Threads: 4, Extensions: false } },
      keepBodies: [{ method: 'POST', path: /^\/+transfers\/(push|lookup)$/ }],
    });
    const imported = await importFiles(pair.a.url, await listFiles(join(REAL_DICOM, 'Brainix')));
    assert.equal(imported.path.size, 44);
    source = await storedMd5s(pair.a.url);
    resources = (await getJson<string[]>(pair.a.url, '/studies')).map((ID) => ({ Level: 'Study', ID }));
  });
  after(async () => {
    await pair?.stop();
  });

  const reset = async () => {
    await emptyNode(pair.b.url);
    pair.toA.clearRules();
    pair.toB.clearRules();
    pair.toA.clearRecords();
    pair.toB.clearRecords();
  };

  test('a push bucket corrupted in flight: the commit fails, the job fails naming the instance, nothing at B', async () => {
    await reset();
    const k = 17;
    pair.toB.corruptRequest({ method: 'PUT', path: new RegExp(`/transfers/push/[0-9a-f-]+/${k}$`), times: 1 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Failure');
    const buckets = createdBuckets(pair.toB);
    assert.equal(buckets.length, 44);
    const victim = buckets[k]![0]!.ID;
    assert.match(job.ErrorDetails, new RegExp(victim), job.ErrorDetails);
    // Every bucket was accepted (the length is right), the commit refused the transfer.
    const puts = pair.toB.records({ method: 'PUT' });
    assert.equal(puts.length, 44);
    assert.ok(puts.every((r) => r.status === 200));
    assert.deepEqual(
      pair.toB
        .records({ method: 'PUT' })
        .filter((r) => r.actions.includes('corrupt-request'))
        .map(putIndex),
      [k],
    );
    const commits = pair.toB.records({ method: 'POST', path: /\/commit$/ });
    assert.equal(commits.length, 1);
    assert.equal(commits[0]!.status, 500);
    await assertNothingAt(pair);
    await assertStaging(pair.b.dataDir, 'push');
  });

  test('a gzip push bucket corrupted in flight: refused, the transaction is discarded, nothing at B', async () => {
    await reset();
    pair.toB.corruptRequest({ method: 'PUT', skip: 3, times: 1 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Failure');
    const bad = pair.toB.records({ method: 'PUT' }).filter((r) => r.actions.includes('corrupt-request'));
    assert.equal(bad.length, 1);
    // Refused as corrupt gzip (400), as the plugin, which inflates first, does.
    assert.equal(bad[0]!.status, 400, 'the corrupt bucket is refused as a bad file');
    await pair.toB.waitFor('the DELETE of the transaction', (rs) => rs.some((r) => r.method === 'DELETE' && r.status === 200));
    assert.equal(pair.toB.records({ method: 'POST', path: /\/commit$/ }).length, 0);
    await assertNothingAt(pair);
    await assertStaging(pair.b.dataDir, 'push');
  });

  for (const compression of ['none', 'gzip'] as const) {
    test(`a pulled chunk answer corrupted in flight (${compression}): the pull fails, nothing at B`, async () => {
      await reset();
      const victim = [...source.keys()].sort()[20] as string;
      pair.toA.corruptResponse({ method: 'GET', path: `/transfers/chunks/${victim}?`, times: 1 });
      const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: compression, Peer: 'a' });
      const job = await waitJob(pair.b.url, h.ID as string);
      assert.equal(job.State, 'Failure');
      const bad = pair.toA.records({ method: 'GET' }).filter((r) => r.actions.includes('corrupt-response'));
      assert.deepEqual(bad.map(chunkId), [victim]);
      if (compression === 'none') assert.match(job.ErrorDetails, new RegExp(victim), job.ErrorDetails);
      await assertNothingAt(pair);
      await assertStaging(pair.b.dataDir, 'pull');
    });
  }

  test('pause then resume a push mid-transfer: no finished bucket is sent again', async () => {
    await reset();
    const gate = pair.toB.hold({ method: 'PUT', skip: 6 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const id = h.ID as string;
    // Threads = 4: once four PUTs are held, every worker waits and six buckets are done.
    await gate.waitHeld(4);
    await pair.toB.waitFor('six finished PUTs', (rs) => rs.filter((r) => r.method === 'PUT' && r.outcome === 'completed').length === 6);
    const heldAtPause = [...gate.records];
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${id}/pause`, '')).status, 200);
    const paused = await waitJob(pair.a.url, id, 20_000, ['Paused']);
    assert.equal(paused.Content.CompletedHttpQueries, 6);
    await pair.toB.waitFor('the held PUTs aborted by the pause', () => heldAtPause.every((r) => r.outcome === 'aborted'));
    gate.release();
    pair.toB.clearRules();
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${id}/resume`, '')).status, 200);
    const job = await waitJob(pair.a.url, id);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal(job.Content.CompletedHttpQueries, 44);
    assertEachOnce(pair.toB.records({ method: 'PUT' }), putIndex, 44, heldAtPause);
    assert.equal(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).length, 1, 'the same transaction after resume');
    await assertSameInstances(pair.b.url, source);
  });

  test('pause then resume a pull mid-transfer: no finished bucket is downloaded again', async () => {
    await reset();
    const gate = pair.toA.hold({ method: 'GET', path: '/transfers/chunks/', skip: 6 });
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'none', Peer: 'a' });
    const id = h.ID as string;
    await gate.waitHeld(4);
    await pair.toA.waitFor('six finished GETs', (rs) => rs.filter((r) => r.method === 'GET' && r.outcome === 'completed').length === 6);
    const heldAtPause = [...gate.records];
    assert.equal((await call(pair.b.url, 'POST', `/jobs/${id}/pause`, '')).status, 200);
    const paused = await waitJob(pair.b.url, id, 20_000, ['Paused']);
    assert.equal(paused.Content.CompletedHttpQueries, 6);
    assert.deepEqual(await getJson<string[]>(pair.b.url, '/instances'), [], 'nothing visible while paused');
    await pair.toA.waitFor('the held GETs aborted by the pause', () => heldAtPause.every((r) => r.outcome === 'aborted'));
    gate.release();
    pair.toA.clearRules();
    assert.equal((await call(pair.b.url, 'POST', `/jobs/${id}/resume`, '')).status, 200);
    const job = await waitJob(pair.b.url, id);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    // Each instance travels alone in its bucket: the instance ID stands for the bucket index.
    const ids = [...source.keys()].sort();
    assertEachOnce(pair.toA.records({ method: 'GET', path: '/transfers/chunks/' }), (r) => ids.indexOf(chunkId(r)), 44, heldAtPause);
    assert.equal(pair.toA.records({ method: 'POST', path: '/transfers/lookup' }).length, 1, 'no second lookup after resume');
    await assertSameInstances(pair.b.url, source);
    await assertStaging(pair.b.dataDir, 'pull');
  });

  test('cancel of a push mid-transfer deletes the remote transaction', async () => {
    await reset();
    const before = await stagingEntries(pair.b.dataDir, 'push');
    const gate = pair.toB.hold({ method: 'PUT', skip: 2 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
    const id = h.ID as string;
    await gate.waitHeld(4);
    const staged = (await stagingEntries(pair.b.dataDir, 'push')).filter((e) => !before.includes(e));
    assert.equal(staged.length, 1, 'the transaction is staged at B');
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${id}/cancel`, '')).status, 200);
    const job = await waitJob(pair.a.url, id);
    assert.equal(job.State, 'Failure');
    assert.equal(job.ErrorCode, 37, 'CanceledJob');
    gate.release();
    const deletes = pair.toB.records({ method: 'DELETE' });
    assert.equal(deletes.length, 1);
    assert.equal(deletes[0]!.path.replace(/^\/+/, '/'), `/transfers/push/${staged[0]}`);
    assert.equal(deletes[0]!.status, 200);
    await assertStaging(pair.b.dataDir, 'push', before);
    assert.equal(pair.toB.records({ method: 'POST', path: /\/commit$/ }).length, 0);
    await assertNothingAt(pair);
  });

  test('a push that failed while the peer was down completes once resubmitted', async () => {
    await reset();
    await pair.down('b');
    try {
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
      const failed = await waitJob(pair.a.url, h.ID as string);
      assert.equal(failed.State, 'Failure');
      assert.match(failed.ErrorDetails, /transaction|peer "b"/, failed.ErrorDetails);
    } finally {
      await pair.up('b');
    }
    const jobs = await getJson<JobJson[]>(pair.a.url, '/jobs?expand');
    const failed = jobs.filter((j) => j.State === 'Failure' && j.Type === 'PushTransfer').at(-1) as JobJson;
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${failed.ID}/resubmit`, '')).status, 200);
    const job = await waitJob(pair.a.url, failed.ID);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal(job.ErrorCode, 0);
    await assertSameInstances(pair.b.url, source);
  });
});

describe('transfer faults with MaxHttpRetries 1', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let resources: { Level: string; ID: string }[];

  before(async () => {
    pair = await startPair({
      common: { HttpTimeout: 2, Transfers: { BucketSize: BUCKET_KB, MaxHttpRetries: 1, Extensions: false } },
      keepBodies: [{ method: 'POST', path: /^\/+transfers\/(push|lookup)$/ }],
    });
    await importFiles(pair.a.url, await listFiles(join(REAL_DICOM, 'Brainix', 'Flair')));
    source = await storedMd5s(pair.a.url);
    resources = (await getJson<string[]>(pair.a.url, '/series')).map((ID) => ({ Level: 'Series', ID }));
  });
  after(async () => {
    await pair?.stop();
  });

  const reset = async () => {
    await emptyNode(pair.b.url);
    for (const p of [pair.toA, pair.toB]) {
      p.clearRules();
      p.clearRecords();
    }
  };

  test('a bucket PUT answered 503 once is sent again and the push succeeds', async () => {
    await reset();
    pair.toB.failWith(503, { method: 'PUT', path: /\/5$/, times: 1 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const fifth = pair.toB.records({ method: 'PUT', path: /\/5$/ });
    assert.deepEqual(
      fifth.map((r) => r.status),
      [503, 200],
    );
    assert.equal(pair.toB.records({ method: 'PUT' }).length, source.size + 1);
    await assertSameInstances(pair.b.url, source);
  });

  test('a chunk GET whose connection is cut is asked again and the pull succeeds', async () => {
    await reset();
    pair.toA.drop({ method: 'GET', path: '/transfers/chunks/', skip: 2, times: 1 });
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'none', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    assert.equal(gets.filter((r) => r.outcome === 'dropped').length, 1);
    assert.equal(gets.filter((r) => r.status === 200).length, source.size);
    await assertSameInstances(pair.b.url, source);
  });

  test('a chunk GET answered after HttpTimeout is abandoned and asked again', async () => {
    await reset();
    pair.toA.delay(3000, { method: 'GET', path: '/transfers/chunks/', skip: 4, times: 1 });
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'gzip', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const slow = pair.toA.records({ method: 'GET' }).filter((r) => r.actions.includes('delay'));
    assert.equal(slow.length, 1);
    assert.equal(slow[0]!.outcome, 'aborted', 'the puller gave up on the slow answer');
    assert.equal(pair.toA.records({ method: 'GET', path: chunkPathOf(slow[0]!) }).length, 2, 'and asked for the same bucket again');
    assert.equal(job.Content.Retries, 1);
    await assertSameInstances(pair.b.url, source);
  });

  test('a corrupted bucket fails the push naming the instance, even with retries', async () => {
    await reset();
    pair.toB.corruptRequest({ method: 'PUT', path: /\/3$/, times: 1 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Failure');
    const victim = createdBuckets(pair.toB)[3]![0]!.ID;
    assert.match(job.ErrorDetails, new RegExp(victim), job.ErrorDetails);
    await assertNothingAt(pair);
  });

  test('a commit whose answer is lost: the retried commit does not turn a stored transfer into a failure', async () => {
    await reset();
    pair.toB.drop({ method: 'POST', path: /\/commit$/, phase: 'after', times: 1 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    await assertSameInstances(pair.b.url, source);
    assert.equal(job.State, 'Success', JSON.stringify(job));
  });
});
