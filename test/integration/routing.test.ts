// Routing rules between two real dicom-xfer nodes on loopback: A's rules send what POST /instances stores
// to B by themselves (stable study, follow-up of a late instance, Match on main tags and origin, Alternate
// when Send is unreachable, DeleteAfterSend), B's rule routes what arrived from peer A, and the instances'
// reception metadata say where each came from.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { call, getJson, importFiles, json, listFiles, storedMd5s, type JobJson } from '../helpers/transfer-nodes.ts';

type RouteJson = Record<string, unknown> & { SentInstances: number; QueuedInstances: number; DoneBatches: number; FailedBatches: number };

const route = (base: string, name: string) => getJson<RouteJson>(base, `/routes/${name}`);

/** Waits until the rule has sent `n` instances (every destination confirmed). */
async function waitSent(base: string, name: string, n: number): Promise<RouteJson> {
  let last: RouteJson | undefined;
  await waitFor(
    `rule ${name} to send ${n} instances`,
    async () => {
      last = await route(base, name);
      return last.SentInstances >= n;
    },
    60_000,
  );
  return last as RouteJson;
}

/** Every job of a node (expanded) that the rule made. */
async function jobsOf(base: string, rule: string): Promise<JobJson[]> {
  const all = await getJson<JobJson[]>(base, '/jobs?expand');
  return all.filter((j) => j.Content['Route'] === rule);
}

/** Instances of `files` (IDs from a node) → MD5, the files read here. */
async function importInto(base: string, files: readonly string[]): Promise<Map<string, string>> {
  const imported = await importFiles(base, files);
  assert.deepEqual(imported.refused, [], 'every file accepted');
  return imported.md5;
}

