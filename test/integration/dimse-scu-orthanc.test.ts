// The node as a DICOM client of a real Orthanc 1.10.1 (its DICOM port, loopback only): C-STORE with storage
// commitment (Orthanc is a storage commitment SCP and reports back on a new association to the node's own
// DICOM server), and the node's /modalities answers beside Orthanc's for the same DicomModalities.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { buildNode, type NodeApp } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { REAL_DICOM, describe, listFiles, needs } from '../helpers/data.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort } from '../helpers/ports.ts';
import { jobEnd, postJson, upload } from './dimse-scu-common.ts';

const MODALITIES = (orthancDicomPort: number, receiverPort: number) => ({
  pacs: ['ORTHANC', '127.0.0.1', orthancDicomPort],
  xfer: ['XFERSCU', '127.0.0.1', receiverPort],
  full: { AET: 'FULL', Host: '127.0.0.1', Port: 2, Manufacturer: 'GE', AllowEcho: false, LocalAet: 'MINE', Timeout: 3 },
  nocommit: { AET: 'NOCOMMIT', Host: 'localhost', Port: 104, AllowStorageCommitment: false, AllowMove: false },
});

describe('C-STORE to a real Orthanc with storage commitment', {
  skip: needs(REAL_DICOM) || (!orthancInstalled() && 'needs Orthanc'),
  timeout: 180_000,
}, () => {
  let orthanc: OrthancServer;
  let dir: string;
  let store: EmbeddedStore;
  let app: NodeApp;
  let url: string;
  let ids: string[];

  before(async () => {
    const orthancDicomPort = await freePort();
    const receiverPort = await freePort();
    const modalities = MODALITIES(orthancDicomPort, receiverPort);
    orthanc = await startOrthanc({
      config: { DicomServerEnabled: true, DicomAet: 'ORTHANC', DicomPort: orthancDicomPort, DicomModalities: modalities },
    });
    dir = await mkdtemp(join(tmpdir(), 'dx-scu-orthanc-'));
    const { config } = await loadConfig({
      overrides: {
        StorageDirectory: dir,
        HttpPort: 0,
        DicomAet: 'XFERSCU',
        // Orthanc reports the commitment on a new association to the node's own DICOM server.
        DicomServerEnabled: true,
        DicomPort: receiverPort,
        DicomModalities: modalities,
        DicomStorageCommitmentTimeout: 60,
      },
    });
    store = await EmbeddedStore.open(dir, { commitThreads: 1 });
    app = await buildNode({ config, store, logger: pino({ level: 'silent' }) });
    await app.fastify.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.fastify.server.address();
    url = `http://127.0.0.1:${addr && typeof addr === 'object' ? addr.port : 0}`;
    ids = await upload(url, (await listFiles(join(REAL_DICOM, 'Brainix'))).slice(0, 8));
  });

  after(async () => {
    await app?.close();
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    await orthanc?.stop();
  });

  test('the job succeeds once Orthanc has committed every instance: StorageCommitment "Committed"', async () => {
    const r = await postJson(`${url}/modalities/pacs/store`, { Resources: ids, StorageCommitment: true, Asynchronous: true });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const job = await jobEnd(url, String(r.json.ID), 90_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const content = job.Content as Record<string, unknown>;
    assert.equal(content.StorageCommitment, 'Committed');
    assert.equal(content.InstancesCount, ids.length);
    assert.equal(content.FailedInstancesCount, 0);
    assert.equal(((await (await fetch(`${orthanc.url}/instances`)).json()) as string[]).length, ids.length);
  });

  test('without StorageCommitment the answer is Orthanc\'s synchronous one, "NotRequested"', async () => {
    const r = await postJson(`${url}/modalities/pacs/store`, ids.slice(0, 2));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.InstancesCount, 2);
    assert.equal(r.json.StorageCommitment, 'NotRequested');
    assert.equal(r.json.RemoteAet, 'ORTHANC');
  });

  test('GET /modalities?expand: the same objects as Orthanc for the same DicomModalities', async () => {
    const mine = (await (await fetch(`${url}/modalities?expand`)).json()) as Record<string, Record<string, unknown>>;
    const theirs = (await (await fetch(`${orthanc.url}/modalities?expand`)).json()) as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(mine).sort(), Object.keys(theirs).sort());
    for (const [name, o] of Object.entries(theirs)) {
      // The node never transcodes, and keeps no worklist switch apart from AllowFind.
      const { AllowTranscoding: _t, AllowFindWorklist: _w, ...rest } = o;
      const { AllowTranscoding: mineT, AllowFindWorklist: _mw, ...mineRest } = mine[name] ?? {};
      assert.deepEqual(mineRest, rest, name);
      assert.equal(mineT, false);
    }
    assert.deepEqual(await (await fetch(`${url}/modalities`)).json(), await (await fetch(`${orthanc.url}/modalities`)).json());
  });
});
