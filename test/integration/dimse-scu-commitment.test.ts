// Storage commitment across a restart of the node, a refused commitment, and a pause while a C-STORE waits for
// its answer. A modality written with dcmjs-dimse takes the C-STOREs and the N-ACTION, and its N-EVENT-REPORT is
// sent when the test says, over a real association, to a stand-in of the node's DICOM server that hands it to
// the node's CommitmentSink.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import dimse from 'dcmjs-dimse';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { STORAGE_COMMITMENT_CLASS, STORAGE_COMMITMENT_INSTANCE, reportFromDataset } from '../../src/dimse/commitment.ts';
import { buildNode, type NodeApp } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { REAL_DICOM, describe, listFiles, needs } from '../helpers/data.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { jobEnd, postJson, upload } from './dimse-scu-common.ts';

const { Server, Scp, Client, Dataset } = dimse;
const { PresentationContextResult } = dimse.constants;
type Elements = Record<string, unknown>;

/** Accepts every presentation context in the first syntax proposed. */
function acceptAll(association: InstanceType<typeof dimse.association.Association>): void {
  for (const { context } of association.getPresentationContexts()) {
    const ts = context.getTransferSyntaxUids()[0];
    if (ts) context.setResult(PresentationContextResult.Accept, ts);
  }
}

/** How the fake modality behaves: how long it takes to answer a C-STORE, and what it received. */
const modalityState = { answerDelayMs: 0, received: new Map<string, number>() };

/**
 * The modality: stores nothing, answers every C-STORE success (after `answerDelayMs`), counts what it
 * received by SOP Instance UID, keeps each N-ACTION's data set.
 */
function fakeModality(actions: Elements[]) {
  return class extends Scp {
    override associationRequested(association: InstanceType<typeof dimse.association.Association>) {
      acceptAll(association);
      this.sendAssociationAccept();
    }
    override associationReleaseRequested() {
      this.sendAssociationReleaseResponse();
    }
    override cStoreRequest(
      request: InstanceType<typeof dimse.requests.CStoreRequest>,
      callback: (r: InstanceType<typeof dimse.responses.CStoreResponse>) => void,
    ) {
      const uid = request.getAffectedSopInstanceUid();
      modalityState.received.set(uid, (modalityState.received.get(uid) ?? 0) + 1);
      const response = dimse.responses.CStoreResponse.fromRequest(request);
      response.setStatus(0);
      setTimeout(() => {
        if (!this.aborted) callback(response);
      }, modalityState.answerDelayMs);
    }
    /** An association the node aborted is gone: nothing more is answered on it. */
    aborted = false;
    override abort() {
      this.aborted = true;
    }
    override nActionRequest(
      request: InstanceType<typeof dimse.requests.NActionRequest>,
      callback: (r: InstanceType<typeof dimse.responses.NActionResponse>) => void,
    ) {
      actions.push(request.getDataset()?.getElements() ?? {});
      const response = dimse.responses.NActionResponse.fromRequest(request);
      response.setStatus(0);
      callback(response);
    }
  };
}

/** The stand-in of the node's DICOM server: each N-EVENT-REPORT goes to the node of the moment. */
function reportReceiver(node: () => NodeApp) {
  return class extends Scp {
    override associationRequested(association: InstanceType<typeof dimse.association.Association>) {
      acceptAll(association);
      this.sendAssociationAccept();
    }
    override associationReleaseRequested() {
      this.sendAssociationReleaseResponse();
    }
    override nEventReportRequest(
      request: InstanceType<typeof dimse.requests.NEventReportRequest>,
      callback: (r: InstanceType<typeof dimse.responses.NEventReportResponse>) => void,
    ) {
      const response = dimse.responses.NEventReportResponse.fromRequest(request);
      node()
        .parts.commitments.report(reportFromDataset('FAKEPACS', request.getDataset()?.getElements() ?? {}))
        .then(() => response.setStatus(0))
        .finally(() => callback(response));
    }
  };
}

/** The modality's report, sent over its own association as a modality does. */
async function sendReport(port: number, elements: Elements, failed: boolean): Promise<number | undefined> {
  const client = new Client();
  const request = new dimse.requests.NEventReportRequest(STORAGE_COMMITMENT_CLASS, STORAGE_COMMITMENT_INSTANCE, failed ? 2 : 1);
  request.setDataset(new Dataset(elements));
  let status: number | undefined;
  request.on('response', (r: InstanceType<typeof dimse.responses.Response>) => {
    status = r.getStatus();
  });
  client.addRequest(request);
  await new Promise<void>((resolve) => {
    client.on('closed', () => resolve());
    client.send('127.0.0.1', port, 'FAKEPACS', 'XFERSCU', { connectTimeout: 5000, associationTimeout: 5000, pduTimeout: 5000 });
  });
  return status;
}

