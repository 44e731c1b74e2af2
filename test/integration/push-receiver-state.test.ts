// The push receiver over its state (src/transfer/push-state/): transactions kept in the state it is given
// and resumed from it after a restart, the outcome of a commit winning over a manifest a crash left, and
// staging that no transaction owns removed at start. Real DICOM files, a real embedded store.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { orthancIds } from '../../src/dicom/ids.ts';
import { toWirePushCreate, type InstanceInfo } from '../../src/protocol/wire.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { FilePushState } from '../../src/transfer/push-state/files.ts';
import { PushReceiver } from '../../src/transfer/receiver.ts';
import { describe, listFiles, someDicom } from '../helpers/data.ts';

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

describe('push receiver over its transaction state', () => {
  let work: string;
  const files: Buffer[] = [];
  const instances: InstanceInfo[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-receiver-state-'));
    const paths = (await listFiles(await someDicom()))
      .filter((f) => f.endsWith('.dcm'))
      .sort()
      .slice(0, 2);
    for (const p of paths) {
      const bytes = await readFile(p);
      files.push(bytes);
      instances.push({ ID: orthancIds(await readDicomHeaderFromFile(p)).instance, Size: bytes.length, MD5: md5(bytes) });
    }
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** A create body with one bucket per instance (as the wire has it), optionally with a wrong MD5. */
  function body(wrongMd5 = false): unknown {
    const decl = instances.map((i, k) => (wrongMd5 && k === 0 ? { ...i, MD5: '0'.repeat(32) } : i));
    return toWirePushCreate({
      Instances: decl,
      Buckets: instances.map((i) => [{ ID: i.ID, Offset: 0, Size: i.Size }]),
      Compression: 'none',
    });
  }
  const bucket = (k: number) => Readable.from([files[k] as Buffer]);
  const open = (store: EmbeddedStore, state?: FilePushState) =>
    PushReceiver.open({ store, maxTransactions: 4, idleTimeoutSeconds: 0, ...(state ? { state } : {}) });

  test('transactions live in the state the receiver is given, and resume from it after a restart', async () => {
    const dir = join(work, 'given');
    const store = await EmbeddedStore.open(join(dir, 'data'), { commitThreads: 2 });
    const stateOpts = { dir: join(store.stagingRoot(), 'push'), outcomesDir: join(dir, 'elsewhere') };
    try {
      let state = await FilePushState.open(stateOpts);
      let receiver = await open(store, state);
      const { ID } = await receiver.create(body());
      await receiver.putBucket(ID, 0, bucket(0));
      await receiver.close();
      // A restart: a new state on the same storage, a new receiver.
      state = await FilePushState.open(stateOpts);
      receiver = await open(store, state);
      assert.deepEqual(receiver.bucketsDone(ID), [0]);
      assert.deepEqual(await receiver.state(ID), { State: 'Open', Buckets: 2, BucketsDone: 1 });
      await receiver.putBucket(ID, 1, bucket(1));
      await receiver.commit(ID);
      assert.deepEqual(await state.outcome(ID).then((o) => o?.State), 'Success');
      assert.deepEqual(await receiver.state(ID), { State: 'Success' });
      assert.deepEqual(await readdir(stateOpts.outcomesDir), [`${ID}.json`]);
      for (const i of instances) assert.equal((await store.instanceInfo(i.ID)).md5, i.MD5);
      await receiver.close();
    } finally {
      await store.close();
    }
  });

  test('a commit whose outcome was recorded but whose staging a crash left is not resumed as open', async () => {
    const dir = join(work, 'crash');
    const store = await EmbeddedStore.open(join(dir, 'data'), { commitThreads: 2 });
    try {
      let receiver = await open(store);
      const { ID } = await receiver.create(body(true));
      await receiver.putBucket(ID, 0, bucket(0));
      await receiver.putBucket(ID, 1, bucket(1));
      const txDir = join(store.stagingRoot(), 'push', ID);
      await cp(txDir, join(dir, 'saved'), { recursive: true });
      await assert.rejects(receiver.commit(ID), /CorruptedFile|Corrupted file/i);
      await receiver.close();
      // The crash: the transaction's directory is back, as if its removal never happened.
      await cp(join(dir, 'saved'), txDir, { recursive: true });
      receiver = await open(store);
      const st = await receiver.state(ID);
      assert.equal(st.State, 'Failure');
      assert.equal(receiver.held, 0);
      await assert.rejects(stat(txDir));
      await receiver.close();
    } finally {
      await store.close();
    }
  });

  test('staging that no transaction owns is removed at start; the transactions are kept', async () => {
    const dir = join(work, 'orphans');
    const store = await EmbeddedStore.open(join(dir, 'data'), { commitThreads: 2 });
    try {
      let receiver = await open(store);
      const { ID } = await receiver.create(body());
      await receiver.putBucket(ID, 1, bucket(1));
      await receiver.close();
      const push = join(store.stagingRoot(), 'push');
      await mkdir(join(push, 'not-a-transaction'));
      await writeFile(join(push, 'not-a-transaction', 'x.dcm'), 'left over');
      await mkdir(join(push, '0badc0de-0000-4000-8000-000000000000'));
      receiver = await open(store);
      assert.deepEqual(await readdir(push), [ID]);
      assert.deepEqual(receiver.bucketsDone(ID), [1]);
      await receiver.close();
    } finally {
      await store.close();
    }
  });
});
