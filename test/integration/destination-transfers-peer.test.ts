// The destination seam on real bytes: a transfers peer (src/transfer/peer-destination.ts) driven through
// the Destination interface alone, from a real embedded store to a real dicom-xfer node on loopback. It
// sends every instance, reports its figures, resumes after a stop without sending the finished buckets again,
// and reads each bucket from the store once (the CRC-32 and the body from the same bytes).
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import type { Config, TransfersConfig } from '../../src/config/types.ts';
import { TransfersPeerDestination, type TransfersPeerState } from '../../src/transfer/peer-destination.ts';
import type { Destination, SendTask } from '../../src/destinations/types.ts';
import { TransfersPeerDirectory } from '../../src/transfer/peer-directory.ts';
import { isXferError } from '../../src/errors.ts';
import { PeerClient } from '../../src/peers/client.ts';
import { Peers } from '../../src/peers/peers.ts';
import { bucketSize } from '../../src/protocol/buckets.ts';
import type { Compression, InstanceInfo } from '../../src/protocol/wire.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import type { Store } from '../../src/store/types.ts';
import { expandLocal } from '../../src/transfer/jobs.ts';
import { InFlight } from '../../src/transfer/in-flight.ts';
import type { TransferDeps } from '../../src/transfer/run.ts';
import { listFiles, someSeries } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { assertSameInstances, emptyNode, md5 } from '../helpers/transfer-nodes.ts';

/** Bytes and calls of readRange on a store, counted as a transfer reads it. */
interface Reads {
  calls: number;
  bytes: number;
}

