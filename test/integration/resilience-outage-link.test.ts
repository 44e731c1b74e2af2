// A pull whose link to the data source is cut for 60 s in the middle (the proxy between the nodes cuts
// every connection it is given): the puller's retries, with backoff within the job's RetryBudget (default
// 120 s), carry the transfer over the outage without anyone acting, fetching no finished bucket again.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  assertSameInstances,
  assertStaging,
  chunkId,
  getJson,
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

describe('a 60 s outage of the link', { skip: needs(REAL_DICOM), timeout: 150_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let resources: { Level: string; ID: string }[];

  before(async () => {
    ({ pair, source, resources } = await setupBrainix(BUCKET_KB));
  });
  after(async () => {
    await pair?.stop();
  });

  test('a pull rides over 60 s without a link to its source and completes', async (t) => {
    const gate = pair.toA.hold({ method: 'GET', path: '/transfers/chunks/', skip: 10 });
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'none', Peer: 'a' });
    const id = h.ID as string;
    await gate.waitHeld(4);
    // From now on every request towards A is cut as soon as it arrives; the four held go through.
    pair.toA.drop({});
    const cutFrom = Date.now();
    gate.release();
    for (let i = 0; i < 1000 && Date.now() - cutFrom < OUTAGE_MS; i++) {
      await sleep(Math.min(5_000, OUTAGE_MS - (Date.now() - cutFrom)));
      const j = await getJson<JobJson>(pair.b.url, `/jobs/${id}`);
      assert.equal(j.State, 'Running', `the job waits for the link: ${JSON.stringify(j)}`);
    }
    const dropped = pair.toA.records().filter((r) => r.outcome === 'dropped');
    assert.ok(dropped.length > 0, 'requests were cut during the outage');
    pair.toA.clearRules();
    const job = await waitJob(pair.b.url, id, 60_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.ok((job.Content.Retries as number) >= dropped.length, `every cut request was retried (${String(job.Content.Retries)} retries)`);
    t.diagnostic(`link cut for ${Math.round(OUTAGE_MS / 1000)} s: ${dropped.length} requests cut, ${String(job.Content.Retries)} retries; job done ${Math.round((Date.now() - cutFrom) / 1000)} s after the cut`);
    await assertSameInstances(pair.b.url, source);
    const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    const ids = [...source.keys()];
    for (const x of ids) {
      const rs = gets.filter((r) => chunkId(r) === x);
      assert.equal(rs.filter((r) => r.outcome === 'completed').length, 1, `instance ${x} fetched once`);
      assert.ok(rs.every((r) => r.outcome === 'completed' || r.outcome === 'dropped'), `only cut requests were tried again for ${x}`);
    }
    await assertStaging(pair.b.dataDir, 'pull');
  });
});