describe('storage commitment reported late, after a restart, or refused', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  const actions: Elements[] = [];
  let modality: InstanceType<typeof Server>;
  let receiver: InstanceType<typeof Server>;
  let receiverPort: number;
  let modalityPort: number;
  let dir: string;
  let store: EmbeddedStore;
  let app: NodeApp;
  let url: string;
  let ids: string[];

  async function open(): Promise<void> {
    const { config } = await loadConfig({
      overrides: {
        StorageDirectory: dir,
        HttpPort: 0,
        DicomAet: 'XFERSCU',
        DicomModalities: { fake: ['FAKEPACS', '127.0.0.1', modalityPort] },
        DicomStorageCommitmentTimeout: 120,
      },
    });
    store = await EmbeddedStore.open(dir, { commitThreads: 1 });
    app = await buildNode({ config, store, logger: pino({ level: 'silent' }) });
    await app.fastify.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.fastify.server.address();
    url = `http://127.0.0.1:${addr && typeof addr === 'object' ? addr.port : 0}`;
  }

  async function close(): Promise<void> {
    await app.close();
    await store.close();
  }

  before(async () => {
    modalityPort = await freePort();
    receiverPort = await freePort();
    modality = new Server(fakeModality(actions));
    modality.listen(modalityPort);
    receiver = new Server(reportReceiver(() => app));
    receiver.listen(receiverPort);
    dir = await mkdtemp(join(tmpdir(), 'dx-commit-'));
    await open();
    ids = await upload(url, (await listFiles(join(REAL_DICOM, 'Brainix'))).slice(0, 4));
  });

  after(async () => {
    await close().catch(() => undefined);
    modality?.close();
    receiver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function pendingJob(): Promise<{ jobId: string; action: Elements }> {
    const before = actions.length;
    const r = await postJson(`${url}/modalities/fake/store`, { Resources: ids, StorageCommitment: true, Asynchronous: true });
    const jobId = String(r.json.ID);
    await waitFor('the N-ACTION and the job waiting for its report', async () => {
      const job = (await (await fetch(`${url}/jobs/${jobId}`)).json()) as { Content: Record<string, unknown> };
      return actions.length > before && job.Content.StorageCommitment === 'Pending' && job.Content.Waiting !== undefined;
    });
    return { jobId, action: actions[actions.length - 1] as Elements };
  }

  test('the N-ACTION names every instance; a report after a restart of the node still commits the job', async () => {
    const { jobId, action } = await pendingJob();
    const referenced = action.ReferencedSOPSequence as Elements[];
    assert.equal(referenced.length, ids.length);
    assert.match(String(action.TransactionUID), /^2\.25\.\d+$/);
    await close();
    await open();
    assert.equal(await sendReport(receiverPort, { TransactionUID: action.TransactionUID, ReferencedSOPSequence: referenced }, false), 0);
    const job = await jobEnd(url, jobId, 60_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal((job.Content as Record<string, unknown>).StorageCommitment, 'Committed');
    assert.equal(actions.filter((a) => a.TransactionUID === action.TransactionUID).length, 1, 'asked once');
  });

  test('a report that refuses an instance fails the job, naming it and why', async () => {
    const { jobId, action } = await pendingJob();
    const [first, ...rest] = action.ReferencedSOPSequence as Elements[];
    const failed = [{ ...first, FailureReason: 0x0112 }];
    assert.equal(
      await sendReport(
        receiverPort,
        { TransactionUID: action.TransactionUID, ReferencedSOPSequence: rest, FailedSOPSequence: failed },
        true,
      ),
      0,
    );
    const job = await jobEnd(url, jobId, 60_000);
    assert.equal(job.State, 'Failure');
    const content = job.Content as Record<string, unknown>;
    assert.equal(content.StorageCommitment, 'Failed');
    const named = content.FailedInstances as { SOPInstanceUID: string; Reason: string; Status: string }[];
    assert.equal(named.length, 1);
    assert.equal(named[0]?.SOPInstanceUID, first?.ReferencedSOPInstanceUID);
    assert.equal(named[0]?.Status, '0x0112');
    assert.equal(named[0]?.Reason, 'no such object instance');
    assert.match(String(job.ErrorDetails), /storage commitment refused/);
  });

  test('paused while a C-STORE waits for its answer: the answer is awaited and kept, nothing is sent twice', async () => {
    const many = await upload(url, (await listFiles(join(REAL_DICOM, 'Brainix'))).slice(0, 10));
    modalityState.received.clear();
    modalityState.answerDelayMs = 400;
    try {
      const r = await postJson(`${url}/modalities/fake/store`, { Resources: many, Asynchronous: true });
      const jobId = String(r.json.ID);
      await waitFor('two instances confirmed', async () => {
        const job = (await (await fetch(`${url}/jobs/${jobId}`)).json()) as { Content: Record<string, unknown> };
        return Number(job.Content.StoredInstancesCount ?? 0) >= 2;
      });
      // The pause lands while the modality holds a C-STORE's answer back.
      assert.equal((await postJson(`${url}/jobs/${jobId}/pause`, {})).status, 200);
      assert.equal((await postJson(`${url}/jobs/${jobId}/resume`, {})).status, 200);
      const job = await jobEnd(url, jobId, 60_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(modalityState.received.size, many.length);
      assert.deepEqual([...modalityState.received.values()], Array(many.length).fill(1), 'each instance received once');
    } finally {
      modalityState.answerDelayMs = 0;
    }
  });
});
