// `dicom-xfer import` run as the real command (node bin/dicom-xfer.mjs) against the real Orthanc, whose
// POST /instances dicom-xfer's node copies; plus the progress display it draws.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { crc32 } from 'node:zlib';
import { runCli, type CliRun } from '../helpers/cli.ts';
import { ORTHANC_BINARY, orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { Progress, describeProgress, formatDuration, formatMB } from '../../src/cli/progress.ts';
import { NodeClient, UsageError, resolveTarget } from '../../src/cli/http.ts';
import { HttpError } from '../../src/http/errors.ts';
import type { ImportSummary } from '../../src/cli/import.ts';
import { describe, needs, REAL_DICOM, listFiles } from '../helpers/data.ts';

const REPO = resolve(import.meta.dirname, '../..');
const BIN = join(REPO, 'bin/dicom-xfer.mjs');
const REAL = REAL_DICOM;
/** The one real file that Orthanc 1.10.1 refuses: it lacks PatientID, StudyInstanceUID and SeriesInstanceUID. */
const NO_IDS = 'Issue196.dcm';

type Run = CliRun;

/** Runs `dicom-xfer ...args` (killed by pid after 120 s). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { env, timeoutMs: 120_000 });
}

function summaryOf(run: Run): ImportSummary {
  try {
    return JSON.parse(run.stdout) as ImportSummary;
  } catch {
    throw new Error(`no JSON summary (exit ${run.code})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
}

async function countInstances(url: string, auth?: string): Promise<number> {
  const r = await fetch(`${url}/statistics`, auth ? { headers: { authorization: auth } } : {});
  assert.equal(r.status, 200);
  return ((await r.json()) as { CountInstances: number }).CountInstances;
}

/** A ZIP archive with the entries stored uncompressed (enough for Orthanc's reader). */
function zipOf(entries: { name: string; data: Buffer }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    centrals.push(central, n);
    offset += local.length + n.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

describe('dicom-xfer import into a real Orthanc', {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let orthanc: OrthancServer;
  let work: string;
  let realFiles: string[];

  before(async () => {
    orthanc = await startOrthanc();
    work = await mkdtemp(join(tmpdir(), 'dx-import-'));
    realFiles = await listFiles(REAL);
  });

  after(async () => {
    await orthanc?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('imports every real file the node accepts, through linked folders: exit 0', async () => {
    // the real set minus the one file without identifiers, reached through symbolic links
    const mirror = join(work, 'mirror');
    await mkdir(mirror);
    for (const name of await readdir(REAL)) {
      if (name !== NO_IDS) await symlink(join(REAL, name), join(mirror, name));
    }
    const run = await cli(['import', '--url', orthanc.url, '--json', mirror]);
    const s = summaryOf(run);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(realFiles.length, 239);
    assert.equal(s.files, 238);
    assert.equal(s.new + s.alreadyStored, 238);
    assert.deepEqual([s.rejected, s.failed, s.notSent, s.error], [0, 0, 0, null]);
    // files sharing a SOPInstanceUID answer AlreadyStored with the same ID
    assert.equal(s.new, s.distinctInstances);
    assert.equal(await countInstances(orthanc.url), s.distinctInstances);
  });

  test("imports the whole real set: the file without identifiers is rejected with the node's reason", async () => {
    const run = await cli(['import', '--url', orthanc.url, '--json', REAL]);
    const s = summaryOf(run);
    assert.equal(run.code, 1);
    assert.equal(s.files, 239);
    assert.equal(s.new + s.alreadyStored + s.rejected, 239);
    assert.equal(s.new, 0);
    assert.equal(s.rejected, 1);
    const [r] = s.rejections;
    assert.equal(r?.path, join(REAL, NO_IDS));
    // Orthanc 1.10.1 refuses it with 404 "Inexistent tag"
    assert.equal(r?.status, 404);
    assert.equal(r?.message, 'Inexistent tag');
    assert.equal(await countInstances(orthanc.url), s.distinctInstances);
    assert.equal(
      s.bytes,
      (await Promise.all(realFiles.map((f) => readFile(f)))).reduce((n, b) => n + b.length, 0),
    );
  });

  test('a second import, addressed through DICOM_XFER_URL, reports everything as already stored', async () => {
    const before = await countInstances(orthanc.url);
    const run = await cli(['import', '--json', '--concurrency', '8', REAL], { DICOM_XFER_URL: orthanc.url });
    const s = summaryOf(run);
    assert.equal(s.url, orthanc.url);
    assert.equal(s.new, 0);
    assert.equal(s.alreadyStored, 238);
    assert.equal(s.rejected, 1);
    assert.equal(await countInstances(orthanc.url), before);

    const knee = await cli(['import', '--url', orthanc.url, '--json', join(REAL, 'Knee')]);
    assert.equal(knee.code, 0);
    const k = summaryOf(knee);
    assert.equal(k.alreadyStored, k.files);
  });

  test('lists a non-DICOM file and a truncated DICOM file as rejected; skips hidden files; survives a link loop', async () => {
    const dir = join(work, 'mixed');
    await mkdir(join(dir, 'sub'), { recursive: true });
    const good = realFiles.find((f) => f.includes('/Brainix/Flair/')) as string;
    const bytes = await readFile(good);
    await writeFile(join(dir, 'good.dcm'), bytes);
    await writeFile(join(dir, 'notes.txt'), 'not a DICOM file\n');
    await writeFile(join(dir, 'sub', 'truncated.dcm'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    await writeFile(join(dir, '.DS_Store'), 'hidden junk');
    await symlink('..', join(dir, 'sub', 'loop')); // a folder that contains itself
    await symlink(join(dir, 'good.dcm'), join(dir, 'sub', 'same.dcm')); // the same file twice

    const run = await cli(['import', '--url', orthanc.url, '--json', dir]);
    assert.equal(run.code, 1);
    const s = summaryOf(run);
    assert.equal(s.files, 3);
    assert.equal(s.new + s.alreadyStored, 1);
    assert.equal(s.rejected, 2);
    const byPath = new Map(s.rejections.map((r) => [relative(dir, r.path), r]));
    for (const name of ['notes.txt', join('sub', 'truncated.dcm')]) {
      const r = byPath.get(name);
      assert.ok(r, `${name} should be rejected: ${JSON.stringify(s.rejections)}`);
      assert.equal(r.status, 400);
      assert.equal(r.message, 'Bad file format');
      assert.match(r.details ?? '', /invalid DICOM file/);
      assert.match(r.reason, /^Bad file format: Cannot parse an invalid DICOM file/);
    }

    // the human summary names each rejected file with the reason
    const text = await cli(['import', '--url', orthanc.url, dir]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /rejected files:\s+2/);
    assert.match(text.stdout, new RegExp(`${join(dir, 'notes.txt')}: Bad file format: Cannot parse an invalid DICOM file`));
    assert.match(text.stdout, /truncated\.dcm: Bad file format/);
  });

  test('uploads a ZIP archive as it is and counts each stored entry', async () => {
    const knee = realFiles.filter((f) => f.includes('/Knee/T2/')).slice(0, 3);
    const entries = await Promise.all(knee.map(async (f, i) => ({ name: `k${i}.dcm`, data: await readFile(f) })));
    const zip = join(work, 'zip');
    await mkdir(zip);
    await writeFile(join(zip, 'three.zip'), zipOf([...entries, { name: 'readme.txt', data: Buffer.from('not DICOM') }]));
    const run = await cli(['import', '--url', orthanc.url, '--json', join(zip, 'three.zip')]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const s = summaryOf(run);
    assert.equal(s.files, 1);
    assert.equal(s.new + s.alreadyStored, 3);

    await writeFile(join(zip, 'empty.zip'), zipOf([{ name: 'readme.txt', data: Buffer.from('not DICOM') }]));
    const none = await cli(['import', '--url', orthanc.url, '--json', join(zip, 'empty.zip')]);
    assert.equal(none.code, 1);
    assert.match(summaryOf(none).rejections[0]?.reason ?? '', /stored no instance/);
  });

  test('says the node is not running when nothing listens at the URL: exit 1', async () => {
    const port = await freePort();
    const run = await cli(['import', '--url', `http://127.0.0.1:${port}`, join(REAL, 'Knee')]);
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /Cannot connect to http:\/\/127\.0\.0\.1:\d+ \(connection refused\): is the node running\? Start it with `dicom-xfer serve`/,
    );
    assert.match(run.stdout, /not sent:\s+\d+/);
  });

  test('usage errors exit with 2 and say what to do', async () => {
    const missing = await cli(['import', '--url', orthanc.url, join(work, 'no-such-folder')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no-such-folder: no such file or folder/);
    const badUrl = await cli(['import', '--url', 'ftp://example', REAL]);
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.stderr, /not an http:\/\/ or https:\/\/ URL/);
    const noPath = await cli(['import', '--url', orthanc.url]);
    assert.equal(noPath.code, 2);
    assert.match(noPath.stderr, /missing required argument/);
    const badN = await cli(['import', '--concurrency', 'lots', REAL]);
    assert.equal(badN.code, 2);
    assert.match(badN.stderr, /--concurrency must be a whole number/);
    const halfCreds = await cli(['import', '--username', 'alice', REAL]);
    assert.equal(halfCreds.code, 2);
    assert.match(halfCreds.stderr, /give both a user name and a password/);
  });

  test('draws a progress bar on a terminal', { skip: !existsSync('/usr/bin/script') && 'needs script(1) from util-linux' }, async () => {
    // script(1) gives the command a pseudo-terminal, so stderr is a TTY as for a person at a shell
    const command = `${process.execPath} ${BIN} import --url ${orthanc.url} ${join(REAL, 'Brainix')}`;
    const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((r) => {
      const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 120_000);
      child.on('close', (c) => {
        clearTimeout(timer);
        r(c);
      });
    });
    assert.equal(code, 0, out);
    const files = (await listFiles(join(REAL, 'Brainix'))).length;
    assert.match(out, new RegExp(`import \\[\\S+\\] 100%  ${files}/${files} files  [\\d.]+/[\\d.]+ MB  [\\d.]+ MB/s  ETA 0s`));
    assert.match(out, /already stored:/);
  });
});

/** An Orthanc that wants HTTP Basic credentials (the shared helper waits for an anonymous /system). */
async function startOrthancWithUsers(users: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-orthanc-auth-'));
  const port = await freePort();
  const config = {
    Name: 'orthanc-auth-test',
    HttpPort: port,
    DicomServerEnabled: false,
    StorageDirectory: join(dir, 'storage'),
    IndexDirectory: join(dir, 'index'),
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: users,
    Plugins: [],
    HttpDescribeErrors: true,
  };
  await writeFile(join(dir, 'orthanc.json'), JSON.stringify(config));
  const child = spawn(ORTHANC_BINARY, [join(dir, 'orthanc.json')], { cwd: dir, stdio: 'ignore' });
  let exited = false;
  const gone = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (!exited && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      await gone;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('Orthanc to ask for credentials', async () => !exited && (await fetch(`${url}/system`)).status === 401);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url, stop };
}

describe('dicom-xfer import into an Orthanc with RegisteredUsers', {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let node: { url: string; stop(): Promise<void> };
  const dir = join(REAL, 'Brainix', 'Epi');

  before(async () => {
    node = await startOrthancWithUsers({ alice: 'wonderland' });
  });
  after(async () => {
    await node?.stop();
  });

  test('without credentials, says that credentials are needed and how to give them', async () => {
    const run = await cli(['import', '--url', node.url, dir]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /needs credentials: pass --username and --password, or set DICOM_XFER_USERNAME and DICOM_XFER_PASSWORD/);
  });

  test('with a wrong password, says the credentials were refused', async () => {
    const run = await cli(['import', '--url', node.url, '--username', 'alice', '--password', 'nope', dir]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /refused the credentials of user "alice"/);
  });

  test('with credentials from the flags or the environment, the import succeeds', async () => {
    const files = (await listFiles(dir)).length;
    const run = await cli(['import', '--url', node.url, '--username', 'alice', '--password', 'wonderland', '--json', dir]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(summaryOf(run).new, files);
    const auth = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
    assert.equal(await countInstances(node.url, auth), files);

    const again = await cli(['import', '--json', dir], {
      DICOM_XFER_URL: node.url,
      DICOM_XFER_USERNAME: 'alice',
      DICOM_XFER_PASSWORD: 'wonderland',
    });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(summaryOf(again).alreadyStored, files);
  });
});

describe('cli http client', { skip: !orthancInstalled() && 'Orthanc is not installed' }, () => {
  test('resolves the node from flags, environment and default; refuses bad URLs as usage errors', () => {
    assert.equal(resolveTarget({}, {}).url, 'http://127.0.0.1:8042');
    assert.equal(resolveTarget({}, { DICOM_XFER_URL: 'http://h:1/base/' }).url, 'http://h:1/base');
    const t = resolveTarget({ url: 'http://bob:s%3Acret@h:1' }, {});
    assert.deepEqual(t, { url: 'http://h:1', username: 'bob', password: 's:cret' });
    assert.throws(() => resolveTarget({ url: 'nope' }, {}), UsageError);
    assert.throws(() => resolveTarget({ password: 'x' }, {}), UsageError);
  });

  test("turns Orthanc's error JSON into an HttpError with the server's reason", async () => {
    const orthanc = await startOrthanc();
    const client = new NodeClient(resolveTarget({ url: orthanc.url }, {}));
    try {
      const err = await client.json('POST', '/instances', { body: Buffer.from('junk') }).then(
        () => assert.fail('junk should be refused'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof HttpError);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'BadFileFormat');
      assert.equal(err.remote?.OrthancStatus, 15);
      assert.match(err.message, /POST \/instances failed with HTTP 400: Bad file format: Cannot parse an invalid DICOM file/);
      const system = await client.json<{ Version: string }>('GET', '/system');
      assert.equal(typeof system.Version, 'string');
    } finally {
      await client.close();
      await orthanc.stop();
    }
  });
});

describe('progress display', () => {
  test('a bar counts files and bytes and ends at 100%', async () => {
    // cli-progress draws only on a terminal: this stream says it is one
    const out = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
    let text = '';
    out.on('data', (b: Buffer) => (text += b.toString()));
    const p = new Progress({ label: 'import', totalFiles: 2, totalBytes: 3_000_000, mode: 'bar', stream: out });
    p.addBytes(1_000_000);
    p.fileDone();
    p.addBytes(2_000_000);
    p.fileDone();
    p.stop();
    p.stop();
    await new Promise((r) => setImmediate(r));
    const s = p.snapshot();
    assert.deepEqual([s.filesDone, s.bytesDone, s.totalFiles, s.totalBytes], [2, 3_000_000, 2, 3_000_000]);
    assert.match(text, /import \[\S+\] 100% {2}2\/2 files {2}3\.00\/3\.00 MB {2}[\d.]+ MB\/s {2}ETA 0s/);
  });

  test('plain lines on a pipe, none when quiet', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (b: Buffer) => (text += b.toString()));
    const p = new Progress({ label: 'import', totalFiles: 10, totalBytes: 10 * 1_000_000, stream: out, lineIntervalMs: 20 });
    assert.equal(p.mode, 'lines');
    p.addBytes(4_000_000);
    p.fileDone();
    await waitFor('a progress line', async () => text.includes('\n'), 5_000, 10);
    p.stop();
    assert.match(text, /^import: 1\/10 files {2}4\.00\/10\.0 MB {2}[\d.]+ MB\/s {2}ETA \S+\n/);
    const q = new Progress({ label: 'import', totalFiles: 1, stream: out, quiet: true });
    assert.equal(q.mode, 'none');
    q.stop();
  });

  test('formats sizes and durations for people', () => {
    assert.equal(formatMB(45_295_061), '45.3 MB');
    assert.equal(formatMB(1_500_000), '1.50 MB');
    assert.equal(formatDuration(42), '42s');
    assert.equal(formatDuration(187), '3m07s');
    assert.equal(formatDuration(3720), '1h02m');
    assert.equal(formatDuration(undefined), '?');
    assert.equal(
      describeProgress({
        filesDone: 1,
        totalFiles: 4,
        bytesDone: 0,
        totalBytes: 0,
        elapsedMs: 0,
        bytesPerSecond: 0,
        etaSeconds: undefined,
      }),
      '1/4 files  0.00 MB  0.00 MB/s  ETA ?',
    );
  });
});
