// The push receiver's hold on its transactions, on real node processes: LRU eviction beyond
// MaxPushTransactions, the 503 when every transaction is busy, a restart between PUTs, and idle expiry.
import assert from 'node:assert/strict';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import { gzipBuffer } from '../../src/protocol/compression.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import {
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

describe('transfers server: transactions held, evicted, refused', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  let knee: TestInstance[];

  before(async () => {
    // IdleBeforeEviction 0: any transaction without a request in flight may be evicted, as in the plugin;
    // PushAdmissionWait 0: a create finding no room is answered 503 at once, as in the plugin.
    node = await startXferNode({
      config: { HttpTimeout: 60, Transfers: { MaxPushTransactions: 2, IdleBeforeEviction: 0, PushAdmissionWait: 0 } },
    });
    knee = await loadInstances('Knee/T2', 6);
  });
  after(async () => {
    await node?.stop();
  });

  test('a new transaction beyond MaxPushTransactions evicts the least recently used one', async () => {
    const [a, b, c] = knee as [TestInstance, TestInstance, TestInstance];
    const one = (i: TestInstance) => createBody([i], [[{ ID: i.ID, Offset: 0, Size: i.Size }]], 'none');
    const txA = await create(node, one(a));
    const txB = await create(node, one(b));
    // A PUT makes A the most recently used: B is now the oldest.
    assert.equal((await raw(node, 'PUT', `${txA.Path}/0`, a.data)).status, 200);
    const txC = await create(node, one(c));
    assert.equal((await raw(node, 'PUT', `${txB.Path}/0`, b.data)).status, 404);
    assert.equal(await exists(pushDir(node, txB.ID)), false);
    assert.deepEqual((await readdir(pushDir(node))).sort(), [txA.ID, txC.ID].sort());
    assert.equal((await raw(node, 'PUT', `${txC.Path}/0`, c.data)).status, 200);
    for (const tx of [txA, txC]) assert.equal((await raw(node, 'POST', `${tx.Path}/commit`)).status, 200);
  });

  test('answers 503 and changes nothing when every held transaction has a request in flight', async () => {
    const [, , , d, e, f] = knee as [TestInstance, TestInstance, TestInstance, TestInstance, TestInstance, TestInstance];
    const one = (i: TestInstance) => createBody([i], [[{ ID: i.ID, Offset: 0, Size: i.Size }]], 'none');
    const txD = await create(node, one(d));
    const txE = await create(node, one(e));
    const slowD = slowPut(node, `${txD.Path}/0`, d.data.subarray(0, 1000), d.data.subarray(1000));
    const slowE = slowPut(node, `${txE.Path}/0`, e.data.subarray(0, 1000), e.data.subarray(1000));
    await waitStaged(node, txD.ID, d.ID, 0, d.data.subarray(0, 1000));
    await waitStaged(node, txE.ID, e.ID, 0, e.data.subarray(0, 1000));
    const refused = await raw(node, 'POST', '/transfers/push', one(f));
    assert.equal(refused.status, 503, refused.body.toString());
    const err = json(refused);
    assert.equal(err.HttpStatus, 503);
    assert.equal(err.Method, 'POST');
    assert.equal(err.Uri, '/transfers/push');
    assert.deepEqual((await readdir(pushDir(node))).sort(), [txD.ID, txE.ID].sort());
    assert.equal((await slowD.finish()).status, 200);
    assert.equal((await slowE.finish()).status, 200);
    // Idle again: the next create evicts the least recently used (D, whose PUT ended first).
    const txF = await create(node, one(f));
    assert.deepEqual((await readdir(pushDir(node))).sort(), [txE.ID, txF.ID].sort());
    assert.equal((await raw(node, 'POST', `${txE.Path}/commit`)).status, 200);
    assert.equal((await raw(node, 'DELETE', txF.Path)).status, 200);
    assert.deepEqual(await readdir(pushDir(node)), []);
  });
});

describe('transfers server: durable and expiring transactions', { skip: needs(REAL_DICOM) }, () => {
  test('a transaction survives a restart of the node between PUTs and commits', async () => {
    const config = { HttpTimeout: 60 };
    let node = await startXferNode({ config });
    const dir = node.dir;
    try {
      const instances = await loadInstances('Brainix/Flair', 3);
      const buckets = scheduleBuckets(instances, { bucketSize: 64 * 1024 });
      assert.ok(buckets.length >= 4);
      const tx = await create(node, createBody(instances, buckets, 'gzip'));
      const sent = [0, 2];
      for (const i of sent)
        assert.equal((await raw(node, 'PUT', `${tx.Path}/${i}`, gzipBuffer(payload(instances, buckets[i] as Bucket)))).status, 200);
      await node.stop({ keep: true });
      node = await startXferNode({ config, dir });
      assert.ok(await exists(pushDir(node, tx.ID)));
      const log = (await readFile(join(pushDir(node, tx.ID), 'buckets.log'), 'utf8')).trim().split('\n');
      assert.deepEqual(log.map((l) => (JSON.parse(l) as { Bucket: number }).Bucket).sort(), sent);
      for (const i of buckets.keys()) {
        if (sent.includes(i)) continue;
        const r = await raw(node, 'PUT', `${tx.Path}/${i}`, gzipBuffer(payload(instances, buckets[i] as Bucket)));
        assert.equal(r.status, 200, r.body.toString());
      }
      const c = await raw(node, 'POST', `${tx.Path}/commit`);
      assert.equal(c.status, 200, c.body.toString());
      for (const i of instances) assert.equal((await instanceMd5(node, i.ID)).body.toString().trim(), i.MD5);
    } finally {
      await node.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('idle transactions expire after IdleTransactionTimeout, never one with a request in flight', async () => {
    const node = await startXferNode({ config: { HttpTimeout: 60, Transfers: { IdleTransactionTimeout: 1 } } });
    try {
      const [a, b, c] = (await loadInstances('Knee/T2', 3)) as [TestInstance, TestInstance, TestInstance];
      const one = (i: TestInstance) => createBody([i], [[{ ID: i.ID, Offset: 0, Size: i.Size }]], 'none');
      const txA = await create(node, one(a));
      const txB = await create(node, one(b));
      const slowB = slowPut(node, `${txB.Path}/0`, b.data.subarray(0, 1000), b.data.subarray(1000));
      await waitStaged(node, txB.ID, b.ID, 0, b.data.subarray(0, 1000));
      await waitFor('transaction A to expire', async () => !(await exists(pushDir(node, txA.ID))), 20_000, 50);
      assert.equal((await raw(node, 'PUT', `${txA.Path}/0`, a.data)).status, 404);
      assert.equal((await raw(node, 'POST', `${txA.Path}/commit`)).status, 404);
      // C is created after B's PUT began; once C has expired, B has been quiet longer than the timeout.
      const txC = await create(node, one(c));
      await waitFor('transaction C to expire', async () => !(await exists(pushDir(node, txC.ID))), 20_000, 50);
      assert.ok(await exists(pushDir(node, txB.ID)), 'B has a request in flight and must stay');
      assert.equal((await slowB.finish()).status, 200);
      assert.equal((await raw(node, 'POST', `${txB.Path}/commit`)).status, 200);
      assert.equal((await instanceMd5(node, b.ID)).body.toString().trim(), b.MD5);
    } finally {
      await node.stop();
    }
  });
});
