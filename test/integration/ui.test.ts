// The dashboard in a real browser (Debian's Chromium through playwright-core) against two real nodes: a
// study sent from the store page reaches 100% on the transfers page; pause, resume, cancel and resubmit
// from the buttons while the proxy holds the buckets; the peers page; behind Basic auth; at 390 px wide.
// Screenshots of every page go to test-output/ui/ (git-ignored).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { makePatient, makeSeries, makeStudy, writeMrImage } from '../../src/generate/index.ts';
import { REPO, startXferNode, type XferNode } from '../helpers/node.ts';
import { getJson, startPair, type JobJson, type Pair } from '../helpers/transfer-nodes.ts';
import { describe } from '../helpers/data.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(REPO, 'test-output', 'ui');
const STEP_MS = 30_000;
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`;

/** A browser profile of its own (a new empty --user-data-dir), never a downloaded browser. */
async function openBrowser(opts: { width?: number; height?: number; credentials?: { username: string; password: string } } = {}): Promise<{
  context: BrowserContext;
  page: Page;
  errors: string[];
  dir: string;
}> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-ui-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
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
    viewport: { width: opts.width ?? 1280, height: opts.height ?? 900 },
    ...(opts.credentials ? { httpCredentials: opts.credentials } : {}),
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  // The cancel button asks for a confirmation.
  page.on('dialog', (d) => void d.accept());
  return { context, page, errors, dir };
}

interface StudyRef {
  study: string;
  patientName: string;
  instances: string[];
}

/** Writes `count` MR images of one new patient and study, and stores them on `node`. */
async function addStudy(node: XferNode, dir: string, seed: number, name: string, count: number): Promise<StudyRef> {
  const patient = { ...makePatient(seed, 0), name };
  const study = makeStudy(seed, patient, 0, `UI STUDY ${seed}`);
  const series = makeSeries(study, 1, 'AX T2');
  const ids: string[] = [];
  let studyId = '';
  for (let i = 0; i < count; i++) {
    const f = await writeMrImage(join(dir, `s${seed}-${i}.dcm`), { seed, index: i, slices: count, patient, study, series });
    const res = await fetch(`${node.url}/instances`, { method: 'POST', body: await readFile(f.path) });
    assert.equal(res.status, 200);
    const a = (await res.json()) as { ID: string; ParentStudy: string };
    ids.push(a.ID);
    studyId = a.ParentStudy;
  }
  return { study: studyId, patientName: name, instances: ids };
}

async function shot(page: Page, name: string): Promise<void> {
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Sends a study from the store page through the "Send to…" dialog; answers the new job's ID. */
async function sendFromStore(page: Page, ref: StudyRef, peer: string, compression: 'gzip' | 'none'): Promise<string> {
  await page.locator('#q').fill(ref.patientName.split('^')[0] as string);
  const study = page.locator(`[data-study="${ref.study}"]`);
  await study.waitFor();
  await study.locator('.study-head button[data-send="Study"]').click();
  const dialog = page.locator('dialog.send');
  await dialog.waitFor();
  await dialog.locator('#send-peer').selectOption(peer);
  await dialog.locator('#mode-push').check();
  await dialog.locator('#send-compression').selectOption(compression);
  const links = page.locator('.toast a', { hasText: 'Follow it' });
  // The toast of an earlier send may still be shown: the job's link is the one that was not there before.
  const before = new Set(await links.evaluateAll((as) => as.map((a) => a.getAttribute('href') ?? '')));
  await dialog.getByRole('button', { name: 'Send', exact: true }).click();
  let href = '';
  for (let i = 0; i < 150 && !href; i++) {
    const now = await links.evaluateAll((as) => as.map((a) => a.getAttribute('href') ?? ''));
    href = now.find((h) => !before.has(h)) ?? '';
    if (!href) await new Promise((r) => setTimeout(r, 100));
  }
  const m = /#\/jobs\/([0-9a-f-]+)$/.exec(href);
  assert.ok(m, `a link to the new job in a toast within 15 s: ${href}`);
  return m[1] as string;
}

function row(page: Page, id: string, state?: string) {
  return page.locator(`li.job[data-job-id="${id}"]${state ? `[data-state="${state}"]` : ''}`);
}

describe('dashboard', { skip, timeout: 300_000 }, () => {
  let pair: Pair;
  let work: string;
  let first: StudyRef;
  let second: StudyRef;
  let third: StudyRef;
  let browser: Awaited<ReturnType<typeof openBrowser>>;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-ui-'));
    // Small buckets and two workers: a study of a dozen images is a dozen buckets, easy to hold mid-way.
    pair = await startPair({ common: { Transfers: { BucketSize: 64, Threads: 2 } } });
    first = await addStudy(pair.a, work, 31, 'UIFIRST^ANNA', 6);
    second = await addStudy(pair.a, work, 32, 'UISECOND^BEN', 24);
    third = await addStudy(pair.a, work, 33, 'UITHIRD^CARL', 12);
    browser = await openBrowser();
  });

  after(async () => {
    await browser?.context.close();
    if (browser) await rm(browser.dir, { recursive: true, force: true });
    await pair?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('a study sent from the store page reaches 100% on the transfers page', async () => {
    const { page } = browser;
    await page.goto(`${pair.a.url}/ui/#/store`);
    await page.locator(`[data-study="${first.study}"]`).waitFor();
    await page.locator(`[data-study="${second.study}"]`).waitFor();
    await shot(page, 'store');
    const id = await sendFromStore(page, first, 'b', 'none');
    await page.goto(`${pair.a.url}/ui/#/transfers`);
    await row(page, id, 'Success').waitFor();
    assert.equal(await row(page, id).locator('.pct').textContent(), '100%');
    assert.equal(await page.locator('#live-dot.on').count(), 1, 'live updates through Server-Sent Events');
    // Both stylesheets apply: the base (styles.css) and the pages' (pages.css), whose cards are a grid.
    assert.equal(await page.locator('.cards').evaluate((el) => getComputedStyle(el).display), 'grid');
    await shot(page, 'transfers');
    const job = await getJson<JobJson>(pair.a.url, `/jobs/${id}`);
    assert.equal(job.State, 'Success');
    assert.equal(job.Content.Peer, 'b');
    const atB = await getJson<string[]>(pair.b.url, '/instances');
    for (const i of first.instances) assert.ok(atB.includes(i), `instance ${i} at B`);
  });

  /**
   * Waits until job `id` of node A is Running with `held` of its bucket PUTs held by `gate`; a job that
   * ends instead fails the test with its JSON and the node's last log lines.
   */
  async function runningAndHeld(id: string, gate: { waitHeld(n: number, ms: number): Promise<void> }, held: number): Promise<void> {
    const heldNow = gate.waitHeld(held, STEP_MS);
    heldNow.catch(() => undefined);
    const end = Date.now() + STEP_MS;
    for (let state = ''; state !== 'Running'; ) {
      const job = await getJson<JobJson>(pair.a.url, `/jobs/${id}`);
      state = job.State;
      if (state === 'Failure' || state === 'Success' || Date.now() > end) {
        assert.fail(
          `job ${id} is ${state}, not Running with its buckets held: ` +
            `${JSON.stringify(job)}\n${pair.a.log().split('\n').slice(-20).join('\n')}`,
        );
      }
      if (state !== 'Running') await new Promise((r) => setTimeout(r, 100));
    }
    await heldNow;
  }

  test('pause and resume from the buttons while the peer holds the buckets', async () => {
    const { page } = browser;
    const gate = pair.toB.hold({ method: 'PUT', skip: 2 });
    let id = '';
    try {
      await page.goto(`${pair.a.url}/ui/#/store`);
      id = await sendFromStore(page, second, 'b', 'gzip');
      await runningAndHeld(id, gate, 2);
      await page.goto(`${pair.a.url}/ui/#/transfers`);
      await row(page, id, 'Running').locator('button[data-action="pause"]').click();
      await row(page, id, 'Paused').waitFor();
      assert.equal((await getJson<JobJson>(pair.a.url, `/jobs/${id}`)).State, 'Paused');
      await shot(page, 'transfers-paused');
    } finally {
      // A failure here must not leave later tests' buckets held.
      gate.release();
      pair.toB.clearRules();
    }
    // Slow buckets after the resume: the job runs a few seconds, enough for its rate chart.
    pair.toB.delay(1000, { method: 'PUT' });
    await row(page, id, 'Paused').locator('button[data-action="resume"]').click();
    await row(page, id, 'Success').waitFor();
    pair.toB.clearRules();

    // The job page: buckets done, the rate chart, no error.
    await page.goto(`${pair.a.url}/ui/#/jobs/${id}`);
    const buckets = page.locator('[data-fact="buckets"] dd');
    const job = await getJson<JobJson>(pair.a.url, `/jobs/${id}`);
    await page.locator('.page-head .badge', { hasText: 'Success' }).waitFor();
    assert.equal(await buckets.textContent(), `${job.Content.TotalBuckets} / ${job.Content.TotalBuckets} done`);
    assert.equal(await page.locator('[data-error="job"]').count(), 0);
    await page.locator('canvas.chart').waitFor();
    await shot(page, 'job');
    const atB = await getJson<string[]>(pair.b.url, '/instances');
    for (const i of second.instances) assert.ok(atB.includes(i), `instance ${i} at B`);
  });

  test('cancel shows the failure in plain words, and resubmit completes the job', async () => {
    const { page } = browser;
    const gate = pair.toB.hold({ method: 'PUT', skip: 1 });
    let id = '';
    const error = page.locator('[data-error="job"]');
    try {
      await page.goto(`${pair.a.url}/ui/#/store`);
      id = await sendFromStore(page, third, 'b', 'gzip');
      await page.goto(`${pair.a.url}/ui/#/jobs/${id}`);
      await page.locator('.page-head .badge', { hasText: 'Running' }).waitFor();
      await runningAndHeld(id, gate, 1);
      await page.locator('.page-head button[data-action="cancel"]').click();
      await error.waitFor();
      assert.match((await error.textContent()) ?? '', /Canceled by a user/);
      await shot(page, 'job-canceled');
    } finally {
      gate.release();
      pair.toB.clearRules();
    }
    await page.locator('.page-head button[data-action="resubmit"]').click();
    await page.locator('.page-head .badge', { hasText: 'Success' }).waitFor();
    assert.equal(await error.count(), 0, 'the error is gone once the job succeeded');
    assert.equal((await getJson<JobJson>(pair.a.url, `/jobs/${id}`)).State, 'Success');

    // The node's log: one JSON line per state change of the job, and the failure with its cause.
    const lines: Record<string, unknown>[] = [];
    for (const l of pair.a.log().split('\n')) {
      try {
        if (l.startsWith('{')) lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        // A line still being written.
      }
    }
    const ofJob = lines.filter((l) => l.job === id);
    assert.deepEqual(
      ofJob.filter((l) => l.msg === 'job state changed').map((l) => l.state),
      ['Running', 'Failure', 'Pending', 'Running', 'Success'],
    );
    assert.ok(
      ofJob.some((l) => l.msg === 'job failed' && l.code === 'CanceledJob'),
      'the cancel is logged with its cause',
    );
  });

  test('the peers page shows reachability, round trip, transfers status and extensions', async () => {
    const { page } = browser;
    await page.goto(`${pair.a.url}/ui/#/peers`);
    const card = page.locator('article.peer[data-peer="b"]');
    await card.waitFor();
    assert.equal(await card.getAttribute('data-reachable'), 'true');
    assert.equal(await card.getAttribute('data-status'), 'installed');
    assert.match((await card.locator('[data-fact="rtt"] dd').textContent()) ?? '', /^\d+ ms$/);
    // B is a dicom-xfer node: it lists its extensions in GET /transfers/capabilities (none when it has no such route).
    const res = await fetch(`${pair.b.url}/transfers/capabilities`);
    const listed = res.status === 200 ? Object.keys(((await res.json()) as { Extensions: Record<string, number> }).Extensions).sort() : [];
    const chips = await card.locator('[data-fact="extensions"] .chip').allTextContents();
    assert.deepEqual(chips, listed);
    if (listed.length === 0) assert.equal(await card.locator('[data-fact="extensions"] dd').textContent(), 'none');
    await shot(page, 'peers');
    assert.deepEqual(browser.errors, [], 'no error in the page');
  });

  test('usable at 390 px wide: no sideways scrolling on any page, the controls reachable', async () => {
    const narrow = await openBrowser({ width: 390, height: 844 });
    try {
      const { page } = narrow;
      for (const [hash, name, ready] of [
        ['#/transfers', 'narrow-transfers', 'li.job'],
        ['#/store', 'narrow-store', `[data-study="${first.study}"]`],
        ['#/peers', 'narrow-peers', 'article.peer'],
      ] as const) {
        await page.goto(`${pair.a.url}/ui/${hash}`);
        await page.locator(ready).first().waitFor();
        const width = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(width <= 390, `${hash}: the page is ${width} px wide`);
        await shot(page, name);
      }
      // The send dialog fits and works at this width too.
      await page.goto(`${pair.a.url}/ui/#/store`);
      const button = page.locator(`[data-study="${first.study}"] .study-head button[data-send="Study"]`);
      await button.click();
      const box = await page.locator('dialog.send').boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `the dialog fits: ${JSON.stringify(box)}`);
      await shot(page, 'narrow-send');
      await page.getByRole('button', { name: 'Cancel', exact: true }).click();
      assert.deepEqual(narrow.errors, [], 'no error in the page');
    } finally {
      await narrow.context.close();
      await rm(narrow.dir, { recursive: true, force: true });
    }
  });
});

