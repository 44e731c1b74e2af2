// The contract every push-transaction state keeps (src/transfer/push-state/types.ts), as one suite that each
// implementation's test file runs with its own: create, buckets recorded, a restart, the commit's outcome,
// deletion and expiry, and damaged state refused with the field at fault.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { orthancIds } from '../../src/dicom/ids.ts';
import { isXferError, type ErrorCode } from '../../src/errors.ts';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import type { PushCreateBody } from '../../src/protocol/wire.ts';
import { OUTCOME_RETENTION_MS, type PushTransactionState, type StoredPushTransaction } from '../../src/transfer/push-state/types.ts';
import { describe, listFiles, someDicom } from '../helpers/data.ts';

export interface PushStateUnderTest {
  /** Opens the state on its storage: a second call after close() is a restart. */
  open(): Promise<PushTransactionState>;
  /** Damages what is kept of transaction `id` the way an edit or a bad disk would (a field of the wrong type). */
  damage(id: string): Promise<void>;
  /** Removes the storage. */
  remove(): Promise<void>;
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isXferError(e), `an XferError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** Registers the contract suite for one implementation; `make` gives a fresh, empty storage. */
export function runPushStateContract(name: string, make: () => Promise<PushStateUnderTest>): void {
  describe(`push-transaction state contract: ${name}`, () => {
    let sut: PushStateUnderTest;
    let state: PushTransactionState;
    /** A create body on real DICOM files: their IDs, sizes and MD5s, in buckets of 64 KiB. */
    let body: PushCreateBody;

    /** Closes the state and opens it again, as a restart of the node does. */
    async function restart(): Promise<void> {
      await state.close();
      state = await sut.open();
    }

    async function listed(): Promise<Map<string, StoredPushTransaction>> {
      const m = new Map<string, StoredPushTransaction>();
      for (const e of await state.list()) if (e.ok) m.set(e.tx.id, e.tx);
      return m;
    }

    async function created(at = Date.now()): Promise<string> {
      const id = randomUUID();
      await state.create({ id, createdAt: at, create: body });
      return id;
    }

    before(async () => {
      const files = (await listFiles(await someDicom()))
        .filter((f) => f.endsWith('.dcm'))
        .sort()
        .slice(0, 3);
      assert.equal(files.length, 3);
      const instances = [];
      for (const f of files) {
        const bytes = await readFile(f);
        const id = orthancIds(await readDicomHeaderFromFile(f)).instance;
        instances.push({ ID: id, Size: bytes.length, MD5: createHash('md5').update(bytes).digest('hex') });
      }
      instances.sort((a, b) => (a.ID < b.ID ? -1 : 1));
      body = { Instances: instances, Buckets: scheduleBuckets(instances, { bucketSize: 64 * 1024 }), Compression: 'gzip' };
      assert.ok(body.Buckets.length >= 3, `${body.Buckets.length} buckets`);
      sut = await make();
      state = await sut.open();
    });

    after(async () => {
      await state?.close();
      await sut?.remove();
    });

    test('a transaction created is listed after a restart with its create body, and no bucket', async () => {
      const at = Date.now() - 5_000;
      const id = await created(at);
      await restart();
      const tx = (await listed()).get(id);
      assert.ok(tx, `${id} listed`);
      assert.deepEqual(tx, { id, createdAt: at, lastActivity: at, create: body, buckets: [] });
    });

    test('buckets recorded survive a restart, sorted and once each; the latest one is the last activity', async () => {
      const t0 = Date.now() - 60_000;
      const id = await created(t0);
      await state.recordBuckets(id, [2], t0 + 10);
      await state.recordBuckets(id, [0, 1], t0 + 30);
      await state.recordBuckets(id, [2], t0 + 20);
      await restart();
      const tx = (await listed()).get(id);
      assert.deepEqual(tx?.buckets, [0, 1, 2]);
      assert.equal(tx?.lastActivity, t0 + 30);
      // Recording goes on after the restart.
      const last = body.Buckets.length - 1;
      await state.recordBuckets(id, [last], t0 + 40);
      await restart();
      assert.deepEqual(
        (await listed()).get(id)?.buckets,
        [...new Set([0, 1, 2, last])].sort((a, b) => a - b),
      );
    });

    test('transactions are listed least recently active first', async () => {
      const now = Date.now();
      const older = await created(now - 3_600_000);
      const newer = await created(now - 1_800_000);
      await state.recordBuckets(older, [0], now - 60_000);
      await restart();
      const order = [...(await listed()).keys()];
      assert.ok(order.indexOf(newer) < order.indexOf(older), 'the one with a recent bucket comes after');
    });

    test('recording buckets of an unknown or deleted transaction is UnknownResource', async () => {
      await rejectsWith(state.recordBuckets(randomUUID(), [0], Date.now()), 'UnknownResource');
      const id = await created();
      await state.delete(id);
      await rejectsWith(state.recordBuckets(id, [0], Date.now()), 'UnknownResource');
    });

    test('a finished commit: its outcome answers, before and after a restart, and the transaction is gone', async () => {
      const ok = await created();
      await state.recordBuckets(ok, [0], Date.now());
      const failed = await created();
      const at = Date.now();
      await state.finishCommit({ ID: ok, State: 'Success', At: at });
      await state.finishCommit({ ID: failed, State: 'Failure', Details: 'instance x: MD5 differs', At: at });
      assert.deepEqual(await state.outcome(ok), { ID: ok, State: 'Success', At: at });
      await rejectsWith(state.recordBuckets(ok, [1], Date.now()), 'UnknownResource');
      await restart();
      const held = await listed();
      assert.ok(!held.has(ok) && !held.has(failed), 'committed transactions are not listed');
      assert.deepEqual(await state.outcome(ok), { ID: ok, State: 'Success', At: at });
      assert.deepEqual(await state.outcome(failed), { ID: failed, State: 'Failure', Details: 'instance x: MD5 differs', At: at });
      // An outcome for a transaction that was never recorded here is kept all the same.
      const other = randomUUID();
      await state.finishCommit({ ID: other, State: 'Success', At: at });
      assert.equal((await state.outcome(other))?.State, 'Success');
    });

    test('a deleted transaction is gone for good; deleting again, or an ID of another shape, does nothing', async () => {
      const id = await created();
      await state.recordBuckets(id, [0], Date.now());
      await state.delete(id);
      await state.delete(id);
      await state.delete('../../etc');
      assert.ok(!(await listed()).has(id));
      await restart();
      assert.ok(!(await listed()).has(id));
      assert.equal(await state.outcome(id), undefined);
      assert.equal(await state.outcome('../../etc'), undefined);
    });

    test('outcomes expire after the retention, counted from their end, and stay expired after a restart', async () => {
      const old = randomUUID();
      const young = randomUUID();
      const now = Date.now();
      await state.finishCommit({ ID: old, State: 'Success', At: now - OUTCOME_RETENTION_MS - 1_000 });
      await state.finishCommit({ ID: young, State: 'Success', At: now - 1_000 });
      await state.pruneOutcomes(now);
      assert.equal(await state.outcome(old), undefined);
      assert.equal((await state.outcome(young))?.State, 'Success');
      await restart();
      assert.equal(await state.outcome(old), undefined);
      assert.equal((await state.outcome(young))?.State, 'Success');
      await state.pruneOutcomes(now + OUTCOME_RETENTION_MS);
      assert.equal(await state.outcome(young), undefined);
    });

    test('damaged state is refused at reading with the field at fault; the others are listed', async () => {
      const bad = await created();
      const good = await created();
      await state.recordBuckets(good, [1], Date.now());
      await state.close();
      await sut.damage(bad);
      state = await sut.open();
      const entries = await state.list();
      const refused = entries.find((e) => !e.ok && e.id === bad);
      assert.ok(refused && !refused.ok, `${bad} refused`);
      assert.match(refused.reason, /Size/);
      assert.ok(!entries.some((e) => e.ok && e.tx.id === bad));
      assert.deepEqual((await listed()).get(good)?.buckets, [1]);
      // Refused state is not used: its buckets cannot be recorded, and once deleted it is not listed again.
      await rejectsWith(state.recordBuckets(bad, [0], Date.now()), 'UnknownResource');
      await state.delete(bad);
      await restart();
      assert.ok(!(await state.list()).some((e) => (e.ok ? e.tx.id : e.id) === bad));
    });
  });
}
