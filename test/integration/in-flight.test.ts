// The node's in-flight budget on real transfers: two pulls at once from one data source (in this process,
// so its budget's own counters can be read) by a real node over loopback HTTP. With a small byte cap the
// chunk answers in flight never pass it and some wait their turn; with no cap (0) nothing ever waits.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import type { ConfigOverrides } from '../../src/config/types.ts';
import { makePatient, makeSeries, makeStudy, writeMrImage, writeMultiframe } from '../../src/generate/index.ts';
import { buildNode } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import type { InFlight } from '../../src/transfer/in-flight.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { assertSameInstances, emptyNode, importFiles, startTransfer, waitJob, type Imported } from '../helpers/transfer-nodes.ts';

const MB = 1024 * 1024;

/** A data source in this process: the transfers server on an embedded store, on a loopback port. */
interface Source {
  url: string;
  inFlight: InFlight;
  close(): Promise<void>;
}

async function startSource(overrides: ConfigOverrides): Promise<Source> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-inflight-'));
  const { config } = await loadConfig({ overrides: { StorageDirectory: dir, HttpPort: 0, ...overrides } });
  const store = await EmbeddedStore.open(dir, { commitThreads: 2 });
  const app = await buildNode({ config, store, logger: pino({ level: 'silent' }), originator: randomUUID() });
  await app.fastify.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.fastify.server.address();
  assert.ok(addr && typeof addr === 'object');
  return {
    url: `http://127.0.0.1:${addr.port}`,
    inFlight: app.parts.inFlight,
    async close() {
      await app.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Two studies of about 4.5 MB each (a multi-frame and six MR images): some 9 buckets of 512 KB to 1 MB each. */
async function writeStudies(dir: string): Promise<string[][]> {
  const studies: string[][] = [];
  for (const n of [0, 1]) {
    const patient = makePatient(31, n);
    const study = makeStudy(31, patient, 0, `IN FLIGHT ${n}`);
    const at = (s: number, what: string) => ({ patient, study, series: makeSeries(study, s, what) });
    const files = [(await writeMultiframe(join(dir, `mf${n}.dcm`), { seed: 31 + n, megabytes: 4, ...at(1, 'VOLUME') })).path];
    for (let i = 0; i < 6; i++)
      files.push((await writeMrImage(join(dir, `mr${n}-${i}.dcm`), { seed: 31 + n, index: i, slices: 6, ...at(2, 'AX T1') })).path);
    studies.push(files);
  }
  return studies;
}

describe('the in-flight budget of a data source serving two pulls at once', () => {
  let data: string;
  let capped: Source;
  let open: Source;
  let puller: XferNode;
  const sent: Imported[] = [];
  let studies: string[][] = [];
  const CAP_MB = 2;

  before(async () => {
    data = await mkdtemp(join(tmpdir(), 'dx-inflight-data-'));
    // Buckets of 512 KB to 1 MB: the cap holds two to four answers at once, while the two pulls ask for up to eight.
    capped = await startSource({ Transfers: { MaxInFlightSize: CAP_MB } });
    open = await startSource({});
    studies = await writeStudies(data);
    for (const files of studies) {
      sent.push(await importFiles(capped.url, files));
      await importFiles(open.url, files);
    }
    for (const s of sent) assert.deepEqual(s.refused, []);
    puller = await startXferNode({
      config: {
        ConcurrentJobs: 2,
        Transfers: { Threads: 4, MaxThreads: 4, BucketSize: 512, BucketSpans: false, MaxHttpRetries: 0 },
        OrthancPeers: { capped: { Url: `${capped.url}/` }, open: { Url: `${open.url}/` } },
      },
    });
  });

  after(async () => {
    await puller?.stop();
    await capped?.close();
    await open?.close();
    await rm(data, { recursive: true, force: true });
  });

  /** Pulls both studies at once from `peer` and checks that every instance arrived intact. */
  async function pullBoth(peer: string): Promise<void> {
    const handles = await Promise.all(
      sent.map((s) =>
        startTransfer(puller.url, 'pull', {
          Resources: [...s.md5.keys()].map((ID) => ({ Level: 'Instance', ID })),
          Peer: peer,
          Compression: 'none',
        }),
      ),
    );
    for (const h of handles) {
      const job = await waitJob(puller.url, h.ID as string, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
    }
    await assertSameInstances(puller.url, new Map(sent.flatMap((s) => [...s.md5])));
  }

  test('with a small byte cap, the chunk answers in flight never pass it, and some wait their turn', async (t) => {
    await pullBoth('capped');
    const c = capped.inFlight.counters;
    t.diagnostic(`budget of the capped source: ${JSON.stringify(c)}`);
    assert.ok(c.peakBytes > 0, 'the answers went through the budget');
    assert.ok(c.peakBytes <= CAP_MB * MB, `at most ${CAP_MB} MB in flight, saw ${c.peakBytes} bytes`);
    assert.ok(c.waited > 0, 'the two pulls together asked for more than the cap: some answers waited');
    assert.deepEqual([c.requests, c.bytes, c.waiting], [0, 0, 0], 'everything given back once the answers are sent');
  });

  test('with no cap (0), the same two pulls never wait on the budget', async (t) => {
    await emptyNode(puller.url);
    await pullBoth('open');
    const c = open.inFlight.counters;
    t.diagnostic(`budget of the source without a cap: ${JSON.stringify(c)}`);
    assert.deepEqual(open.inFlight.limits, { maxRequests: 0, maxBytes: 0 });
    assert.ok(c.peakRequests > 0 && c.peakBytes > 0, 'the answers went through the budget');
    assert.equal(c.waited, 0);
    assert.deepEqual([c.requests, c.bytes, c.waiting], [0, 0, 0]);
  });

  test('the jobs of a node share its budget: two pushes with one request in flight at a time', async (t) => {
    await emptyNode(puller.url);
    const sender = await startSource({
      OrthancPeers: { dest: [puller.url] },
      ConcurrentJobs: 2,
      Transfers: { MaxRequestsInFlight: 1, Threads: 4, MaxThreads: 4, BucketSize: 512, BucketSpans: false },
    });
    try {
      const mine = [];
      for (const files of studies) mine.push(await importFiles(sender.url, files));
      const handles = await Promise.all(
        mine.map((s) =>
          startTransfer(sender.url, 'send', {
            Resources: [...s.md5.keys()].map((ID) => ({ Level: 'Instance', ID })),
            Peer: 'dest',
            Compression: 'gzip',
          }),
        ),
      );
      for (const h of handles) {
        const job = await waitJob(sender.url, h.ID as string, 120_000);
        assert.equal(job.State, 'Success', JSON.stringify(job));
      }
      await assertSameInstances(puller.url, new Map(mine.flatMap((s) => [...s.md5])));
      const c = sender.inFlight.counters;
      t.diagnostic(`budget of the sender: ${JSON.stringify(c)}`);
      assert.equal(c.peakRequests, 1, 'never more than one bucket request in flight across both jobs');
      assert.ok(c.waited > 0, 'two jobs of four workers each: requests waited for the one place');
      const metrics = await (await fetch(`${sender.url}/tools/metrics-prometheus`)).text();
      assert.match(metrics, new RegExp(`^dicom_xfer_in_flight_waits_total ${c.waited}$`, 'm'));
      assert.match(metrics, /^dicom_xfer_in_flight_requests 0$/m);
    } finally {
      await sender.close();
    }
  });
});
