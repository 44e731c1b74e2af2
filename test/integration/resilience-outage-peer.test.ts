// A push whose receiver goes away for 60 s in the middle (killed, then started again on the same port and
// storage): the sender's retries, with backoff within the job's RetryBudget (default 120 s), carry the
// transfer over the outage without anyone acting, into the same transaction; the retries show in the
// job's Content.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  assertSameInstances,
  getJson,
  putIndex,
  startTransfer,
  waitJob,
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { setupBrainix, sleep } from './resilience-common.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

/** BucketSize 128 KB: each Brainix file (131-170 KB) travels alone in its bucket. */
const BUCKET_KB = 128;
const OUTAGE_MS = 60_000;

describe('a 60 s outage of the receiver', { skip: needs(REAL_DICOM), timeout: 150_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let resources: { Level: string; ID: string }[];

  before(async () => {
    ({ pair, source, resources } = await setupBrainix(BUCKET_KB));
  });
  after(async () => {
    await pair?.stop();
  });

  test('a push rides over its receiver being down for 60 s and completes into the same transaction', async (t) => {
    const gate = pair.toB.hold({ method: 'PUT', skip: 10 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const id = h.ID as string;
    await gate.waitHeld(4);
    const doneBefore = pair.toB.records({ method: 'PUT' }).filter((r) => r.status === 200).map(putIndex);
    assert.equal(doneBefore.length, 10);
    await pair.crash('b');
    const down = Date.now();
    // The held PUTs now meet no receiver: cut connections, retried with backoff.
    gate.release();
    pair.toB.clearRules();
    // Bounded wait, checking all along that the job keeps going.
    for (let i = 0; i < 1000 && Date.now() - down < OUTAGE_MS; i++) {
      await sleep(Math.min(5_000, OUTAGE_MS - (Date.now() - down)));
      const j = await getJson<JobJson>(pair.a.url, `/jobs/${id}`);
      assert.equal(j.State, 'Running', `the job waits for the receiver: ${JSON.stringify(j)}`);
    }
    const during = await getJson<JobJson>(pair.a.url, `/jobs/${id}`);
    assert.ok((during.Content.Retries as number) > 0, 'retries are counted while the receiver is down');
    assert.match(String(during.Content.LastRetryCause), /bucket \d+/);
    assert.match(String(during.Content.LastRetryTime), /^\d{8}T\d{6}/);
    await pair.up('b');
    const job = await waitJob(pair.a.url, id, 60_000);
    const outage = Date.now() - down;
    assert.equal(job.State, 'Success', JSON.stringify(job));
    t.diagnostic(`receiver down ${Math.round(OUTAGE_MS / 1000)} s; job done ${Math.round(outage / 1000)} s after the kill, ${String(job.Content.Retries)} retries`);
    await assertSameInstances(pair.b.url, source);
    assert.equal(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).length, 1, 'the same transaction after the outage');
    // Buckets finished before the outage were not sent again.
    const puts = pair.toB.records({ method: 'PUT' });
    for (const i of doneBefore) assert.equal(puts.filter((r) => putIndex(r) === i).length, 1, `bucket ${i} sent once`);
    for (let i = 0; i < 44; i++) assert.equal(puts.filter((r) => putIndex(r) === i && r.status === 200).length, 1, `bucket ${i} accepted once`);
  });
});
