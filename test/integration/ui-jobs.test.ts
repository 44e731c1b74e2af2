// Job rows and job pages of the dashboard in a real browser (Debian's Chromium through playwright-core)
// against real nodes: what a job moves (patient, study, date, instances), labelled data and wire rates
// while it runs, how long a finished job took, the reason of a failed one, why a job waits for a peer that
// is down, and a send in pull mode followed on the sending node.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { makePatient, makeSeries, makeStudy, writeMrImage } from '../../src/generate/index.ts';
import { freePort } from '../helpers/ports.ts';
import { getJson, postJson, startPair, waitJob, json, type JobJson, type Pair } from '../helpers/transfer-nodes.ts';
import { describe } from '../helpers/data.ts';

const CHROMIUM = '/usr/bin/chromium';
const STEP_MS = 30_000;
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`;

async function openBrowser(): Promise<{ context: BrowserContext; page: Page; errors: string[]; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-ui-jobs-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => void d.accept());
  return { context, page, errors, dir };
}

interface StudyRef {
  study: string;
  count: number;
  /** As the node stores them. */
  patientName: string;
  description: string;
  date: string;
}

/** Writes `count` MR images of a new patient and study, stores them on `base`; answers what the node says of them. */
async function addStudy(base: string, dir: string, seed: number, name: string, count: number): Promise<StudyRef> {
  const patient = { ...makePatient(seed, 0), name };
  const study = makeStudy(seed, patient, 0, `JOBS UI STUDY ${seed}`);
  const series = makeSeries(study, 1, 'AX T2');
  let studyId = '';
  for (let i = 0; i < count; i++) {
    const f = await writeMrImage(join(dir, `s${seed}-${i}.dcm`), { seed, index: i, slices: count, patient, study, series });
    const res = await fetch(`${base}/instances`, { method: 'POST', body: await readFile(f.path) });
    assert.equal(res.status, 200);
    studyId = ((await res.json()) as { ParentStudy: string }).ParentStudy;
  }
  const s = await getJson<{ MainDicomTags: Record<string, string>; PatientMainDicomTags: Record<string, string> }>(
    base,
    `/studies/${studyId}`,
  );
  return {
    study: studyId,
    count,
    patientName: s.PatientMainDicomTags.PatientName ?? '',
    description: s.MainDicomTags.StudyDescription ?? '',
    date: s.MainDicomTags.StudyDate ?? '',
  };
}

/** "20240131" as the dashboard writes it. */
const dashDate = (d: string): string => `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}`;
/** "DOE^JOHN" as the dashboard writes it. */
const dashName = (n: string): string => {
  const [family, given] = n.split('^');
  return [family, given].filter(Boolean).join(', ');
};

const row = (page: Page, id: string, state?: string) =>
  page.locator(`li.job[data-job-id="${id}"]${state ? `[data-state="${state}"]` : ''}`);

describe('dashboard job rows and pages', { skip, timeout: 300_000 }, () => {
  let pair: Pair;
  let work: string;
  let first: StudyRef;
  let second: StudyRef;
  let browser: Awaited<ReturnType<typeof openBrowser>>;
  let downPort: number;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-ui-jobs-'));
    downPort = await freePort(); // nothing listens there
    pair = await startPair({
      common: { Transfers: { BucketSize: 64, Threads: 2 } },
      a: { Transfers: { RetryBudget: 120 }, OrthancPeers: { down: { Url: `http://127.0.0.1:${downPort}/` } } },
      aliasesOfB: { bpull: { RemoteSelf: 'a' } },
    });
    first = await addStudy(pair.a.url, work, 41, 'ROWS^ALICE', 6);
    second = await addStudy(pair.a.url, work, 42, 'ROWS^BRUNO', 12);
    browser = await openBrowser();
  });

  after(async () => {
    await browser?.context.close();
    if (browser) await rm(browser.dir, { recursive: true, force: true });
    await pair?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('a running row names the patient, study, date and instances, and labels its data and wire rates as the header does', async () => {
    const { page } = browser;
    const gate = pair.toB.hold({ method: 'PUT', skip: 2 });
    let id = '';
    try {
      const a = await postJson(pair.a.url, '/transfers/send', {
        Resources: [{ Level: 'Study', ID: second.study }],
        Compression: 'gzip',
        Peer: 'b',
      });
      assert.equal(a.status, 200, a.body.toString());
      id = json<{ ID: string }>(a).ID;
      await gate.waitHeld(1, STEP_MS);
      await page.goto(`${pair.a.url}/ui/#/transfers`);
      const r = row(page, id, 'Running');
      await r.waitFor();
      const about = r.locator('.job-about');
      await page.waitForFunction((el) => (el?.textContent ?? '') !== '', await about.elementHandle());
      assert.equal(await about.textContent(), `${dashName(second.patientName)} · ${second.description} · ${dashDate(second.date)}`);
      assert.equal(await r.locator('[data-figure="instances"]').textContent(), `${second.count} instances`);
      assert.match((await r.locator('[data-figure="data-rate"]').textContent()) ?? '', /^data \d/);
      assert.match((await r.locator('[data-figure="wire-rate"]').textContent()) ?? '', /^wire \d/);
      assert.match((await page.locator('#live-rate').textContent()) ?? '', /^wire ↑ /);
      // The job page labels the same two rates.
      await page.goto(`${pair.a.url}/ui/#/jobs/${id}`);
      await page.locator('[data-fact="data-rate"] dt', { hasText: 'Data rate now' }).waitFor();
      await page.locator('[data-fact="wire-rate"] dt', { hasText: 'Wire rate now' }).waitFor();
    } finally {
      gate.release();
      pair.toB.clearRules();
    }
    await waitJob(pair.a.url, id);
    // Finished: the row says how long it took; the job page names the patient and study.
    await page.goto(`${pair.a.url}/ui/#/transfers`);
    const done = row(page, id, 'Success');
    await done.waitFor();
    const job = await getJson<JobJson & { EffectiveRuntime: number }>(pair.a.url, `/jobs/${id}`);
    assert.match((await done.locator('[data-figure="time"]').textContent()) ?? '', /^took \d+(\.\d)? (s|min)/);
    await page.goto(`${pair.a.url}/ui/#/jobs/${id}`);
    await page.locator('[data-fact="patient"] dd', { hasText: dashName(second.patientName) }).waitFor();
    assert.equal(await page.locator('[data-fact="study"] dd').textContent(), second.description);
    assert.equal(await page.locator('[data-fact="study-date"] dd').textContent(), dashDate(second.date));
    assert.ok(job.EffectiveRuntime > 0);
    await page.locator('[data-fact="took"] dd').waitFor();
    assert.deepEqual(browser.errors, []);
  });

  test('a job waiting for a peer that is down says why on its row and page; a failed row says why it failed', async () => {
    const { page } = browser;
    const a = await postJson(pair.a.url, '/transfers/send', {
      Resources: [{ Level: 'Study', ID: first.study }],
      Compression: 'gzip',
      Peer: 'down',
    });
    assert.equal(a.status, 200, a.body.toString());
    const id = json<{ ID: string }>(a).ID;
    await page.goto(`${pair.a.url}/ui/#/transfers`);
    const note = row(page, id, 'Running').locator('.job-note[data-note="waiting"]');
    await note.waitFor();
    assert.match((await note.textContent()) ?? '', /^Waiting: down does not answer: connection refused; next try in /);
    await page.goto(`${pair.a.url}/ui/#/jobs/${id}`);
    await page.locator('[data-waiting="job"]', { hasText: 'down does not answer: connection refused' }).waitFor();
    // Canceled: the row gives the reason instead.
    const c = await postJson(pair.a.url, `/jobs/${id}/cancel`, '');
    assert.equal(c.status, 200);
    await page.goto(`${pair.a.url}/ui/#/transfers`);
    const failed = row(page, id, 'Failure').locator('.job-note[data-note="failed"]');
    await failed.waitFor();
    assert.equal(await failed.textContent(), 'Canceled by a user.');
  });

  test('a send in pull mode shows as a job on the sending node, followed to Success', async () => {
    const { page } = browser;
    const a = await postJson(pair.a.url, '/transfers/send', {
      Resources: [{ Level: 'Study', ID: first.study }],
      Compression: 'gzip',
      Peer: 'bpull',
    });
    assert.equal(a.status, 200, a.body.toString());
    const handle = json<{ RemoteJob: string }>(a);
    const mine = (await getJson<JobJson[]>(pair.a.url, '/jobs?expand')).find((j) => j.Content.RemoteJob === handle.RemoteJob);
    assert.ok(mine);
    await page.goto(`${pair.a.url}/ui/#/transfers`);
    const r = row(page, mine.ID, 'Success');
    await r.waitFor();
    assert.equal(await r.locator('.job-title').textContent(), 'Send to bpull (pulled by bpull)');
    assert.equal(await r.locator('[data-figure="instances"]').textContent(), `${first.count} instances`);
  });
});
