// The push receiver's admission on a real node process: when MaxPushTransactions are all in use, new
// creates wait their turn (PushAdmissionWait) and are served in the order they came as room appears,
// instead of a 503 each; past the wait, a 503 in Orthanc's shape that changes nothing.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isXferError } from '../../src/errors.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { transactionMemory } from '../../src/transfer/admission.ts';
import { PushReceiver } from '../../src/transfer/receiver.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { createBody, json, loadInstances, pushDir, raw, slowPut, type TestInstance, waitStaged } from '../helpers/push-receiver.ts';

const one = (i: TestInstance) => createBody([i], [[{ ID: i.ID, Offset: 0, Size: i.Size }]], 'none');

/** A figure of the node's /metrics. */
async function metric(node: XferNode, name: string): Promise<number> {
  const text = (await raw(node, 'GET', '/tools/metrics-prometheus')).body.toString('utf8');
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}

describe('push receiver: creates wait their turn for room', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  let knee: TestInstance[];

  before(async () => {
    // A long wait: the test ends each wait by making room, never by the clock.
    node = await startXferNode({
      config: { HttpTimeout: 120, Transfers: { MaxPushTransactions: 2, IdleBeforeEviction: 0, PushAdmissionWait: 90 } },
    });
    knee = await loadInstances('Knee/T2', 6);
  });
  after(async () => {
    await node?.stop();
  });

  test('every transaction busy: two creates wait, and are admitted in the order they came as the busy ones end', async () => {
    const [a, b, c, d] = knee as [TestInstance, TestInstance, TestInstance, TestInstance];
    const txs = [];
    for (const i of [a, b]) txs.push(json(await raw(node, 'POST', '/transfers/push', one(i))) as { ID: string; Path: string });
    const [txA, txB] = txs as [{ ID: string; Path: string }, { ID: string; Path: string }];
    const slowA = slowPut(node, `${txA.Path}/0`, a.data.subarray(0, 1000), a.data.subarray(1000));
    const slowB = slowPut(node, `${txB.Path}/0`, b.data.subarray(0, 1000), b.data.subarray(1000));
    await waitStaged(node, txA.ID, a.ID, 0, a.data.subarray(0, 1000));
    await waitStaged(node, txB.ID, b.ID, 0, b.data.subarray(0, 1000));
    const order: string[] = [];
    const noted = (name: string) => (r: Awaited<ReturnType<typeof raw>>) => {
      order.push(name);
      return r;
    };
    const createC = raw(node, 'POST', '/transfers/push', one(c)).then(noted('C'));
    await waitFor('C waiting', async () => (await metric(node, 'dicom_xfer_push_waiting_creates')) === 1);
    const createD = raw(node, 'POST', '/transfers/push', one(d)).then(noted('D'));
    await waitFor('D waiting', async () => (await metric(node, 'dicom_xfer_push_waiting_creates')) === 2);
    assert.deepEqual(order, []);
    // B's PUT ends first: B may now be evicted, and the room goes to C (the first that waited), not D.
    assert.equal((await slowB.finish()).status, 200);
    const c1 = await createC;
    assert.equal(c1.status, 200, c1.body.toString());
    assert.equal(await metric(node, 'dicom_xfer_push_waiting_creates'), 1);
    assert.deepEqual(order, ['C']);
    // C's sender sends at once (a PUT in flight keeps C from being evicted); A's PUT ends: D gets A's place.
    const txC = json(c1) as { ID: string; Path: string };
    const slowC = slowPut(node, `${txC.Path}/0`, c.data.subarray(0, 1000), c.data.subarray(1000));
    await waitStaged(node, txC.ID, c.ID, 0, c.data.subarray(0, 1000));
    assert.equal((await slowA.finish()).status, 200);
    const d1 = await createD;
    assert.equal(d1.status, 200, d1.body.toString());
    assert.deepEqual(order, ['C', 'D']);
    assert.equal((await slowC.finish()).status, 200);
    const txD = json(d1) as { ID: string; Path: string };
    assert.deepEqual((await readdir(pushDir(node))).sort(), [txC.ID, txD.ID].sort());
    assert.equal(await metric(node, 'dicom_xfer_push_waited_creates_total'), 2);
    assert.equal(await metric(node, 'dicom_xfer_push_refused_creates_total'), 0);
    assert.equal((await raw(node, 'PUT', `${txD.Path}/0`, d.data)).status, 200);
    for (const tx of [txC, txD]) assert.equal((await raw(node, 'POST', `${tx.Path}/commit`)).status, 200);
    assert.deepEqual(await readdir(pushDir(node)), []);
  });
});