describe('dashboard behind Basic authentication', { skip, timeout: 120_000 }, () => {
  const credentials = { username: 'alice', password: 's3cret' };
  let node: XferNode;

  before(async () => {
    node = await startXferNode({
      config: { AuthenticationEnabled: true, RegisteredUsers: { [credentials.username]: credentials.password } },
      auth: credentials,
    });
  });
  after(async () => {
    await node?.stop();
  });

  test('without credentials the node asks for them; with them every page and the live events work', async () => {
    const bare = await fetch(`${node.url}/ui/`);
    assert.equal(bare.status, 401);
    assert.match(bare.headers.get('www-authenticate') ?? '', /^Basic /);
    const events = await fetch(`${node.url}/ui/api/events`);
    assert.equal(events.status, 401);

    const b = await openBrowser({ credentials });
    try {
      const { page } = b;
      await page.goto(`${node.url}/ui/#/transfers`);
      await page.locator('#node-name', { hasText: /./ }).waitFor();
      await page.locator('#live-dot.on').waitFor();
      await page.locator('li.empty').waitFor();
      await shot(page, 'auth-transfers');
      await page.goto(`${node.url}/ui/#/store`);
      await page.locator('.results p.muted', { hasText: 'Nothing matches.' }).waitFor();
      assert.deepEqual(b.errors, [], 'no error in the page');
    } finally {
      await b.context.close();
      await rm(b.dir, { recursive: true, force: true });
    }
  });
});
