// End-to-end transfers with the Orthanc store, against real Orthanc 1.10.1 servers: Orthanc A with
// dicom-xfer A beside it sends every real test file and a generated set (with instances split into
// buckets) to dicom-xfer B (embedded store) and to Orthanc B with dicom-xfer B' beside it, in push and in
// pull mode; the destination holds the source's bytes. A transfer that Orthanc B refuses half way leaves
// Orthanc B as it was.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { orthancIds } from '../../src/dicom/ids.ts';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { makePatient, makeSeries, makeStudy, writeCtSlice, writeMultiframe } from '../../src/generate/index.ts';
import { mapLimit } from '../../src/util/concurrency.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM, listFiles } from '../helpers/data.ts';

const REAL = REAL_DICOM;
/** KB: small, so that the generated multi-frames are split into several buckets. */
const BUCKET_KB = 1024;

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  assert.equal(r.status, 200, `GET ${url}: ${r.status} ${await r.clone().text()}`);
  return (await r.json()) as T;
}

async function postJson<T>(url: string, body: unknown): Promise<T> {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(r.status, 200, `POST ${url}: ${r.status} ${await r.clone().text()}`);
  return (await r.json()) as T;
}

/** Polls a job until it ends (at most 5 minutes); its final JSON. */
async function waitJob(node: XferNode, id: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 300_000;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    const job = await getJson<Record<string, unknown>>(`${node.url}/jobs/${id}`);
    if (job['State'] === 'Success' || job['State'] === 'Failure') return job;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`job ${id} on ${node.url} did not end in time`);
}

/** Instance ID -> MD5, as a server with Orthanc's REST API reports them. */
async function md5s(base: string): Promise<Map<string, string>> {
  const ids = await getJson<string[]>(`${base}/instances`);
  const out = new Map<string, string>();
  await mapLimit(ids, 8, async (id) => {
    const r = await fetch(`${base}/instances/${id}/attachments/dicom/md5`);
    assert.equal(r.status, 200);
    out.set(id, (await r.text()).trim());
  });
  return out;
}

/** Deletes every patient of a server with Orthanc's REST API. */
async function clear(base: string): Promise<void> {
  for (const id of await getJson<string[]>(`${base}/patients`)) {
    const r = await fetch(`${base}/patients/${id}`, { method: 'DELETE' });
    assert.equal(r.status, 200);
  }
  assert.deepEqual(await getJson<string[]>(`${base}/instances`), []);
}

