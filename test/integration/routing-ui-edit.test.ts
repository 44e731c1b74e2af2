// Editing the routing rules from the dashboard's Routes page in a real browser (Debian's Chromium through
// playwright-core) against a real node: create, edit, refusals shown with what was typed kept, delete with
// confirmation, a file rule taken over by the API, and a page of another origin refused.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { describe } from '../helpers/data.ts';
import { REPO, startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { call, getJson } from '../helpers/transfer-nodes.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(REPO, 'test-output', 'ui');
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`;

type Rule = {
  Name: string;
  When: string;
  Match: Record<string, string>;
  Send: string[];
  Alternate: string[];
  Compression: string;
  Priority: number;
  DeleteAfterSend: boolean;
  StorageCommitment: boolean;
  Source: string;
};

const FILE_RULE = { Name: 'from-file', When: 'Instance', Send: ['b'], Match: { Modality: 'CT' } };

describe('editing routing rules on the Routes page', { skip, timeout: 180_000 }, () => {
  let node: XferNode;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let other: Server | undefined;
  const errors: string[] = [];

  const rules = () => getJson<Rule[]>(node.url, '/routes');
  const rule = async (name: string) => (await rules()).find((r) => r.Name === name);
  const card = (name: string) => page.locator(`article[data-route="${name}"]`);
  const focusedId = () => page.evaluate(() => document.activeElement?.id ?? '');
  /** Opens the form with the New rule button or a card's Edit button; the form appears once the destinations are read. */
  const openForm = async (button: ReturnType<Page['locator']>) => {
    await button.click();
    await page.locator('.rule-form').waitFor();
  };

  before(async () => {
    // Destinations need only exist by name: nothing arrives, so nothing is sent.
    const closed = await freePort();
    node = await startXferNode({
      config: {
        OrthancPeers: { b: [`http://127.0.0.1:${closed}/`], c: [`http://127.0.0.1:${closed}/`] },
        DicomModalities: { pacs: ['PACS', '127.0.0.1', closed] },
        Routes: [FILE_RULE],
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
    await page.goto(`${node.url}/ui/#/routes`);
    await card('from-file').waitFor();
  });
  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await new Promise((r) => (other ? other.close(r) : r(undefined)));
    await node?.stop();
  });

  test('a rule created through the form is in GET /routes with every field', async () => {
    await openForm(page.locator('[data-action="new"]'));
    assert.equal(await focusedId(), 'rule-name');
    await page.fill('#rule-name', 'ct-out');
    await page.selectOption('#rule-when', 'StableSeries');
    await page.click('[data-action="add-match"]');
    await page.locator('.match-row').last().getByLabel('Tag', { exact: true }).fill('Modality');
    await page.locator('.match-row').last().getByLabel('Pattern', { exact: true }).fill('CT');
    await page.fill('#rule-origin', 'dicom');
    await page.fill('#rule-calling-aet', 'SCANNER*');
    await page.check('#rule-send input[value="b"]');
    await page.check('#rule-send input[value="pacs"]');
    await page.check('#rule-alternate input[value="c"]');
    await page.selectOption('#rule-compression', 'none');
    await page.fill('#rule-priority', '3');
    await page.check('#rule-delete-after-send');
    await page.uncheck('#rule-storage-commitment');
    await page.getByRole('button', { name: 'Create' }).click();
    await card('ct-out').waitFor();
    assert.equal(await page.locator('.rule-form').count(), 0);
    assert.deepEqual(await rule('ct-out'), {
      ...(await rule('ct-out')),
      Name: 'ct-out',
      When: 'StableSeries',
      Match: { Modality: 'CT', Origin: 'dicom', CallingAet: 'SCANNER*' },
      Send: ['b', 'pacs'],
      Alternate: ['c'],
      Compression: 'none',
      Priority: 3,
      DeleteAfterSend: true,
      StorageCommitment: false,
      Source: 'api',
    });
    assert.equal(await card('ct-out').locator('.badge').textContent(), 'set through the API');
  });

  test('an edit of Send and of a Match pattern is what GET /routes then answers', async () => {
    await openForm(card('ct-out').getByRole('button', { name: 'Edit ct-out' }));
    assert.equal(await page.inputValue('#rule-name'), 'ct-out');
    assert.equal(await page.locator('#rule-name').getAttribute('readonly'), '');
    await page.uncheck('#rule-send input[value="b"]');
    await page.check('#rule-send input[value="c"]');
    await page.locator('.match-row').first().getByLabel('Pattern', { exact: true }).fill('MR');
    await page.getByRole('button', { name: 'Save' }).click();
    await card('ct-out').locator('[data-fact="match"]', { hasText: 'Modality = MR' }).waitFor();
    const r = await rule('ct-out');
    assert.deepEqual(r?.Send, ['c', 'pacs']);
    assert.deepEqual(r?.Match, { Modality: 'MR', Origin: 'dicom', CallingAet: 'SCANNER*' });
    assert.equal(r?.Priority, 3);
  });

  test("a bad Origin shows the node's message by the field, keeps what was typed and changes nothing", async () => {
    const before = await rules();
    await openForm(card('ct-out').getByRole('button', { name: 'Edit ct-out' }));
    await page.fill('#rule-origin', 'scanner');
    await page.fill('#rule-calling-aet', 'CHANGED');
    await page.getByRole('button', { name: 'Save' }).click();
    const box = page.locator('[data-error="rule"]');
    await box.locator('[data-details]', { hasText: 'Origin: expected "dicom", "rest", "peer:NAME" or "peer:*", got "scanner"' }).waitFor();
    assert.match(String(await box.textContent()), /Bad request/);
    assert.equal(await focusedId(), 'rule-origin');
    assert.equal(await page.locator('#rule-origin').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.inputValue('#rule-origin'), 'scanner');
    assert.equal(await page.inputValue('#rule-calling-aet'), 'CHANGED');
    assert.deepEqual(
      (await rules()).map(({ Name, Match, Send }) => ({ Name, Match, Send })),
      before.map(({ Name, Match, Send }) => ({ Name, Match, Send })),
    );
    // No destination at all: the node's message, the focus on the first box of Send.
    await page.uncheck('#rule-send input[value="c"]');
    await page.uncheck('#rule-send input[value="pacs"]');
    await page.fill('#rule-origin', 'dicom');
    await page.getByRole('button', { name: 'Save' }).click();
    await box.locator('[data-details]', { hasText: 'Send: at least one destination' }).waitFor();
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.name), 'Send');
    assert.equal(await page.locator('#rule-origin').getAttribute('aria-invalid'), null);
    await mkdir(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'routes-edit-refused.png'), fullPage: true });
    assert.deepEqual((await rule('ct-out'))?.Send, ['c', 'pacs']);
    await page.click('[data-action="cancel"]');
    assert.equal(await page.locator('.rule-form').count(), 0);
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset['action']), 'edit');
  });

  test('a destination gone since the form opened is refused by name, and no rule is made', async () => {
    const peer = await call(node.url, 'PUT', '/peers/gone', JSON.stringify({ Url: 'http://127.0.0.1:9/' }), {
      'Content-Type': 'application/json',
    });
    assert.equal(peer.status, 200, peer.body.toString());
    await openForm(page.locator('[data-action="new"]'));
    await page.locator('#rule-send input[value="gone"]').waitFor();
    const removed = await call(node.url, 'DELETE', '/peers/gone');
    assert.equal(removed.status, 200, removed.body.toString());
    await page.fill('#rule-name', 'late');
    await page.check('#rule-send input[value="gone"]');
    await page.getByRole('button', { name: 'Create' }).click();
    const details = page.locator('[data-error="rule"] [data-details]');
    await details.waitFor();
    assert.match(String(await details.textContent()), /"gone" is neither a peer \(OrthancPeers\) nor a modality/);
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.value), 'gone');
    assert.equal(await page.inputValue('#rule-name'), 'late');
    assert.equal(await rule('late'), undefined);
    // A name in use is not replaced by a new rule: the form says so at the name.
    await page.fill('#rule-name', 'ct-out');
    await page.uncheck('#rule-send input[value="gone"]');
    await page.check('#rule-send input[value="b"]');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('[data-error="rule"] [data-details]', { hasText: 'a rule "ct-out" exists' }).waitFor();
    assert.equal(await focusedId(), 'rule-name');
    assert.deepEqual((await rule('ct-out'))?.Send, ['c', 'pacs']);
    await page.click('[data-action="cancel"]');
  });

  test('a file rule edited becomes an API rule, and says so before', async () => {
    assert.equal((await rule('from-file'))?.Source, 'file');
    await openForm(card('from-file').getByRole('button', { name: 'Edit from-file' }));
    await page.locator('.rule-form [data-source="file"]', { hasText: 'comes from the configuration file' }).waitFor();
    await page.fill('#rule-priority', '7');
    await page.getByRole('button', { name: 'Save' }).click();
    await card('from-file').locator('.badge', { hasText: 'set through the API' }).waitFor();
    const r = await rule('from-file');
    assert.equal(r?.Source, 'api');
    assert.equal(r?.Priority, 7);
    assert.deepEqual(
      { Match: r?.Match, Send: r?.Send, When: r?.When },
      { Match: FILE_RULE.Match, Send: FILE_RULE.Send, When: FILE_RULE.When },
    );
  });

  test('the form fits at 390 px wide and Escape leaves it', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      await openForm(page.locator('[data-action="new"]'));
      await page.click('[data-action="add-match"]');
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `the page is ${width} px wide`);
      await page.screenshot({ path: join(SHOTS, 'narrow-routes-edit.png'), fullPage: true });
      // Escape leaves the form like Cancel, the focus back on the button that opened it.
      await page.focus('#rule-priority');
      await page.keyboard.press('Escape');
      await page.locator('.rule-form').waitFor({ state: 'detached' });
      assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset['action']), 'new');
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });

  test('delete asks first: declined keeps the rule, accepted deletes it', async () => {
    const asked: string[] = [];
    page.once('dialog', (d) => {
      asked.push(d.message());
      void d.dismiss();
    });
    await card('ct-out').getByRole('button', { name: 'Delete ct-out' }).click();
    assert.match(asked[0] ?? '', /Delete the routing rule "ct-out"\?/);
    assert.notEqual(await rule('ct-out'), undefined);
    page.once('dialog', (d) => void d.accept());
    await card('ct-out').getByRole('button', { name: 'Delete ct-out' }).click();
    await card('ct-out').waitFor({ state: 'detached' });
    assert.equal(await rule('ct-out'), undefined);
    assert.deepEqual(errors, []);
  });

  test('a page of another origin cannot write a rule through the browser', async () => {
    // localhost and 127.0.0.1 are different origins: the form below is another site's page posting to the node.
    const target = `${node.url}/routes/evil?_method=PUT`;
    const html =
      `<form method="post" enctype="text/plain" action="${target}">` +
      `<input name='{"Send":["b"],"x":"' value='"}'><button>go</button></form>`;
    other = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end(html));
    await new Promise<void>((r) => other?.listen(0, '127.0.0.1', r));
    const address = other.address();
    assert.ok(address && typeof address === 'object');
    await page.goto(`http://localhost:${address.port}/`);
    const [answer] = await Promise.all([page.waitForResponse((r) => r.url() === target), page.click('button')]);
    assert.equal(answer.status(), 403);
    const body = (await answer.json()) as { Message: string; Details: string };
    assert.equal(body.Message, 'Access to a resource is forbidden');
    assert.match(body.Details, /cross-site request refused/);
    assert.equal(await rule('evil'), undefined);
  });
});
