// A STOW-RS job that meets trouble, against a real Orthanc with Debian's DICOMweb plugin behind a counting
// proxy on loopback: the archive killed mid-job and back after a minute, the node itself stopped and started
// again mid-job, the token refused mid-job. Each time the job finishes, every instance arrives with its MD5,
// and no instance that the archive acknowledged is sent again (each acknowledged exactly once).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REAL_DICOM, describe, listFiles, needs } from '../helpers/data.ts';
import type { OrthancServer } from '../helpers/orthanc.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { jobEnd } from './dimse-scu-common.ts';
import {
  fileMd5,
  needsDicomWebOrthanc,
  postJson,
  startDicomWebOrthanc,
  startNode,
  startStowProxy,
  uploadAll,
  type StowProxy,
  type TestNode,
} from './dicomweb-client-common.ts';

/** The node's settings: one instance per request (each is larger than a bucket), two requests in flight. */
const TRANSFERS = { BucketSize: 64, Threads: 2, MaxThreads: 2, RetryBudget: 180 };

describe('STOW-RS jobs through outages, restarts and expired tokens', {
  skip: needs(REAL_DICOM) || needsDicomWebOrthanc(),
  timeout: 900_000,
}, () => {
  let dir: string;
  let port: number;
  let orthanc: OrthancServer;
  let paths: string[];

  const startArchive = () =>
    startDicomWebOrthanc({ config: { HttpPort: port, StorageDirectory: join(dir, 'storage'), IndexDirectory: join(dir, 'index') } });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-dweb-res-'));
    port = await freePort();
    orthanc = await startArchive();
    paths = [...(await listFiles(join(REAL_DICOM, 'Brainix'))), ...(await listFiles(join(REAL_DICOM, 'Knee')))];
  });

  after(async () => {
    await orthanc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Every instance in Orthanc with the node's MD5, each acknowledged once. */
  async function assertDelivered(node: TestNode, proxy: StowProxy, ids: Map<string, string>): Promise<void> {
    for (const id of ids.keys()) assert.equal(await fileMd5(orthanc.url, id), await fileMd5(node.url, id), id);
    const twice = proxy.acknowledged.filter((uid, k) => proxy.acknowledged.indexOf(uid) !== k);
    assert.deepEqual(twice, [], 'instances acknowledged, then sent again');
    assert.equal(proxy.acknowledged.length, ids.size);
    assert.equal(proxy.partsAnswered, ids.size);
  }

  async function clearArchive(): Promise<void> {
    for (const id of (await (await fetch(`${orthanc.url}/patients`)).json()) as string[]) {
      await fetch(`${orthanc.url}/patients/${id}`, { method: 'DELETE' });
    }
  }

  test('the archive killed mid-job and back a minute later: the job finishes, nothing acknowledged sent again', async () => {
    await clearArchive();
    const proxy = await startStowProxy(() => orthanc.url);
    const node = await startNode({ DicomWeb: { Servers: { archive: [`${proxy.url}/dicom-web/`] } }, Transfers: TRANSFERS });
    try {
      const ids = await uploadAll(node.url, paths);
      proxy.delayMs = 100;
      const r = await postJson(`${node.url}/dicom-web/servers/archive/stow`, { Resources: [...ids.keys()], Asynchronous: true });
      await waitFor('a few acknowledgements', async () => proxy.acknowledged.length >= 10, 60_000);
      process.kill(orthanc.pid, 'SIGKILL');
      await orthanc.stop().catch(() => undefined);
      const down = Date.now();
      await waitFor('the job to retry', async () => proxy.refused > 0, 30_000);
      // A minute of outage, bounded: the job waits within its RetryBudget.
      await new Promise((res) => setTimeout(res, Math.max(0, 60_000 - (Date.now() - down))));
      const during = (await (await fetch(`${node.url}/jobs/${String(r.json.ID)}`)).json()) as Record<string, unknown>;
      assert.equal(during.State, 'Running', JSON.stringify(during));
      assert.ok(Number((during.Content as Record<string, unknown>).Retries) > 0);
      orthanc = await startArchive();
      const job = await jobEnd(node.url, String(r.json.ID), 300_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertDelivered(node, proxy, ids);
    } finally {
      await node.close();
      await proxy.close();
    }
  });

  test('the node stopped mid-job and started again: the job resumes with what was not acknowledged', async () => {
    await clearArchive();
    const proxy = await startStowProxy(() => orthanc.url);
    const config = { DicomWeb: { Servers: { archive: [`${proxy.url}/dicom-web/`] } }, Transfers: TRANSFERS };
    let node = await startNode(config);
    try {
      const ids = await uploadAll(node.url, paths);
      proxy.delayMs = 100;
      const r = await postJson(`${node.url}/dicom-web/servers/archive/stow`, { Resources: [...ids.keys()], Asynchronous: true });
      await waitFor('a few acknowledgements', async () => proxy.acknowledged.length >= 10, 60_000);
      await node.close({ keep: true });
      const before = proxy.acknowledged.length;
      assert.ok(before < ids.size, 'the job was stopped before its end');
      node = await startNode(config, node.dir);
      const job = await jobEnd(node.url, String(r.json.ID), 300_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertDelivered(node, proxy, ids);
    } finally {
      await node.close();
      await proxy.close();
    }
  });

  test('a token refused mid-job is fetched again from BearerTokenCommand, and the job finishes', async () => {
    await clearArchive();
    const proxy = await startStowProxy(() => orthanc.url);
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'first-token\n');
    proxy.token = 'first-token';
    const server = { Url: `${proxy.url}/dicom-web/`, BearerTokenCommand: ['cat', tokenFile] };
    const node = await startNode({ DicomWeb: { Servers: { archive: server } }, Transfers: TRANSFERS });
    try {
      const ids = await uploadAll(node.url, paths);
      proxy.delayMs = 100;
      const r = await postJson(`${node.url}/dicom-web/servers/archive/stow`, { Resources: [...ids.keys()], Asynchronous: true });
      await waitFor('a few acknowledgements', async () => proxy.acknowledged.length >= 10, 60_000);
      // The token expires: the archive takes only the new one, which the command now prints.
      await writeFile(tokenFile, 'second-token\n');
      proxy.token = 'second-token';
      const job = await jobEnd(node.url, String(r.json.ID), 300_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.ok(proxy.refused > 0, 'the old token was refused');
      await assertDelivered(node, proxy, ids);
    } finally {
      await node.close();
      await proxy.close();
    }
  });

  test('a retrieve with the node stopped mid-way resumes: the instances already stored are not fetched again', async () => {
    const studies = (await (await fetch(`${orthanc.url}/studies?expand`)).json()) as {
      ID: string;
      MainDicomTags: { StudyInstanceUID: string };
    }[];
    const proxy = await startStowProxy(() => orthanc.url);
    const config = { DicomWeb: { Servers: { archive: [`${proxy.url}/dicom-web/`] } }, Transfers: TRANSFERS };
    let node = await startNode(config);
    try {
      proxy.delayMs = 100;
      const resources = studies.map((s) => ({ Study: s.MainDicomTags.StudyInstanceUID }));
      const r = await postJson(`${node.url}/dicom-web/servers/archive/retrieve`, { Resources: resources, Asynchronous: true });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const wado = () => proxy.fetched.filter((p) => /\/instances\/[0-9.]+$/.test(p));
      await waitFor('a few instances fetched', async () => wado().length >= 10, 60_000);
      await node.close({ keep: true });
      node = await startNode(config, node.dir);
      const job = await jobEnd(node.url, String(r.json.ID), 300_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      const all = (await (await fetch(`${orthanc.url}/instances`)).json()) as string[];
      for (const id of all) assert.equal(await fileMd5(node.url, id), await fileMd5(orthanc.url, id), id);
      // Only the requests in flight at the stop (two at most) may have been made twice.
      const again = wado().length - new Set(wado()).size;
      assert.ok(again <= TRANSFERS.MaxThreads, `${again} instances fetched twice`);
      assert.equal(new Set(wado()).size, all.length);
    } finally {
      await node.close();
      await proxy.close();
    }
  });
});
