// The node as a DICOM client against dcmtk's storescp: C-ECHO, C-STORE of real files in every transfer syntax
// at hand (received byte for byte as stored), Orthanc's answers and errors on /modalities, a modality that
// is down at first, and a job stopped mid-way that goes on without sending a confirmed instance again.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REAL_DICOM, describe, listFiles, needs } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { NOT_IN_STORESCP, datasetOf, jobEnd, onePerSyntax, postJson, startStoreScp, upload, type StoreScp } from './dimse-scu-common.ts';

describe('C-ECHO and C-STORE to storescp', { skip: needs(REAL_DICOM), timeout: 240_000 }, () => {
  let scp: StoreScp;
  let node: XferNode;
  let closedPort: number;
  let downPort: number;
  const sent = new Map<string, string>();

  before(async () => {
    scp = await startStoreScp();
    closedPort = await freePort();
    downPort = await freePort();
    node = await startXferNode({
      config: {
        DicomAet: 'XFERSCU',
        DicomScuTimeout: 5,
        DicomModalities: {
          scp: [scp.aet, '127.0.0.1', scp.port],
          closed: ['NOBODY', '127.0.0.1', closedPort],
          later: { AET: 'LATER', Host: '127.0.0.1', Port: downPort, MaximumAssociations: 2 },
        },
        Transfers: { RetryBudget: 60 },
      },
    });
    const files = await onePerSyntax();
    assert.ok(files.length >= 5, `several transfer syntaxes in the test data (found ${files.length})`);
    const ids = await upload(
      node.url,
      files.map((f) => f.path),
    );
    ids.forEach((id, k) => {
      sent.set(id, files[k]?.ts ?? '');
    });
  });

  after(async () => {
    await node?.stop();
    await scp?.stop();
  });

  test('GET /modalities lists the names; ?expand and /configuration show each in Orthanc shape', async () => {
    assert.deepEqual(await (await fetch(`${node.url}/modalities`)).json(), ['closed', 'later', 'scp']);
    const expanded = (await (await fetch(`${node.url}/modalities?expand`)).json()) as Record<string, Record<string, unknown>>;
    assert.equal(expanded.scp?.AET, scp.aet);
    assert.equal(expanded.scp?.Port, scp.port);
    assert.equal(expanded.later?.AET, 'LATER');
    const one = (await (await fetch(`${node.url}/modalities/scp/configuration`)).json()) as Record<string, unknown>;
    assert.deepEqual(one, expanded.scp);
    assert.deepEqual(await (await fetch(`${node.url}/modalities/scp`)).json(), ['configuration', 'echo', 'store']);
  });

  test("C-ECHO: 200 {} from storescp; a closed port answers Orthanc's DicomAssociation error", async () => {
    const ok = await postJson(`${node.url}/modalities/scp/echo`, {});
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, {});
    const bad = await postJson(`${node.url}/modalities/closed/echo`, { Timeout: 2 });
    assert.equal(bad.status, 500);
    assert.equal(bad.json.OrthancError, 'Error in the network protocol');
    assert.equal(bad.json.OrthancStatus, 9);
    assert.match(String(bad.json.Details), /^DicomAssociation - connecting to AET "NOBODY"/);
    assert.equal(bad.json.Uri, '/modalities/closed/echo');
  });

  test('C-STORE (synchronous): every file arrives with its data set byte for byte as stored', async () => {
    const ids = [...sent.keys()];
    const before = (await scp.files()).length;
    const r = await postJson(`${node.url}/modalities/scp/store`, ids);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.InstancesCount, ids.length);
    assert.equal(r.json.FailedInstancesCount, 0);
    assert.equal(r.json.RemoteAet, scp.aet);
    assert.equal(r.json.LocalAet, 'XFERSCU');
    assert.equal(r.json.Description, 'REST API');
    const files = (await scp.files()).slice(before);
    assert.equal((await scp.files()).length - before, ids.length, 'one reception per instance');
    const received = new Map<string, Buffer>();
    for (const f of files) {
      const data = await datasetOf(f);
      received.set(data.toString('base64'), data);
    }
    for (const id of ids) {
      let stored = await datasetOf(Buffer.from(await (await fetch(`${node.url}/instances/${id}/file`)).arrayBuffer()));
      // A deflated data set of odd length travels with the one null byte DICOM pads it with.
      if (stored.length % 2 === 1) stored = Buffer.concat([stored, Buffer.alloc(1)]);
      assert.ok(received.has(stored.toString('base64')), `instance ${id} (${sent.get(id)}) received byte for byte`);
    }
  });

  test('the dashboard lists the modalities beside the peers, reachable when they answer a C-ECHO', async () => {
    const listed = (await (await fetch(`${node.url}/ui/api/peers`)).json()) as Record<string, unknown>[];
    const byName = new Map(listed.map((d) => [d.Name, d]));
    assert.deepEqual([...byName.keys()].sort(), ['closed', 'later', 'scp']);
    assert.equal(byName.get('scp')?.Kind, 'dicom-modality');
    assert.equal(byName.get('scp')?.Url, `dicom://${scp.aet}@127.0.0.1:${scp.port}`);
    assert.equal(byName.get('scp')?.Reachable, true);
    assert.equal(byName.get('closed')?.Reachable, false);
    assert.match(String(byName.get('closed')?.Error), /DicomAssociation/);
  });

  test('bad input: unknown modality 404, a body of the wrong type 400, an unknown ID 404; no job starts', async () => {
    const jobsBefore = ((await (await fetch(`${node.url}/jobs`)).json()) as string[]).length;
    const id = [...sent.keys()][0] as string;
    const unknown = await postJson(`${node.url}/modalities/nope/store`, [id]);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.OrthancStatus, 7);
    assert.equal(unknown.json.Details, 'No modality with symbolic name: nope');
    const noEcho = await postJson(`${node.url}/modalities/nope/echo`, {});
    assert.equal(noEcho.status, 404);
    const wrongType = await postJson(`${node.url}/modalities/scp/store`, 12);
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.json.OrthancError, 'Bad file format');
    const wrongResources = await postJson(`${node.url}/modalities/scp/store`, { Resources: 3 });
    assert.equal(wrongResources.status, 400);
    assert.equal(wrongResources.json.Details, 'JSON field "Resources" must contain an array');
    const missing = await postJson(`${node.url}/modalities/scp/store`, ['0123abcd-0123abcd-0123abcd-0123abcd-0123abcd']);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.OrthancError, 'Unknown resource');
    const notAnId = await postJson(`${node.url}/modalities/scp/store`, 'nope', true);
    assert.equal(notAnId.status, 400);
    assert.equal(notAnId.json.Details, 'This string is not a valid Orthanc identifier: nope');
    assert.equal(((await (await fetch(`${node.url}/jobs`)).json()) as string[]).length, jobsBefore);
    const getStore = await fetch(`${node.url}/modalities/scp/store`);
    assert.equal(getStore.status, 405);
    assert.equal(getStore.headers.get('allow'), 'POST');
  });

  test('an instance in a syntax the modality does not accept fails the job, named with its status; the others go', async () => {
    const all = await onePerSyntax(30, []);
    const refused = all.find((f) => NOT_IN_STORESCP.includes(f.ts));
    assert.ok(refused, 'the test data holds a file in a syntax storescp refuses');
    const [refusedId] = await upload(node.url, [refused.path]);
    const goodId = [...sent.keys()][0] as string;
    const before = (await scp.files()).length;
    const r = await postJson(`${node.url}/modalities/scp/store`, { Resources: [refusedId, goodId], Asynchronous: true });
    const job = await jobEnd(node.url, String(r.json.ID), 60_000);
    assert.equal(job.State, 'Failure');
    const content = job.Content as Record<string, unknown>;
    assert.equal(content.FailedInstancesCount, 1);
    assert.equal(content.StoredInstancesCount, 1);
    const failed = content.FailedInstances as { ID: string; Status: string; Reason: string }[];
    assert.equal(failed[0]?.ID, refusedId);
    assert.equal(failed[0]?.Status, '0x0122');
    assert.match(failed[0]?.Reason ?? '', /accepted no presentation context .* transfer syntax 1\.2\.840\.10008\.1\.2\.4\.57/);
    assert.match(String(job.ErrorDetails), /1 of 2 instances refused by STORESCP@127\.0\.0\.1/);
    assert.equal((await scp.files()).length - before, 1, 'the accepted instance was sent');
  });

  test('a modality down at first: the job waits saying why, then succeeds once it listens', async () => {
    const ids = [...sent.keys()];
    const r = await postJson(`${node.url}/modalities/later/store`, { Resources: ids, Asynchronous: true });
    assert.equal(r.status, 200);
    const jobId = String(r.json.ID);
    assert.equal(r.json.Path, `/jobs/${jobId}`);
    let waiting = '';
    await waitFor('the job to say it waits', async () => {
      const job = (await (await fetch(`${node.url}/jobs/${jobId}`)).json()) as { Content: Record<string, unknown> };
      waiting = String(job.Content.Waiting ?? '');
      return waiting !== '';
    });
    assert.match(waiting, /modality "later" \(LATER@127\.0\.0\.1:\d+\) cannot be reached: .*refused.*; next try in /);
    const late = await startStoreScp({ aet: 'LATER', port: downPort });
    try {
      const job = await jobEnd(node.url, jobId, 90_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Type, 'DicomModalityStore');
      const content = job.Content as Record<string, unknown>;
      assert.equal(content.InstancesCount, ids.length);
      assert.equal(content.StoredInstancesCount, ids.length);
      assert.equal(content.Waiting, undefined);
      assert.ok(Number(content.Retries) >= 1);
      assert.equal((await late.files()).length, ids.length);
    } finally {
      await late.stop();
    }
  });
});

