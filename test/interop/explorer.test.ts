// Orthanc Explorer through dicom-xfer's proxy, in headless Chromium: Orthanc A with dicom-xfer A beside it
// (--orthanc --proxy) and a peer B (a dicom-xfer node with the embedded store). The "Transfers accelerator"
// button stands before Delete on the patient, study and series pages; its dialog lists the peers with their
// status; choosing B sends the study, the page goes to the job, and B then holds the same bytes. A peer that
// vanished in the meantime gives the plugin's alert; the Jobs page lists Orthanc's jobs and dicom-xfer's.
// Screenshots go to test-output/explorer/.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { writeCtSlice } from '../../src/generate/index.ts';
import { REPO, startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { describe } from '../helpers/data.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(REPO, 'test-output', 'explorer');
const STEP_MS = 30_000;

const skip = !orthancInstalled()
  ? 'Orthanc is not installed'
  : !existsSync(CHROMIUM)
    ? `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`
    : false;

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

async function getJson<T = Record<string, unknown>>(url: string): Promise<T> {
  const r = await fetch(url);
  assert.equal(r.status, 200, `GET ${url}: ${r.status} ${await r.clone().text()}`);
  return (await r.json()) as T;
}

/** Polls a job until it ends (at most 5 minutes); its final JSON. */
async function waitJob(base: string, id: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 300_000;
  for (let i = 0; i < 3000 && Date.now() < deadline; i++) {
    const job = await getJson(`${base}/jobs/${id}`);
    if (job['State'] === 'Success' || job['State'] === 'Failure') return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} on ${base} did not end in time`);
}

describe('Orthanc Explorer through dicom-xfer --proxy', { skip }, () => {
  let work: string;
  let orthanc: OrthancServer;
  let nodeA: XferNode;
  let nodeB: XferNode;
  let context: BrowserContext;
  let page: Page;
  /** Alerts the page raised, in order. */
  const alerts: string[] = [];
  /** Instance ID -> MD5 of the generated study stored in Orthanc A. */
  const sent = new Map<string, string>();
  let study: string;
  let series: string;
  let patient: string;
  let instance: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-explorer-'));
    await mkdir(SHOTS, { recursive: true });
    orthanc = await startOrthanc({ name: 'Orthanc A' });
    nodeB = await startXferNode();
    nodeA = await startXferNode({
      config: {
        OrthancPeers: {
          B: [nodeB.url],
          // Another name for B, deleted while the dialog is open.
          Vanishing: [nodeB.url],
          // Orthanc A itself: reachable, without the transfers plugin.
          Plain: [orthanc.url],
        },
      },
      extraArgs: ['--orthanc', orthanc.url, '--proxy'],
    });
    for (let i = 0; i < 5; i++) {
      const p = join(work, `ct${i}.dcm`);
      await writeCtSlice(p, { seed: 7100, index: i, slices: 5 });
      const bytes = await readFile(p);
      const r = await fetch(`${nodeA.url}/instances`, { method: 'POST', body: bytes });
      assert.equal(r.status, 200);
      const a = (await r.json()) as { ID: string; ParentStudy: string; ParentSeries: string; ParentPatient: string };
      sent.set(a.ID, md5(bytes));
      study = a.ParentStudy;
      series = a.ParentSeries;
      patient = a.ParentPatient;
      instance = a.ID;
    }
    context = await chromium.launchPersistentContext(await mkdtemp(join(tmpdir(), 'dx-chromium-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(STEP_MS);
    page.on('dialog', (d) => {
      alerts.push(d.message());
      void d.accept();
    });
  });

  after(async () => {
    await context?.close();
    await nodeA?.stop();
    await nodeB?.stop();
    await orthanc?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** Opens a resource page of Orthanc Explorer through node A and waits until it is shown. */
  async function open(level: 'patient' | 'study' | 'series' | 'instance', id: string): Promise<void> {
    await page.goto(`${nodeA.url}/app/explorer.html#${level}?uuid=${id}`);
    await page.locator(`#${level}.ui-page-active`).waitFor();
    await page.locator(`#${level}-delete`).waitFor();
  }

  test('the yellow button stands just before Delete on the patient, study and series pages only', async () => {
    for (const [level, id] of [
      ['patient', patient],
      ['series', series],
      ['study', study],
    ] as const) {
      await open(level, id);
      const button = page.locator(`#${level}-transfers`);
      await button.waitFor({ state: 'visible' });
      assert.equal(await button.textContent(), 'Transfers accelerator');
      const placed = await page.evaluate((lv) => {
        const li = document.getElementById(`${lv}-transfers`)?.closest('li');
        const next = li?.nextElementSibling;
        return {
          beforeDelete: next?.querySelector(`#${lv}-delete`) !== null && next !== null && next !== undefined,
          yellow: li?.className.includes('ui-btn-up-e') ?? false,
          count: document.querySelectorAll(`#${lv} .dicom-xfer-transfers`).length,
        };
      }, level);
      assert.deepEqual(placed, { beforeDelete: true, yellow: true, count: 1 }, level);
      await page.screenshot({ path: join(SHOTS, `1-${level}-page.png`), fullPage: true });
    }
    await open('instance', instance);
    assert.equal(await page.locator('#instance .dicom-xfer-transfers').count(), 0);
  });

  test('the dialog lists every peer with its status; a peer gone meanwhile gives the error alert', async () => {
    await open('study', study);
    await page.locator('#study-transfers').click();
    const dialog = page.locator('.ui-simpledialog-container');
    await dialog.getByText('Choose Orthanc peer').waitFor({ state: 'visible' });
    await page.screenshot({ path: join(SHOTS, '2-choose-peer.png'), fullPage: true });
    const rows = await page.evaluate(() =>
      Array.from(document.querySelectorAll('li[data-peer]')).map((li) => ({
        peer: li.getAttribute('data-peer'),
        status: li.getAttribute('data-status'),
        disabled: li.classList.contains('ui-disabled'),
        link: li.querySelector('a') !== null,
      })),
    );
    assert.deepEqual(rows, [
      { peer: 'B', status: 'installed', disabled: false, link: true },
      { peer: 'Plain', status: 'disabled', disabled: true, link: false },
      { peer: 'Vanishing', status: 'installed', disabled: false, link: true },
    ]);
    const del = await fetch(`${nodeA.url}/peers/Vanishing`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    const before = alerts.length;
    await page.locator('li[data-peer="Vanishing"] a').click();
    for (let i = 0; i < 300 && alerts.length === before; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(alerts.slice(before), ['Error while creating the transfer job']);
    assert.match(page.url(), /#study\?uuid=/);
  });

  test('choosing B sends the study: the job page opens, the job succeeds, B holds the same bytes', async () => {
    await open('study', study);
    await page.locator('#study-transfers').click();
    await page.locator('li[data-peer="B"] a').click();
    await page.waitForURL(/#job\?uuid=/);
    const id = /#job\?uuid=([0-9a-f-]+)/.exec(page.url())?.[1];
    assert.ok(id, page.url());
    await page.locator('#job.ui-page-active').waitFor();
    const job = await waitJob(nodeA.url, id);
    assert.equal(job['State'], 'Success', JSON.stringify(job));
    assert.equal(job['Type'], 'PushTransfer');
    // The job page of Orthanc Explorer shows dicom-xfer's job, read through /jobs/{id}.
    await page.reload();
    await page.locator('#job-info').getByText('Success').first().waitFor();
    await page.screenshot({ path: join(SHOTS, '3-job-success.png'), fullPage: true });
    const ids = await getJson<string[]>(`${nodeB.url}/studies/${study}/instances`).then((l) =>
      (l as unknown as { ID: string }[]).map((x) => x.ID),
    );
    assert.deepEqual(ids.sort(), [...sent.keys()].sort());
    for (const [instanceId, sum] of sent) {
      const r = await fetch(`${nodeB.url}/instances/${instanceId}/file`);
      assert.equal(r.status, 200);
      assert.equal(md5(new Uint8Array(await r.arrayBuffer())), sum, instanceId);
    }
    assert.deepEqual(
      alerts.filter((a) => a !== 'Error while creating the transfer job'),
      [],
    );
  });

  test("the Jobs page lists Orthanc's jobs beside dicom-xfer's", async () => {
    const r = await fetch(`${nodeA.url}/studies/${study}/archive`, { method: 'POST', body: JSON.stringify({ Asynchronous: true }) });
    assert.equal(r.status, 200);
    const archive = ((await r.json()) as { ID: string }).ID;
    assert.equal((await waitJob(nodeA.url, archive))['State'], 'Success');
    await page.goto(`${nodeA.url}/app/explorer.html#jobs`);
    const list = page.locator('#all-jobs');
    await list.locator(`a[href="#job?uuid=${archive}"]`).waitFor();
    const types = await list.locator('a h1').allInnerTexts();
    assert.ok(types.includes('Archive') && types.includes('PushTransfer'), JSON.stringify(types));
    await page.screenshot({ path: join(SHOTS, '4-jobs.png'), fullPage: true });
  });
});
