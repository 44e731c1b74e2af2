// A DICOMweb client from npm (dicomweb-client, built for browsers on XMLHttpRequest) in Debian's chromium, on a
// page of the node's origin: it searches, reads metadata and retrieves an instance from the node's /dicom-web/,
// and what it gets is compared with the files.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { BrowserContext } from 'playwright-core';
import { type Chromium, chromiumSkip, launchChromium } from '../helpers/browser.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { filesUnder, md5, stowBody } from '../helpers/dicomweb.ts';
import { REPO, startXferNode, type XferNode } from '../helpers/node.ts';

const CLIENT = join(REPO, 'node_modules', 'dicomweb-client', 'build', 'dicomweb-client.js');
const STEP_MS = 30_000;

/** What the page's script found, through dicomweb-client. */
interface Found {
  studies: number;
  patientName: string;
  studyUid: string;
  metadata: number;
  sops: string[];
  instanceBase64: string;
  error?: string;
}

/**
 * The page: dicomweb-client from its UMD build, then a search, the study's metadata and one instance, left in
 * window.found. Served at the node's origin by the browser's request interception (see the test), so that the
 * calls to /dicom-web/ are same-origin calls to the real node.
 */
const PAGE = `<!doctype html><html><head><title>dicomweb</title><script src="/dicomweb-client-test.js"></script></head><body>
<script>
(async () => {
  try {
    const client = new DICOMwebClient.api.DICOMwebClient({ url: location.origin + '/dicom-web' });
    const studies = await client.searchForStudies({ queryParams: { PatientName: 'BRAIN*' } });
    const studyInstanceUID = studies[0]['0020000D'].Value[0];
    const metadata = await client.retrieveStudyMetadata({ studyInstanceUID });
    const first = metadata[0];
    const seriesInstanceUID = first['0020000E'].Value[0];
    const sopInstanceUID = first['00080018'].Value[0];
    const bytes = new Uint8Array(await client.retrieveInstance({ studyInstanceUID, seriesInstanceUID, sopInstanceUID }));
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    window.found = {
      studies: studies.length,
      patientName: studies[0]['00100010'].Value[0].Alphabetic,
      studyUid: studyInstanceUID,
      metadata: metadata.length,
      sops: metadata.map((m) => m['00080018'].Value[0]),
      instanceBase64: btoa(binary),
    };
  } catch (e) {
    window.found = { error: String(e && e.message || e) };
  }
})();
</script></body></html>`;

describe('dicomweb-client in a browser against the node', {
  skip: chromiumSkip() || needs(REAL_DICOM),
}, () => {
  let node: XferNode;
  let browser: Chromium | undefined;
  let context: BrowserContext;
  let files: Buffer[];

  before(async () => {
    node = await startXferNode();
    files = await Promise.all((await filesUnder(join(REAL_DICOM, 'Brainix', 'Flair'))).map((f) => readFile(f)));
    const { body, contentType } = stowBody(files);
    const r = await fetch(`${node.url}/dicom-web/studies`, {
      method: 'POST',
      body: body as BodyInit,
      headers: { 'content-type': contentType },
    });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    browser = await launchChromium('dicomweb');
    context = browser.context;
  });
  after(async () => {
    await browser?.close();
    await node?.stop();
  });

  test('searchForStudies, retrieveStudyMetadata and retrieveInstance give the stored study and its bytes', async () => {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(STEP_MS);
    const client = await readFile(CLIENT);
    // Only the page and the library are served by the browser itself; every /dicom-web/ call goes to the node.
    await page.route(`${node.url}/dicomweb-test.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: PAGE }));
    await page.route(`${node.url}/dicomweb-client-test.js`, (r) =>
      r.fulfill({ status: 200, contentType: 'text/javascript', body: client }),
    );
    const calls: string[] = [];
    page.on('response', (r) => {
      if (r.url().includes('/dicom-web/')) calls.push(`${r.status()} ${new URL(r.url()).pathname.split('/').slice(2, 3).join('')}`);
    });
    await page.goto(`${node.url}/dicomweb-test.html`);
    await page.waitForFunction(() => (window as unknown as { found?: unknown }).found !== undefined, undefined, { timeout: STEP_MS });
    const found = (await page.evaluate(() => (window as unknown as { found: unknown }).found)) as Found;
    assert.equal(found.error, undefined);
    assert.equal(found.studies, 1);
    assert.equal(found.patientName, 'BRAINIX');
    assert.equal(found.metadata, files.length);
    assert.equal(new Set(found.sops).size, files.length);
    const bytes = Buffer.from(found.instanceBase64, 'base64');
    assert.ok(
      files.some((f) => md5(f) === md5(bytes)),
      'the instance retrieved is one of the files, byte for byte',
    );
    assert.ok(
      calls.every((c) => c.startsWith('200')),
      calls.join(', '),
    );
    assert.equal(calls.length, 3);
  });
});