/** `store` with its range reads (readRange, readRangeInto) counted in `reads` (everything else passes through untouched). */
function counting(store: Store, reads: Reads): Store {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'readRange') {
        return (id: string, start: number, end: number) => {
          reads.calls++;
          reads.bytes += end - start;
          return target.readRange(id, start, end);
        };
      }
      if (prop === 'readRangeInto' && target.readRangeInto) {
        return (id: string, start: number, into: Uint8Array) => {
          reads.calls++;
          reads.bytes += into.byteLength;
          return target.readRangeInto?.(id, start, into);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** A task kept in memory, as a job's run context keeps it in the jobs database. */
class MemoryTask implements SendTask<TransfersPeerState> {
  readonly log = pino({ level: 'silent' });
  readonly done = new Set<number>();
  figures: Record<string, unknown> = {};
  progress = 0;
  state: TransfersPeerState | undefined;
  #ac = new AbortController();
  /** Called after each finished bucket is recorded. */
  onBucket: ((index: number) => void) | undefined;

  get signal(): AbortSignal {
    return this.#ac.signal;
  }
  /** Stops the send, as a pause does; the next run uses a fresh signal. */
  stop(): void {
    this.#ac.abort('pause');
  }
  rearm(): void {
    this.#ac = new AbortController();
  }
  loadPrivate(): TransfersPeerState | undefined {
    return this.state === undefined ? undefined : structuredClone(this.state);
  }
  async savePrivate(s: TransfersPeerState): Promise<void> {
    this.state = structuredClone(s);
  }
  bucketsDone(): Set<number> {
    return new Set(this.done);
  }
  async markBucketDone(i: number): Promise<void> {
    this.done.add(i);
    this.onBucket?.(i);
  }
  async clearBucketsDone(): Promise<void> {
    this.done.clear();
  }
  content(): Readonly<Record<string, unknown>> {
    return this.figures;
  }
  setContent(partial: Record<string, unknown>): void {
    const next = { ...this.figures };
    for (const [k, v] of Object.entries(partial)) {
      if (v === undefined) delete next[k];
      else next[k] = v;
    }
    this.figures = next;
  }
  setProgress(p: number): void {
    this.progress = p;
  }
}

describe('a transfers peer through the Destination interface', () => {
  let receiver: XferNode;
  let storeDir: string;
  let store: EmbeddedStore;
  let instances: InstanceInfo[];
  const expected = new Map<string, string>();
  const clients: PeerClient[] = [];

  before(async () => {
    receiver = await startXferNode();
    storeDir = await mkdtemp(join(tmpdir(), 'dx-destination-'));
    store = await EmbeddedStore.open(join(storeDir, 'store'), { commitThreads: 2 });
    // ingestFile adopts the file it is given: each file goes in as a copy.
    for (const [n, f] of (await listFiles(await someSeries())).entries()) {
      const copy = join(storeDir, `in-${n}.dcm`);
      await copyFile(f, copy);
      const data = await readFile(copy);
      const r = await store.ingestFile(copy, (await stat(copy)).size, md5(data));
      expected.set(r.ids.instance, md5(data));
    }
    const study = (await store.findInstances([...expected.keys()])).size;
    assert.equal(study, expected.size);
    instances = await expandLocal(
      store,
      [...expected.keys()].map((ID) => ({ Level: 'Instance' as const, ID })),
    );
  });
  after(async () => {
    for (const c of clients) await c.close();
    await store.close();
    await rm(storeDir, { recursive: true, force: true });
    await receiver.stop();
  });

  async function destination(
    transfers: Partial<TransfersConfig>,
    reads: Reads,
  ): Promise<{ dest: Destination<TransfersPeerState>; config: Config }> {
    const { config } = await loadConfig({ overrides: { StorageDirectory: storeDir, Transfers: transfers } });
    const client = new PeerClient(
      { name: 'b', url: `${receiver.url}/`, httpHeaders: {}, userProperties: {} },
      { httpTimeout: 30, verifyPeers: true },
    );
    clients.push(client);
    const deps: TransferDeps = {
      config,
      store: counting(store, reads),
      peer: () => ({ client, url: `${receiver.url}/` }),
      inFlight: InFlight.fromConfig(config.Transfers),
    };
    return { dest: new TransfersPeerDestination(deps, 'b'), config };
  }

  const total = () => instances.reduce((s, i) => s + i.Size, 0);
  /** Small buckets, so that the series makes several (about eight of the generated series, when it stands in). */
  const bucketKb = () => Math.max(1, Math.min(128, Math.floor(total() / 1024 / 8)));

  for (const compression of ['none', 'gzip'] as Compression[]) {
    test(`sends every instance and reads each bucket from the store once (${compression}, CRC-32 on)`, async () => {
      await emptyNode(receiver.url);
      const reads: Reads = { calls: 0, bytes: 0 };
      // The plugin's bucket layout with small buckets: several PUTs, each with its CRC-32.
      const { dest } = await destination({ BucketSpans: false, BucketSize: bucketKb(), Threads: 2, MaxThreads: 2 }, reads);
      const task = new MemoryTask();
      await dest.send({ instances, compression, transferId: `t-${compression}` }, task);
      assert.equal(task.progress, 1);
      assert.ok((task.figures.PeerExtensions as string[]).includes('bucket-crc32'), 'the receiver lists bucket-crc32');
      await assertSameInstances(receiver.url, expected);
      const buckets = task.state?.buckets ?? [];
      assert.ok(buckets.length > 2, `${buckets.length} buckets`);
      assert.equal(task.figures.TotalBuckets, buckets.length);
      assert.equal(task.figures.CompletedHttpQueries, buckets.length);
      // Once: every payload byte read one time, one range read per chunk.
      assert.equal(reads.bytes, total());
      assert.equal(
        reads.calls,
        buckets.reduce((n, b) => n + b.filter((c) => c.Size > 0).length, 0),
      );
    });
  }

  test('resumes after a stop: the transaction is kept and the finished buckets are not read again', async () => {
    await emptyNode(receiver.url);
    const reads: Reads = { calls: 0, bytes: 0 };
    const { dest } = await destination({ BucketSpans: false, BucketSize: bucketKb(), Threads: 1, MaxThreads: 1 }, reads);
    const task = new MemoryTask();
    const req = { instances, compression: 'none' as const, transferId: 't-resume' };
    task.onBucket = () => {
      if (task.done.size === 2) task.stop();
    };
    await assert.rejects(dest.send(req, task));
    const path = task.state?.path;
    assert.ok(path, 'the transaction is kept in the task');
    const doneFirst = new Set(task.done);
    assert.ok(doneFirst.size >= 2);
    const buckets = task.state?.buckets ?? [];
    assert.ok(doneFirst.size < buckets.length, 'stopped before the end');
    const firstBytes = reads.bytes;

    task.onBucket = undefined;
    task.rearm();
    await dest.send(req, task);
    assert.equal(task.progress, 1);
    assert.equal(task.state?.path, path, 'the same transaction was finished');
    await assertSameInstances(receiver.url, expected);
    let doneBytes = 0;
    for (const i of doneFirst) doneBytes += bucketSize(buckets[i] ?? []);
    const secondBytes = reads.bytes - firstBytes;
    assert.ok(secondBytes > 0);
    assert.ok(secondBytes <= total() - doneBytes, `the second run read ${secondBytes} bytes of ${total() - doneBytes} left`);
  });

  test('abandon discards the transaction on the peer', async () => {
    await emptyNode(receiver.url);
    const { dest } = await destination({ BucketSpans: false, BucketSize: bucketKb(), Threads: 1, MaxThreads: 1 }, { calls: 0, bytes: 0 });
    const task = new MemoryTask();
    task.onBucket = () => task.stop();
    await assert.rejects(dest.send({ instances, compression: 'none', transferId: 't-abandon' }, task));
    const path = task.state?.path;
    assert.ok(path);
    await dest.abandon({ transferId: 't-abandon' }, task);
    const a = await fetch(`${receiver.url}${path}/buckets`);
    assert.equal(a.status, 404, 'the peer no longer holds the transaction');
  });

  test("the directory of transfers peers: names, a destination by name, and each one's status", async () => {
    await emptyNode(receiver.url);
    const dir = await mkdtemp(join(tmpdir(), 'dx-dest-dir-'));
    const { config } = await loadConfig({
      overrides: {
        StorageDirectory: dir,
        OrthancPeers: { b: [`${receiver.url}/`], down: ['http://127.0.0.1:9/'] },
        Transfers: { PeerConnectivityTimeout: 2 },
      },
    });
    const peers = await Peers.open(config, pino({ level: 'silent' }));
    try {
      const deps: TransferDeps = {
        config,
        store,
        peer: (name) => ({ client: peers.client(name), url: peers.get(name)?.url ?? '' }),
        inFlight: InFlight.fromConfig(config.Transfers),
      };
      const directory = new TransfersPeerDirectory(deps, peers, config);
      assert.deepEqual(directory.names(), ['b', 'down']);
      assert.throws(
        () => directory.get('nope'),
        (e: unknown) => isXferError(e) && e.code === 'UnknownResource' && /peer "nope"/.test(e.message),
      );
      const status = await directory.statusAll();
      const byName = new Map(status.map((s) => [s.Name, s]));
      assert.equal(byName.get('b')?.Kind, 'transfers-peer');
      assert.equal(byName.get('b')?.Reachable, true);
      assert.equal(byName.get('b')?.Url, `${receiver.url}/`);
      assert.ok(((byName.get('b')?.Extensions ?? []) as string[]).includes('bucket-crc32'), JSON.stringify(byName.get('b')));
      assert.equal(byName.get('down')?.Reachable, false);
      // A destination from the directory sends as one made directly.
      const task = new MemoryTask();
      await directory.get('b').send({ instances, compression: 'gzip', transferId: 't-directory' }, task);
      await assertSameInstances(receiver.url, expected);
    } finally {
      await peers.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
