// The DICOMweb client's pure parts on real inputs: requests grouped without splitting an instance and within
// MaxRequestSize, a STOW-RS answer read instance by instance, bearer tokens from a real file and a real
// command (refreshed when the file changes, before expiry, after a refusal).
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { finishedFacts } from '../../src/jobs/facts.ts';
import { parseStowAnswer, reasonText, stowBody } from '../../src/dicomweb/client/stow-body.ts';
import { parseMultipartType, readMultipart } from '../../src/dicomweb/multipart.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { md5File } from '../../src/util/fs.ts';
import { listFiles, someDicom } from '../helpers/data.ts';
import { groupInstances, sendOrder } from '../../src/dicomweb/client/stow-plan.ts';
import { bearerTokenOf, parseTokenOutput } from '../../src/dicomweb/client/token.ts';
import { firstPart } from '../../src/dicomweb/client/retrieve-job.ts';

test('requests of about the bucket size, an instance never split, none above MaxRequestSize unless alone', () => {
  const sizes = [100, 300, 700, 50, 2000, 10, 10].map((Size) => ({ Size }));
  assert.deepEqual(groupInstances(sizes, 1000, undefined), [[0, 1], [2, 3], [4], [5, 6]]);
  assert.deepEqual(groupInstances(sizes, 1000, 400), [[0, 1], [2], [3], [4], [5, 6]]);
  assert.deepEqual(groupInstances([], 1000, undefined), []);
});

test('requests are sent largest first (a large instance, never split, does not run alone at the end); those done are left out', () => {
  const plan = [100, 300, 700, 50, 2000, 10, 10].map((Size) => ({ Size }));
  const groups = groupInstances(plan, 1000, undefined);
  assert.deepEqual(sendOrder(groups, plan, new Set()), [2, 1, 0, 3]);
  assert.deepEqual(sendOrder(groups, plan, new Set([2, 0])), [1, 3]);
  assert.deepEqual(sendOrder([[0], [1]], [{ Size: 5 }, { Size: 5 }], new Set()), [0, 1]);
});

test('a STOW-RS answer: stored and refused instances with their reasons, as Orthanc and the standard write them', () => {
  const answer = {
    '00081190': { vr: 'UR', Value: ['http://a/studies/1'] },
    '00081199': { vr: 'SQ', Value: [{ '00081150': { vr: 'UI', Value: ['1.2.840'] }, '00081155': { vr: 'UI', Value: ['1.1'] } }] },
    '00081198': {
      vr: 'SQ',
      Value: [
        { '00081155': { vr: 'UI', Value: ['1.2'] }, '00081197': { vr: 'US', Value: [0xa900] } },
        { '00081155': { vr: 'UI', Value: ['1.3'] } },
      ],
    },
  };
  assert.deepEqual(parseStowAnswer(answer), [
    { sopInstanceUid: '1.1', stored: true },
    { sopInstanceUid: '1.2', stored: false, reason: 0xa900 },
    { sopInstanceUid: '1.3', stored: false },
  ]);
  assert.deepEqual(parseStowAnswer([answer]).length, 3);
  assert.deepEqual(parseStowAnswer({ '00081198': { vr: 'SQ' }, '00081199': { vr: 'SQ' } }), []);
  assert.equal(reasonText(0xa900), '0xA900 data set does not match SOP class');
  assert.equal(reasonText(0x1234), '0x1234');
});