describe('push receiver: a commit makes room for a waiting create', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;

  before(async () => {
    // No eviction within the test: only a commit (or a discard) makes room.
    node = await startXferNode({
      config: { HttpTimeout: 120, Transfers: { MaxPushTransactions: 1, IdleBeforeEviction: 3600, PushAdmissionWait: 90 } },
    });
  });
  after(async () => {
    await node?.stop();
  });

  test('an idle transaction is not evicted; its commit lets the waiting create in, then a discard the next', async () => {
    const [e, f, g] = (await loadInstances('Brainix/Flair', 3)) as [TestInstance, TestInstance, TestInstance];
    const txE = json(await raw(node, 'POST', '/transfers/push', one(e))) as { ID: string; Path: string };
    assert.equal((await raw(node, 'PUT', `${txE.Path}/0`, e.data)).status, 200);
    const createF = raw(node, 'POST', '/transfers/push', one(f));
    await waitFor('F waiting', async () => (await metric(node, 'dicom_xfer_push_waiting_creates')) === 1);
    const createG = raw(node, 'POST', '/transfers/push', one(g));
    await waitFor('G waiting', async () => (await metric(node, 'dicom_xfer_push_waiting_creates')) === 2);
    assert.equal((await raw(node, 'POST', `${txE.Path}/commit`)).status, 200);
    const fAnswer = await createF;
    assert.equal(fAnswer.status, 200, fAnswer.body.toString());
    const txF = json(fAnswer) as { ID: string; Path: string };
    assert.equal(await metric(node, 'dicom_xfer_push_waiting_creates'), 1, 'G still waits: one place, taken by F');
    assert.equal((await raw(node, 'DELETE', txF.Path)).status, 200);
    const gAnswer = await createG;
    assert.equal(gAnswer.status, 200, gAnswer.body.toString());
    const txG = json(gAnswer) as { ID: string; Path: string };
    assert.equal((await raw(node, 'PUT', `${txG.Path}/0`, g.data)).status, 200);
    assert.equal((await raw(node, 'POST', `${txG.Path}/commit`)).status, 200);
    assert.equal(await metric(node, 'dicom_xfer_push_refused_creates_total'), 0);
    assert.equal(await metric(node, 'dicom_xfer_push_waited_creates_total'), 2);
  });
});

