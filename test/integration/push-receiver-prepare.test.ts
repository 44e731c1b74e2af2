// The commit's work done while a push still runs: each instance verified as it lands is placed among the
// store's files, unseen until the commit's index transaction; a commit adopts what was placed, and a
// discard, a failed commit or a restart leaves no file of it behind. Real DICOM, a real embedded store.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { orthancIds } from '../../src/dicom/ids.ts';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { isXferError } from '../../src/errors.ts';
import { toWirePushCreate, type Chunk, type InstanceInfo } from '../../src/protocol/wire.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { PushReceiver } from '../../src/transfer/receiver.ts';
import { describe, listFiles, someSeries } from '../helpers/data.ts';

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

describe('push receiver: the commit prepared while the buckets come', () => {
  let work: string;
  const files: Buffer[] = [];
  const instances: InstanceInfo[] = [];
  /** One bucket per instance, but the last instance in two pieces (its MD5 taken piece by piece). */
  const buckets: Chunk[][] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-receiver-prepare-'));
    const paths = (await listFiles(await someSeries())).filter((f) => f.endsWith('.dcm')).slice(0, 5);
    for (const p of paths) {
      const bytes = await readFile(p);
      files.push(bytes);
      instances.push({ ID: orthancIds(await readDicomHeaderFromFile(p)).instance, Size: bytes.length, MD5: md5(bytes) });
    }
    instances.forEach((i, k) => {
      if (k < instances.length - 1) buckets.push([{ ID: i.ID, Offset: 0, Size: i.Size }]);
      else {
        const half = Math.floor(i.Size / 2);
        buckets.push([{ ID: i.ID, Offset: 0, Size: half }], [{ ID: i.ID, Offset: half, Size: i.Size - half }]);
      }
    });
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const body = (wrongMd5 = false): unknown =>
    toWirePushCreate({
      Instances: instances.map((i, k) => (wrongMd5 && k === 0 ? { ...i, MD5: '0'.repeat(32) } : i)),
      Buckets: buckets,
      Compression: 'none',
    });
  /** The payload of bucket k: its bytes of its instance. */
  const payload = (k: number): Readable => {
    const c = buckets[k]?.[0] as Chunk;
    const file = files[instances.findIndex((i) => i.ID === c.ID)] as Buffer;
    return Readable.from([file.subarray(c.Offset, c.Offset + c.Size)]);
  };
  const storeFiles = (store: EmbeddedStore): Promise<string[]> => listFiles(join(store.dir, 'files'));
  const indexed = (store: EmbeddedStore): Promise<string[]> => store.listResources('Instance');

  /** Waits (bounded) until the store holds `n` files: the instances were placed ahead of the commit. */
  async function placed(store: EmbeddedStore, n: number): Promise<void> {
    for (let i = 0; i < 400; i++) {
      if ((await storeFiles(store)).length >= n) return;
      await sleep(25);
    }
    assert.fail(`the store never held ${n} placed files: ${(await storeFiles(store)).length}`);
  }

  /** A store and a receiver over it in `name`, every bucket of a new transaction received. */
  async function received(name: string, wrongMd5 = false): Promise<{ store: EmbeddedStore; receiver: PushReceiver; id: string }> {
    const store = await EmbeddedStore.open(join(work, name), { commitThreads: 2 });
    const receiver = await PushReceiver.open({ store, maxTransactions: 4, idleTimeoutSeconds: 0 });
    const { ID } = await receiver.create(body(wrongMd5));
    for (let k = 0; k < buckets.length; k++) await receiver.putBucket(ID, k, payload(k));
    return { store, receiver, id: ID };
  }

  async function close(r: { store: EmbeddedStore; receiver: PushReceiver }): Promise<void> {
    await r.receiver.close();
    await r.store.close();
  }

  test('instances placed while the transfer runs are unseen until the commit, which adopts them as they are', async () => {
    const r = await received('commit');
    try {
      await placed(r.store, instances.length);
      const early = await storeFiles(r.store);
      assert.deepEqual(await indexed(r.store), [], 'nothing visible before the commit');
      assert.equal((await r.store.findInstances(instances.map((i) => i.ID))).size, 0);
      await r.receiver.commit(r.id);
      // The very files placed ahead are the ones the index names: nothing moved, nothing left over.
      assert.deepEqual(await storeFiles(r.store), early);
      assert.equal((await indexed(r.store)).length, instances.length);
      for (const [k, i] of instances.entries()) {
        const f = await r.store.instanceFile(i.ID);
        assert.ok(f && early.includes(f.path), `${i.ID} at a placed file`);
        assert.equal(md5(await readFile(f.path)), md5(files[k] as Buffer));
      }
    } finally {
      await close(r);
    }
    // Reopened, the store's recovery removes nothing: the placed files left its journal with the commit.
    const store = await EmbeddedStore.open(join(work, 'commit'));
    try {
      assert.equal((await storeFiles(store)).length, instances.length);
      assert.equal((await indexed(store)).length, instances.length);
    } finally {
      await store.close();
    }
  });

  test('a discard after preparation leaves no file and no index row', async () => {
    const r = await received('discard');
    try {
      await placed(r.store, instances.length);
      await r.receiver.discard(r.id);
      assert.deepEqual(await storeFiles(r.store), []);
      assert.deepEqual(await indexed(r.store), []);
    } finally {
      await close(r);
    }
  });

  test('a failed commit after preparation leaves no file and no index row', async () => {
    const r = await received('failed', true);
    try {
      // The instance with a wrong MD5 is never verified, so never placed: the others are.
      await placed(r.store, instances.length - 1);
      await assert.rejects(r.receiver.commit(r.id), (e) => isXferError(e, 'CorruptedFile'));
      assert.deepEqual(await storeFiles(r.store), []);
      assert.deepEqual(await indexed(r.store), []);
    } finally {
      await close(r);
    }
  });

  test('a piece written again after preparation: the commit checks the file and stores it, with no stray file', async () => {
    const r = await received('rewritten');
    try {
      await placed(r.store, instances.length);
      // The second piece of the last instance sent again: what was hashed of it no longer counts.
      await r.receiver.putBucket(r.id, buckets.length - 1, payload(buckets.length - 1));
      await r.receiver.commit(r.id);
      assert.equal((await storeFiles(r.store)).length, instances.length);
      for (const [k, i] of instances.entries()) assert.equal((await r.store.instanceInfo(i.ID)).md5, md5(files[k] as Buffer));
    } finally {
      await close(r);
    }
  });

  test('a restart after preparation: the placed files go with the recovery, and the resumed transaction commits', async () => {
    const r = await received('restart');
    await placed(r.store, instances.length);
    await close(r);
    const store = await EmbeddedStore.open(join(work, 'restart'));
    const receiver = await PushReceiver.open({ store, maxTransactions: 4, idleTimeoutSeconds: 0 });
    try {
      assert.deepEqual(await storeFiles(store), [], 'the journalled files of no index row are removed');
      await receiver.commit(r.id);
      assert.equal((await storeFiles(store)).length, instances.length);
      for (const [k, i] of instances.entries()) assert.equal((await store.instanceInfo(i.ID)).md5, md5(files[k] as Buffer));
    } finally {
      await close({ store, receiver });
    }
  });
});
