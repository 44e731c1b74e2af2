// The dashboard's Routes page in a real browser (Debian's Chromium through playwright-core) against two real
// nodes: each rule with what it sent and its last error, and the job a rule made linked back to its rule.
// A screenshot goes to test-output/ui/ (git-ignored).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { REPO, startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { getJson, importFiles, listFiles, type JobJson } from '../helpers/transfer-nodes.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(REPO, 'test-output', 'ui');
const skip = existsSync(CHROMIUM) ? needs(REAL_DICOM) : `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`;

describe('the Routes page of the dashboard', { skip, timeout: 180_000 }, () => {
  let a: XferNode;
  let b: XferNode;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  const errors: string[] = [];

  before(async () => {
    b = await startXferNode();
    const closed = await freePort();
    a = await startXferNode({
      config: {
        OrthancPeers: { b: [`${b.url}/`], gone: [`http://127.0.0.1:${closed}/`] },
        Transfers: { MaxHttpRetries: 0, RetryBudget: 0, PeerConnectivityTimeout: 1 },
        Routes: [
          { Name: 'to-b', When: 'Instance', Send: ['b'], Match: { PatientName: 'PHENIX' } },
          { Name: 'to-gone', When: 'Instance', Send: ['gone'], Match: { PatientName: 'PHENIX' } },
        ],
      },
    });
    profile = await mkdtemp(join(tmpdir(), 'dx-ui-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(30_000);
    page.on('pageerror', (e) => errors.push(e.message));
  });
  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await a?.stop();
    await b?.stop();
  });

  test('each rule shows what it sent and its last error; its job links back to it', async () => {
    await importFiles(a.url, await listFiles(join(REAL_DICOM, 'Phenix')));
    await waitFor('both rules to end their batch', async () => {
      const all = await getJson<{ DoneBatches: number; FailedBatches: number }[]>(a.url, '/routes');
      return all.every((r) => r.DoneBatches + r.FailedBatches === 1);
    });
    await page.goto(`${a.url}/ui/#/routes`);
    const ok = page.locator('article[data-route="to-b"]');
    await ok.locator('[data-fact="sent"] dd', { hasText: '1 instance (1 batch)' }).waitFor();
    assert.match(String(await ok.locator('[data-fact="match"]').textContent()), /PatientName = PHENIX/);
    assert.equal(await ok.locator('[data-fact="last-error"]').count(), 0);
    const failed = page.locator('article[data-route="to-gone"]');
    await failed.locator('[data-fact="failed"] dd', { hasText: '1 instance (1 batch)' }).waitFor();
    assert.match(String(await failed.locator('[data-fact="last-error"]').textContent()), /Last error .*gone: /);
    assert.equal((await page.locator('.tabs a.active').textContent())?.trim(), 'Routes');
    await mkdir(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'routes.png'), fullPage: true });

    const jobs = (await getJson<JobJson[]>(a.url, '/jobs?expand')).filter((j) => j.Content['Route'] === 'to-b');
    assert.equal(jobs.length, 1);
    await page.goto(`${a.url}/ui/#/jobs/${(jobs[0] as JobJson).ID}`);
    const link = page.locator('[data-fact="route"] a', { hasText: 'to-b' });
    await link.click();
    await page.locator('article[data-route="to-b"]').waitFor();
    assert.deepEqual(errors, []);
  });
});
