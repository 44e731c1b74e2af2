// Many transfers at once on real node processes: eight senders pushing at the same time to one receiver
// that holds fewer push transactions than there are senders (their creates wait their turn: every
// transfer succeeds, none refused), and one node running eight jobs to eight receivers at once under a
// small in-flight budget (shared between the jobs: every job succeeds). Every instance arrives identical.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { describe, needs } from '../helpers/data.ts';
import {
  REAL_DICOM,
  assertSameInstances,
  call,
  importFiles,
  listFiles,
  startTransfer,
  waitJob,
  type Imported,
} from '../helpers/transfer-nodes.ts';

const COUNT = 8;
const FILES_EACH = 3;

/** COUNT groups of FILES_EACH distinct real DICOM files (two series of real MRI). */
async function groups(): Promise<string[][]> {
  const files = [...(await listFiles(join(REAL_DICOM, 'Brainix'))), ...(await listFiles(join(REAL_DICOM, 'Knee')))]
    .filter((f) => f.endsWith('.dcm'))
    .sort();
  assert.ok(files.length >= COUNT * FILES_EACH);
  return Array.from({ length: COUNT }, (_, g) => files.filter((_, i) => i % COUNT === g).slice(0, FILES_EACH));
}

const resources = (imported: Imported) => [...imported.md5.keys()].map((ID) => ({ Level: 'Instance', ID }));

/** A figure of a node's Prometheus metrics. */
async function metric(node: XferNode, name: string): Promise<number> {
  const text = (await call(node.url, 'GET', '/tools/metrics-prometheus')).body.toString('utf8');
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}

async function stopAll(nodes: readonly (XferNode | undefined)[]): Promise<void> {
  await Promise.allSettled(nodes.map((n) => n?.stop()));
}

describe('many senders push to one receiver at once', { skip: needs(REAL_DICOM), timeout: 300_000 }, () => {
  let receiver: XferNode;
  const senders: XferNode[] = [];

  before(async () => {
    // Fewer transactions than senders; creates wait their turn for long enough that none is refused.
    receiver = await startXferNode({
      config: { Name: 'rx', HttpTimeout: 180, Transfers: { MaxPushTransactions: 3, PushAdmissionWait: 150 } },
    });
    for (let i = 0; i < COUNT; i++) {
      senders.push(
        await startXferNode({
          config: {
            Name: `tx${i}`,
            HttpTimeout: 180,
            // Small buckets: each push is several requests, so the transactions overlap.
            Transfers: { BucketSize: 64, Threads: 2 },
            OrthancPeers: { rx: { Url: `${receiver.url}/` } },
          },
        }),
      );
    }
  });
  after(async () => {
    await stopAll([...senders, receiver]);
  });

  test("every sender's push succeeds, no create is refused, and the receiver holds every instance identical", async () => {
    const files = await groups();
    const imported: Imported[] = [];
    for (let i = 0; i < COUNT; i++) imported.push(await importFiles((senders[i] as XferNode).url, files[i] as string[]));
    const expected = new Map<string, string>();
    for (const imp of imported) {
      assert.equal(imp.refused.length, 0, JSON.stringify(imp.refused));
      for (const [id, m] of imp.md5) expected.set(id, m);
    }
    assert.equal(expected.size, COUNT * FILES_EACH);
    const handles = await Promise.all(
      senders.map((s, i) =>
        startTransfer(s.url, 'send', { Resources: resources(imported[i] as Imported), Compression: i % 2 ? 'gzip' : 'none', Peer: 'rx' }),
      ),
    );
    const jobs = await Promise.all(senders.map((s, i) => waitJob(s.url, (handles[i] as Record<string, string>).ID as string, 240_000)));
    for (const job of jobs) assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(receiver.url, expected);
    assert.equal(await metric(receiver, 'dicom_xfer_push_refused_creates_total'), 0, 'no create answered 503');
    assert.equal(await metric(receiver, 'orthanc_transfers_available_push_count'), 3, 'every transaction ended');
  });
});

describe('one node runs jobs to many receivers at once', { skip: needs(REAL_DICOM), timeout: 300_000 }, () => {
  const receivers: XferNode[] = [];
  let sender: XferNode | undefined;

  before(async () => {
    for (let i = 0; i < COUNT; i++) receivers.push(await startXferNode({ config: { Name: `rx${i}`, HttpTimeout: 120 } }));
    const peers = Object.fromEntries(receivers.map((r, i) => [`rx${i}`, { Url: `${r.url}/` }]));
    // Every job runs at once, sharing an in-flight budget smaller than what they would ask for together.
    sender = await startXferNode({
      config: {
        Name: 'tx',
        HttpTimeout: 120,
        ConcurrentJobs: COUNT,
        Transfers: { BucketSize: 64, Threads: 2, MaxRequestsInFlight: 2, MaxInFlightSize: 1 },
        OrthancPeers: peers,
      },
    });
  });
  after(async () => {
    await stopAll([sender, ...receivers]);
  });

  test('every job succeeds and every receiver holds its instances identical', async () => {
    const node = sender as XferNode;
    const files = await groups();
    const imported: Imported[] = [];
    for (let i = 0; i < COUNT; i++) imported.push(await importFiles(node.url, files[i] as string[]));
    const handles = [];
    for (let i = 0; i < COUNT; i++) {
      handles.push(
        await startTransfer(node.url, 'send', { Resources: resources(imported[i] as Imported), Compression: 'gzip', Peer: `rx${i}` }),
      );
    }
    const jobs = await Promise.all(handles.map((h) => waitJob(node.url, h.ID as string, 240_000)));
    for (const job of jobs) assert.equal(job.State, 'Success', JSON.stringify(job));
    for (let i = 0; i < COUNT; i++) await assertSameInstances((receivers[i] as XferNode).url, (imported[i] as Imported).md5);
    // The budget was the limit: requests of the jobs waited for their turn in it.
    assert.ok((await metric(node, 'dicom_xfer_in_flight_waits_total')) > 0, 'the jobs met the budget');
  });
});
