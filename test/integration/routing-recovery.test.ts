// The two crash windows of a send, rebuilt in the real databases of a stopped node: a job submitted whose
// ID the routes database did not record yet (found again by its key, not submitted twice), and a job
// recorded that the jobs database lost (submitted again). After the restart each batch ends done, with the
// jobs the window calls for.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { getJson, importFiles, listFiles, storedMd5s, type JobJson } from '../helpers/transfer-nodes.ts';

const RULE = 'to-b';

describe('recovery of a send from its crash windows', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let a: XferNode;
  let b: XferNode;
  let port: number;
  let config: Record<string, unknown>;

  before(async () => {
    b = await startXferNode();
    port = await freePort();
    config = { OrthancPeers: { b: [`${b.url}/`] }, StableAge: 1, Routes: [{ Name: RULE, When: 'StableStudy', Send: ['b'] }] };
    a = await startXferNode({ port, config });
    const imported = await importFiles(a.url, await listFiles(join(REAL_DICOM, 'Beaufix')));
    assert.equal(imported.refused.length, 0);
    await waitFor('the first send', async () => (await getJson<{ DoneBatches: number }>(a.url, `/routes/${RULE}`)).DoneBatches === 1);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  const ruleJobs = async () => (await getJson<JobJson[]>(a.url, '/jobs?expand')).filter((j) => j.Content['Route'] === RULE);

  /** Stops A, rewinds its only batch to "sending" with its send as `rewind` says, restarts A. */
  async function crashState(rewind: (routes: Database.Database, jobs: Database.Database, job: string) => void): Promise<void> {
    await a.stop({ keep: true });
    const routes = new Database(join(a.dataDir, 'routes.sqlite'));
    const jobs = new Database(join(a.dataDir, 'jobs.sqlite'));
    try {
      const job = (routes.prepare('SELECT job FROM sends').get() as { job: string }).job;
      routes.exec("UPDATE batches SET state = 'sending'; UPDATE matches SET state = 'batched'");
      rewind(routes, jobs, job);
    } finally {
      routes.close();
      jobs.close();
    }
    a = await startXferNode({ port, dir: a.dir, config });
    await waitFor(
      'the batch to end again',
      async () => (await getJson<{ DoneBatches: number }>(a.url, `/routes/${RULE}`)).DoneBatches === 1,
    );
  }

  test('a job submitted but not recorded is found by its key: no second job', async () => {
    await crashState((routes) => routes.exec("UPDATE sends SET state = 'submitting', job = NULL"));
    const jobs = await ruleJobs();
    assert.equal(jobs.length, 1, JSON.stringify(jobs.map((j) => j.ID)));
    assert.equal((await getJson<{ SentInstances: number }>(a.url, `/routes/${RULE}`)).SentInstances, 2);
  });

  test('a job recorded but lost by the jobs database is submitted again, once', async () => {
    const [lost] = await ruleJobs();
    await crashState((routes, jobs, job) => {
      assert.equal(job, lost?.ID);
      jobs.prepare('DELETE FROM jobs WHERE id = ?').run(job);
      routes.exec("UPDATE sends SET state = 'running'");
    });
    const jobs = await ruleJobs();
    assert.equal(jobs.length, 1);
    assert.notEqual(jobs[0]?.ID, lost?.ID);
    assert.equal(jobs[0]?.State, 'Success');
    assert.equal((await storedMd5s(b.url)).size, 2);
  });
});