describe('push receiver: a create that waited in vain', { skip: needs(REAL_DICOM) }, () => {
  test('is answered 503 and changes nothing; one waiting when the receiver closes is told it is stopping', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-admission-'));
    const store = await EmbeddedStore.open(join(dir, 'data'), { commitThreads: 1 });
    // One transaction, never evicted here: a second create can only wait. A short wait, so that it runs out.
    const r = await PushReceiver.open({
      store,
      maxTransactions: 1,
      idleTimeoutSeconds: 0,
      idleBeforeEvictionSeconds: 3600,
      admissionWaitMs: 200,
    });
    try {
      const [a, b] = (await loadInstances('Knee/T2', 2)) as [TestInstance, TestInstance];
      const body = (i: TestInstance) => JSON.parse(one(i)) as unknown;
      const held = await r.create(body(a));
      await assert.rejects(
        r.create(body(b)),
        (e: unknown) => isXferError(e) && e.http === 503 && /MaxPushTransactions/.test(e.message + (e.details ?? '')),
      );
      assert.deepEqual(
        r.list().map((t) => t.id),
        [held.ID],
      );
      assert.equal(r.counters.refused, 1);
      assert.equal(r.counters.waitedCreates, 1);
      assert.equal(r.waiting, 0);
      // A create waiting when the receiver closes goes at once, refused as the receiver stops.
      const late = r.create(body(b));
      for (let i = 0; i < 100 && r.waiting === 0; i++) await new Promise((res) => setImmediate(res));
      assert.equal(r.waiting, 1);
      const closing = r.close();
      await assert.rejects(late, (e: unknown) => isXferError(e) && e.http === 503 && /stopping/.test(e.details ?? e.message));
      await closing;
    } finally {
      await r.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('push receiver: the memory of held transactions (PushTransactionsMemory)', { skip: needs(REAL_DICOM) }, () => {
  const dirs: string[] = [];
  const receivers: PushReceiver[] = [];
  after(async () => {
    for (const r of receivers) await r.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  async function receiver(maxTransactionsMemory: number, admissionWaitMs: number): Promise<PushReceiver> {
    const dir = await mkdtemp(join(tmpdir(), 'dx-admission-mem-'));
    dirs.push(dir);
    const store = await EmbeddedStore.open(join(dir, 'data'), { commitThreads: 1 });
    // Room for many transactions by count: only their memory bounds them. Never evicted here.
    const r = await PushReceiver.open({
      store,
      maxTransactions: 32,
      maxTransactionsMemory,
      idleTimeoutSeconds: 0,
      idleBeforeEvictionSeconds: 3600,
      admissionWaitMs,
    });
    receivers.push(r);
    return r;
  }
  const many = (is: TestInstance[]) =>
    JSON.parse(
      createBody(
        is,
        is.map((i) => [{ ID: i.ID, Offset: 0, Size: i.Size }]),
        'none',
      ),
    ) as unknown;

  test('a create that does not fit waits in turn; one that would fit does not pass it; each is admitted as memory frees', async () => {
    const knee = await loadInstances('Knee/T2', 6);
    const [a, b, c, ...three] = knee as [TestInstance, TestInstance, TestInstance, ...TestInstance[]];
    const one1 = transactionMemory(1);
    // Two one-instance transactions fit, or one of three instances, not both.
    const r = await receiver(2 * one1 + 100, 90_000);
    const txA = await r.create(many([a]));
    const txB = await r.create(many([b]));
    const order: string[] = [];
    const noted = (name: string) => (h: { ID: string }) => {
      order.push(name);
      return h;
    };
    const big = r.create(many(three)).then(noted('big'));
    for (let i = 0; i < 100 && r.waiting === 0; i++) await new Promise((res) => setImmediate(res));
    assert.equal(r.waiting, 1, 'three instances beside two transactions exceed the memory');
    await r.discard(txA.ID);
    // One transaction of one instance left: the big one still does not fit, and C, which would, waits behind it.
    const small = r.create(many([c])).then(noted('C'));
    for (let i = 0; i < 100 && r.waiting < 2; i++) await new Promise((res) => setImmediate(res));
    assert.equal(r.waiting, 2);
    assert.deepEqual(order, []);
    await r.discard(txB.ID);
    const txBig = await big;
    assert.deepEqual(order, ['big']);
    assert.equal(r.waiting, 1, 'C does not fit beside the big one');
    await r.discard(txBig.ID);
    const txC = await small;
    assert.deepEqual(order, ['big', 'C']);
    assert.deepEqual(
      r.list().map((t) => t.id),
      [txC.ID],
    );
    assert.equal(r.counters.refused, 0);
    assert.equal(r.counters.evicted, 0);
  });

  test('a transaction larger than the bound is admitted alone; the next waits, then gets a 503 naming the key', async () => {
    const [a, b] = (await loadInstances('Knee/T2', 2)) as [TestInstance, TestInstance];
    const r = await receiver(1000, 200);
    const held = await r.create(many([a]));
    await assert.rejects(
      r.create(many([b])),
      (e: unknown) => isXferError(e) && e.http === 503 && /PushTransactionsMemory/.test(e.message + (e.details ?? '')),
    );
    assert.deepEqual(
      r.list().map((t) => t.id),
      [held.ID],
    );
    await r.discard(held.ID);
    // Nothing held: the next one goes in again, however large.
    const next = await r.create(many([b]));
    assert.deepEqual(
      r.list().map((t) => t.id),
      [next.ID],
    );
  });
});

describe('push receiver: the default admits more senders at once than the plugin did', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  before(async () => {
    // Only defaults: MaxPushTransactions, IdleBeforeEviction and PushTransactionsMemory as a user gets them.
    node = await startXferNode({ config: { HttpTimeout: 120 } });
  });
  after(async () => {
    await node?.stop();
  });

  test('six transactions held at once (the plugin holds four), none waited, none evicted', async () => {
    const knee = await loadInstances('Knee/T2', 6);
    const txs: { ID: string; Path: string }[] = [];
    for (const i of knee) {
      const r = await raw(node, 'POST', '/transfers/push', one(i));
      assert.equal(r.status, 200, r.body.toString());
      txs.push(json(r) as { ID: string; Path: string });
    }
    assert.deepEqual((await readdir(pushDir(node))).sort(), txs.map((t) => t.ID).sort());
    assert.equal(await metric(node, 'dicom_xfer_push_waited_creates_total'), 0);
    assert.equal(await metric(node, 'orthanc_transfers_available_push_count'), 32 - 6);
    for (const [k, tx] of txs.entries()) assert.equal((await raw(node, 'PUT', `${tx.Path}/0`, (knee[k] as TestInstance).data)).status, 200);
    for (const tx of txs) assert.equal((await raw(node, 'POST', `${tx.Path}/commit`)).status, 200);
  });
});
