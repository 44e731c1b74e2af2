// The route queue across a crash: node A is killed (SIGKILL) right after POST /instances answered, and
// again while its rule's job is sending; once restarted, each study reaches node B exactly once (one
// committed push per study at B, every instance with the same MD5, one job per study at A).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { call, getJson, importFiles, listFiles, storedMd5s, type JobJson } from '../helpers/transfer-nodes.ts';

const RULE = 'to-b';

/** The value of a metric without labels in a Prometheus text answer. */
async function metric(base: string, name: string): Promise<number> {
  const text = (await call(base, 'GET', '/tools/metrics-prometheus')).body.toString();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.split(' ')[1]);
}

describe('routing across a crash of the sending node', { skip: needs(REAL_DICOM), timeout: 300_000 }, () => {
  let a: XferNode;
  let b: XferNode;
  let portA: number;
  let config: Record<string, unknown>;

  before(async () => {
    b = await startXferNode();
    portA = await freePort();
    config = {
      OrthancPeers: { b: [`${b.url}/`] },
      StableAge: 2,
      // Small buckets: the Brainix study takes many requests, so that a kill lands mid-transfer.
      Transfers: { BucketSize: 128, Threads: 1, MaxThreads: 1, RetryBudget: 30 },
      Routes: [{ Name: RULE, When: 'StableStudy', Send: ['b'] }],
    };
    a = await startXferNode({ port: portA, config });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  const restartA = async () => {
    a = await startXferNode({ port: portA, dir: a.dir, config });
  };

  const sentAfterRestart = async (n: number) => {
    await waitFor(
      `rule ${RULE} to send ${n} instances`,
      async () => (await getJson<{ SentInstances: number }>(a.url, `/routes/${RULE}`)).SentInstances >= n,
      120_000,
    );
  };

  test('killed right after the arrivals were answered: the study is sent once after the restart', async () => {
    const imported = await importFiles(a.url, await listFiles(join(REAL_DICOM, 'Knix')));
    assert.deepEqual(imported.refused, []);
    await a.kill();
    await restartA();
    await sentAfterRestart(imported.md5.size);
    const atB = await storedMd5s(b.url);
    assert.equal(atB.size, imported.md5.size);
    for (const [id, sum] of imported.md5) assert.equal(atB.get(id), sum, `${id} at B`);
    assert.equal(await metric(b.url, 'orthanc_transfers_committed_push_count'), 1, 'one push committed at B');
    const jobs = (await getJson<JobJson[]>(a.url, '/jobs?expand')).filter((j) => j.Content['Route'] === RULE);
    assert.deepEqual(
      jobs.map((j) => j.State),
      ['Success'],
    );
  });

  test('killed while the rule job sends: the job goes on after the restart, the study arrives once', async () => {
    const before = await storedMd5s(b.url);
    const imported = await importFiles(a.url, await listFiles(join(REAL_DICOM, 'Brainix')));
    assert.deepEqual(imported.refused, []);
    await waitFor(
      'the rule job to be sending',
      async () => (await getJson<{ InFlightJobs: string[] }>(a.url, `/routes/${RULE}`)).InFlightJobs.length > 0,
      30_000,
      20,
    );
    await a.kill();
    await restartA();
    await sentAfterRestart(before.size + imported.md5.size);
    const atB = await storedMd5s(b.url);
    for (const [id, sum] of imported.md5) assert.equal(atB.get(id), sum, `${id} at B`);
    assert.equal(atB.size, before.size + imported.md5.size);
    // B was never restarted: one commit for Knix, one for Brainix.
    assert.equal(await metric(b.url, 'orthanc_transfers_committed_push_count'), 2, 'one push committed per study');
    const jobs = (await getJson<JobJson[]>(a.url, '/jobs?expand')).filter((j) => j.Content['Route'] === RULE);
    assert.equal(jobs.filter((j) => j.State === 'Success').length, 2, JSON.stringify(jobs.map((j) => [j.ID, j.State])));
    assert.equal(jobs.length, 2);
  });
});
