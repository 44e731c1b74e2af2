// Every real test file, uploaded to a dicom-xfer node and to a real Orthanc 1.10.1 through the same
// REST call: the same accepted-or-refused outcome, the same Orthanc IDs, and the stored bytes unchanged.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { mapLimit } from '../../src/util/concurrency.ts';
import { describe, needs, REAL_DICOM, listFiles } from '../helpers/data.ts';

const DATA = REAL_DICOM;

interface Outcome {
  status: number;
  body: Record<string, unknown>;
}

async function upload(base: string, bytes: Buffer): Promise<Outcome> {
  const r = await fetch(`${base}/instances`, { method: 'POST', body: bytes as BodyInit });
  const text = await r.text();
  return { status: r.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe('ingest compared with a real Orthanc', { skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM) }, () => {
  let orthanc: OrthancServer;
  let node: XferNode;
  let files: string[];

  before(async () => {
    [orthanc, node] = await Promise.all([startOrthanc(), startXferNode()]);
    files = await listFiles(DATA);
  });
  after(async () => {
    await Promise.all([orthanc?.stop(), node?.stop()]);
  });

  test('all real files: same outcome, same IDs, identical bytes', async () => {
    assert.equal(files.length, 239);
    // One file at a time, in the same order on both sides: the first instance of a patient decides its
    // main tags (some files share a PatientID with other names).
    const results = await mapLimit(files, 1, async (path) => {
      const bytes = await readFile(path);
      const [ours, theirs] = await Promise.all([upload(node.url, bytes), upload(orthanc.url, bytes)]);
      return { path, bytes, ours, theirs };
    });
    let accepted = 0;
    for (const { path, ours, theirs } of results) {
      const name = path.slice(DATA.length + 1);
      assert.equal(ours.status === 200, theirs.status === 200, `${name}: ours ${ours.status}, Orthanc ${theirs.status}`);
      if (theirs.status !== 200) {
        assert.ok(ours.status >= 400 && ours.status < 500, `${name}: refused with a 4xx (${ours.status})`);
        assert.equal(typeof ours.body.Message, 'string');
        continue;
      }
      accepted++;
      for (const key of ['ID', 'ParentPatient', 'ParentStudy', 'ParentSeries', 'Path']) {
        assert.equal(ours.body[key], theirs.body[key], `${name}: ${key}`);
      }
    }
    assert.ok(accepted >= 230, `accepted ${accepted}`);

    // Same resources on both sides.
    for (const level of ['patients', 'studies', 'series', 'instances']) {
      const a = ((await (await fetch(`${node.url}/${level}`)).json()) as string[]).sort();
      const b = ((await (await fetch(`${orthanc.url}/${level}`)).json()) as string[]).sort();
      assert.deepEqual(a, b, level);
    }

    // Every stored file reads back byte for byte; the MD5 is the one Orthanc reports.
    const firstById = new Map<string, Buffer>();
    for (const r of results) {
      const id = r.ours.body.ID;
      if (r.ours.status === 200 && typeof id === 'string' && !firstById.has(id)) firstById.set(id, r.bytes);
    }
    await mapLimit([...firstById], 4, async ([id, bytes]) => {
      const back = Buffer.from(await (await fetch(`${node.url}/instances/${id}/file`)).arrayBuffer());
      assert.ok(back.equals(bytes), `${id}: bytes differ`);
      const theirMd5 = await (await fetch(`${orthanc.url}/instances/${id}/attachments/dicom/md5`)).text();
      assert.equal(createHash('md5').update(back).digest('hex'), theirMd5, `${id}: MD5`);
    });
  });

  test("the objects of each level match Orthanc's", async () => {
    const strip = (o: Record<string, unknown>) => {
      const { LastUpdate: _l, IsStable: _s, FileUuid: _f, Labels: _lb, ...rest } = o;
      return rest;
    };
    for (const level of ['patients', 'studies', 'series', 'instances']) {
      const ids = (await (await fetch(`${orthanc.url}/${level}`)).json()) as string[];
      for (const id of ids) {
        const a = (await (await fetch(`${node.url}/${level}/${id}`)).json()) as Record<string, unknown>;
        const b = (await (await fetch(`${orthanc.url}/${level}/${id}`)).json()) as Record<string, unknown>;
        const sortKids = (o: Record<string, unknown>) => {
          for (const k of ['Studies', 'Series', 'Instances']) if (Array.isArray(o[k])) o[k] = [...(o[k] as string[])].sort();
          return o;
        };
        assert.deepEqual(sortKids(strip(a)), sortKids(strip(b)), `${level}/${id}`);
      }
    }
  });
});
