// The node's DICOMweb server against Debian's Orthanc with its DICOMweb plugin, on real DICOM files: Orthanc's
// own DICOMweb client stows into the node and retrieves from it, and the node's QIDO-RS and metadata answers
// equal the plugin's for the same data.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { filesUnder, md5, multipartParts } from '../helpers/dicomweb.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';

const PLUGIN = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';
/** Studies of several modalities, vendors and transfer syntaxes, with sequences and private tags. */
const STUDIES = ['Brainix', 'Knee', 'Knix', 'Phenix', 'Comunix', 'PatientWith2studies', 'Beaufix'];

type Json = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string }>;

/** A JSON value with the keys of every object sorted and `base` replaced, for comparing two servers' answers. */
function normal(v: unknown, base: string): unknown {
  const sort = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sort);
    if (x && typeof x === 'object') {
      return Object.fromEntries(
        Object.keys(x)
          .sort()
          .map((k) => [k, sort((x as Record<string, unknown>)[k])]),
      );
    }
    return x;
  };
  return sort(JSON.parse(JSON.stringify(v).split(base).join('BASE/')));
}

async function getJson(url: string): Promise<unknown> {
  const r = await fetch(url, { headers: { accept: 'application/dicom+json' } });
  assert.equal(r.status, 200, `${url}: ${r.status}`);
  return r.json();
}

/** Each answer keyed by one attribute (a UID), normalised. */
function byUid(list: unknown, tag: string, base: string): Map<string, Json> {
  const out = new Map<string, Json>();
  for (const x of normal(list, base) as Json[]) out.set(String(x[tag]?.Value?.[0]), x);
  return out;
}

async function instanceMd5s(url: string): Promise<string[]> {
  const ids = (await (await fetch(`${url}/instances`)).json()) as string[];
  const out: string[] = [];
  for (const id of ids) out.push(await (await fetch(`${url}/instances/${id}/attachments/dicom/md5`)).text());
  return out.sort();
}

/** The pixel data behind the BulkDataURI of both servers: the same bytes. */
async function sameBulk(x: Json, y: Json, ours: string, theirs: string): Promise<void> {
  const a = await multipartParts(await fetch((x['7FE00010']?.BulkDataURI ?? '').replace('BASE/', ours)));
  const b = await multipartParts(await fetch((y['7FE00010']?.BulkDataURI ?? '').replace('BASE/', theirs)));
  assert.equal(a.length, 1);
  assert.equal(b.length, 1);
  assert.deepEqual(a[0]?.body, b[0]?.body);
}