describe('routing rules between two dicom-xfer nodes', { skip: needs(REAL_DICOM), timeout: 300_000 }, () => {
  let a: XferNode;
  let b: XferNode;
  const comunix = join(REAL_DICOM, 'Comunix');

  before(async () => {
    const portA = await freePort();
    const dead = await freePort(); // nobody listens there
    b = await startXferNode({
      config: {
        OrthancPeers: { a: [`http://127.0.0.1:${portA}/`] },
        StableAge: 1,
        Routes: [
          { Name: 'from-a', When: 'Instance', Match: { Origin: 'peer:a', PatientName: 'COMUNIX' }, Send: ['a'] },
          { Name: 'rest-on-b', When: 'Instance', Match: { Origin: 'rest' }, Send: ['a'] },
        ],
      },
    });
    a = await startXferNode({
      port: portA,
      config: {
        OrthancPeers: { b: [`${b.url}/`], dead: [`http://127.0.0.1:${dead}/`] },
        StableAge: 2,
        HttpTimeout: 10,
        Transfers: { MaxHttpRetries: 0, RetryBudget: 0, PeerConnectivityTimeout: 1 },
        Routes: [
          { Name: 'ct-comunix', When: 'StableStudy', Match: { PatientName: 'COMUNIX', Modality: 'CT' }, Send: ['b'] },
          { Name: 'phenix-alt', When: 'Instance', Match: { PatientName: 'PHENIX' }, Send: ['dead'], Alternate: ['b'] },
          { Name: 'beaufix-gateway', When: 'StableSeries', Match: { PatientName: 'BEAUF?X' }, Send: ['b'], DeleteAfterSend: true },
          { Name: 'pulled-from-b', When: 'Instance', Match: { Origin: 'peer:b', PatientName: 'BEAUFIX' }, Send: ['b'] },
        ],
      },
    });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  test('a stable study is sent once, after StableAge, only its CT instances, then a late instance as a follow-up', async () => {
    const files = (await listFiles(comunix)).sort();
    const ct = files.filter((f) => f.includes('/Ct/'));
    const pet = files.filter((f) => f.includes('/Pet/'));
    assert.ok(ct.length >= 2 && pet.length >= 1, 'Comunix has CT and PET files');
    const first = await importFiles(a.url, [ct[0] as string, ...pet]);
    assert.deepEqual(first.refused, []);
    const firstCt = [...first.path.entries()].find(([, p]) => p === ct[0])?.[0] as string;
    const sent = await waitSent(a.url, 'ct-comunix', 1);
    assert.equal(sent.DoneBatches, 1);
    const [job] = await jobsOf(a.url, 'ct-comunix');
    assert.ok(job, 'a job carries the rule name');
    assert.equal(job.State, 'Success');
    assert.equal(job.Type, 'PushTransfer');
    assert.deepEqual(job.Content['Resources'], [{ ID: firstCt, Level: 'Instance' }]);
    // Stability: the job was made StableAge (2 s) after the last instance of the study arrived (both in whole seconds).
    const received = (await call(a.url, 'GET', `/instances/${[...first.md5.keys()].at(-1)}/metadata/ReceptionDate`)).body.toString();
    const created = String((await getJson<JobJson & { CreationTime: string }>(a.url, `/jobs/${job.ID}`)).CreationTime);
    assert.ok(created.slice(0, 15) >= addSeconds(received, 2), `job created ${created}, last arrival ${received}`);
    // Only the CT instance went, with the same bytes: the PET ones did not match Modality CT.
    const atB = await storedMd5s(b.url);
    for (const [id, sum] of first.md5) {
      if (id === firstCt) assert.equal(atB.get(id), sum, `CT instance ${id} at B with the same MD5`);
      else assert.equal(atB.has(id), false, `PET instance ${id} not sent`);
    }

    // A late CT instance of the same study: a follow-up batch of just that one.
    const late = await importInto(a.url, [ct[1] as string]);
    const [lateId] = [...late.keys()];
    const after2 = await waitSent(a.url, 'ct-comunix', 2);
    assert.equal(after2.DoneBatches, 2);
    const jobs = await jobsOf(a.url, 'ct-comunix');
    assert.equal(jobs.length, 2, 'two jobs: the study, then the follow-up');
    const followUp = jobs.find((j) => j.ID !== job.ID) as JobJson;
    assert.deepEqual(followUp.Content['Resources'], [{ ID: lateId, Level: 'Instance' }]);
    assert.equal((await storedMd5s(b.url)).get(lateId as string), late.get(lateId as string));
  });

  test('origin: B routes what arrived from peer A, A does not send it again, and the metadata say where each came from', async () => {
    // B's rule sent the COMUNIX CT instances (origin peer:a) back to A, where they are already stored.
    const fromA = await waitSent(b.url, 'from-a', 2);
    assert.equal(fromA.FailedBatches, 0);
    assert.equal((await route(b.url, 'rest-on-b')).QueuedInstances + (await route(b.url, 'rest-on-b')).SentInstances, 0);
    // A matched them once: its rule did not make a third job for the copies that came back.
    assert.equal((await jobsOf(a.url, 'ct-comunix')).length, 2);
    const ids = await getJson<string[]>(b.url, '/instances');
    const id = ids[0] as string;
    const meta = await getJson<Record<string, string>>(b.url, `/instances/${id}/metadata?expand`);
    assert.equal(meta['Origin'], 'Plugins');
    assert.equal(meta['TransfersPeer'], 'a');
    assert.match(meta['ReceptionDate'] ?? '', /^\d{8}T\d{6}$/);
    // At A the first reception stays: a REST upload from loopback.
    const names = await getJson<string[]>(a.url, `/instances/${id}/metadata`);
    assert.ok(names.includes('Origin') && names.includes('RemoteIP'), names.join(','));
    assert.equal((await call(a.url, 'GET', `/instances/${id}/metadata/Origin`)).body.toString(), 'RestApi');
    assert.equal((await call(a.url, 'GET', `/instances/${id}/metadata/RemoteIP`)).body.toString(), '127.0.0.1');
    // As Orthanc writes them for a REST upload: RemoteAET and HttpUsername empty, no CalledAET.
    assert.equal((await call(a.url, 'GET', `/instances/${id}/metadata/RemoteAET`)).body.toString(), '');
    assert.equal((await call(a.url, 'GET', `/instances/${id}/metadata/HttpUsername`)).body.toString(), '');
    const missing = await call(a.url, 'GET', `/instances/${id}/metadata/CalledAET`);
    assert.equal(missing.status, 404);
    assert.equal(json(missing)['HttpStatus'], 404);
    assert.equal(json(missing)['OrthancStatus'], 7, 'InexistentItem, as Orthanc');
    assert.equal((await call(a.url, 'GET', '/instances/0123abcd-0123abcd-0123abcd-0123abcd-0123abcd/metadata')).status, 404);
  });

  test('Alternate: a rule whose Send peer cannot be reached sends to its Alternate once, and says why', async () => {
    const file = (await listFiles(join(REAL_DICOM, 'Phenix')))[0] as string;
    const imported = await importInto(a.url, [file]);
    const [id] = [...imported.keys()];
    const r = await waitSent(a.url, 'phenix-alt', 1);
    assert.match(String(r['LastError']), /^dead: /);
    assert.match(String(r['LastErrorTime']), /^\d{8}T\d{6}/);
    assert.equal(r.DoneBatches, 1);
    const jobs = await jobsOf(a.url, 'phenix-alt');
    assert.deepEqual(jobs.map((j) => [j.Content['Peer'], j.State]).sort(), [
      ['b', 'Success'],
      ['dead', 'Failure'],
    ]);
    assert.equal((await storedMd5s(b.url)).get(id as string), imported.get(id as string));
  });

  test('DeleteAfterSend: A deletes what B confirmed, and nothing else', async () => {
    const files = await listFiles(join(REAL_DICOM, 'Beaufix'));
    const imported = await importInto(a.url, files);
    await waitSent(a.url, 'beaufix-gateway', imported.size);
    await waitFor(
      'A to delete the sent instances',
      async () => {
        for (const id of imported.keys()) if ((await call(a.url, 'GET', `/instances/${id}`)).status !== 404) return false;
        return true;
      },
      30_000,
    );
    const atB = await storedMd5s(b.url);
    for (const [id, sum] of imported) assert.equal(atB.get(id), sum, `${id} at B`);
    // The rule on origin peer:b did not take what came by REST.
    assert.equal((await route(a.url, 'pulled-from-b')).SentInstances, 0);
    // What other rules sent stays at A.
    assert.ok((await getJson<string[]>(a.url, '/instances')).length >= 4);
  });

  test('origin of a pull: what A pulls from peer B arrives as peer:b and its rule sends it', async () => {
    const studies = await getJson<{ ID: string; PatientMainDicomTags: Record<string, string> }[]>(b.url, '/studies?expand');
    const beaufix = studies.find((x) => x.PatientMainDicomTags['PatientName'] === 'BEAUFIX');
    assert.ok(beaufix, 'B holds the Beaufix study');
    const pulled = await call(
      a.url,
      'POST',
      '/transfers/pull',
      JSON.stringify({ Resources: [{ Level: 'Study', ID: beaufix.ID }], Peer: 'b', Compression: 'gzip' }),
    );
    assert.equal(pulled.status, 200, pulled.body.toString());
    const r = await waitSent(a.url, 'pulled-from-b', 2);
    assert.equal(r.FailedBatches, 0);
    const jobs = await jobsOf(a.url, 'pulled-from-b');
    assert.equal(jobs.length, 1);
  });

  test('GET /routes lists each rule with its figures', async () => {
    const all = await getJson<RouteJson[]>(a.url, '/routes');
    assert.deepEqual(
      all.map((r) => r['Name']),
      ['ct-comunix', 'phenix-alt', 'beaufix-gateway', 'pulled-from-b'],
    );
    const ct = all[0] as RouteJson;
    assert.equal(ct['Source'], 'file');
    assert.equal(ct['When'], 'StableStudy');
    assert.deepEqual(ct['InFlightJobs'], []);
    assert.equal(ct.SentInstances, 2);
  });

  test('metrics per rule and destination: matched, sent, failed, waiting', async () => {
    const text = (await call(a.url, 'GET', '/tools/metrics-prometheus')).body.toString();
    const value = (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      assert.ok(line, `${series} in the metrics`);
      return Number(line.slice(series.length + 1));
    };
    assert.equal(value('dicom_xfer_route_matched_instances_total{rule="ct-comunix"}'), 2);
    assert.equal(value('dicom_xfer_route_sent_instances_total{rule="ct-comunix",destination="b"}'), 2);
    assert.equal(value('dicom_xfer_route_failed_instances_total{rule="phenix-alt",destination="dead"}'), 1);
    assert.equal(value('dicom_xfer_route_sent_instances_total{rule="phenix-alt",destination="b"}'), 1);
    assert.equal(value('dicom_xfer_route_waiting_batches{rule="ct-comunix"}'), 0);
    assert.equal(value('dicom_xfer_route_queued_instances{rule="ct-comunix"}'), 0);
  });
});

/** An Orthanc ISO basic timestamp (YYYYMMDDTHHMMSS) plus `s` seconds, in the same form. */
function addSeconds(iso: string, s: number): string {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/.exec(iso);
  assert.ok(m, `a timestamp: ${iso}`);
  const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) + s * 1000;
  return new Date(t).toISOString().replace(/[-:]/g, '').slice(0, 15);
}
