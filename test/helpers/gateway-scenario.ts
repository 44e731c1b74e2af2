// The site gateway end to end, run inside a network namespace whose loopback is the emulated WAN link
// (test/integration/gateway-wan.test.ts starts it there with `ip netns exec`): a scanner (dcmtk's storescu)
// sends real files to node A over DICOM; A's rule pushes each stable study to node B; B's rule stores what
// came from A into a real Orthanc PACS over DICOM with storage commitment. Prints one JSON document of facts
// (what was sent, what the PACS holds, what each job reports) for the test to check.
// Usage: node --import tsx test/helpers/gateway-scenario.ts CASE FILE...   CASE: plain | kill-a | pacs-down
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataSetLayout } from '../../src/dicom/dataset.ts';
import { readFile } from 'node:fs/promises';
import { runTool } from './dcmtk.ts';
import { elementsMd5, SCANNER_SYNTAXES } from './gateway-data.ts';
import { type XferNode, startXferNode } from './node.ts';
import { ORTHANC_BINARY } from './orthanc.ts';
import { freePort, waitFor } from './ports.ts';

const [scenario, ...files] = process.argv.slice(2);
const BOUND_MS = Number(process.env.GATEWAY_BOUND_MS ?? 8 * 60_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${r.status} ${text}`);
  return JSON.parse(text) as T;
}

/** One storescu of files in one transfer syntax, proposing it; resolves with its exit code. */
async function storescuOne(port: number, flag: string, list: string[]): Promise<number | null> {
  const args = ['-R', flag, '-aet', 'SCANNER1', '-aec', 'SITEA', '127.0.0.1', String(port), ...list];
  return (await runTool('storescu', args, { timeoutMs: BOUND_MS })).code;
}

/** The scanner sends the files to A, an association per transfer syntax; resolves with the worst exit code. */
async function storescu(port: number, list: string[]): Promise<number | null> {
  const groups = new Map<string, string[]>();
  for (const f of list) {
    const flag = SCANNER_SYNTAXES[dataSetLayout(await readFile(f)).transferSyntaxUid] ?? '-xe';
    groups.set(flag, [...(groups.get(flag) ?? []), f]);
  }
  let worst: number | null = 0;
  for (const [flag, files] of groups) {
    const code = await storescuOne(port, flag, files);
    if (code !== 0) worst = code;
  }
  return worst;
}

interface Pacs {
  url: string;
  port: number;
  dicomPort: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A real Orthanc as the site's PACS, restartable on the same storage and ports. */
async function makePacs(siteBDicomPort: number): Promise<Pacs> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-pacs-'));
  const port = await freePort();
  const dicomPort = await freePort();
  const config = {
    Name: 'pacs',
    HttpPort: port,
    DicomServerEnabled: true,
    DicomAet: 'PACS',
    DicomPort: dicomPort,
    DicomModalities: { siteb: ['SITEB', '127.0.0.1', siteBDicomPort] },
    UnknownSopClassAccepted: true,
    StorageDirectory: join(dir, 'storage'),
    IndexDirectory: join(dir, 'index'),
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    Plugins: [],
  };
  await writeFile(join(dir, 'orthanc.json'), JSON.stringify(config));
  let child: ChildProcess | undefined;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    port,
    dicomPort,
    async start() {
      child = spawn(ORTHANC_BINARY, [join(dir, 'orthanc.json')], { cwd: dir, stdio: 'ignore' });
      await waitFor('the PACS to answer', async () => (await fetch(`${url}/system`)).ok, 60_000);
    },
    async stop() {
      const c = child;
      if (!c?.pid || c.exitCode !== null) return;
      const gone = new Promise((r) => c.once('exit', r));
      process.kill(c.pid, 'SIGTERM');
      await gone;
    },
  };
}

interface Job {
  ID: string;
  Type: string;
  State: string;
  Content: Record<string, unknown>;
}

async function jobs(node: XferNode): Promise<Job[]> {
  return json<Job[]>(`${node.url}/jobs?expand`);
}

async function waitForPacs(pacs: Pacs, count: number): Promise<void> {
  const deadline = Date.now() + BOUND_MS;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    const ids = await json<string[]>(`${pacs.url}/instances`).catch(() => [] as string[]);
    if (ids.length >= count) return;
    await sleep(500);
  }
  throw new Error(`the PACS did not get ${count} instances in time`);
}

async function main(): Promise<void> {
  const sent = files.map((f) => ({ file: f, md5: elementsMd5(f) }));
  const dicomA = await freePort();
  const dicomB = await freePort();
  const pacs = await makePacs(dicomB);
  await pacs.start();
  const aPort = await freePort();
  const b = await startXferNode({
    config: {
      DicomServerEnabled: true,
      DicomAet: 'SITEB',
      JobsHistorySize: 1000,
      DicomPort: dicomB,
      StableAge: 2,
      DicomModalities: { pacs: ['PACS', '127.0.0.1', pacs.dicomPort] },
      OrthancPeers: { 'site-a': [`http://127.0.0.1:${aPort}/`] },
      Routes: [{ Name: 'to-pacs', When: 'StableStudy', Match: { Origin: 'peer:site-a' }, Send: ['pacs'], StorageCommitment: true }],
    },
  });
  const aDir = await mkdtemp(join(tmpdir(), 'dx-site-a-'));
  const aConfig = {
    DicomServerEnabled: true,
    DicomAet: 'SITEA',
    JobsHistorySize: 1000,
    DicomPort: dicomA,
    StableAge: 2,
    OrthancPeers: { 'site-b': [b.url] },
    Routes: [{ Name: 'to-b', When: 'StableStudy', Match: { Origin: 'dicom', CallingAet: 'SCANNER*' }, Send: ['site-b'] }],
  };
  let a = await startXferNode({ config: aConfig, port: aPort, dir: aDir });
  const facts: Record<string, unknown> = { scenario, sent };
  try {
    if (scenario === 'kill-a') {
      // A is killed once half of the files are stored; the scanner then sends them all again.
      const first = storescu(dicomA, files);
      await waitFor(
        'half the files at A',
        async () => (await json<string[]>(`${a.url}/instances`)).length >= files.length / 2,
        BOUND_MS,
        50,
      );
      await a.kill();
      facts['storescuExitWhenKilled'] = await first;
      a = await startXferNode({ config: aConfig, port: aPort, dir: aDir });
      facts['storescuExit'] = await storescu(dicomA, files);
    } else if (scenario === 'pacs-down') {
      // The PACS is down for 60 s from the start: B's sends wait, then go when it is back.
      await pacs.stop();
      const started = Date.now();
      facts['storescuExit'] = await storescu(dicomA, files);
      await sleep(Math.max(0, 60_000 - (Date.now() - started)));
      facts['waitingWhilePacsDown'] = (await jobs(b)).filter((j) => j.Type === 'DicomModalityStore').map((j) => j.Content['Waiting']);
      await pacs.start();
    } else {
      facts['storescuExit'] = await storescu(dicomA, files);
    }
    await waitForPacs(pacs, new Set(sent.map((s) => s.md5)).size);
    // Let the last jobs finish their bookkeeping (commitment answers, route batches marked done).
    await waitFor('the jobs to end', async () => (await jobs(b)).every((j) => j.State === 'Success' || j.State === 'Failure'), 60_000, 200);
    const ids = await json<string[]>(`${pacs.url}/instances`);
    const atPacs: string[] = [];
    for (const id of ids) {
      const r = await fetch(`${pacs.url}/instances/${id}/file`);
      const path = join(aDir, `pacs-${id}.dcm`);
      await writeFile(path, Buffer.from(await r.arrayBuffer()));
      atPacs.push(elementsMd5(path));
    }
    facts['atPacs'] = atPacs;
    facts['jobsA'] = (await jobs(a)).map((j) => ({ Type: j.Type, State: j.State, Content: j.Content }));
    facts['jobsB'] = (await jobs(b)).map((j) => ({ Type: j.Type, State: j.State, Content: j.Content }));
    facts['routesA'] = await json(`${a.url}/routes`);
    facts['routesB'] = await json(`${b.url}/routes`);
  } catch (e) {
    // What each side holds and does, to say where the chain stopped.
    const state = async (name: string, n: XferNode) => ({
      name,
      instances: (await json<string[]>(`${n.url}/instances`).catch(() => [])).length,
      jobs: (await jobs(n).catch(() => [])).map((j) => ({ Type: j.Type, State: j.State, Content: j.Content })),
      routes: await json(`${n.url}/routes`).catch((x: unknown) => String(x)),
    });
    process.stderr.write(`${JSON.stringify([await state('A', a), await state('B', b)], null, 1).slice(0, 20_000)}\n`);
    process.stderr.write(`A's log:\n${a.log().slice(-6000)}\nB's log:\n${b.log().slice(-6000)}\n`);
    throw e;
  } finally {
    await a.stop();
    await b.stop();
    await pacs.stop();
    await rm(aDir, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(facts)}\n`);
}

await main();
