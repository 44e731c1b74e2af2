// What POST /instances takes on a real node process: gzip-encoded bodies (inflated, bounded, a gzip bomb
// refused while read), junk refused from its first bytes, files cut short or damaged refused, ZIP archives
// bounded before any entry is read and answered entry by entry. Each refusal changes nothing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { BIN, startXferNode, type XferNode } from '../helpers/node.ts';
import { deflatedZip, storedZip } from '../helpers/zip.ts';

const DATA = REAL_DICOM;
const FLAIR = join(DATA, 'Brainix/Flair');

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

interface Answer {
  status: number;
  text: string;
  json: unknown;
}

async function post(url: string, body: Uint8Array | string, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await fetch(url, { method: 'POST', body: body as BodyInit, headers });
  const text = await r.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status, text, json };
}

/** Checks Orthanc's JSON error shape and returns it. */
function orthancError(a: Answer, status: number): Record<string, unknown> {
  assert.equal(a.status, status, a.text);
  const body = a.json as Record<string, unknown>;
  for (const key of ['HttpError', 'HttpStatus', 'Message', 'Method', 'OrthancError', 'OrthancStatus', 'Uri']) {
    assert.ok(key in body, `${key} in ${a.text}`);
  }
  assert.equal(body.HttpStatus, status);
  return body;
}

/** Every file under `dir` (the node's storage), relative, except the index database. */
async function storedFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && !/\.(db|sqlite)(-wal|-shm|-journal)?$|lock/.test(e.name))
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

/**
 * A gzip stream that inflates to `start` then `members` MiB of zeros, each MiB its own member (about 1 KiB
 * each): the start of a real DICOM file passes the first look at the bytes.
 */
function gzipBomb(start: Buffer, members: number): Buffer {
  const one = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
  return Buffer.concat([gzipSync(start), ...Array.from({ length: members }, () => one)]);
}

