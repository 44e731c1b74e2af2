// Transfer jobs across a restart: a sender or a puller stopped (SIGTERM) or killed (SIGKILL) mid-transfer
// goes on where it stopped once its node is back, sending or fetching no finished bucket again; a push
// whose receiver crashes goes on into the same transaction, kept on the receiver's disk.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  REAL_DICOM,
  assertEachOnce,
  assertSameInstances,
  assertStaging,
  chunkId,
  emptyNode,
  getJson,
  importFiles,
  listFiles,
  putIndex,
  PER_BUCKET,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { describe, needs } from '../helpers/data.ts';

/** BucketSize 128 KB: each Brainix file (131-170 KB) lies in [G, 2G) and travels alone in its bucket. */
const BUCKET_KB = 128;

describe('transfer jobs across a restart of a node', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let resources: { Level: string; ID: string }[];

  before(async () => {
    // RetryBudget: calls that fail while the peer is down are tried again (with backoff) for 30 s.
    pair = await startPair({ common: { Transfers: { BucketSize: BUCKET_KB, ...PER_BUCKET, RetryBudget: 30 } } });
    await importFiles(pair.a.url, await listFiles(join(REAL_DICOM, 'Brainix')));
    source = await storedMd5s(pair.a.url);
    resources = (await getJson<string[]>(pair.a.url, '/studies')).map((ID) => ({ Level: 'Study', ID }));
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

  for (const how of ['down', 'crash'] as const) {
    test(`a push goes on where it stopped after its node ${how === 'down' ? 'stops' : 'crashes'} mid-transfer`, async () => {
      await reset();
      const gate = pair.toB.hold({ method: 'PUT', skip: 6 });
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
      const id = h.ID as string;
      await gate.waitHeld(4);
      await pair.toB.waitFor('six finished PUTs', (rs) => rs.filter((r) => r.method === 'PUT' && r.outcome === 'completed').length === 6);
      const heldAtStop = [...gate.records];
      await pair[how]('a');
      await pair.toB.waitFor('the held PUTs cut by the stop', () => heldAtStop.every((r) => r.outcome === 'aborted'));
      gate.release();
      pair.toB.clearRules();
      await pair.up('a');
      const job = await waitJob(pair.a.url, id);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assertEachOnce(pair.toB.records({ method: 'PUT' }), putIndex, 44, heldAtStop);
      assert.equal(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).length, 1, 'the same transaction after the restart');
      await assertSameInstances(pair.b.url, source);
    });

    test(`a pull goes on where it stopped after its node ${how === 'down' ? 'stops' : 'crashes'} mid-transfer`, async () => {
      await reset();
      const gate = pair.toA.hold({ method: 'GET', path: '/transfers/chunks/', skip: 6 });
      const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'none', Peer: 'a' });
      const id = h.ID as string;
      await gate.waitHeld(4);
      await pair.toA.waitFor(
        'six finished GETs',
        (rs) => rs.filter((r) => r.method === 'GET' && r.path.includes('/transfers/chunks/') && r.outcome === 'completed').length === 6,
      );
      const heldAtStop = [...gate.records];
      await pair[how]('b');
      await pair.toA.waitFor('the held GETs cut by the stop', () => heldAtStop.every((r) => r.outcome === 'aborted'));
      gate.release();
      pair.toA.clearRules();
      await pair.up('b');
      const job = await waitJob(pair.b.url, id);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      const ids = [...source.keys()].sort();
      assertEachOnce(pair.toA.records({ method: 'GET', path: '/transfers/chunks/' }), (r) => ids.indexOf(chunkId(r)), 44, heldAtStop);
      assert.equal(pair.toA.records({ method: 'POST', path: '/transfers/lookup' }).length, 1, 'no second lookup after the restart');
      await assertSameInstances(pair.b.url, source);
      await assertStaging(pair.b.dataDir, 'pull');
    });
  }

  test('a push goes on into the same transaction after the receiver crashes mid-transfer', async () => {
    await reset();
    const gate = pair.toB.hold({ method: 'PUT', skip: 6 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
    const id = h.ID as string;
    await gate.waitHeld(4);
    await pair.toB.waitFor('six finished PUTs', (rs) => rs.filter((r) => r.method === 'PUT' && r.outcome === 'completed').length === 6);
    const finishedBefore = pair.toB
      .records({ method: 'PUT' })
      .filter((r) => r.outcome === 'completed')
      .map(putIndex);
    await pair.crash('b');
    // The held PUTs now meet a receiver that is gone: the sender sees cut connections and retries.
    gate.release();
    pair.toB.clearRules();
    await pair.toB.waitFor('a PUT failing while B is down', (rs) => rs.some((r) => r.method === 'PUT' && r.outcome === 'upstream-error'));
    await pair.up('b');
    const job = await waitJob(pair.a.url, id);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const puts = pair.toB.records({ method: 'PUT' });
    for (let i = 0; i < 44; i++) {
      const ok = puts.filter((r) => putIndex(r) === i && r.status === 200);
      assert.equal(ok.length, 1, `bucket ${i} succeeded exactly once`);
    }
    for (const i of finishedBefore) assert.equal(puts.filter((r) => putIndex(r) === i).length, 1, `bucket ${i} was not sent again`);
    assert.equal(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).length, 1, 'B kept the transaction across its crash');
    await assertSameInstances(pair.b.url, source);
    await assertStaging(pair.b.dataDir, 'push');
  });
});
