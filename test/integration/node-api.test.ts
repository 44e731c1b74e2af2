// The foundation's REST API on a real node process: ingest, listings, objects, files with ranges,
// tags, deletion, and bad input of every kind, which must change nothing and never stop the node.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BIN, startXferNode, type XferNode } from '../helpers/node.ts';
import { storedZip } from '../helpers/zip.ts';
import { waitFor } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

const DATA = REAL_DICOM;
const CT = join(DATA, 'Brainix/Flair/IM-0001-0001.dcm');

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

async function post(url: string, body: Uint8Array | string, headers: Record<string, string> = {}) {
  const r = await fetch(url, { method: 'POST', body: body as BodyInit, headers });
  const text = await r.text();
  return { status: r.status, text, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

/** A request whose path is sent exactly as written (fetch would resolve dot segments first). */
function rawRequest(node: XferNode, method: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: node.port, method, path }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function stats(node: XferNode) {
  return (await (await fetch(`${node.url}/statistics`)).json()) as Record<string, unknown>;
}

/** A copy of a real explicit-VR file whose SOPInstanceUID tag is renamed into a private group. */
function withoutSopInstanceUid(file: Buffer): Buffer {
  const out = Buffer.from(file);
  const needle = Buffer.from([0x08, 0x00, 0x18, 0x00, 0x55, 0x49]);
  const at = out.indexOf(needle, 132);
  assert.ok(at > 0, 'test file has an explicit-VR SOPInstanceUID');
  out[at] = 0x09;
  return out;
}

describe('node REST API', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  let ct: Buffer;

  before(async () => {
    node = await startXferNode({ config: { HttpTimeout: 3 } });
    ct = await readFile(CT);
  });
  after(async () => {
    await node?.stop();
  });

  test("stores a DICOM file and answers in Orthanc's shape", async () => {
    const r = await post(`${node.url}/instances`, ct);
    assert.equal(r.status, 200, r.text);
    const a = r.json as Record<string, string>;
    assert.deepEqual(Object.keys(a).sort(), ['ID', 'ParentPatient', 'ParentSeries', 'ParentStudy', 'Path', 'Status']);
    assert.equal(a.Status, 'Success');
    assert.match(a.ID as string, /^([0-9a-f]{8}-){4}[0-9a-f]{8}$/);
    assert.equal(a.Path, `/instances/${a.ID}`);
    const again = await post(`${node.url}/instances`, ct);
    assert.equal((again.json as Record<string, string>).Status, 'AlreadyStored');
    assert.equal((again.json as Record<string, string>).ID, a.ID);
  });

  test('lists resources, with expand, limit and since', async () => {
    const ids = (await (await fetch(`${node.url}/instances`)).json()) as string[];
    assert.equal(ids.length, 1);
    const other = await readFile(join(DATA, 'Brainix/Flair/IM-0001-0002.dcm'));
    await post(`${node.url}/instances`, other);
    const all = (await (await fetch(`${node.url}/instances`)).json()) as string[];
    assert.equal(all.length, 2);
    assert.deepEqual(await (await fetch(`${node.url}/instances?limit=1`)).json(), [all[0]]);
    assert.deepEqual(await (await fetch(`${node.url}/instances?since=1&limit=5`)).json(), [all[1]]);
    const expanded = (await (await fetch(`${node.url}/studies?expand`)).json()) as Record<string, unknown>[];
    assert.equal(expanded.length, 1);
    const study = expanded[0] as Record<string, unknown>;
    assert.equal(study.Type, 'Study');
    assert.ok(study.PatientMainDicomTags && typeof study.PatientMainDicomTags === 'object');
    assert.equal((study.Series as string[]).length, 1);
  });

  test("answers each level in Orthanc's object shape, with parents and children", async () => {
    const [inst] = (await (await fetch(`${node.url}/instances`)).json()) as string[];
    const i = (await (await fetch(`${node.url}/instances/${inst}`)).json()) as Record<string, unknown>;
    assert.equal(i.Type, 'Instance');
    assert.equal(i.FileSize, ct.length);
    const series = (await (await fetch(`${node.url}/series/${i.ParentSeries}`)).json()) as Record<string, unknown>;
    assert.equal(series.Type, 'Series');
    assert.ok((series.Instances as string[]).includes(inst as string));
    assert.equal(series.Status, 'Unknown');
    const study = (await (await fetch(`${node.url}/studies/${series.ParentStudy}`)).json()) as Record<string, unknown>;
    assert.deepEqual(study.Series, [i.ParentSeries]);
    const patient = (await (await fetch(`${node.url}/patients/${study.ParentPatient}`)).json()) as Record<string, unknown>;
    assert.deepEqual(patient.Studies, [series.ParentStudy]);
    assert.equal(typeof patient.IsStable, 'boolean');
    assert.match(patient.LastUpdate as string, /^\d{8}T\d{6}$/);
    const under = (await (await fetch(`${node.url}/patients/${study.ParentPatient}/instances`)).json()) as { ID: string }[];
    assert.equal(under.length, 2);
    assert.ok(under.every((x) => typeof x.ID === 'string'));
  });

  test('serves the exact bytes, whole and by range', async () => {
    const list = (await (await fetch(`${node.url}/instances?expand`)).json()) as { ID: string; FileSize: number }[];
    const inst = list.find((x) => x.FileSize === ct.length) as { ID: string };
    const r = await fetch(`${node.url}/instances/${inst.ID}/file`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/dicom');
    assert.equal(md5(new Uint8Array(await r.arrayBuffer())), md5(ct));
    const part = await fetch(`${node.url}/instances/${inst.ID}/file`, { headers: { range: 'bytes=128-131' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 128-131/${ct.length}`);
    assert.equal(Buffer.from(await part.arrayBuffer()).toString('latin1'), 'DICM');
    const tail = await fetch(`${node.url}/instances/${inst.ID}/file`, { headers: { range: 'bytes=-10' } });
    assert.deepEqual(Buffer.from(await tail.arrayBuffer()), ct.subarray(ct.length - 10));
    const bad = await fetch(`${node.url}/instances/${inst.ID}/file`, { headers: { range: `bytes=${ct.length + 5}-` } });
    assert.equal(bad.status, 416);
    const m = await (await fetch(`${node.url}/instances/${inst.ID}/attachments/dicom/md5`)).text();
    assert.equal(m, md5(ct));
  });

  test('gives the main tags simplified', async () => {
    const [inst] = (await (await fetch(`${node.url}/instances`)).json()) as string[];
    const tags = (await (await fetch(`${node.url}/instances/${inst}/tags?simplify`)).json()) as Record<string, unknown>;
    assert.equal(typeof tags.SOPInstanceUID, 'string');
    assert.equal(typeof tags.StudyInstanceUID, 'string');
    assert.equal(typeof tags.PatientID, 'string');
  });

  test('accepts // in paths and answers 405 with Allow for other methods', async () => {
    const r = await fetch(`${node.url}//statistics`);
    assert.equal(r.status, 200);
    const m = await fetch(`${node.url}/statistics`, { method: 'DELETE' });
    assert.equal(m.status, 405);
    assert.equal(m.headers.get('allow'), 'GET');
    const plugins = (await (await fetch(`${node.url}/plugins`)).json()) as string[];
    assert.ok(plugins.includes('transfers'));
    const system = (await (await fetch(`${node.url}/system`)).json()) as Record<string, unknown>;
    assert.equal(typeof system.Name, 'string');
  });

  test("refuses bad bodies with Orthanc's JSON error and stores nothing", async () => {
    const before = await stats(node);
    const cases: [string, Uint8Array | string][] = [
      ['non-DICOM bytes', Buffer.from('this is not a DICOM file, just some text that is long enough '.repeat(10))],
      ['a truncated file', ct.subarray(0, 700)],
      ['a file without SOPInstanceUID', withoutSopInstanceUid(ct)],
      ['an empty body', ''],
      ['random bytes', Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) % 251))],
    ];
    for (const [what, body] of cases) {
      const r = await post(`${node.url}/instances`, body);
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      const e = r.json as Record<string, unknown>;
      for (const k of ['HttpError', 'HttpStatus', 'Message', 'Method', 'Uri', 'OrthancError', 'OrthancStatus']) {
        assert.ok(k in e, `${what}: error body has ${k}`);
      }
      assert.equal(e.HttpStatus, 400);
      assert.equal(e.Method, 'POST');
      assert.equal(e.Uri, '/instances');
    }
    assert.deepEqual(await stats(node), before);
    assert.deepEqual(await readdir(join(node.dataDir, 'tmp')), []);
  });

  test('a 2 GB upload that never arrives leaves nothing behind and the node answers', async () => {
    const before = await stats(node);
    // The client dies mid-body.
    await new Promise<void>((resolve, reject) => {
      const s = connect(node.port, '127.0.0.1', () => {
        s.write('POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2147483648\r\n\r\n');
        s.write(ct.subarray(0, 4096), () =>
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 200),
        );
      });
      s.on('error', reject);
    });
    // The client stays connected but sends nothing more: the node gives up after HttpTimeout.
    const answer = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = connect(node.port, '127.0.0.1', () => {
        s.write('POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2147483648\r\n\r\n');
        s.write(ct.subarray(0, 4096));
      });
      s.on('data', (d) => (got += d.toString()));
      s.on('close', () => resolve(got));
      s.on('error', reject);
      setTimeout(() => s.destroy(), 20_000);
    });
    assert.match(answer.split('\r\n')[0] ?? '', /^HTTP\/1\.1 408/);
    await waitFor('temporary files to be removed', async () => (await readdir(join(node.dataDir, 'tmp'))).length === 0, 5000);
    assert.deepEqual(await stats(node), before);
    assert.equal((await fetch(`${node.url}/system`)).status, 200);
  });

  test('a declared size larger than the free disk is refused at once', async () => {
    const r = await fetch(`${node.url}/instances`, {
      method: 'POST',
      headers: { 'content-length': String(2 ** 52) },
      body: 'x',
    }).catch((e: unknown) => e);
    // fetch refuses a mismatching Content-Length itself; talk raw instead.
    void r;
    const answer = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = connect(node.port, '127.0.0.1', () => {
        s.write(`POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${2 ** 52}\r\n\r\n`);
      });
      s.on('data', (d) => {
        got += d.toString();
        if (got.includes('\r\n\r\n') && got.includes('}')) s.destroy();
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      setTimeout(() => s.destroy(), 10_000);
    });
    assert.match(answer.split('\r\n')[0] ?? '', /^HTTP\/1\.1 507/);
    assert.match(answer, /"OrthancStatus": 19/);
  });

  test('concurrent uploads of one instance store it once', async () => {
    const file = await readFile(join(DATA, 'Brainix/Epi/IM-0001-0001.dcm'));
    const before = (await stats(node)).CountInstances as number;
    const answers = await Promise.all(Array.from({ length: 16 }, () => post(`${node.url}/instances`, file)));
    const statuses = answers.map((a) => (a.json as Record<string, string>).Status);
    assert.equal(statuses.filter((s) => s === 'Success').length, 1, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 'AlreadyStored').length, 15);
    assert.equal((await stats(node)).CountInstances, before + 1);
    assert.deepEqual(await readdir(join(node.dataDir, 'tmp')), []);
  });

  test('a ZIP of DICOM files is stored entry by entry, answering an array', async () => {
    const names = ['IM-0001-0003.dcm', 'IM-0001-0004.dcm', 'IM-0001-0005.dcm'];
    const entries = await Promise.all(names.map(async (n) => ({ name: `dir/${n}`, data: await readFile(join(DATA, 'Brainix/Flair', n)) })));
    entries.push({ name: 'README.txt', data: Buffer.from('not DICOM') });
    const before = (await stats(node)).CountInstances as number;
    const r = await post(`${node.url}/instances`, storedZip(entries));
    assert.equal(r.status, 200, r.text);
    const all = JSON.parse(r.text) as Record<string, string>[];
    // One object per entry: the instances stored, and the entry that was not, with why.
    assert.equal(all.length, 4);
    assert.deepEqual(
      all.map((a) => a.FileName),
      entries.map((e) => e.name),
    );
    const readme = all[3] as Record<string, string>;
    assert.equal(readme.Status, 'Failure');
    assert.equal(readme.Message, 'Bad file format');
    assert.equal(readme.ID, undefined);
    const answers = all.slice(0, 3);
    assert.ok(answers.every((a) => a.Status === 'Success' && typeof a.ID === 'string'));
    assert.equal((await stats(node)).CountInstances, before + 3);
    for (const [i, a] of answers.entries()) {
      const back = Buffer.from(await (await fetch(`${node.url}/instances/${a.ID}/file`)).arrayBuffer());
      assert.ok(back.equals((entries[i] as { data: Buffer }).data));
    }
    const junk = await post(`${node.url}/instances`, storedZip([{ name: 'a.txt', data: Buffer.from('nothing here') }]));
    assert.equal(junk.status, 400);
    assert.deepEqual(await readdir(join(node.dataDir, 'tmp')), []);
  });

  test('dicom-xfer import uploads a folder to the node and summarises', async () => {
    const { execFile } = await import('node:child_process');
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string }>((resolve) => {
        execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }),
        );
      });
    const r = await run(['import', join(DATA, 'Brainix/Epi'), '--url', node.url, '--json']);
    assert.equal(r.code, 0, r.stdout);
    const summary = JSON.parse(r.stdout) as { files: number; new: number; alreadyStored: number; rejected: number };
    const files = (await readdir(join(DATA, 'Brainix/Epi'))).length;
    assert.equal(summary.files, files);
    assert.equal(summary.new + summary.alreadyStored, files);
    assert.equal(summary.rejected, 0);
    const again = await run(['import', join(DATA, 'Brainix/Epi'), '--url', node.url, '--json']);
    assert.equal(again.code, 0);
    const second = JSON.parse(again.stdout) as { new: number; alreadyStored: number };
    assert.equal(second.new, 0);
    assert.equal(second.alreadyStored, files);
  });

  test('IDs with uppercase letters or path characters are unknown on every {id} route', async () => {
    const [inst] = (await (await fetch(`${node.url}/instances`)).json()) as string[];
    const bad = [(inst as string).toUpperCase(), '..%2F..%2Fetc%2Fpasswd', '%2e%2e', 'a'.repeat(5000), `${inst}%00`];
    const routes = [
      (id: string) => `/patients/${id}`,
      (id: string) => `/studies/${id}`,
      (id: string) => `/series/${id}`,
      (id: string) => `/instances/${id}`,
      (id: string) => `/studies/${id}/instances`,
      (id: string) => `/instances/${id}/file`,
      (id: string) => `/instances/${id}/tags`,
    ];
    const before = await stats(node);
    for (const id of bad) {
      for (const r of routes) {
        assert.equal(await rawRequest(node, 'GET', r(id)), 404, r(id));
        const del = await rawRequest(node, 'DELETE', r(id));
        assert.ok(del === 404 || del === 405, `DELETE ${r(id)}: ${del}`);
      }
    }
    assert.deepEqual(await stats(node), before);
  });

  test('deletes a series with its files, and parents left empty', async () => {
    const list = (await (await fetch(`${node.url}/series?expand`)).json()) as { ID: string; ParentStudy: string }[];
    const before = await stats(node);
    const target = list[0] as { ID: string; ParentStudy: string };
    const instances = (await (await fetch(`${node.url}/series/${target.ID}/instances`)).json()) as unknown[];
    const r = await fetch(`${node.url}/series/${target.ID}`, { method: 'DELETE' });
    assert.equal(r.status, 200);
    const body = (await r.json()) as { RemainingAncestor: unknown };
    assert.ok('RemainingAncestor' in body);
    const afterStats = await stats(node);
    assert.equal(afterStats.CountInstances, (before.CountInstances as number) - instances.length);
    assert.equal((await fetch(`${node.url}/series/${target.ID}`)).status, 404);
    // Delete everything: no patient, no file remains.
    for (const p of (await (await fetch(`${node.url}/patients`)).json()) as string[]) {
      assert.equal((await fetch(`${node.url}/patients/${p}`, { method: 'DELETE' })).status, 200);
    }
    const empty = await stats(node);
    assert.equal(empty.CountPatients, 0);
    assert.equal(empty.CountInstances, 0);
    assert.equal(empty.TotalDiskSize, '0');
    const walk = async (d: string): Promise<number> => {
      let n = 0;
      for (const e of await readdir(d, { withFileTypes: true })) {
        n += e.isDirectory() ? await walk(join(d, e.name)) : 1;
      }
      return n;
    };
    assert.equal(await walk(join(node.dataDir, 'files')), 0);
  });
});
