// The Orthanc store against a real Orthanc 1.10.1, beyond the common store contract: compressed
// attachments without stored MD5, commits that Orthanc refuses half way (a Lua filter, a truncated file),
// Orthanc going down and coming back, credentials, and a node started with --orthanc.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { orthancIds } from '../../src/dicom/ids.ts';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { isXferError, type ErrorCode } from '../../src/errors.ts';
import { writeCtSlice, writeMultiframe } from '../../src/generate/index.ts';
import { OrthancStore } from '../../src/store/orthanc/store.ts';
import type { StagedInstance } from '../../src/store/types.ts';
import { startXferNode } from '../helpers/node.ts';
import { ORTHANC_BINARY, orthancInstalled, startOrthanc } from '../helpers/orthanc.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

const REAL = REAL_DICOM;
const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

interface Sample {
  path: string;
  bytes: Buffer;
  md5: string;
  id: string;
  sopInstanceUid: string;
}

async function sample(path: string): Promise<Sample> {
  const bytes = await readFile(path);
  const header = await readDicomHeaderFromFile(path);
  return { path, bytes, md5: md5(bytes), id: orthancIds(header).instance, sopInstanceUid: header.sopInstanceUid };
}

async function drain(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, ...texts: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isXferError(e), `an XferError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const t of texts) assert.ok(e.message.includes(t), `"${e.message}" mentions "${t}"`);
    return true;
  });
}

async function postInstance(url: string, bytes: Buffer): Promise<Record<string, unknown>> {
  const r = await fetch(`${url}/instances`, { method: 'POST', body: bytes as BodyInit });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as Record<string, unknown>;
}

async function orthancInstances(url: string, headers: Record<string, string> = {}): Promise<string[]> {
  const r = await fetch(`${url}/instances`, { headers });
  assert.equal(r.status, 200);
  return ((await r.json()) as string[]).sort();
}

/**
 * An Orthanc on a fixed port whose storage outlives it, so that it can be stopped and started again
 * (the shared helper gives each start a new port and new storage).
 */
interface Restartable {
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

function restartableOrthanc(dir: string, port: number, extra: Record<string, unknown> = {}): Restartable {
  let child: ChildProcess | undefined;
  let exited = true;
  const url = `http://127.0.0.1:${port}`;
  const configPath = join(dir, 'orthanc.json');
  return {
    url,
    async start() {
      await writeFile(
        configPath,
        JSON.stringify({
          Name: 'restartable',
          HttpPort: port,
          DicomServerEnabled: false,
          StorageDirectory: join(dir, 'storage'),
          IndexDirectory: join(dir, 'index'),
          RemoteAccessAllowed: false,
          AuthenticationEnabled: false,
          Plugins: [],
          ...extra,
        }),
      );
      const c = spawn(ORTHANC_BINARY, [configPath], { cwd: dir, stdio: 'ignore' });
      child = c;
      exited = false;
      c.on('exit', () => {
        exited = true;
      });
      await waitFor('the restartable Orthanc', async () => {
        if (exited) throw new Error('Orthanc exited during start');
        // Any answer will do (401 included, when credentials are required).
        return (await fetch(`${url}/system`)).status > 0;
      });
    },
    async stop() {
      const c = child;
      if (!c || exited || c.pid === undefined) return;
      const gone = new Promise<void>((r) => c.once('exit', () => r()));
      process.kill(c.pid, 'SIGTERM');
      const t = setTimeout(() => {
        if (!exited && c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
      }, 10_000);
      await gone;
      clearTimeout(t);
    },
  };
}

describe('Orthanc store against a real Orthanc 1.10.1', {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let work: string;
  /** Six slices of one generated CT series, sorted by instance ID. */
  let ct: Sample[] = [];
  let big: Sample;
  const real: Sample[] = [];
  let n = 0;
  const cleanups: (() => Promise<void>)[] = [];

  async function openStore(url: string, extra: Partial<Parameters<typeof OrthancStore.open>[0]> = {}): Promise<OrthancStore> {
    const dir = await mkdtemp(join(tmpdir(), 'dx-ostore-'));
    const store = await OrthancStore.open({ url, storageDirectory: dir, timeoutSeconds: 20, ...extra });
    cleanups.push(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    return store;
  }

  async function copy(s: Sample, dir = work): Promise<string> {
    const path = join(dir, `c${n++}.dcm`);
    await copyFile(s.path, path);
    return path;
  }

  async function stage(store: OrthancStore, list: readonly Sample[]): Promise<StagedInstance[]> {
    const dir = join(store.stagingRoot(), `t${n++}`);
    await mkdir(dir, { recursive: true });
    const out: StagedInstance[] = [];
    for (const s of list) out.push({ id: s.id, path: await copy(s, dir), size: s.bytes.length, md5: s.md5 });
    return out;
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-ostore-work-'));
    for (let i = 0; i < 6; i++) {
      const path = join(work, `ct${i}.dcm`);
      await writeCtSlice(path, { seed: 777, index: i, slices: 6 });
      ct.push(await sample(path));
    }
    ct = ct.sort((a, b) => (a.id < b.id ? -1 : 1));
    await writeMultiframe(join(work, 'big.dcm'), { seed: 778, frames: 24 });
    big = await sample(join(work, 'big.dcm'));
    for (const f of ['2020-09-11-Christopher-ELSCINT1-Raw.dcm', 'Issue164.dcm', 'ColorTestMalaterre.dcm'])
      real.push(await sample(join(REAL, f)));
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('compressed attachments without a stored MD5: uncompressed size, MD5 of the bytes, exact ranges', async () => {
    const orthanc = await startOrthanc({ config: { StorageCompression: true, StoreMD5ForAttachments: false } });
    cleanups.push(() => orthanc.stop());
    const store = await openStore(orthanc.url);
    for (const s of [...real, big]) assert.equal((await store.ingestFile(await copy(s), s.bytes.length, s.md5)).status, 'Success');
    // Orthanc keeps a smaller compressed file and no MD5 at all.
    const info = (await (await fetch(`${orthanc.url}/instances/${big.id}/attachments/dicom/info`)).json()) as Record<string, unknown>;
    assert.equal(info['UncompressedMD5'], '');
    assert.ok((info['CompressedSize'] as number) < big.bytes.length);
    for (const s of [...real, big]) assert.deepEqual(await store.instanceInfo(s.id), { id: s.id, size: s.bytes.length, md5: s.md5 });
    const found = await store.findInstances([...real, big].map((s) => s.id));
    assert.equal(found.size, 4);
    const B = 1 << 20;
    for (const [a, b] of [
      [0, B],
      [7 * B, 8 * B + 5],
      [big.bytes.length - 3, big.bytes.length],
    ] as const) {
      assert.ok((await drain(await store.readRange(big.id, a, b))).equals(big.bytes.subarray(a, b)), `${a}-${b}`);
    }
    const r = real[1] as Sample;
    assert.ok((await drain(await store.readRange(r.id, 100, 5000))).equals(r.bytes.subarray(100, 5000)));
  });

  test('a commit that a Lua filter refuses half way leaves Orthanc as it was', async () => {
    // Two slices are there before; the last of the four others (in the order of the commit) is refused.
    const before = ct.slice(0, 2);
    const transfer = ct.slice(2);
    const refused = transfer[transfer.length - 1] as Sample;
    const lua = join(work, 'filter.lua');
    await writeFile(
      lua,
      `function ReceivedInstanceFilter(dicom, origin, info)\n  return dicom.SOPInstanceUID ~= '${refused.sopInstanceUid}'\nend\n`,
    );
    const orthanc = await startOrthanc({ config: { LuaScripts: [lua] } });
    cleanups.push(() => orthanc.stop());
    for (const s of before) await postInstance(orthanc.url, s.bytes);
    const store = await openStore(orthanc.url, { commitThreads: 1 });

    // Storing that one instance alone is refused clearly.
    await rejectsWith(store.ingestFile(await copy(refused), refused.bytes.length, refused.md5), 'ForbiddenAccess', 'FilteredOut');

    const staged = await stage(store, [...before, ...transfer]);
    await rejectsWith(store.commitStaged(staged), 'CorruptedFile', refused.id, 'FilteredOut', 'removed');
    assert.deepEqual(await orthancInstances(orthanc.url), before.map((s) => s.id).sort());
    for (const s of staged) assert.ok(existsSync(s.path), 'staged files are left on failure');
    // The instances there before are untouched (same bytes).
    for (const s of before) {
      const got = Buffer.from(await (await fetch(`${orthanc.url}/instances/${s.id}/file`)).arrayBuffer());
      assert.ok(got.equals(s.bytes));
    }
  });

  test('a truncated file (our parser reads its header, Orthanc refuses it) rolls back a parallel commit', async () => {
    const orthanc = await startOrthanc();
    cleanups.push(() => orthanc.stop());
    const pre = real[0] as Sample;
    await postInstance(orthanc.url, pre.bytes);
    const store = await openStore(orthanc.url, { commitThreads: 3 });
    const cut = join(work, 'cut.dcm');
    const whole = real[1] as Sample;
    await writeFile(cut, whole.bytes.subarray(0, whole.bytes.length - 1000));
    const truncated = await sample(cut);
    assert.equal(truncated.id, whole.id);
    const staged = await stage(store, [...ct, pre, truncated, big]);
    await rejectsWith(store.commitStaged(staged), 'CorruptedFile', truncated.id, 'Bad file format');
    assert.deepEqual(await orthancInstances(orthanc.url), [pre.id]);
  });

  test('Orthanc down: clear errors naming its URL; once it is back, the next operations work', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-ostore-restart-'));
    const orthanc = restartableOrthanc(dir, await freePort());
    cleanups.push(async () => {
      await orthanc.stop();
      await rm(dir, { recursive: true, force: true });
    });
    await orthanc.start();
    const s = real[0] as Sample;
    const { ID: study } = { ID: (await postInstance(orthanc.url, s.bytes))['ParentStudy'] as string };
    const store = await openStore(orthanc.url);
    const node = await startXferNode({ extraArgs: ['--orthanc', orthanc.url], config: { HttpTimeout: 10 } });
    cleanups.push(async () => void (await node.stop()));
    const lookup = () => fetch(`${node.url}/transfers/lookup`, { method: 'POST', body: JSON.stringify([{ Level: 'Study', ID: study }]) });
    assert.equal((await lookup()).status, 200);

    await orthanc.stop();
    await rejectsWith(store.instanceInfo(s.id), 'DatabaseUnavailable', orthanc.url);
    await rejectsWith(store.readRange(s.id, 0, 10), 'DatabaseUnavailable', orthanc.url);
    await rejectsWith(store.listInstances('Study', study), 'DatabaseUnavailable', orthanc.url);
    await rejectsWith(store.findInstances([s.id]), 'DatabaseUnavailable', orthanc.url);
    const staged = await stage(store, [ct[0] as Sample]);
    await rejectsWith(store.commitStaged(staged), 'DatabaseUnavailable', orthanc.url);
    const down = await lookup();
    assert.equal(down.status, 503);
    const body = (await down.json()) as Record<string, unknown>;
    assert.ok(String(body['Details']).includes(orthanc.url), String(body['Details']));

    await orthanc.start();
    assert.deepEqual(await store.instanceInfo(s.id), { id: s.id, size: s.bytes.length, md5: s.md5 });
    assert.ok((await drain(await store.readRange(s.id, 0, s.bytes.length))).equals(s.bytes));
    assert.deepEqual((await store.commitStaged(staged)).stored, [(ct[0] as Sample).id]);
    const again = await lookup();
    assert.equal(again.status, 200);
    const answer = (await again.json()) as { Instances: { ID: string; MD5: string; Size: string }[] };
    assert.deepEqual(answer.Instances, [{ ID: s.id, MD5: s.md5, Size: String(s.bytes.length) }]);
  });

  test('credentials: Basic auth to Orthanc from the store and from serve --orthanc-username/--orthanc-password', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-ostore-auth-'));
    const orthanc = restartableOrthanc(dir, await freePort(), { AuthenticationEnabled: true, RegisteredUsers: { dx: 's3cret' } });
    cleanups.push(async () => {
      await orthanc.stop();
      await rm(dir, { recursive: true, force: true });
    });
    await orthanc.start();
    assert.equal((await fetch(`${orthanc.url}/instances`)).status, 401);
    const good = await openStore(orthanc.url, { username: 'dx', password: 's3cret' });
    const s = real[2] as Sample;
    assert.equal((await good.ingestFile(await copy(s), s.bytes.length, s.md5)).status, 'Success');
    assert.deepEqual(await good.instanceInfo(s.id), { id: s.id, size: s.bytes.length, md5: s.md5 });
    const bad = await openStore(orthanc.url, { username: 'dx', password: 'wrong' });
    await rejectsWith(bad.instanceInfo(s.id), 'NetworkProtocol', '401', 'OrthancStore.Username');

    const node = await startXferNode({ extraArgs: ['--orthanc', orthanc.url, '--orthanc-username', 'dx', '--orthanc-password', 's3cret'] });
    cleanups.push(async () => void (await node.stop()));
    const r = await fetch(`${node.url}/transfers/lookup`, { method: 'POST', body: JSON.stringify([{ Level: 'Instance', ID: s.id }]) });
    assert.equal(r.status, 200, await r.clone().text());
  });

  test('a node with --orthanc answers the transfers protocol from Orthanc and leaves the resource API out', async () => {
    const orthanc = await startOrthanc();
    cleanups.push(() => orthanc.stop());
    const s = real[1] as Sample;
    const stored = await postInstance(orthanc.url, s.bytes);
    const node = await startXferNode({ extraArgs: ['--orthanc', orthanc.url] });
    cleanups.push(async () => void (await node.stop()));
    assert.equal((await fetch(`${node.url}/system`)).status, 200);
    for (const path of ['/instances', '/patients', `/instances/${s.id}/file`, '/statistics']) {
      assert.equal((await fetch(`${node.url}${path}`)).status, 404, path);
    }
    const r = await fetch(`${node.url}/transfers/lookup`, {
      method: 'POST',
      body: JSON.stringify([{ Level: 'Patient', ID: stored['ParentPatient'] }]),
    });
    const answer = (await r.json()) as { Instances: { ID: string; MD5: string; Size: string }[] };
    assert.deepEqual(answer.Instances, [{ ID: s.id, MD5: s.md5, Size: String(s.bytes.length) }]);
    const chunk = await fetch(`${node.url}/transfers/chunks/${s.id}?offset=1000&size=5000&compression=none`);
    assert.equal(chunk.status, 200);
    assert.ok(Buffer.from(await chunk.arrayBuffer()).equals(s.bytes.subarray(1000, 6000)));
  });
});
