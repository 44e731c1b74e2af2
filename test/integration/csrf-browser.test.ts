// Cross-site request forgery against a default node (loopback, no authentication), tried by a real
// browser: a page served by a second loopback server (another port, so another origin) stores a forged
// DICOM with a no-cors fetch, starts a push with a text/plain no-cors fetch, and posts a form to the
// dashboard's /ui/api/send. Nothing may be stored or started.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { startXferNode, type XferNode } from '../helpers/node.ts';

const CHROMIUM = '/usr/bin/chromium';
const REAL = REAL_DICOM;
const STEP_MS = 30_000;

/** The attacker's page: three forged requests, then a title that says they were all sent. */
function attackPage(node: string, study: string): string {
  const query = { Resources: [{ Level: 'Study', ID: study }], Peer: 'B', Compression: 'none' };
  // text/plain form encoding writes `name=value`: the name opens a JSON object, the value closes it.
  const formName = JSON.stringify({ ...query, SenderTransferID: 'a' }).slice(0, -2);
  return `<!doctype html><html><head><title>attack</title></head><body>
<iframe name="sink" id="sink"></iframe>
<form id="f" method="POST" action="${node}/ui/api/send" enctype="text/plain" target="sink">
  <input type="hidden" name='${formName}' value='b"}'>
</form>
<script>
(async () => {
  const forged = await (await fetch('/forged.dcm')).arrayBuffer();
  await fetch('${node}/instances', { method: 'POST', mode: 'no-cors', body: forged }).catch(() => undefined);
  await fetch('${node}/transfers/send', {
    method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
    body: ${JSON.stringify(JSON.stringify(query))},
  }).catch(() => undefined);
  await new Promise((resolve) => {
    document.getElementById('sink').addEventListener('load', resolve, { once: true });
    document.getElementById('f').submit();
  });
  document.title = 'sent';
})();
</script></body></html>`;
}

describe('a page of another origin cannot change the node', {
  skip: (!existsSync(CHROMIUM) && `${CHROMIUM} is missing`) || needs(REAL_DICOM),
}, () => {
  let a: XferNode;
  let b: XferNode;
  let attacker: Server;
  let context: BrowserContext;
  let profile: string;
  let study: string;

  before(async () => {
    b = await startXferNode();
    a = await startXferNode({ config: { OrthancPeers: { B: [b.url] } } });
    // A study to push, stored by a script (no Origin: a non-browser client).
    const up = await fetch(`${a.url}/instances`, { method: 'POST', body: await readFile(join(REAL, 'DummyCT.dcm')) });
    assert.equal(up.status, 200);
    study = ((await up.json()) as { ParentStudy: string }).ParentStudy;
    const forged = await readFile(join(REAL, 'ColorTestMalaterre.dcm'));
    const page = attackPage(a.url, study);
    attacker = createServer((req, res) => {
      if (req.url === '/forged.dcm') res.writeHead(200, { 'Content-Type': 'application/dicom' }).end(forged);
      else res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page);
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', () => r()));
    profile = await mkdtemp(join(tmpdir(), 'dx-csrf-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
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
    });
  });
  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await new Promise<void>((r) => (attacker ? attacker.close(() => r()) : r()));
    await a?.stop();
    await b?.stop();
  });

  test('no-cors DICOM upload, text/plain push and form post to /ui/api/send store and start nothing', async () => {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(STEP_MS);
    const refused: number[] = [];
    page.on('response', (r) => {
      if (r.url().startsWith(a.url) && r.request().method() === 'POST') refused.push(r.status());
    });
    const port = (attacker.address() as AddressInfo).port;
    await page.goto(`http://127.0.0.1:${port}/attack.html`);
    await page.waitForFunction(() => document.title === 'sent', undefined, { timeout: STEP_MS });
    // The three requests reached the node (this is no test of the browser's own policy) and were refused.
    assert.deepEqual(refused.sort(), [403, 403, 403]);
    assert.equal(((await (await fetch(`${a.url}/instances`)).json()) as string[]).length, 1);
    assert.deepEqual(await (await fetch(`${a.url}/jobs`)).json(), []);
    assert.deepEqual(await (await fetch(`${b.url}/instances`)).json(), []);
  });
});