describe('a C-STORE job across a restart of the node', { skip: needs(REAL_DICOM), timeout: 240_000 }, () => {
  let scp: StoreScp;
  let node: XferNode;

  before(async () => {
    // storescp waits after each reception: the job is still running when the node stops.
    scp = await startStoreScp({ slowSeconds: 0.2 });
  });

  after(async () => {
    await node?.stop();
    await scp?.stop();
  });

  test('stopped mid-job and started again, it sends only what was not confirmed: each instance received once', async () => {
    const config = {
      DicomModalities: { scp: { AET: scp.aet, Host: '127.0.0.1', Port: scp.port, MaximumAssociations: 1 } },
      Transfers: { RetryBudget: 30 },
    };
    node = await startXferNode({ config });
    const files = (await listFiles(join(REAL_DICOM, 'Brainix'))).slice(0, 30);
    const ids = await upload(node.url, files);
    const r = await postJson(`${node.url}/modalities/scp/store`, { Resources: ids, Asynchronous: true });
    const jobId = String(r.json.ID);
    await waitFor(
      'a third of the instances confirmed',
      async () => {
        const job = (await (await fetch(`${node.url}/jobs/${jobId}`)).json()) as { Content: Record<string, unknown> };
        return Number(job.Content.StoredInstancesCount ?? 0) >= 10;
      },
      60_000,
    );
    const dir = node.dir;
    await node.stop({ keep: true });
    const atStop = (await scp.files()).length;
    assert.ok(atStop < ids.length, 'the job was stopped before its end');
    node = await startXferNode({ config, dir, port: node.port });
    const job = await jobEnd(node.url, jobId, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const received = await scp.files();
    const uids = new Map<string, number>();
    for (const f of received) {
      const key = (await datasetOf(await readFile(f))).toString('base64');
      uids.set(key, (uids.get(key) ?? 0) + 1);
    }
    assert.equal(uids.size, ids.length, 'every instance received');
    // The C-STORE in flight at the stop was let finish and recorded: nothing is received twice.
    assert.equal(received.length, ids.length, `${received.length} receptions for ${ids.length} instances`);
  });
});

describe('pause, resume and cancel of a C-STORE job', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let scp: StoreScp;
  let node: XferNode;
  let ids: string[];

  before(async () => {
    scp = await startStoreScp({ slowSeconds: 0.2 });
    node = await startXferNode({
      config: { DicomModalities: { scp: { AET: scp.aet, Host: '127.0.0.1', Port: scp.port, MaximumAssociations: 1 } } },
    });
    ids = await upload(node.url, (await listFiles(join(REAL_DICOM, 'Brainix'))).slice(0, 16));
  });

  after(async () => {
    await node?.stop();
    await scp?.stop();
  });

  const stored = async (jobId: string) => {
    const job = (await (await fetch(`${node.url}/jobs/${jobId}`)).json()) as { State: string; Content: Record<string, unknown> };
    return { state: job.State, stored: Number(job.Content.StoredInstancesCount ?? 0) };
  };

  test('paused mid-way and resumed, it goes on from the first instance not confirmed', async () => {
    const before = (await scp.files()).length;
    const r = await postJson(`${node.url}/modalities/scp/store`, { Resources: ids, Asynchronous: true });
    const jobId = String(r.json.ID);
    await waitFor('a few instances confirmed', async () => (await stored(jobId)).stored >= 3, 60_000);
    assert.equal((await postJson(`${node.url}/jobs/${jobId}/pause`, {})).status, 200);
    const paused = await stored(jobId);
    assert.equal(paused.state, 'Paused');
    assert.ok(paused.stored < ids.length, 'paused before its end');
    assert.equal((await postJson(`${node.url}/jobs/${jobId}/resume`, {})).status, 200);
    const job = await jobEnd(node.url, jobId, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const received = (await scp.files()).length - before;
    // The C-STORE in flight at the pause was let finish and recorded: nothing is received twice.
    assert.equal(received, ids.length, `${received} receptions for ${ids.length} instances`);
  });

  test('canceled, it fails as CanceledJob and sends nothing more', async () => {
    const r = await postJson(`${node.url}/modalities/scp/store`, { Resources: ids, Asynchronous: true });
    const jobId = String(r.json.ID);
    await waitFor('an instance confirmed', async () => (await stored(jobId)).stored >= 1, 60_000);
    assert.equal((await postJson(`${node.url}/jobs/${jobId}/cancel`, {})).status, 200);
    const job = await jobEnd(node.url, jobId, 30_000);
    assert.equal(job.State, 'Failure');
    assert.equal(job.ErrorCode, 37);
    const atCancel = (await scp.files()).length;
    const resubmitted = await postJson(`${node.url}/jobs/${jobId}/resubmit`, {});
    assert.equal(resubmitted.status, 200);
    const again = await jobEnd(node.url, jobId, 120_000);
    assert.equal(again.State, 'Success');
    // A resubmitted job starts again from its first instance, as in Orthanc.
    assert.ok((await scp.files()).length - atCancel >= ids.length);
  });
});

describe('a modality that serves one association at a time', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let scp: StoreScp;
  let node: XferNode;

  before(async () => {
    // storescp without --fork: a second association waits until the first ends, longer than DicomScuTimeout.
    scp = await startStoreScp({ slowSeconds: 0.5 });
    node = await startXferNode({
      config: {
        DicomScuTimeout: 1,
        DicomModalities: { one: { AET: scp.aet, Host: '127.0.0.1', Port: scp.port, MaximumAssociations: 4 } },
        Transfers: { RetryBudget: 60 },
      },
    });
  });

  after(async () => {
    await node?.stop();
    await scp?.stop();
  });

  test('the associations left waiting give way: the job ends on the one served, without a retry', async () => {
    const ids = await upload(node.url, (await listFiles(join(REAL_DICOM, 'Brainix'))).slice(0, 12));
    const r = await postJson(`${node.url}/modalities/one/store`, { Resources: ids, Asynchronous: true });
    const job = await jobEnd(node.url, String(r.json.ID), 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const content = job.Content as Record<string, unknown>;
    assert.equal(content.StoredInstancesCount, ids.length);
    assert.equal(content.Retries, undefined, `no retry: ${String(content.LastRetryCause)}`);
    assert.equal((await scp.files()).length, ids.length);
  });
});