describe("DICOMweb: the node and Orthanc's DICOMweb plugin", {
  skip: needs(REAL_DICOM) || (!orthancInstalled() && 'needs Orthanc') || (!existsSync(PLUGIN) && 'needs orthanc-dicomweb'),
}, () => {
  let node: XferNode;
  let orthanc: OrthancServer;
  let files: Buffer[];
  let studies: string[];

  before(async () => {
    node = await startXferNode({});
    orthanc = await startOrthanc({
      config: { Plugins: [PLUGIN], DicomWeb: { Enable: true, Servers: { xfer: [`${node.url}/dicom-web/`] } } },
    });
    files = [];
    for (const s of STUDIES) for (const f of await filesUnder(join(REAL_DICOM, s))) files.push(await readFile(f));
    for (const f of files) {
      const r = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: f as BodyInit });
      assert.equal(r.status, 200);
      await r.arrayBuffer();
    }
    studies = (await (await fetch(`${orthanc.url}/studies`)).json()) as string[];
  });
  after(async () => {
    await orthanc?.stop();
    await node?.stop();
  });

  test("Orthanc's DICOMweb client stows every study into the node: every instance arrives with the same MD5", async () => {
    for (const id of studies) {
      const r = await fetch(`${orthanc.url}/dicom-web/servers/xfer/stow`, { method: 'POST', body: JSON.stringify({ Resources: [id] }) });
      const errors = orthanc
        .log()
        .split('\n')
        .filter((l) => l.startsWith('E'))
        .slice(-10)
        .join('\n');
      const text = await r.text();
      assert.equal(r.status, 200, `${id}: ${text}\n${errors}`);
    }
    assert.deepEqual(await instanceMd5s(node.url), files.map(md5).sort());
  });

  test('QIDO-RS: studies, series and instances answer what the plugin answers', async () => {
    const ours = `${node.url}/dicom-web/`;
    const theirs = `${orthanc.url}/dicom-web/`;
    const searches: [string, string][] = [
      ['studies', '0020000D'],
      ['series', '0020000E'],
      ['instances', '00080018'],
      ['studies?PatientName=K*', '0020000D'],
      ['studies?StudyDate=20060101-20101231', '0020000D'],
      ['studies?ModalitiesInStudy=MR', '0020000D'],
      ['series?Modality=CT', '0020000E'],
    ];
    for (const [query, key] of searches) {
      const a = byUid(await getJson(`${ours}${query}`), key, ours);
      const b = byUid(await getJson(`${theirs}${query}`), key, theirs);
      assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), query);
      for (const [uid, x] of a) assert.deepEqual(x, b.get(uid), `${query}: ${uid}`);
    }
    const study = [...byUid(await getJson(`${theirs}studies?PatientName=BRAINIX`), '0020000D', theirs).keys()][0];
    const all = [...byUid(await getJson(`${theirs}studies`), '0020000D', theirs).values()];
    const series = [...byUid(await getJson(`${theirs}studies/${study}/series`), '0020000E', theirs).keys()];
    const sop = [...byUid(await getJson(`${theirs}studies/${study}/instances`), '00080018', theirs).keys()][0];
    const uids = all.slice(0, 3).map((j) => j['0020000D']?.Value?.[0]);
    const accession = all.map((j) => j['00080050']?.Value?.[0]).find((a) => a !== undefined);
    const more = [
      `studies?StudyInstanceUID=${uids.join(',')}`,
      `studies?AccessionNumber=${accession}`,
      'studies?includefield=00081030&includefield=PatientAge',
      `studies/${study}/series?SeriesInstanceUID=${series[0]}`,
      `instances?SOPInstanceUID=${sop}`,
      'instances?PatientName=KNEE&Modality=MR',
      'series?PatientName=KNEE&includefield=all',
    ];
    for (const query of [`studies/${study}/series`, `studies/${study}/instances`, ...more]) {
      const key = query.includes('series')
        ? '0020000E'
        : query.startsWith('instances') || query.endsWith('instances')
          ? '00080018'
          : '0020000D';
      const a = byUid(await getJson(`${ours}${query}`), key, ours);
      const b = byUid(await getJson(`${theirs}${query}`), key, theirs);
      assert.ok(b.size > 0, query);
      assert.deepEqual(a, b, query);
    }
  });

  test('metadata of an unknown study: the same 404 and error document as the plugin', async () => {
    for (const path of ['studies/1.2.3.999.888/metadata', 'studies/1.2.3.999.888/series/4.5/metadata']) {
      const headers = { accept: 'application/dicom+json' };
      const a = await fetch(`${node.url}/dicom-web/${path}`, { headers });
      const b = await fetch(`${orthanc.url}/dicom-web/${path}`, { headers });
      assert.equal(a.status, 404);
      assert.equal(b.status, 404);
      assert.deepEqual(await a.json(), await b.json(), path);
    }
  });

  test('WADO-RS metadata: every public attribute of every instance as the plugin gives it', async () => {
    const ours = `${node.url}/dicom-web/`;
    const theirs = `${orthanc.url}/dicom-web/`;
    const uids = [...byUid(await getJson(`${theirs}studies`), '0020000D', theirs).keys()];
    let compared = 0;
    let bulkCompared = 0;
    for (const uid of uids) {
      const a = byUid(await getJson(`${ours}studies/${uid}/metadata`), '00080018', ours);
      const b = byUid(await getJson(`${theirs}studies/${uid}/metadata`), '00080018', theirs);
      assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), uid);
      for (const [sop, x] of a) {
        const y = b.get(sop) as Json;
        // Private attributes are named by DCMTK's private dictionary in Orthanc, which the node does not have;
        // Orthanc leaves out Pixel Data when it read only the start of the file (its header cache).
        const pub = (j: Json) =>
          Object.fromEntries(Object.entries(j).filter(([k]) => parseInt(k.slice(0, 4), 16) % 2 === 0 && k !== '7FE00010'));
        assert.deepEqual(pub(x), pub(y), `${uid} ${sop}`);
        if (y['7FE00010']) {
          assert.deepEqual(x['7FE00010'], y['7FE00010']);
          if (bulkCompared++ < 3) await sameBulk(x, y, ours, theirs);
        }
        compared++;
      }
    }
    assert.equal(compared, files.length);
  });

  test("Orthanc's DICOMweb client retrieves a study from the node: the files it gets are the node's bytes", async () => {
    const study = (await getJson(`${orthanc.url}/dicom-web/studies?PatientName=BRAINIX`)) as Json[];
    const uid = study[0]?.['0020000D']?.Value?.[0] as string;
    const before = await instanceMd5s(orthanc.url);
    const id = ((await (await fetch(`${orthanc.url}/tools/lookup`, { method: 'POST', body: uid })).json()) as { ID: string }[])[0]?.ID;
    assert.equal((await fetch(`${orthanc.url}/studies/${id}`, { method: 'DELETE' })).status, 200);
    assert.ok((await instanceMd5s(orthanc.url)).length < before.length);
    const r = await fetch(`${orthanc.url}/dicom-web/servers/xfer/retrieve`, {
      method: 'POST',
      body: JSON.stringify({ Resources: [{ Study: uid }] }),
    });
    assert.equal(r.status, 200, await r.text());
    assert.deepEqual(await instanceMd5s(orthanc.url), before);
  });
});
