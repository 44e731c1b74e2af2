// The bandwidth policy on the dashboard, in a real browser (Debian's Chromium through playwright-core) against
// real nodes: the peers page shows the node's rate limit in force (from Transfers.RateSchedule at the node's
// local time, set by its test clock, or Transfers.RateLimit outside the schedule) and each peer's own limit
// beside the one its transfers meet; a job's page shows its Content.RateLimit and, preempted by a job of
// higher Priority, why it waits with a link to that job.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { makePatient, makeSeries, makeStudy, writeMrImage } from '../../src/generate/index.ts';
import { type Chromium, chromiumSkip, launchChromium } from '../helpers/browser.ts';
import { describe } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { getJson, PER_BUCKET, startPair, startTransfer, waitJob, type JobJson, type Pair } from '../helpers/transfer-nodes.ts';

const STEP_MS = 30_000;
const skip = chromiumSkip();

async function openBrowser(): Promise<Chromium & { page: Page; errors: string[] }> {
  const browser = await launchChromium('ui-bandwidth', { viewport: { width: 1280, height: 900 } });
  const { context } = browser;
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  return { ...browser, page, errors };
}

/** Writes `count` MR images of a new patient and study, stores them on `base`; answers the study's ID. */
async function addStudy(base: string, dir: string, seed: number, count: number): Promise<string> {
  const patient = { ...makePatient(seed, 0), name: `BANDWIDTH^${seed}` };
  const study = makeStudy(seed, patient, 0, `BANDWIDTH UI ${seed}`);
  const series = makeSeries(study, 1, 'AX T2');
  let id = '';
  for (let i = 0; i < count; i++) {
    const f = await writeMrImage(join(dir, `s${seed}-${i}.dcm`), { seed, index: i, slices: count, patient, study, series });
    const res = await fetch(`${base}/instances`, { method: 'POST', body: await readFile(f.path) });
    assert.equal(res.status, 200);
    id = ((await res.json()) as { ParentStudy: string }).ParentStudy;
  }
  return id;
}

/** The schedule of both nodes of the peers test: 20 Mbit/s on working days' hours, 100 otherwise. */
const TRANSFERS = { RateLimit: 100, RateSchedule: [{ Days: 'Mon-Fri', From: '08:00', To: '18:00', RateLimit: 20 }] };

