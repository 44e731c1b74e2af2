// The REST API of the routing rules on a real node: GET, PUT and DELETE /routes/{name}, bad input refused
// in Orthanc's error shape with nothing changed, rules written through the API kept across a restart over
// the file's, and a file rule naming no peer or modality refused at start.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { serveFails } from '../helpers/cli.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { call, getJson, json, listFiles, type Answer, type JobJson } from '../helpers/transfer-nodes.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

const put = (base: string, name: string, body: unknown) =>
  call(base, 'PUT', `/routes/${name}`, typeof body === 'string' ? body : JSON.stringify(body));

/** Asserts an answer in Orthanc's JSON error shape with this status. */
function assertOrthancError(a: Answer, status: number, details?: RegExp): Record<string, unknown> {
  assert.equal(a.status, status, a.body.toString());
  const e = json(a);
  assert.equal(e['HttpStatus'], status);
  for (const k of ['HttpError', 'Message', 'Method', 'Uri', 'OrthancError', 'OrthancStatus']) assert.ok(k in e, `${k} in ${a.body}`);
  if (details) assert.match(String(e['Details'] ?? e['Message']), details);
  return e;
}

describe('the routing rules REST API', { timeout: 120_000 }, () => {
  let node: XferNode;
  let port: number;
  let config: Record<string, unknown>;

  before(async () => {
    port = await freePort();
    const closed = await freePort();
    config = {
      OrthancPeers: { site: [`http://127.0.0.1:${closed}/`], backup: [`http://127.0.0.1:${closed}/`] },
      DicomModalities: { pacs: ['PACS', '127.0.0.1', closed] },
      Routes: [
        { Name: 'from-file', Send: ['site'] },
        { Name: 'file-deleted', Send: ['site'], When: 'Instance' },
      ],
    };
    node = await startXferNode({ port, config });
  });
  after(async () => {
    await node?.stop();
  });

  test('GET /routes lists the file rules with their defaults and figures', async () => {
    const all = await getJson<Record<string, unknown>[]>(node.url, '/routes');
    assert.deepEqual(
      all.map((r) => r['Name']),
      ['from-file', 'file-deleted'],
    );
    const r = all[0] as Record<string, unknown>;
    assert.deepEqual(
      { When: r['When'], Compression: r['Compression'], Priority: r['Priority'], Alternate: r['Alternate'], Source: r['Source'] },
      { When: 'StableStudy', Compression: 'gzip', Priority: 0, Alternate: [], Source: 'file' },
    );
    assert.equal(r['DeleteAfterSend'], false);
    assert.equal(r['StorageCommitment'], true);
    assert.equal(r['QueuedInstances'], 0);
    assert.deepEqual(r['InFlightJobs'], []);
  });

  test('PUT creates and replaces a rule; GET answers it; DELETE removes it', async () => {
    const body = { When: 'StableSeries', Match: { Modality: 'CT', CallingAet: 'SCANNER*' }, Send: ['pacs'], Alternate: ['backup'] };
    const created = await put(node.url, 'ct-out', body);
    assert.equal(created.status, 200, created.body.toString());
    assert.equal(json(created)['Name'], 'ct-out');
    const got = await getJson<Record<string, unknown>>(node.url, '/routes/ct-out');
    assert.deepEqual(got['Match'], { Modality: 'CT', CallingAet: 'SCANNER*' });
    assert.equal(got['Source'], 'api');
    const replaced = await put(node.url, 'ct-out', { ...body, Name: 'ct-out', Priority: 5 });
    assert.equal(replaced.status, 200);
    assert.equal((await getJson<Record<string, unknown>>(node.url, '/routes/ct-out'))['Priority'], 5);
    const del = await call(node.url, 'DELETE', '/routes/ct-out');
    assert.equal(del.status, 200);
    assertOrthancError(await call(node.url, 'GET', '/routes/ct-out'), 404);
  });

  test('bad rules are refused with a 400 naming the problem, and change nothing', async () => {
    const before = (await call(node.url, 'GET', '/routes')).body.toString();
    assertOrthancError(await put(node.url, 'x', { Send: ['nowhere'] }), 400, /routing rule "x": "nowhere" is neither a peer/);
    assertOrthancError(await put(node.url, 'x', { Send: [] }), 400, /Send/);
    assertOrthancError(await put(node.url, 'x', { Send: ['site'], When: 'Sometimes' }), 400, /When/);
    assertOrthancError(await put(node.url, 'x', { Send: ['site'], Match: { Origin: 'fax' } }), 400, /Origin/);
    assertOrthancError(await put(node.url, 'x', { Send: ['site'], Bogus: 1 }), 400);
    assertOrthancError(await put(node.url, 'x', { Send: ['site'], Name: 'y' }), 400, /differs/);
    assertOrthancError(await put(node.url, 'x', '{not json'), 400);
    assertOrthancError(await put(node.url, 'x', '[]'), 400);
    assertOrthancError(await call(node.url, 'DELETE', '/routes/none'), 404);
    assertOrthancError(await call(node.url, 'GET', '/routes/..%2Fetc'), 404);
    assert.equal((await call(node.url, 'GET', '/routes')).body.toString(), before);
  });

  test('a rule to a DICOM modality submits a DicomModalityStore job that names the rule', { skip: needs(REAL_DICOM) }, async () => {
    assert.equal((await put(node.url, 'to-pacs', { When: 'Instance', Send: ['pacs'], Match: { PatientName: 'PHENIX' } })).status, 200);
    const file = (await listFiles(join(REAL_DICOM, 'Phenix')))[0] as string;
    assert.equal((await call(node.url, 'POST', '/instances', await readFile(file))).status, 200);
    // The modality is a closed port here: the job waits and says why (the C-STORE itself is tested elsewhere).
    let job: JobJson | undefined;
    await waitFor('the job to the modality to wait', async () => {
      job = (await getJson<JobJson[]>(node.url, '/jobs?expand')).find((j) => j.Content['Route'] === 'to-pacs');
      return typeof job?.Content['Waiting'] === 'string';
    });
    assert.equal(job?.Type, 'DicomModalityStore');
    assert.match(String(job?.Content['Waiting']), /modality "pacs"/);
    assert.equal((await call(node.url, 'POST', `/jobs/${job?.ID}/cancel`, '')).status, 200);
    assert.equal((await call(node.url, 'DELETE', '/routes/to-pacs')).status, 200);
  });

  test('rules written through the API outlive a restart, over the file', async () => {
    assert.equal((await put(node.url, 'from-file', { Send: ['backup'], Priority: 3 })).status, 200);
    assert.equal((await put(node.url, 'added', { Send: ['site'] })).status, 200);
    assert.equal((await call(node.url, 'DELETE', '/routes/file-deleted')).status, 200);
    await node.stop({ keep: true });
    node = await startXferNode({ port, dir: node.dir, config });
    const all = await getJson<Record<string, unknown>[]>(node.url, '/routes');
    assert.deepEqual(all.map((r) => [r['Name'], r['Source'], r['Send']]).sort(), [
      ['added', 'api', ['site']],
      ['from-file', 'api', ['backup']],
    ]);
  });

  test('a file rule that names no peer or modality stops the start, naming the rule and the name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-routes-'));
    try {
      const file = join(dir, 'config.json');
      await writeFile(file, JSON.stringify({ Routes: [{ Name: 'lost', Send: ['nowhere'] }] }));
      const run = await serveFails(['--port', '0', '--data', join(dir, 'data'), '--config', file]);
      assert.notEqual(run.code, 0);
      assert.match(run.stderr, /routing rule "lost": "nowhere" is neither a peer/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
