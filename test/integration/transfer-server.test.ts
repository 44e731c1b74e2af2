// The data-source routes of the transfers protocol on a real node process: /transfers/lookup (instances,
// sizes and MD5s straight from the index) and /transfers/chunks/... (byte ranges of the stored files,
// plain or gzip), with the errors an Orthanc peer gives.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipBuffer } from '../../src/protocol/compression.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { describe, needs, REAL_DICOM, listFiles } from '../helpers/data.ts';

const DATA = REAL_DICOM;
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request with the path sent exactly as written (no normalisation of `//`). */
function raw(node: XferNode, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: node.port, method, path, headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function json(a: Answer): Record<string, unknown> {
  return JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
}

describe('transfers server: lookup and chunks', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  /** Instance ID -> the bytes of the file it was ingested from. */
  const files = new Map<string, Buffer>();
  let kneeStudy = '';
  const kneeSeries: string[] = [];
  let kneePatient = '';
  const knee = new Set<string>();

  before(async () => {
    node = await startXferNode({ config: { HttpTimeout: 5 } });
    for (const [folder, into] of [
      ['Knee', knee],
      ['Brainix/Flair', undefined],
    ] as const) {
      for (const path of await listFiles(join(DATA, folder))) {
        const data = await readFile(path);
        const r = await raw(node, 'POST', '/instances', data);
        assert.equal(r.status, 200, r.body.toString());
        const a = json(r) as Record<string, string>;
        files.set(a.ID as string, data);
        into?.add(a.ID as string);
        if (into) {
          kneeStudy = a.ParentStudy as string;
          kneePatient = a.ParentPatient as string;
          if (!kneeSeries.includes(a.ParentSeries as string)) kneeSeries.push(a.ParentSeries as string);
        }
      }
    }
    assert.equal(knee.size, 50);
  });
  after(async () => {
    await node?.stop();
  });

  const sorted = (ids: Iterable<string>) => [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  describe('POST /transfers/lookup', () => {
    test('lists the instances of a study with sizes and MD5s of the files, sorted by ID', async () => {
      const r = await raw(node, 'POST', '/transfers/lookup', JSON.stringify([{ Level: 'Study', ID: kneeStudy }]));
      assert.equal(r.status, 200, r.body.toString());
      assert.match(String(r.headers['content-type']), /^application\/json/);
      const a = json(r) as {
        CountInstances: number;
        Instances: { ID: string; MD5: string; Size: string }[];
        Originator: string;
        TotalSize: string;
        TotalSizeMB: number;
      };
      assert.deepEqual(Object.keys(a), ['CountInstances', 'Instances', 'Originator', 'TotalSize', 'TotalSizeMB']);
      assert.equal(a.CountInstances, 50);
      assert.deepEqual(
        a.Instances.map((i) => i.ID),
        sorted(knee),
      );
      let total = 0;
      for (const i of a.Instances) {
        const data = files.get(i.ID) as Buffer;
        assert.deepEqual(Object.keys(i), ['ID', 'MD5', 'Size']);
        assert.equal(i.Size, String(data.length), 'Size is a decimal string');
        assert.equal(i.MD5, md5(data));
        total += data.length;
      }
      assert.equal(a.TotalSize, String(total));
      assert.equal(a.TotalSizeMB, Math.round(total / 1048576));
      assert.match(a.Originator, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      // The same node always answers the same Originator.
      const again = json(await raw(node, 'POST', '/transfers/lookup', '[]'));
      assert.equal(again.Originator, a.Originator);
      assert.equal(again.CountInstances, 0);
      assert.equal(again.TotalSize, '0');
    });

    test('expands every level, in any case, and collapses duplicates', async () => {
      const one = sorted(knee)[7] as string;
      const brainix = sorted([...files.keys()].filter((id) => !knee.has(id)));
      const body = [
        { Level: 'patients', ID: kneePatient },
        { Level: 'Series', ID: kneeSeries[0] },
        { Level: 'INSTANCE', ID: one },
        { Level: 'Image', ID: brainix[0] },
        { Level: 'study', ID: kneeStudy },
      ];
      // No Content-Type is needed (an Orthanc peer may send a form type).
      const r = await raw(node, 'POST', '//transfers/lookup', JSON.stringify(body), {
        'Content-Type': 'application/x-www-form-urlencoded',
      });
      assert.equal(r.status, 200, r.body.toString());
      const a = json(r) as { CountInstances: number; Instances: { ID: string }[] };
      assert.deepEqual(
        a.Instances.map((i) => i.ID),
        sorted([...knee, brainix[0] as string]),
      );
      assert.equal(a.CountInstances, 51);
    });

    test('answers 404 for an absent resource and 400 for a bad body or level', async () => {
      const cases: [string, number, number][] = [
        [JSON.stringify([{ Level: 'Study', ID: 'nonexistent' }]), 404, 17],
        [JSON.stringify([{ Level: 'Instance', ID: 'ffffffff-ffffffff-ffffffff-ffffffff-ffffffff' }]), 404, 17],
        [
          JSON.stringify([
            { Level: 'Study', ID: kneeStudy },
            { Level: 'Series', ID: kneeStudy },
          ]),
          404,
          17,
        ],
        [JSON.stringify({ Level: 'Study', ID: kneeStudy }), 400, 15],
        [JSON.stringify([{ Level: 'Study' }]), 400, 15],
        [JSON.stringify([{ Level: 'Study', ID: 42 }]), 400, 15],
        [JSON.stringify([{ Level: 'Frame', ID: kneeStudy }]), 400, 3],
        ['[{"Level":', 400, 15],
        ['', 400, 15],
      ];
      for (const [body, status, orthanc] of cases) {
        const r = await raw(node, 'POST', '/transfers/lookup', body);
        assert.equal(r.status, status, `${body} -> ${r.body.toString()}`);
        const e = json(r);
        assert.equal(e.OrthancStatus, orthanc, body);
        assert.equal(e.Method, 'POST');
        assert.equal(e.Uri, '/transfers/lookup');
      }
      const g = await raw(node, 'GET', '/transfers/lookup');
      assert.equal(g.status, 405);
      assert.equal(g.headers.allow, 'POST');
    });
  });

  describe('GET /transfers/chunks/...', () => {
    let a = '';
    let b = '';
    let fa: Buffer;
    let fb: Buffer;
    before(() => {
      [a, b] = sorted(knee) as [string, string];
      fa = files.get(a) as Buffer;
      fb = files.get(b) as Buffer;
    });

    test('serves a whole instance with its length, as octet-stream', async () => {
      const r = await raw(node, 'GET', `/transfers/chunks/${a}`);
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], 'application/octet-stream');
      assert.equal(r.headers['content-length'], String(fa.length));
      assert.ok(r.body.equals(fa));
    });

    test('serves a part from an offset, across two instances, and to the end when size is 0', async () => {
      const part = await raw(node, 'GET', `/transfers/chunks/${a}?offset=1000&size=5000&compression=none`);
      assert.ok(part.body.equals(fa.subarray(1000, 6000)));
      assert.equal(part.headers['content-length'], '5000');
      const across = await raw(node, 'GET', `/transfers/chunks/${a}.${b}?offset=${fa.length - 100}&size=300`);
      assert.ok(across.body.equals(Buffer.concat([fa.subarray(fa.length - 100), fb.subarray(0, 200)])));
      const toEnd = await raw(node, 'GET', `/transfers/chunks/${a}.${b}?offset=10&size=0`);
      assert.ok(toEnd.body.equals(Buffer.concat([fa.subarray(10), fb])));
      // An offset inside the second instance skips the first one entirely.
      const skip = await raw(node, 'GET', `/transfers/chunks/${a}.${b}?offset=${fa.length + 5}&size=10`);
      assert.ok(skip.body.equals(fb.subarray(5, 15)));
      // Past the data: a shorter (here empty) answer, not an error.
      const past = await raw(node, 'GET', `/transfers/chunks/${a}?offset=${fa.length + 1}&size=10`);
      assert.equal(past.status, 200);
      assert.equal(past.body.length, 0);
      // Unknown parameters are ignored; the last occurrence of a parameter counts.
      const extra = await raw(node, 'GET', `/transfers/chunks/${a}?offset=1&foo=bar&offset=2&size=3`);
      assert.ok(extra.body.equals(fa.subarray(2, 5)));
    });

    test('serves a whole bucket of several instances, as a puller asks for it', async () => {
      const ids = sorted(knee).slice(0, 12);
      const total = ids.reduce((s, id) => s + (files.get(id) as Buffer).length, 0);
      const r = await raw(node, 'GET', `//transfers/chunks/${ids.join('.')}?offset=0&size=${total}&compression=none`);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(Buffer.concat(ids.map((id) => files.get(id) as Buffer))));
    });

    test('gzip answers are one gzip member of the same bytes', async () => {
      const r = await raw(node, 'GET', `/transfers/chunks/${a}.${b}?offset=1000&size=100000&compression=gzip`);
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], 'application/gzip');
      assert.equal(r.headers['content-encoding'], undefined);
      assert.deepEqual([...r.body.subarray(0, 3)], [0x1f, 0x8b, 8]);
      const plain = await gunzipBuffer(r.body);
      assert.ok(plain.equals(Buffer.concat([fa, fb]).subarray(1000, 101000)));
    });

    test('bad parameters give 400, bad or unknown IDs 404, other methods 405', async () => {
      const bad: [string, number, number][] = [
        [`/transfers/chunks/${a}?offset=abc`, 400, 5],
        [`/transfers/chunks/${a}?size=-1`, 400, 5],
        [`/transfers/chunks/${a}?offset=1.5`, 400, 5],
        [`/transfers/chunks/${a}?offset=`, 400, 5],
        [`/transfers/chunks/${a}?compression=bzip2`, 400, 3],
        [`/transfers/chunks/${a}?compression=GZIP`, 400, 3],
        [`/transfers/chunks/${a.toUpperCase()}`, 404, 17],
        [`/transfers/chunks/${a}..${b}`, 404, 17],
        ['/transfers/chunks/nonexistent?offset=0&size=10', 404, 17],
        ['/transfers/chunks/ffffffff-ffffffff-ffffffff-ffffffff-ffffffff', 404, 17],
        [`/transfers/chunks/${a}.ffffffff-ffffffff-ffffffff-ffffffff-ffffffff`, 404, 17],
      ];
      for (const [path, status, orthanc] of bad) {
        const r = await raw(node, 'GET', path);
        assert.equal(r.status, status, `${path} -> ${r.body.toString()}`);
        const e = json(r);
        assert.equal(e.OrthancStatus, orthanc, path);
        assert.equal(e.Uri, path.split('?')[0]);
      }
      // An instance after the bytes asked for is never looked at, as with the plugin.
      const ok = await raw(node, 'GET', `/transfers/chunks/${a}.ffffffff-ffffffff-ffffffff-ffffffff-ffffffff?offset=0&size=10`);
      assert.equal(ok.status, 200);
      assert.ok(ok.body.equals(fa.subarray(0, 10)));
      for (const method of ['POST', 'PUT', 'DELETE']) {
        const r = await raw(node, method, `/transfers/chunks/${a}`);
        assert.equal(r.status, 405, method);
        assert.equal(r.headers.allow, 'GET');
        assert.equal(r.body.length, 0);
      }
    });

    test('many chunk requests at once all get their bytes (they queue for the Threads slots)', async () => {
      const ids = sorted(knee);
      const answers = await Promise.all(
        ids.map((id, i) => raw(node, 'GET', `/transfers/chunks/${id}?offset=${i}&compression=${i % 2 ? 'gzip' : 'none'}`)),
      );
      for (const [i, r] of answers.entries()) {
        const id = ids[i] as string;
        assert.equal(r.status, 200);
        const body = i % 2 ? await gunzipBuffer(r.body) : r.body;
        assert.ok(body.equals((files.get(id) as Buffer).subarray(i)), id);
      }
    });
  });
});