describe('dashboard: the bandwidth policy', { skip, timeout: 300_000 }, () => {
  let browser: Awaited<ReturnType<typeof openBrowser>>;
  const nodes: XferNode[] = [];
  let pair: Pair | undefined;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-ui-bandwidth-'));
    browser = await openBrowser();
  });
  after(async () => {
    await browser?.close();
    for (const n of nodes) await n.stop();
    await pair?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A node on its own clock (a local date-time), with three peers where nothing listens. */
  async function nodeAt(clock: string): Promise<XferNode> {
    const dead = `http://127.0.0.1:${await freePort()}/`;
    const node = await startXferNode({
      env: { DICOM_XFER_TEST_CLOCK: clock },
      config: {
        Transfers: TRANSFERS,
        OrthancPeers: { slow: { Url: dead, RateLimit: 5 }, plain: { Url: dead }, wide: { Url: dead, RateLimit: 50 } },
      },
    });
    nodes.push(node);
    return node;
  }

  const rateFact = (page: Page, peer: string) =>
    page.locator(`article.peer[data-peer="${peer}"] [data-fact="rate-limit"] dd`).textContent();

  test("the peers page shows the schedule's limit in force at the node's local time, and each peer's own", async () => {
    const { page } = browser;
    // Monday 09:30 on the node's clock: the working days' entry holds.
    const node = await nodeAt('2026-12-07T09:30:00');
    await page.goto(`${node.url}/ui/#/peers`);
    const section = page.locator('section.bandwidth[data-bandwidth="node"]');
    await section.waitFor();
    assert.equal(await section.getAttribute('data-source'), 'RateSchedule');
    assert.equal(await section.getAttribute('data-limit'), '20');
    assert.match(
      (await section.locator('[data-fact="node-limit"]').textContent()) ?? '',
      /^This node: 20 Mbit\/s now, from Transfers\.RateSchedule \(Mon-Fri 08:00–18:00\); node time Mon 2026-12-07 09:3\d\.$/,
    );
    assert.deepEqual(await section.locator('table.schedule tbody tr[data-active="true"] td').allTextContents(), [
      'Mon-Fri',
      '08:00',
      '18:00',
      '20 Mbit/s',
    ]);
    await page.locator('article.peer[data-peer="wide"]').waitFor();
    assert.equal(await rateFact(page, 'slow'), '5 Mbit/s');
    assert.equal(await rateFact(page, 'plain'), "none of its own; 20 Mbit/s, the node's");
    assert.equal(await rateFact(page, 'wide'), "50 Mbit/s (in force: 20 Mbit/s, the node's)");
    assert.deepEqual(browser.errors, []);
  });

  test('outside the schedule the page shows Transfers.RateLimit, no entry in force', async () => {
    const { page } = browser;
    // Saturday 10:00: no entry holds.
    const node = await nodeAt('2026-12-12T10:00:00');
    const api = await getJson<{ RateLimit: number; Source: string; Day: string }>(node.url, '/ui/api/bandwidth');
    assert.deepEqual([api.RateLimit, api.Source, api.Day], [100, 'RateLimit', 'Sat']);
    await page.goto(`${node.url}/ui/#/peers`);
    const section = page.locator('section.bandwidth[data-source="RateLimit"]');
    await section.waitFor();
    assert.equal(await section.getAttribute('data-limit'), '100');
    assert.equal(await section.locator('tr[data-active="true"]').count(), 0);
    assert.equal(await section.locator('tr[data-active="false"]').count(), 1);
    await page.locator('article.peer[data-peer="wide"]').waitFor();
    assert.equal(await rateFact(page, 'plain'), "none of its own; 100 Mbit/s, the node's");
    // Its own limit is the lower: it is the one in force.
    assert.equal(await rateFact(page, 'wide'), '50 Mbit/s');
    assert.deepEqual(browser.errors, []);
  });

  test("a job's page shows its rate limit, and a job preempted by one of higher Priority links to it", async () => {
    const { page } = browser;
    pair = await startPair({
      // One PUT per bucket and a fixed 4 requests in flight: the held PUTs are all the bulk job has in flight.
      common: { HttpTimeout: 30, Transfers: { ...PER_BUCKET, BucketSize: 64, RetryBudget: 60 } },
      a: { ConcurrentJobs: 2 },
      peerB: { RateLimit: 800 },
    });
    const p = pair;
    const bulkStudy = await addStudy(p.a.url, work, 61, 8);
    const highStudy = await addStudy(p.a.url, work, 62, 2);
    const send = async (study: string, priority: number) =>
      (
        await startTransfer(p.a.url, 'send', {
          Resources: [{ Level: 'Study', ID: study }],
          Peer: 'b',
          Compression: 'none',
          Priority: priority,
        })
      ).ID as string;
    // Every PUT held at the relay: the bulk job runs, then gives way to the job of Priority 10, which waits too.
    const gate = p.toB.hold({ method: 'PUT' });
    const bulk = await send(bulkStudy, 0);
    await gate.waitHeld(1, 30_000);
    const high = await send(highStudy, 10);
    const preempted = await waitJob(p.a.url, bulk, 20_000, ['Pending']);
    assert.match(String(preempted.Content.Waiting), new RegExp(`^preempted by job ${high} `));

    await page.goto(`${p.a.url}/ui/#/jobs/${bulk}`);
    const notice = page.locator(`[data-waiting="job"][data-preempted-by="${high}"]`);
    await notice.waitFor();
    assert.match(
      (await notice.textContent()) ?? '',
      new RegExp(`^Waiting: preempted by job ${high} \\(priority 10\\); resumes where it stopped`),
    );
    assert.equal(await page.locator('[data-fact="rate-limit"] dd').textContent(), '800 Mbit/s');
    // The link leads to the job it gave way to, whose page shows the same limit.
    await notice.locator(`a[href="#/jobs/${high}"]`).click();
    await page.waitForURL(`**/ui/#/jobs/${high}`);
    await page.locator('[data-fact="rate-limit"] dd', { hasText: '800 Mbit/s' }).waitFor();

    gate.release();
    p.toB.clearRules();
    for (const id of [high, bulk]) {
      const job: JobJson = await waitJob(p.a.url, id, 60_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Content.RateLimit, 800);
    }
    // Finished, the bulk job's page no longer says it waits.
    await page.goto(`${p.a.url}/ui/#/jobs/${bulk}`);
    await page.locator('[data-fact="took"] dd').waitFor();
    assert.equal(await page.locator('[data-waiting="job"]').count(), 0);
    assert.deepEqual(browser.errors, []);
  });
});