test('a STOW-RS body of stored instances: its announced length exact and counted as it streams, each part the stored file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dx-stow-body-'));
  const store = await EmbeddedStore.open(join(dir, 'store'));
  try {
    const files = (await listFiles(await someDicom())).slice(0, 5);
    const parts: { ID: string; Size: number }[] = [];
    for (const [i, f] of files.entries()) {
      const copy = join(dir, `in${i}.dcm`);
      await copyFile(f, copy);
      const size = (await stat(copy)).size;
      parts.push({ ID: (await store.ingestFile(copy, size, await md5File(copy))).ids.instance, Size: size });
    }
    const body = stowBody(store, parts);
    assert.equal(parseMultipartType(body.contentType).type, 'application/dicom');
    // Opened twice, as a retry does: each opening streams the same bytes afresh.
    for (let round = 0; round < 2; round++) {
      const bytes: Buffer[] = [];
      let told = 0;
      for await (const c of body.open((n) => (told += n))) bytes.push(c as Buffer);
      const whole = Buffer.concat(bytes);
      assert.equal(whole.length, body.length);
      assert.equal(told, body.length, 'every byte told to the controller once');
      const got: Buffer[] = [];
      for await (const part of readMultipart([whole], parseMultipartType(body.contentType).boundary)) {
        assert.equal(part.headers['content-type'], 'application/dicom');
        const pieces: Buffer[] = [];
        for await (const p of part.body) pieces.push(p);
        got.push(Buffer.concat(pieces));
        assert.equal(part.headers['content-length'], String(got.at(-1)?.length));
      }
      assert.deepEqual(got, await Promise.all(files.map((f) => readFile(f))));
    }
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

/** Collects what `firstPart` yields for `body` cut into chunks at `cuts`. */
async function partOf(contentType: string, body: Buffer, cuts: number[]): Promise<Buffer> {
  async function* chunks(): AsyncGenerator<Buffer> {
    let from = 0;
    for (const at of [...cuts, body.length]) {
      yield body.subarray(from, at);
      from = at;
    }
  }
  const out: Buffer[] = [];
  for await (const b of firstPart(contentType, chunks())) out.push(b);
  return Buffer.concat(out);
}

test('the first part of a WADO-RS multipart answer, streamed whatever the chunks, its boundary quoted or not', async () => {
  const payload = Buffer.from('DICM\r\n--b\r\n-- almost a delimiter \r\n--b-1\r\n-');
  const body = Buffer.concat([Buffer.from('--b1\r\nContent-Type: application/dicom\r\n\r\n'), payload, Buffer.from('\r\n--b1--\r\n')]);
  // The boundary quoted or not, before or after the type parameter.
  for (const t of [
    'multipart/related; type="application/dicom"; boundary="b1"',
    'multipart/related; boundary=b1; type="application/dicom"',
  ]) {
    assert.deepEqual(await partOf(t, body, [5]), payload, t);
  }
  const type = 'multipart/related; boundary=b1';
  // Every place one cut can fall, and every pair of places.
  for (let i = 0; i <= body.length; i++) {
    assert.deepEqual(await partOf(type, body, [i]), payload, `cut at ${i}`);
    for (let j = i; j <= body.length; j += 7) assert.deepEqual(await partOf(type, body, [i, j]), payload, `cuts at ${i}, ${j}`);
  }
  assert.deepEqual(await partOf('application/dicom', payload, [3]), payload);
  await assert.rejects(partOf(type, Buffer.from('--b1\r\n\r\nunfinished'), []), /ends inside/);
  await assert.rejects(partOf(type, Buffer.from('no part'), []), /NetworkProtocol|holds no boundary/);
  await assert.rejects(partOf(type, Buffer.from('--b1--\r\n'), []), /holds no part/);
  await assert.rejects(partOf('text/plain', payload, []), /WADO-RS answer/);
});

test('bearer tokens: the file read again when it changes, the command run again before expiry and after a refusal', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dx-token-'));
  try {
    const file = join(dir, 'token');
    await writeFile(file, ' one\n');
    const fromFile = bearerTokenOf({ name: 's', url: 'http://x/', httpHeaders: {}, maxRequestSize: 0, bearerTokenFile: file });
    assert.equal(await fromFile?.get(), 'one');
    await writeFile(file, 'two-longer\n');
    assert.equal(await fromFile?.get(), 'two-longer');

    // A command that counts its runs and prints OAuth's JSON with a lifetime of 100 s.
    const counter = join(dir, 'count');
    await writeFile(counter, '0');
    const script =
      "const fs=require('fs');const f=process.argv[1];const n=Number(fs.readFileSync(f,'utf8'))+1;fs.writeFileSync(f,String(n));" +
      "process.stdout.write(JSON.stringify({access_token:'t'+n,expires_in:100}))";
    let now = 1_000_000;
    const server = {
      name: 's',
      url: 'http://x/',
      httpHeaders: {},
      maxRequestSize: 0,
      bearerTokenCommand: [process.execPath, '-e', script, counter],
    };
    const fromCommand = bearerTokenOf(server, () => now);
    assert.equal(await fromCommand?.get(), 't1');
    now += 50_000;
    assert.equal(await fromCommand?.get(), 't1', 'still valid: not run again');
    now += 35_000; // within the last fifth of its life
    assert.equal(await fromCommand?.get(), 't2');
    fromCommand?.invalidate();
    assert.equal(await fromCommand?.get(), 't3');
    assert.deepEqual(parseTokenOutput('plain-token\n'), { token: 'plain-token', expiresIn: undefined });
    const failing = bearerTokenOf({ ...server, bearerTokenCommand: [process.execPath, '-e', 'process.exit(3)'] });
    await assert.rejects(failing?.get() ?? Promise.resolve(), /BearerTokenCommand of DICOMweb server "s" failed/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a DICOMweb job's log line names its kind and its server", () => {
  const stow = finishedFacts('DicomWebStow', { Server: 'archive', TotalInstances: 3 }, 2000);
  assert.equal(stow.message, 'STOW-RS finished: 3 instances to DICOMweb server "archive" in 2 s');
  const back = finishedFacts('DicomWebRetrieve', { Server: 'archive', TotalInstances: 1 }, 1000);
  assert.equal(back.message, 'DICOMweb retrieve finished: 1 instance from DICOMweb server "archive" in 1 s');
});
