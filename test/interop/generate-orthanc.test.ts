// Generated DICOM against a real Orthanc: every kind of generated instance is accepted, stored byte for
// byte, placed in the expected patients/studies/series, and its pixels can be decoded by Orthanc.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateDataset, type DatasetResult, type GeneratedFile } from '../../src/generate/index.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { describe } from '../helpers/data.ts';

interface UploadAnswer {
  ID: string;
  Status: string;
  ParentPatient: string;
  ParentStudy: string;
  ParentSeries: string;
}

interface InstanceAnswer {
  ID: string;
  MainDicomTags: Record<string, string>;
  ParentSeries: string;
}

describe('generated DICOM in a real Orthanc', { skip: !orthancInstalled() && 'Orthanc is not installed' }, () => {
  let orthanc: OrthancServer;
  let dir: string;
  let data: DatasetResult;
  const ids = new Map<GeneratedFile, UploadAnswer>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-gen-orthanc-'));
    // Every kind, small sizes: 2 CT series (one study), 3 MR, a 4-frame Enhanced CT, a 3-frame cine, 2 JPEG.
    data = await generateDataset({
      out: dir,
      seed: 11,
      preset: 'tiny',
      ctSeries: 2,
      ctSlices: 2,
      mr: 3,
      multiframe: 1,
      multiframeMb: 2,
      us: 1,
      usMb: 2.7,
      jpegSeries: 1,
      jpegSlices: 2,
    });
    orthanc = await startOrthanc();
  });

  after(async () => {
    await orthanc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('Orthanc accepts every generated instance', async () => {
    for (const f of data.files) {
      const body = await readFile(f.path);
      const r = await fetch(`${orthanc.url}/instances`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/dicom' },
      });
      const text = await r.text();
      assert.equal(r.status, 200, `${f.path}: ${text}\n${orthanc.log().slice(-2000)}`);
      const answer = JSON.parse(text) as UploadAnswer;
      assert.equal(answer.Status, 'Success', `${f.path}: ${text}`);
      ids.set(f, answer);
    }
    assert.equal(ids.size, data.files.length);
  });

  test('Orthanc gives back identical bytes', async () => {
    for (const [f, a] of ids) {
      const r = await fetch(`${orthanc.url}/instances/${a.ID}/file`);
      assert.equal(r.status, 200);
      const got = Buffer.from(await r.arrayBuffer());
      assert.ok(got.equals(await readFile(f.path)), `${f.path} came back different`);
    }
  });

  test('Orthanc reports the frames, SOP UIDs and hierarchy the generator wrote', async () => {
    for (const [f, a] of ids) {
      const r = await fetch(`${orthanc.url}/instances/${a.ID}`);
      const inst = (await r.json()) as InstanceAnswer;
      assert.equal(inst.MainDicomTags.SOPInstanceUID, f.sopInstanceUid);
      if (f.frames > 1) assert.equal(inst.MainDicomTags.NumberOfFrames, String(f.frames), f.path);
    }
    const mf = data.files.find((f) => f.kind === 'multiframe');
    assert.equal(mf?.frames, 4);
    const count = async (level: string) => ((await (await fetch(`${orthanc.url}/${level}`)).json()) as string[]).length;
    // Patients: CT, Enhanced CT, echo (cine + stills), MR. Series: 2 CT, 1 Enhanced CT, cine, stills, 1 MR.
    assert.equal(await count('patients'), 4);
    assert.equal(await count('studies'), 4);
    assert.equal(await count('series'), 6);
    assert.equal(await count('instances'), data.files.length);
  });

  test('Orthanc decodes the pixels of every kind', async () => {
    const seen = new Set<string>();
    for (const [f, a] of ids) {
      if (seen.has(f.kind)) continue;
      seen.add(f.kind);
      const frame = f.frames > 1 ? f.frames - 1 : 0;
      const r = await fetch(`${orthanc.url}/instances/${a.ID}/frames/${frame}/preview`);
      assert.equal(r.status, 200, `${f.path}: ${await r.clone().text()}`);
      assert.equal(r.headers.get('content-type'), 'image/png');
      assert.ok((await r.arrayBuffer()).byteLength > 1000);
    }
    assert.equal(seen.size, 5);
  });
});