describe('transfers with the Orthanc store', { skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM) }, () => {
  let work: string;
  let orthancA: OrthancServer;
  let orthancB: OrthancServer;
  let xferA: XferNode;
  let xferB: XferNode;
  let xferBO: XferNode;
  /** What Orthanc A holds apart from the refusal study: instance ID -> MD5. */
  let expected: Map<string, string>;
  let patients: { Level: 'Patient'; ID: string }[];
  /** The generated study that Orthanc B's filter refuses one instance of, sorted by instance ID. */
  let refusal: { study: string; ids: string[]; bytes: Buffer[] };
  let splitIds: string[];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-ostore-xfer-'));
    // The generated set: a CT series and two multi-frames above 2 x BucketSize (one below and one above
    // the size where the store reads ranges through a local copy).
    const gen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const p = join(work, `ct${i}.dcm`);
      await writeCtSlice(p, { seed: 9001, index: i, slices: 4 });
      gen.push(p);
    }
    for (const [name, frames] of [
      ['mf-small.dcm', 6],
      ['mf-big.dcm', 24],
    ] as const) {
      const p = join(work, name);
      await writeMultiframe(p, { seed: frames === 6 ? 9002 : 9003, frames });
      gen.push(p);
    }
    splitIds = [];
    for (const p of gen.slice(4)) splitIds.push(orthancIds(await readDicomHeaderFromFile(p)).instance);
    // The refusal study: six slices of one patient; the filter refuses the last of them in ID order.
    const patient = makePatient(9100, 0);
    const study = makeStudy(9100, patient, 0, 'REFUSAL TEST');
    const series = makeSeries(study, 1, 'REFUSAL SERIES');
    const slices: { path: string; id: string; uid: string; studyId: string }[] = [];
    for (let i = 0; i < 6; i++) {
      const p = join(work, `refusal${i}.dcm`);
      const w = await writeCtSlice(p, { seed: 9100, index: i, slices: 6, patient, study, series });
      const ids = orthancIds(await readDicomHeaderFromFile(p));
      slices.push({ path: p, id: ids.instance, uid: w.sopInstanceUid, studyId: ids.study });
    }
    slices.sort((a, b) => (a.id < b.id ? -1 : 1));
    const refused = slices[slices.length - 1] as (typeof slices)[number];
    const lua = join(work, 'filter.lua');
    await writeFile(lua, `function ReceivedInstanceFilter(dicom, origin, info)\n  return dicom.SOPInstanceUID ~= '${refused.uid}'\nend\n`);

    [orthancA, orthancB] = await Promise.all([
      startOrthanc({ name: 'orthanc-a' }),
      startOrthanc({ name: 'orthanc-b', config: { LuaScripts: [lua] } }),
    ]);
    const [portA, portB, portBO] = await Promise.all([freePort(), freePort(), freePort()]);
    const url = (p: number) => `http://127.0.0.1:${p}/`;
    const transfers = { BucketSize: BUCKET_KB, CommitThreadsCount: 1, MaxHttpRetries: 0, RetryBudget: 0 };
    [xferA, xferB, xferBO] = await Promise.all([
      startXferNode({
        port: portA,
        extraArgs: ['--orthanc', orthancA.url],
        config: { Name: 'xfer-a', Transfers: transfers, OrthancPeers: { b: [url(portB)], bo: [url(portBO)] } },
      }),
      startXferNode({ port: portB, config: { Name: 'xfer-b', Transfers: transfers, OrthancPeers: { a: [url(portA)] } } }),
      startXferNode({
        port: portBO,
        extraArgs: ['--orthanc', orthancB.url],
        config: { Name: 'xfer-bo', Transfers: transfers, OrthancPeers: { a: [url(portA)] } },
      }),
    ]);

    // Orthanc A gets every real file it accepts and the generated set, one at a time.
    let accepted = 0;
    for (const p of [...(await listFiles(REAL)), ...gen, ...slices.map((s) => s.path)]) {
      const r = await fetch(`${orthancA.url}/instances`, { method: 'POST', body: (await readFile(p)) as BodyInit });
      await r.arrayBuffer();
      if (r.status === 200) accepted++;
    }
    assert.ok(accepted >= 230, `Orthanc A accepted ${accepted} files`);
    refusal = {
      study: refused.studyId,
      ids: slices.map((s) => s.id),
      bytes: await Promise.all(slices.map((s) => readFile(s.path))),
    };
    expected = await md5s(orthancA.url);
    for (const id of refusal.ids) expected.delete(id);
    const refusalPatient = orthancIds(await readDicomHeaderFromFile(refused.path)).patient;
    patients = (await getJson<string[]>(`${orthancA.url}/patients`))
      .filter((id) => id !== refusalPatient)
      .map((ID) => ({ Level: 'Patient' as const, ID }));
    for (const id of splitIds) assert.ok(expected.has(id), 'the split instances are in the transfer');
  });

  after(async () => {
    await Promise.all([xferA?.stop(), xferB?.stop(), xferBO?.stop()]);
    await Promise.all([orthancA?.stop(), orthancB?.stop()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function assertHolds(base: string, what: string): Promise<void> {
    const got = await md5s(base);
    assert.equal(got.size, expected.size, `${what}: ${got.size} instances, ${expected.size} expected`);
    for (const [id, sum] of expected) assert.equal(got.get(id), sum, `${what}: instance ${id}`);
  }

  async function push(peer: string, compression: 'none' | 'gzip', resources: unknown[]): Promise<Record<string, unknown>> {
    const handle = await postJson<{ ID: string }>(`${xferA.url}/transfers/send`, {
      Resources: resources,
      Peer: peer,
      Compression: compression,
    });
    return waitJob(xferA, handle.ID);
  }

  async function pull(node: XferNode, compression: 'none' | 'gzip', resources: unknown[]): Promise<Record<string, unknown>> {
    const handle = await postJson<{ ID: string }>(`${node.url}/transfers/pull`, {
      Resources: resources,
      Peer: 'a',
      Compression: compression,
    });
    return waitJob(node, handle.ID);
  }

  test('push from Orthanc A to the embedded store of dicom-xfer B', async () => {
    const job = await push('b', 'gzip', patients);
    assert.equal(job['State'], 'Success', JSON.stringify(job));
    await assertHolds(xferB.url, 'B after push');
  });

  test('pull from Orthanc A into the embedded store of dicom-xfer B', async () => {
    await clear(xferB.url);
    const job = await pull(xferB, 'none', patients);
    assert.equal(job['State'], 'Success', JSON.stringify(job));
    await assertHolds(xferB.url, 'B after pull');
  });

  test('push from Orthanc A to Orthanc B', async () => {
    const job = await push('bo', 'none', patients);
    assert.equal(job['State'], 'Success', JSON.stringify(job));
    await assertHolds(orthancB.url, 'Orthanc B after push');
  });

  test('pull from Orthanc A into Orthanc B', async () => {
    await clear(orthancB.url);
    const job = await pull(xferBO, 'gzip', patients);
    assert.equal(job['State'], 'Success', JSON.stringify(job));
    await assertHolds(orthancB.url, 'Orthanc B after pull');
  });

  test('a transfer that Orthanc B refuses half way leaves Orthanc B as it was, in push and in pull mode', async () => {
    // Two slices of the refusal study are in Orthanc B before; everything of the earlier pull too.
    for (const bytes of refusal.bytes.slice(0, 2)) {
      const r = await fetch(`${orthancB.url}/instances`, { method: 'POST', body: bytes as BodyInit });
      assert.equal(r.status, 200);
    }
    const before = await md5s(orthancB.url);
    for (const id of refusal.ids.slice(0, 2)) assert.ok(before.has(id));
    const resources = [{ Level: 'Study', ID: refusal.study }];

    const pushed = await push('bo', 'none', resources);
    assert.equal(pushed['State'], 'Failure');
    assert.deepEqual(await md5s(orthancB.url), before);

    const pulled = await pull(xferBO, 'none', resources);
    assert.equal(pulled['State'], 'Failure');
    // Both failed on the refused instance after storing the three before it, and removed those again.
    const refusedId = refusal.ids[refusal.ids.length - 1] as string;
    for (const job of [pushed, pulled]) {
      const details = String(job['ErrorDetails']);
      assert.ok(details.includes(refusedId) && details.includes('FilteredOut'), details);
      assert.ok(details.includes('the 3 instances this commit had stored were removed again'), details);
    }
    assert.deepEqual(await md5s(orthancB.url), before);
  });
});
