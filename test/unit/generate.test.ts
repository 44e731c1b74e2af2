// The DICOM generator: same seed gives the same bytes, files parse as valid DICOM with the expected
// geometry and hierarchy, gzip compresses them like real images, and big instances stream to disk.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import { decode as decodeJpeg } from 'jpeg-js';
import { isXferError } from '../../src/errors.ts';
import {
  SOP_CLASS,
  TS_EXPLICIT_LE,
  TS_JPEG_BASELINE,
  describeDataset,
  generateDataset,
  resolveCounts,
  writeCtSlice,
  writeMultiframe,
  type DatasetResult,
  type GeneratedFile,
} from '../../src/generate/index.ts';
import { writeFramesFile } from '../../src/generate/out-file.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function hashes(dir: string, files: readonly GeneratedFile[]): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const f of files) m.set(relative(dir, f.path), await sha256(f.path));
  return m;
}

function gzipRatio(b: Buffer): number {
  return b.length / gzipSync(b, { level: 6 }).length;
}

function parse(b: Buffer): dicomParser.DataSet {
  return dicomParser.parseDicom(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
}

function ofKind(r: DatasetResult, kind: GeneratedFile['kind']): GeneratedFile[] {
  return r.files.filter((f) => f.kind === kind);
}

/** Within ±20% of `target`. */
function near(actual: number, target: number, what: string): void {
  assert.ok(actual > target * 0.8 && actual < target * 1.2, `${what}: gzip ratio ${actual.toFixed(3)}, expected about ${target}`);
}

describe('generate', () => {
  let dirA: string;
  let dirB: string;
  let dirC: string;
  let runA: DatasetResult;
  let runB: DatasetResult;

  before(async () => {
    dirA = await mkdtemp(join(tmpdir(), 'dx-gen-a-'));
    dirB = await mkdtemp(join(tmpdir(), 'dx-gen-b-'));
    dirC = await mkdtemp(join(tmpdir(), 'dx-gen-c-'));
    runA = await generateDataset({ out: dirA, seed: 7, preset: 'tiny' });
    runB = await generateDataset({ out: dirB, seed: 7, preset: 'tiny', concurrency: 1 });
  });

  after(async () => {
    for (const d of [dirA, dirB, dirC]) if (d) await rm(d, { recursive: true, force: true });
  });

  test('the tiny preset has every kind of instance', () => {
    const c = resolveCounts({ preset: 'tiny' });
    assert.equal(ofKind(runA, 'ct').length, c.ctSeries * c.ctSlices);
    assert.equal(ofKind(runA, 'mr').length, c.mr);
    assert.equal(ofKind(runA, 'multiframe').length, c.multiframe);
    assert.equal(ofKind(runA, 'us').length, c.us);
    assert.equal(ofKind(runA, 'jpeg').length, c.jpegSeries * c.jpegSlices);
    assert.equal(
      runA.totalBytes,
      runA.files.reduce((s, f) => s + f.size, 0),
    );
  });

  test('presets plan the documented mix without writing anything', () => {
    const full = describeDataset({ preset: 'full' });
    assert.deepEqual(
      { ...full.counts },
      { ctSeries: 3, ctSlices: 300, mr: 2000, multiframe: 2, multiframeMb: 136, us: 1, usMb: 138, jpegSeries: 1, jpegSlices: 100 },
    );
    assert.equal(full.files, 3 * 300 + 2000 + 2 + 1 + 100);
    assert.equal(describeDataset({ preset: 'small', mr: 0, jpegSeries: 0 }).files, 3 * 44 + 2 + 1);
    // study: one CT examination of 300 slices and one 52 MB multi-frame, nothing else.
    assert.equal(describeDataset({ preset: 'study' }).files, 300 + 1);
  });

  test('the same seed gives identical bytes, whatever the concurrency', async () => {
    const a = await hashes(dirA, runA.files);
    const b = await hashes(dirB, runB.files);
    assert.equal(a.size, runA.files.length);
    assert.deepEqual([...b.entries()].sort(), [...a.entries()].sort());
  });

  test('a different seed gives different bytes in every file', async () => {
    const runC = await generateDataset({ out: dirC, seed: 8, preset: 'tiny' });
    const a = await hashes(dirA, runA.files);
    const c = await hashes(dirC, runC.files);
    assert.equal(c.size, a.size);
    for (const [path, h] of c) assert.notEqual(h, a.get(path), `${path} did not change with the seed`);
  });

  test('files on disk have the sizes reported', async () => {
    for (const f of runA.files) assert.equal((await stat(f.path)).size, f.size, f.path);
  });

  test('CT slices compress about 2.3 times with gzip, like real CT', async () => {
    let raw = 0;
    let packed = 0;
    for (const f of ofKind(runA, 'ct')) {
      const b = await readFile(f.path);
      near(gzipRatio(b), 2.3, f.path);
      raw += b.length;
      packed += gzipSync(b, { level: 6 }).length;
    }
    near(raw / packed, 2.3, 'CT series');
    for (const f of ofKind(runA, 'multiframe')) near(gzipRatio(await readFile(f.path)), 2.3, f.path);
  });

  test('the ultrasound cine compresses about 4 times; JPEG images hardly at all', async () => {
    for (const f of ofKind(runA, 'us')) near(gzipRatio(await readFile(f.path)), 4, f.path);
    for (const f of ofKind(runA, 'jpeg')) {
      const r = gzipRatio(await readFile(f.path));
      assert.ok(r < 1.15 && r > 0.95, `${f.path}: JPEG gzip ratio ${r.toFixed(3)}`);
    }
  });

  test('CT slices parse as 512x512 16-bit CT with rescale and positions', async () => {
    const cts = ofKind(runA, 'ct');
    const zs: number[] = [];
    for (const f of cts) {
      const ds = parse(await readFile(f.path));
      assert.equal(ds.string('x00020010'), TS_EXPLICIT_LE);
      assert.equal(ds.string('x00080016'), SOP_CLASS.ct);
      assert.equal(ds.string('x00080018'), f.sopInstanceUid);
      assert.equal(ds.string('x00020003'), f.sopInstanceUid);
      assert.equal(ds.string('x00080060'), 'CT');
      assert.equal(ds.uint16('x00280010'), 512);
      assert.equal(ds.uint16('x00280011'), 512);
      assert.equal(ds.uint16('x00280100'), 16);
      assert.ok([12, 16].includes(ds.uint16('x00280101') ?? 0));
      assert.equal(ds.string('x00281052'), '-1024');
      assert.equal(ds.string('x00281053'), '1');
      const pixels = ds.elements.x7fe00010;
      assert.ok(pixels);
      assert.equal(pixels.length, 512 * 512 * 2);
      assert.equal(pixels.dataOffset + pixels.length, f.size, 'pixel data ends the file');
      zs.push(Number(ds.string('x00200032', 2)));
    }
    // Within a series the slices step down the table, one position per slice.
    const series = new Map<string, number[]>();
    cts.forEach((f, i) => {
      const key = f.path.split('/').slice(-2, -1)[0] ?? '';
      series.set(key, [...(series.get(key) ?? []), zs[i] as number]);
    });
    for (const list of series.values()) {
      for (let i = 1; i < list.length; i++) assert.ok((list[i] as number) < (list[i - 1] as number));
    }
  });

  test('MR images parse as small 16-bit MR images', async () => {
    for (const f of ofKind(runA, 'mr')) {
      const ds = parse(await readFile(f.path));
      assert.equal(ds.string('x00080016'), SOP_CLASS.mr);
      assert.equal(ds.string('x00080060'), 'MR');
      const rows = ds.uint16('x00280010') ?? 0;
      const cols = ds.uint16('x00280011') ?? 0;
      assert.equal(ds.elements.x7fe00010?.length, rows * cols * 2);
      assert.ok(f.size > 55_000 && f.size < 70_000, `MR size ${f.size}`);
    }
  });

  test('the multi-frame and the cine carry NumberOfFrames matching their pixel data', async () => {
    for (const f of [...ofKind(runA, 'multiframe'), ...ofKind(runA, 'us')]) {
      const ds = parse(await readFile(f.path));
      const frames = Number(ds.string('x00280008'));
      assert.equal(frames, f.frames);
      assert.ok(frames > 1);
      const rows = ds.uint16('x00280010') ?? 0;
      const cols = ds.uint16('x00280011') ?? 0;
      const spp = ds.uint16('x00280002') ?? 0;
      const bytes = (ds.uint16('x00280100') ?? 0) / 8;
      assert.equal(ds.elements.x7fe00010?.length, rows * cols * spp * bytes * frames);
      if (f.kind === 'us') {
        assert.equal(ds.string('x00080016'), SOP_CLASS.usMultiframe);
        assert.equal(ds.string('x00280004'), 'RGB');
        assert.deepEqual([rows, cols, spp, bytes], [480, 640, 3, 1]);
      } else {
        assert.equal(ds.string('x00080016'), SOP_CLASS.enhancedCt);
        assert.deepEqual([rows, cols, spp, bytes], [512, 512, 1, 2]);
        const perFrame = ds.elements.x52009230;
        assert.equal(perFrame?.items?.length, frames, 'one per-frame functional group per frame');
      }
    }
  });

  test('JPEG images are encapsulated baseline JPEG that decodes to 640x480', async () => {
    for (const f of ofKind(runA, 'jpeg')) {
      const ds = parse(await readFile(f.path));
      assert.equal(ds.string('x00020010'), TS_JPEG_BASELINE);
      assert.equal(ds.string('x00080016'), SOP_CLASS.us);
      const px = ds.elements.x7fe00010;
      assert.ok(px?.encapsulatedPixelData);
      const frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, px, 0, px.fragments?.length ?? 0);
      assert.equal(frame[0], 0xff);
      assert.equal(frame[1], 0xd8);
      const img = decodeJpeg(frame, { useTArray: true });
      assert.equal(img.width, 640);
      assert.equal(img.height, 480);
      assert.equal(ds.uint16('x00280010'), 480);
      assert.equal(ds.uint16('x00280011'), 640);
    }
  });

  test('instances share patient, study and series UIDs consistently; SOP UIDs are unique', async () => {
    const uid = /^2\.25\.[1-9]\d*$/;
    const sops = new Set<string>();
    const studyOfSeries = new Map<string, string>();
    const patientOfStudy = new Map<string, string>();
    for (const f of runA.files) {
      const ds = parse(await readFile(f.path));
      const study = ds.string('x0020000d') ?? '';
      const series = ds.string('x0020000e') ?? '';
      const patient = ds.string('x00100020') ?? '';
      for (const u of [study, series, f.sopInstanceUid]) {
        assert.match(u, uid);
        assert.ok(u.length <= 64);
      }
      assert.ok(patient.length > 0);
      assert.ok(!sops.has(f.sopInstanceUid), 'duplicate SOP instance UID');
      sops.add(f.sopInstanceUid);
      assert.equal(studyOfSeries.get(series) ?? study, study, 'a series in two studies');
      studyOfSeries.set(series, study);
      assert.equal(patientOfStudy.get(study) ?? patient, patient, 'a study of two patients');
      patientOfStudy.set(study, patient);
    }
    // Several series per study (CT phases; cine and stills), several studies over a few patients.
    assert.ok(new Set(studyOfSeries.values()).size < studyOfSeries.size);
    assert.ok(new Set(patientOfStudy.values()).size >= 3);
  });

  test('a multi-frame instance is streamed: writing 256 MB grows peak memory far less than that', async () => {
    const before = process.resourceUsage().maxRSS * 1024;
    const path = join(dirC, 'big', 'MF.dcm');
    const f = await writeMultiframe(path, { seed: 1, megabytes: 256 });
    const after = process.resourceUsage().maxRSS * 1024;
    assert.equal(f.frames, Math.round(256e6 / (512 * 512 * 2)));
    assert.equal((await stat(path)).size, f.size);
    assert.ok(f.size > 255e6 && f.size < 257e6, `size ${f.size}`);
    assert.ok(after - before < 96 * 1024 * 1024, `peak RSS grew by ${((after - before) / 1e6).toFixed(0)} MB`);
    await rm(path);
  });

  test('writers take explicit frame counts, and refuse what DICOM cannot hold', async () => {
    const f = await writeMultiframe(join(dirC, 'mf3.dcm'), { seed: 2, frames: 3 });
    const ds = parse(await readFile(f.path));
    assert.equal(ds.string('x00280008'), '3');
    await assert.rejects(writeMultiframe(join(dirC, 'huge.dcm'), { seed: 2, frames: 9000 }), (e: unknown) =>
      isXferError(e, 'ParameterOutOfRange'),
    );
    await assert.rejects(writeMultiframe(join(dirC, 'none.dcm'), { seed: 2, megabytes: 0 }), (e: unknown) =>
      isXferError(e, 'ParameterOutOfRange'),
    );
    assert.deepEqual(
      (await readdir(dirC)).filter((n) => n.startsWith('huge') || n.startsWith('none')),
      [],
    );
    const single = await writeCtSlice(join(dirC, 'ct.dcm'), { seed: 2, index: 0, slices: 1 });
    assert.equal(single.frames, 1);
  });

  test('bad counts are refused with ParameterOutOfRange', async () => {
    for (const bad of [{ mr: -1 }, { ctSlices: 1.5 }, { usMb: 0 }, { multiframeMb: Number.NaN }]) {
      assert.throws(
        () => resolveCounts({ preset: 'tiny', ...bad }),
        (e: unknown) => isXferError(e, 'ParameterOutOfRange'),
      );
    }
    await assert.rejects(generateDataset({ out: dirC, seed: -3, preset: 'tiny' }), (e: unknown) => isXferError(e, 'ParameterOutOfRange'));
  });

  test('the CLI writes the requested counts, silent with --quiet, and rejects bad flags', async () => {
    const out = join(dirC, 'cli');
    const args = ['bin/dicom-xfer.mjs', 'generate', '--out', out, '--preset', 'tiny', '--seed', '7', '--quiet'];
    const ok = spawnSync(process.execPath, [...args, '--mr', '2', '--ct-series', '1', '--jpeg-series', '0'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, '');
    assert.equal(ok.stderr, '');
    const mr = await readdir(join(out, 'mr'), { recursive: true });
    assert.equal(mr.filter((n) => n.endsWith('.dcm')).length, 2);
    // Same seed and flags as run A for the cine: same bytes.
    assert.equal(await sha256(join(out, 'us', 'CINE0001.dcm')), await sha256(join(dirA, 'us', 'CINE0001.dcm')));
    const bad = spawnSync(process.execPath, [...args.slice(0, -1), '--ct-slices', 'many'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /ct-slices/);
  });

  test('the frame writer writes head, frames in batches and tail; a failing render leaves no file', async () => {
    const frameBytes = 1000;
    // More frames than one 4 MB batch holds, so the two alternating buffers both serve.
    const frames = 5000;
    const path = join(dirC, 'frames', 'ok.bin');
    const size = await writeFramesFile(path, Buffer.from('HEAD'), frames, frameBytes, (f, into) => into.fill(f % 251), Buffer.from('TAIL'));
    const bytes = await readFile(path);
    assert.equal(size, 4 + frames * frameBytes + 4);
    assert.equal(bytes.length, size);
    assert.equal(bytes.subarray(0, 4).toString(), 'HEAD');
    assert.equal(bytes.subarray(-4).toString(), 'TAIL');
    for (const f of [0, 1, 4193, 4194, frames - 1]) {
      const frame = bytes.subarray(4 + f * frameBytes, 4 + (f + 1) * frameBytes);
      assert.ok(
        frame.every((b) => b === f % 251),
        `frame ${f}`,
      );
    }
    const broken = join(dirC, 'frames', 'broken.bin');
    await assert.rejects(
      writeFramesFile(broken, Buffer.from('HEAD'), frames, frameBytes, (f) => {
        if (f === 4500) throw new Error('render failed');
      }),
      /render failed/,
    );
    assert.deepEqual(await readdir(join(dirC, 'frames')), ['ok.bin']);
  });
});
