// The commit of a pull prepared while its buckets come, between two real nodes on real DICOM: each instance
// verified as it lands is placed among the store's files unseen, the commit adopts those files as they are
// (Content.PreparedInstances), and a pull paused or killed mid-way leaves no placed file behind and loses nothing.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, needs } from '../helpers/data.ts';
import {
  PER_BUCKET,
  REAL_DICOM,
  assertSameInstances,
  assertStaging,
  call,
  emptyNode,
  getJson,
  importFiles,
  listFiles,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type Pair,
} from '../helpers/transfer-nodes.ts';

/** BucketSize 128 KB: each Brainix file (131-170 KB) travels alone in its bucket. */
const BUCKET_KB = 128;

describe('a pull prepares its commit while the buckets come', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let resources: { Level: string; ID: string }[];

  before(async () => {
    pair = await startPair({ common: { Transfers: { BucketSize: BUCKET_KB, ...PER_BUCKET, RetryBudget: 30 } } });
    await importFiles(pair.a.url, await listFiles(join(REAL_DICOM, 'Brainix')));
    source = await storedMd5s(pair.a.url);
    resources = (await getJson<string[]>(pair.a.url, '/studies')).map((ID) => ({ Level: 'Study', ID }));
  });
  after(async () => {
    await pair?.stop();
  });

  /** The files among B's stored ones (indexed or placed ahead of a commit). */
  const storeFiles = async (): Promise<string[]> => listFiles(join(pair.b.dataDir, 'files')).catch(() => []);

  /** Waits (bounded) until B's store holds at least `n` files: instances were placed ahead of the commit. */
  async function placed(n: number): Promise<void> {
    for (let i = 0; i < 400; i++) {
      if ((await storeFiles()).length >= n) return;
      await sleep(25);
    }
    assert.fail(`B's store never held ${n} placed files: ${(await storeFiles()).length}`);
  }

  const reset = async () => {
    await emptyNode(pair.b.url);
    assert.deepEqual(await storeFiles(), [], 'no file left at B');
    pair.toA.clearRules();
    pair.toA.clearRecords();
  };

  test('instances are placed as they are verified, and the commit adopts them: one file per instance', async () => {
    await reset();
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'gzip', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const prepared = job.Content.PreparedInstances as number;
    assert.ok(Number.isInteger(prepared) && prepared > 0 && prepared <= source.size, JSON.stringify(job.Content));
    await assertSameInstances(pair.b.url, source);
    // Nothing placed twice, nothing left over: the placed files are the stored ones.
    assert.equal((await storeFiles()).length, source.size);
    await assertStaging(pair.b.dataDir, 'pull');
  });

  test('a paused pull releases what was placed, keeps its staged files, and resumes losing nothing', async () => {
    await reset();
    const gate = pair.toA.hold({ method: 'GET', path: '/transfers/chunks/', skip: 6 });
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'none', Peer: 'a' });
    const id = h.ID as string;
    await gate.waitHeld(4);
    // Some of the six instances fetched are placed among B's files, unseen.
    await placed(1);
    assert.deepEqual(await getJson<string[]>(pair.b.url, '/instances'), [], 'nothing visible before the commit');
    const heldAtPause = [...gate.records];
    assert.equal((await call(pair.b.url, 'POST', `/jobs/${id}/pause`, '')).status, 200);
    await waitJob(pair.b.url, id, 20_000, ['Paused']);
    // Paused: what was placed is gone from the store's files (the staged files stay for the next run).
    assert.deepEqual(await storeFiles(), [], 'no placed file while paused');
    await pair.toA.waitFor('the held GETs aborted by the pause', () => heldAtPause.every((r) => r.outcome === 'aborted'));
    gate.release();
    pair.toA.clearRules();
    assert.equal((await call(pair.b.url, 'POST', `/jobs/${id}/resume`, '')).status, 200);
    const job = await waitJob(pair.b.url, id);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    // The resumed run placed what it verified itself.
    assert.ok((job.Content.PreparedInstances as number) > 0, JSON.stringify(job.Content));
    await assertSameInstances(pair.b.url, source);
    assert.equal((await storeFiles()).length, source.size);
    await assertStaging(pair.b.dataDir, 'pull');
  });

  test('a pull killed mid-way goes on after the restart: no placed file outlives the crash, nothing is lost', async () => {
    await reset();
    const gate = pair.toA.hold({ method: 'GET', path: '/transfers/chunks/', skip: 6 });
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'gzip', Peer: 'a' });
    const id = h.ID as string;
    await gate.waitHeld(4);
    await placed(1);
    const heldAtKill = [...gate.records];
    await pair.crash('b');
    await pair.toA.waitFor('the held GETs cut by the crash', () => heldAtKill.every((r) => r.outcome === 'aborted'));
    gate.release();
    pair.toA.clearRules();
    await pair.up('b');
    const job = await waitJob(pair.b.url, id);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, source);
    // The files placed before the crash were taken back by the store's start (its journal): one file per instance.
    assert.equal((await storeFiles()).length, source.size);
    await assertStaging(pair.b.dataDir, 'pull');
  });
});
