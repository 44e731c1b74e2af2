// An Orthanc store that goes down is a wait, not a failure: a real Orthanc 1.10.1 holds the data of
// dicom-xfer A. A sends a study to dicom-xfer B while Orthanc is stopped (during the transfer, or before it
// starts), and pulls one from B while Orthanc is stopped before the commit; each job says in plain words
// that the store does not answer, and once Orthanc is started again on the same port and storage it
// finishes with the same bytes on both sides.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { ORTHANC_BINARY, orthancInstalled } from '../helpers/orthanc.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { startProxy, type FaultProxy } from '../helpers/proxy.ts';

const BRAINIX = join(REAL_DICOM, 'Brainix');
const FLAIR = join(BRAINIX, 'Flair');
const EPI = join(BRAINIX, 'Epi');

/** An Orthanc on a fixed port and storage that can be stopped and started again (by its pid). */
class RestartableOrthanc {
  readonly port: number;
  readonly dir: string;
  #child: ChildProcess | undefined;
  #log = '';

  constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  log(): string {
    return this.#log;
  }

  async start(): Promise<void> {
    const config = join(this.dir, 'orthanc.json');
    await writeFile(
      config,
      JSON.stringify({
        Name: 'outage-store',
        HttpPort: this.port,
        DicomServerEnabled: false,
        StorageDirectory: join(this.dir, 'storage'),
        IndexDirectory: join(this.dir, 'index'),
        RemoteAccessAllowed: false,
        AuthenticationEnabled: false,
        Plugins: [],
      }),
    );
    const child = spawn(ORTHANC_BINARY, [config], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    let exited = false;
    child.on('exit', () => (exited = true));
    child.stdout?.on('data', (b: Buffer) => (this.#log = (this.#log + b.toString()).slice(-100_000)));
    child.stderr?.on('data', (b: Buffer) => (this.#log = (this.#log + b.toString()).slice(-100_000)));
    await waitFor('Orthanc to answer /system', async () => {
      if (exited) throw new Error(`Orthanc exited during start:\n${this.#log}`);
      return (await fetch(`${this.url}/system`)).ok;
    });
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.pid === undefined) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    process.kill(child.pid, 'SIGTERM');
    const t = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  }
}

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  assert.equal(r.status, 200, `GET ${url}: ${r.status}`);
  return (await r.json()) as T;
}

async function md5s(base: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const id of await getJson<string[]>(`${base}/instances`)) {
    const r = await fetch(`${base}/instances/${id}/attachments/dicom/md5`);
    assert.equal(r.status, 200);
    out.set(id, (await r.text()).trim());
  }
  return out;
}

describe('an Orthanc store that is down during a send', {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
  timeout: 240_000,
}, () => {
  let work: string;
  let orthanc: RestartableOrthanc;
  let a: XferNode;
  let b: XferNode;
  let toB: FaultProxy;
  let study: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-ostore-outage-'));
    orthanc = new RestartableOrthanc(await freePort(), work);
    await orthanc.start();
    for (const n of (await readdir(FLAIR)).sort()) {
      const r = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: await readFile(join(FLAIR, n)) });
      assert.equal(r.status, 200);
      study = ((await r.json()) as { ParentStudy: string }).ParentStudy;
    }
    const portB = await freePort();
    toB = await startProxy({ target: portB });
    // One bucket per request, one at a time: the transfer is easy to hold between two buckets.
    const transfers = { BucketSize: 512, Threads: 1, MaxThreads: 1, BucketSpans: false, RetryBudget: 120, MaxHttpRetries: 0 };
    b = await startXferNode({ port: portB, config: { Name: 'b', Transfers: transfers } });
    a = await startXferNode({
      extraArgs: ['--orthanc', orthanc.url],
      config: { Name: 'a', HttpTimeout: 5, Transfers: transfers, OrthancPeers: { b: [`${toB.url}/`] } },
    });
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await toB?.stop();
    await orthanc?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the job waits for the store in plain words, then finishes once Orthanc is back', async () => {
    const expected = await md5s(orthanc.url);
    assert.equal(expected.size, 22);
    // The third bucket is held at the peer: the first two have been read from Orthanc, the rest not yet.
    const gate = toB.hold({ method: 'PUT', skip: 2 });
    let id = '';
    try {
      const r = await fetch(`${a.url}/transfers/send`, {
        method: 'POST',
        body: JSON.stringify({ Resources: [{ Level: 'Study', ID: study }], Compression: 'none', Peer: 'b' }),
      });
      assert.equal(r.status, 200, await r.clone().text());
      id = ((await r.json()) as { ID: string }).ID;
      await gate.waitHeld(1, 60_000);
      await orthanc.stop();
    } finally {
      gate.release();
      toB.clearRules();
    }
    // The next bucket cannot be read: the job waits, and says why.
    let job: Record<string, unknown> = {};
    for (let i = 0; i < 600; i++) {
      job = await getJson<Record<string, unknown>>(`${a.url}/jobs/${id}`);
      const waiting = (job.Content as Record<string, unknown>).Waiting;
      if (typeof waiting === 'string' || job.State === 'Success' || job.State === 'Failure') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(job.State, 'Running', JSON.stringify(job));
    assert.match(
      String((job.Content as Record<string, unknown>).Waiting),
      /^the Orthanc store does not answer: connection refused; next try in /,
    );

    await orthanc.start();
    let end: Record<string, unknown> = {};
    for (let i = 0; i < 1200; i++) {
      end = await getJson<Record<string, unknown>>(`${a.url}/jobs/${id}`);
      if (end.State === 'Success' || end.State === 'Failure') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(end.State, 'Success', `${JSON.stringify(end)}\n${a.log().split('\n').slice(-15).join('\n')}`);
    assert.ok(((end.Content as Record<string, unknown>).Retries as number) > 0, 'it retried');
    const got = await md5s(b.url);
    assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
    for (const [k, v] of expected) assert.equal(got.get(k), v, `MD5 of ${k}`);
  });

  /** Polls job `id` of A until `done` holds of it (at most 2 minutes); answers its JSON. */
  async function jobUntil(id: string, done: (j: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    let job: Record<string, unknown> = {};
    for (let i = 0; i < 1200; i++) {
      job = await getJson<Record<string, unknown>>(`${a.url}/jobs/${id}`);
      if (done(job) || job.State === 'Success' || job.State === 'Failure') return job;
      await new Promise((res) => setTimeout(res, 100));
    }
    return job;
  }
  const waitingOf = (j: Record<string, unknown>): unknown => (j.Content as Record<string, unknown>).Waiting;

  test('a send asked for while Orthanc is down waits for it instead of failing', async () => {
    const expected = await md5s(orthanc.url);
    const r0 = await fetch(`${b.url}/studies/${study}`, { method: 'DELETE' });
    assert.equal(r0.status, 200);
    await orthanc.stop();
    const r = await fetch(`${a.url}/transfers/send`, {
      method: 'POST',
      body: JSON.stringify({ Resources: [{ Level: 'Study', ID: study }], Compression: 'gzip', Peer: 'b' }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    const id = ((await r.json()) as { ID: string }).ID;
    const job = await jobUntil(id, (j) => typeof waitingOf(j) === 'string');
    assert.equal(job.State, 'Running', JSON.stringify(job));
    assert.match(String(waitingOf(job)), /^the Orthanc store does not answer: connection refused; next try in /);
    await orthanc.start();
    const end = await jobUntil(id, () => false);
    assert.equal(end.State, 'Success', JSON.stringify(end));
    const got = await md5s(b.url);
    for (const [k, v] of expected) assert.equal(got.get(k), v, `MD5 of ${k}`);
  });

  test('a pull whose commit finds Orthanc down keeps what it fetched and commits once Orthanc is back', async () => {
    let epi = '';
    for (const n of (await readdir(EPI)).sort()) {
      const r = await fetch(`${b.url}/instances`, { method: 'POST', body: await readFile(join(EPI, n)) });
      assert.equal(r.status, 200);
      // Epi is another series of the Flair study: the series alone is pulled.
      epi = ((await r.json()) as { ParentSeries: string }).ParentSeries;
    }
    const ids = (await getJson<{ ID: string }[]>(`${b.url}/series/${epi}/instances`)).map((i) => i.ID);
    assert.equal(ids.length, 22);
    const gate = toB.hold({ method: 'GET', path: '/transfers/chunks/' });
    let id = '';
    try {
      const r = await fetch(`${a.url}/transfers/pull`, {
        method: 'POST',
        body: JSON.stringify({ Resources: [{ Level: 'Series', ID: epi }], Compression: 'gzip', Peer: 'b' }),
      });
      assert.equal(r.status, 200, await r.clone().text());
      id = ((await r.json()) as { ID: string }).ID;
      await gate.waitHeld(1, 60_000);
      await orthanc.stop();
    } finally {
      gate.release();
      toB.clearRules();
    }
    const job = await jobUntil(id, (j) => typeof waitingOf(j) === 'string');
    assert.equal(job.State, 'Running', JSON.stringify(job));
    assert.match(String(waitingOf(job)), /^the Orthanc store does not answer: connection refused; next try in /);
    await orthanc.start();
    const end = await jobUntil(id, () => false);
    assert.equal(end.State, 'Success', `${JSON.stringify(end)}\n${a.log().split('\n').slice(-15).join('\n')}`);
    const atB = new Map<string, string>();
    for (const i of ids) atB.set(i, (await (await fetch(`${b.url}/instances/${i}/attachments/dicom/md5`)).text()).trim());
    const inOrthanc = await md5s(orthanc.url);
    for (const [k, v] of atB) assert.equal(inOrthanc.get(k), v, `MD5 of ${k} in Orthanc`);
    assert.ok(((end.Content as Record<string, unknown>).Retries as number) > 0, 'the commit was made again');
  });
});