describe('POST /instances: what a node takes', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  let files: Buffer[];

  before(async () => {
    node = await startXferNode({ config: { HttpTimeout: 10, MaximumZipEntries: 6, MaximumZipUncompressedSize: 4 } });
    const names = (await readdir(FLAIR)).sort().slice(0, 4);
    files = await Promise.all(names.map((n) => readFile(join(FLAIR, n))));
  });
  after(async () => {
    await node?.stop();
  });

  const stats = async () => (await (await fetch(`${node.url}/statistics`)).json()) as Record<string, unknown>;

  test("a gzip-encoded file (as Orthanc's peer store sends it) is stored as the file it was", async () => {
    const file = files[0] as Buffer;
    const r = await post(`${node.url}/instances`, gzipSync(file), {
      'content-encoding': 'gzip',
      'content-type': 'application/x-www-form-urlencoded',
    });
    assert.equal(r.status, 200, r.text);
    const id = (r.json as Record<string, string>).ID;
    const back = Buffer.from(await (await fetch(`${node.url}/instances/${id}/file`)).arrayBuffer());
    assert.equal(md5(back), md5(file));
    assert.equal(await (await fetch(`${node.url}/instances/${id}/attachments/dicom/md5`)).text(), md5(file));
    // The same file plain is the same instance.
    const plain = await post(`${node.url}/instances`, file);
    assert.deepEqual({ ...(plain.json as object), Status: 'x' }, { ...(r.json as object), Status: 'x' });
  });

  test('a gzip-encoded JSON body is read as the JSON it was', async () => {
    const body = JSON.stringify({ Resources: [{ Level: 'Study', ID: '00000000-00000000-00000000-00000000-00000000' }] });
    const plain = await post(`${node.url}/transfers/lookup`, body);
    const gz = await post(`${node.url}/transfers/lookup`, gzipSync(body), { 'content-encoding': 'gzip' });
    assert.equal(gz.status, plain.status, gz.text);
    assert.deepEqual(gz.json, plain.json);
  });

  test('a gzip bomb (4 MB inflating to 4 GiB) is refused 413 while read, with bounded memory, storing nothing', async () => {
    const before = await stats();
    const filesBefore = await storedFiles(node.dataDir);
    const bomb = gzipBomb((files[3] as Buffer).subarray(0, 2000), 4096);
    assert.ok(bomb.length < 8 * 1024 * 1024);
    const r = await post(`${node.url}/instances`, bomb, { 'content-encoding': 'gzip' });
    const err = orthancError(r, 413);
    assert.match(String(err.Details), /inflates more than 200 times/);
    const json = await post(`${node.url}/transfers/lookup`, gzipBomb(Buffer.from('{"Resources": []'), 4096), {
      'content-encoding': 'gzip',
    });
    orthancError(json, 413);
    assert.deepEqual(await stats(), before);
    assert.deepEqual(await storedFiles(node.dataDir), filesBefore);
    // The node's peak memory stayed far below what the bomb inflates to.
    const status = await readFile(`/proc/${node.pid}/status`, 'utf8');
    const peakKb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
    assert.ok(peakKb > 0 && peakKb < 1024 * 1024, `peak RSS ${peakKb} kB`);
  });

  test('an unknown Content-Encoding is refused 415; a body that does not inflate, 400; nothing stored', async () => {
    const before = await stats();
    const file = files[1] as Buffer;
    const br = await post(`${node.url}/instances`, file, { 'content-encoding': 'br' });
    assert.match(String(orthancError(br, 415).Details), /unsupported Content-Encoding "br"/);
    const broken = gzipSync(file);
    broken.fill(0x55, 20, 200);
    const bad = await post(`${node.url}/instances`, broken, { 'content-encoding': 'gzip' });
    assert.match(String(orthancError(bad, 400).Details), /cannot be inflated/);
    assert.deepEqual(await stats(), before);
    assert.deepEqual(await readdir(join(node.dataDir, 'tmp')), []);
  });

  test('junk is refused from its first bytes: most of a large body is never sent, nothing is written', async () => {
    const filesBefore = await storedFiles(node.dataDir);
    const total = 1024 * 1024 * 1024;
    const piece = Buffer.alloc(64 * 1024);
    let seed = 12345;
    for (let i = 0; i < piece.length; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      piece[i] = seed >>> 24;
    }
    const outcome = await new Promise<{ status: number; body: string; sentAtAnswer: number; during: string[] }>((resolve, reject) => {
      let sent = 0;
      let answered = false;
      const req = httpRequest(
        { host: '127.0.0.1', port: node.port, method: 'POST', path: '/instances', headers: { 'content-length': String(total) } },
        (res) => {
          answered = true;
          const sentAtAnswer = sent;
          // What the storage holds while the client is still sending.
          const during = storedFiles(node.dataDir);
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => {
            during.then((d) => resolve({ status: res.statusCode ?? 0, body, sentAtAnswer, during: d }), reject);
            req.destroy();
          });
        },
      );
      req.on('error', (e) => {
        if (!answered) reject(e);
      });
      // Bounded: at most `total` bytes, and it stops as soon as the answer came.
      const pump = () => {
        while (!answered && sent < total) {
          sent += piece.length;
          if (!req.write(piece)) {
            req.once('drain', pump);
            return;
          }
        }
        if (!answered) req.end();
      };
      pump();
    });
    assert.equal(outcome.status, 400, outcome.body);
    assert.match(outcome.body, /not a DICOM file nor a ZIP archive/);
    assert.ok(outcome.sentAtAnswer < total / 8, `${outcome.sentAtAnswer} of ${total} bytes sent before the answer`);
    assert.deepEqual(outcome.during, filesBefore);
    assert.deepEqual(await storedFiles(node.dataDir), filesBefore);
  });

  test('a file cut short, or with garbage after its first elements, is refused 400 with the reason; nothing stored', async () => {
    const before = await stats();
    const file = files[2] as Buffer;
    const cut = await post(`${node.url}/instances`, file.subarray(0, file.length - 100));
    const details = String(orthancError(cut, 400).Details);
    assert.match(details, /\(7fe0,0010\) of \d+ bytes at offset \d+ runs past the end of the file/);
    assert.equal((cut.json as Record<string, unknown>).OrthancStatus, 15);
    const garbage = Buffer.from(file);
    for (let i = 1200; i < garbage.length; i++) garbage[i] = (i * 7919) & 0xff;
    orthancError(await post(`${node.url}/instances`, garbage), 400);
    assert.deepEqual(await stats(), before);
    assert.deepEqual(await readdir(join(node.dataDir, 'tmp')), []);
  });

  test('a ZIP with bad entries stores the good ones and reports each entry, the rejected ones with why', async () => {
    const before = await stats();
    const good = files.slice(0, 3);
    const cut = (files[3] as Buffer).subarray(0, (files[3] as Buffer).length - 10);
    const entries = [
      { name: 'a/1.dcm', data: good[0] as Buffer },
      { name: 'notes.txt', data: Buffer.from('not DICOM at all') },
      { name: 'a/2.dcm', data: good[1] as Buffer },
      { name: 'a/cut.dcm', data: cut },
      { name: 'a/3.dcm', data: good[2] as Buffer },
    ];
    const r = await post(`${node.url}/instances`, storedZip(entries), { 'content-type': 'application/zip' });
    assert.equal(r.status, 200, r.text);
    const answers = r.json as Record<string, string>[];
    assert.deepEqual(
      answers.map((a) => a.FileName),
      entries.map((e) => e.name),
    );
    assert.deepEqual(
      answers.map((a) => a.Status === 'Failure'),
      [false, true, false, true, false],
    );
    for (const i of [1, 3]) {
      const a = answers[i] as Record<string, string>;
      assert.equal(a.Message, 'Bad file format');
      assert.equal(a.ID, undefined);
    }
    assert.match(String(answers[3]?.Details), /runs past the end of the file/);
    assert.match(String(answers[1]?.Details), /not a DICOM file/);
    for (const i of [0, 2, 4]) {
      const a = answers[i] as Record<string, string>;
      const back = Buffer.from(await (await fetch(`${node.url}/instances/${a.ID}/file`)).arrayBuffer());
      assert.equal(md5(back), md5(entries[i]?.data as Buffer));
    }
    const now = await stats();
    // The first file was stored by an earlier test already.
    assert.ok((now.CountInstances as number) - (before.CountInstances as number) >= 2);
    assert.deepEqual(await readdir(join(node.dataDir, 'tmp')), []);
  });

  test('dicom-xfer import counts the entries of a ZIP that the node did not store as rejections, naming them', async () => {
    const work = await mkdtemp(join(tmpdir(), 'dx-import-zip-'));
    try {
      const zip = join(work, 'mixed.zip');
      await writeFile(
        zip,
        storedZip([
          { name: 'one.dcm', data: files[0] as Buffer },
          { name: 'docs/readme.txt', data: Buffer.from('read me') },
          { name: 'two.dcm', data: files[1] as Buffer },
        ]),
      );
      const run = await new Promise<{ code: number; stdout: string }>((resolve) => {
        execFile(process.execPath, [BIN, 'import', '--url', node.url, '--json', zip], { timeout: 60_000 }, (err, stdout) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }),
        );
      });
      assert.equal(run.code, 1, run.stdout);
      const summary = JSON.parse(run.stdout) as {
        new: number;
        alreadyStored: number;
        rejected: number;
        rejections: { path: string; reason: string }[];
      };
      assert.equal(summary.new + summary.alreadyStored, 2);
      assert.equal(summary.rejected, 1);
      assert.equal(summary.rejections[0]?.path, `${zip}/docs/readme.txt`);
      assert.match(summary.rejections[0]?.reason ?? '', /^Bad file format: not a DICOM file/);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  test('a ZIP beyond MaximumZipEntries or MaximumZipUncompressedSize is refused 413 before any entry is read', async () => {
    const before = await stats();
    const filesBefore = await storedFiles(node.dataDir);
    const many = storedZip(Array.from({ length: 7 }, (_, i) => ({ name: `${i}.dcm`, data: files[i % files.length] as Buffer })));
    const tooMany = await post(`${node.url}/instances`, many);
    assert.match(String(orthancError(tooMany, 413).Details), /7 entries, more than the 6 allowed \(MaximumZipEntries\)/);
    // 5 MB of zeros deflated to a few KB, behind a real DICOM file that comes first.
    const zeros = Buffer.alloc(5 * 1024 * 1024);
    const bomb = deflatedZip([
      { name: 'first.dcm', data: deflateRawSync(files[0] as Buffer), size: (files[0] as Buffer).length, crc: crc32(files[0] as Buffer) },
      { name: 'zeros.dcm', data: deflateRawSync(zeros), size: zeros.length, crc: crc32(zeros) },
    ]);
    assert.ok(bomb.length < 1024 * 1024);
    const tooBig = await post(`${node.url}/instances`, bomb);
    assert.match(String(orthancError(tooBig, 413).Details), /uncompresses to more than 4 MB \(MaximumZipUncompressedSize\)/);
    assert.deepEqual(await stats(), before);
    assert.deepEqual(await storedFiles(node.dataDir), filesBefore);
  });

  test('a ZIP of 25,000 entries is refused at once by a node with the default limits', async () => {
    const other = await startXferNode();
    try {
      const tiny = storedZip(Array.from({ length: 25_000 }, (_, i) => ({ name: `e${i}`, data: Buffer.from('x') })));
      const r = await post(`${other.url}/instances`, tiny);
      assert.match(String(orthancError(r, 413).Details), /25000 entries, more than the 20000 allowed/);
      assert.deepEqual(await readdir(join(other.dataDir, 'tmp')), []);
    } finally {
      await other.stop();
    }
  });
});
