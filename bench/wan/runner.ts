// The part of the WAN benchmark that runs inside the network namespace (started by bench/wan.ts through
// `ip netns exec`): for one link profile, starts the two nodes of every method in the namespace, times
// the transfer, reads CPU, peak RSS and the link's byte counters, checks every instance's MD5 at the
// destination, and writes a ProfileResult. Usage: node --import tsx bench/wan/runner.ts SPEC.json
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, Agent, get } from 'node:http';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { mapLimit } from '../../src/util/concurrency.ts';
import { startXferNode, type XferNode } from '../../test/helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../../test/helpers/orthanc.ts';
import { freePort } from '../../test/helpers/ports.ts';
import {
  BASELINES,
  FRAME_OVERHEAD,
  ControlClient,
  METHODS,
  procUsage,
  sleep,
  usageDelta,
  type MethodName,
  type ProfileResult,
  type RunResult,
  type RunnerSpec,
  type Verification,
  type WireBytes,
} from './common.ts';
import { readCounters, type Counters } from './netns.ts';
import { runStow, stowUnavailable, type StowRunDeps } from './scenario-stow.ts';

const REPO = resolve(import.meta.dirname, '..', '..');
const spec = JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as RunnerSpec;
const control = new ControlClient(spec.controlAddress);
const started = performance.now();
const log = (s: string): void => {
  process.stderr.write(`[${spec.profile.name} ${((performance.now() - started) / 1000).toFixed(1)}s] ${s}\n`);
};

// ---- processes this runner started, stopped on any exit ------------------------------------------------

const running = new Set<{ stop(): Promise<unknown> }>();

async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop().catch(() => undefined)));
  running.clear();
}

const result: ProfileResult = { profile: spec.profile, cc: spec.cc, measuredRttMs: null, runs: [], skipped: [] };

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping the nodes; the runs done so far are kept`);
    void stopAll()
      .then(() => writeFile(spec.out, JSON.stringify(result, null, 1)))
      .finally(() => process.exit(130));
  });
}

function track<T extends { stop(): Promise<unknown> }>(p: T): T {
  running.add(p);
  const stop = p.stop.bind(p);
  p.stop = async () => {
    running.delete(p);
    return stop();
  };
  return p;
}

// ---- the source stores, imported once per benchmark and kept across profiles ----------------------------

type Md5Map = Record<string, string>;

/** POSTs every data set file to `base`/instances, four at a time, from the control address. */
async function importDataset(base: string): Promise<void> {
  const pool = control.pool(base);
  let done = 0;
  await mapLimit(spec.dataset.files, 4, async (f) => {
    const res = await pool.request({
      method: 'POST',
      path: '/instances',
      body: createReadStream(join(spec.dataset.dir, f.path)),
      headers: { 'content-type': 'application/dicom', 'content-length': String(f.size) },
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`import ${f.path} into ${base}: HTTP ${res.statusCode} ${text.slice(0, 300)}`);
    if (++done % 500 === 0) log(`  imported ${done}/${spec.dataset.files.length}`);
  });
}

/** Instance ID -> MD5 of the stored file, as the server's own attachment route says. */
async function md5Map(base: string): Promise<Md5Map> {
  const ids = await control.json<string[]>(base, 'GET', '/instances');
  const sums = await mapLimit(ids, 16, (id) => control.text(base, `/instances/${id}/attachments/dicom/md5`));
  return Object.fromEntries(ids.map((id, i) => [id, (sums[i] as string).trim().replace(/"/g, '')]));
}

const xferADir = join(spec.workDir, 'xfer-a');
const orthancADir = join(spec.workDir, 'orthanc-a');

/** A dicom-xfer node on the persistent source directory, with its job history cleared. */
async function startXferA(
  port: number,
  peers: Record<string, string[]>,
  transfers: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Promise<XferNode> {
  // A job cut short by a previous run's timeout would resume at start: the source starts without history.
  for (const suffix of ['', '-wal', '-shm']) await rm(join(xferADir, 'data', `jobs.sqlite${suffix}`), { force: true });
  const config = { Name: 'bench-a', LogLevel: 'warn', OrthancPeers: peers, Transfers: transfers, ...extra };
  return track(await startXferNode({ dir: xferADir, port, config, nodeArgs: nodeArgsOf('BENCH_SENDER_NODE_ARGS') }));
}

/**
 * Options for node itself on one side (e.g. `--cpu-prof --cpu-prof-dir=DIR` to profile the receiver), from
 * BENCH_SENDER_NODE_ARGS / BENCH_RECEIVER_NODE_ARGS, split on spaces.
 */
function nodeArgsOf(variable: string): string[] {
  return (process.env[variable] ?? '').split(' ').filter((a) => a !== '');
}

function orthancConfig(name: string): Record<string, unknown> {
  return {
    Name: name,
    // The control address (127.0.0.2) counts as remote for Orthanc; inside the namespace only loopback exists.
    RemoteAccessAllowed: spec.controlAddress !== null,
    AuthenticationEnabled: false,
    // Orthanc's HttpTimeout bounds a whole peer request; a large instance on a slow link needs long.
    HttpTimeout: 3600,
    SaveJobs: false,
  };
}

async function startOrthancA(peers: Record<string, string[]>, extra: Record<string, unknown> = {}): Promise<OrthancServer> {
  return track(
    await startOrthanc({
      name: 'bench-orthanc-a',
      config: {
        ...orthancConfig('bench-orthanc-a'),
        StorageDirectory: join(orthancADir, 'storage'),
        IndexDirectory: join(orthancADir, 'index'),
        OrthancPeers: peers,
        ...extra,
      },
    }),
  );
}

/** The source MD5s of a store kind, importing the data set the first time. */
async function prepareSource(kind: 'xfer' | 'orthanc'): Promise<Md5Map> {
  const dir = kind === 'xfer' ? xferADir : orthancADir;
  const marker = join(dir, 'imported.json');
  if (existsSync(marker)) return JSON.parse(await readFile(marker, 'utf8')) as Md5Map;
  await mkdir(dir, { recursive: true });
  const server = kind === 'xfer' ? await startXferA(await freePort(), {}) : await startOrthancA({});
  try {
    log(`importing ${spec.dataset.files.length} files into the ${kind === 'xfer' ? 'dicom-xfer' : 'Orthanc'} source (not timed)`);
    const t0 = performance.now();
    await importDataset(server.url);
    const sums = await md5Map(server.url);
    if (Object.keys(sums).length !== spec.dataset.files.length) {
      throw new Error(`the ${kind} source holds ${Object.keys(sums).length} instances, not ${spec.dataset.files.length}`);
    }
    log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await writeFile(marker, JSON.stringify(sums));
    return sums;
  } finally {
    await server.stop();
  }
}

// ---- one timed run ---------------------------------------------------------------------------------------

/** Every source instance present at the destination with the same MD5, and nothing else there. */
async function verify(base: string, source: Md5Map): Promise<Verification> {
  const dest = new Set(await control.json<string[]>(base, 'GET', '/instances'));
  const expected = Object.keys(source);
  const present = expected.filter((id) => dest.has(id));
  const sums = await mapLimit(present, 16, (id) => control.text(base, `/instances/${id}/attachments/dicom/md5`));
  const mismatches = present.filter((id, i) => (sums[i] as string).trim().replace(/"/g, '') !== source[id]).length;
  const extra = [...dest].filter((id) => source[id] === undefined).length;
  const missing = expected.length - present.length;
  return {
    expected: expected.length,
    atDestination: dest.size,
    missing,
    extra,
    md5Mismatches: mismatches,
    ok: missing === 0 && extra === 0 && mismatches === 0,
  };
}

interface JobView {
  State?: string;
  ErrorDescription?: string;
  ErrorDetails?: string;
  Content?: Record<string, unknown>;
}

class Timeout extends Error {}

/** The time bound of the run under way (the baselines may have a shorter one). */
let boundSeconds = spec.runTimeoutSeconds;

/** Polls a job (dicom-xfer or Orthanc) every 100 ms until it succeeds, fails, or the deadline passes. */
async function waitJob(base: string, id: string, deadline: number): Promise<JobView> {
  for (let i = 0; i < 10_000_000; i++) {
    const job = await control.json<JobView>(base, 'GET', `/jobs/${id}`);
    if (job.State === 'Success') return job;
    if (job.State === 'Failure') {
      throw Object.assign(new Error(`job failed: ${job.ErrorDescription ?? ''} ${job.ErrorDetails ?? ''}`.trim()), { job });
    }
    if (Date.now() > deadline) throw new Timeout(`timeout: not done after ${boundSeconds} s (job ${job.State ?? '?'})`);
    await sleep(100);
  }
  throw new Timeout('timeout');
}

interface Sides {
  sender: { pid: number; stop(): Promise<unknown>; log(): string };
  receiver: { url: string; pid: number; stop(): Promise<unknown>; log(): string };
  client?: { pid: number; log(): string };
}

/** The end of a process's output, kept with a failed run so that its cause can be read. */
const tail = (text: string): string => text.slice(-3000);

/** Measures `transfer` between two started servers, then verifies and stops them. */
async function timed(
  method: MethodName,
  sides: Sides,
  source: Md5Map,
  transfer: (deadline: number) => Promise<JobView | undefined>,
): Promise<RunResult> {
  const bytes = spec.dataset.totalBytes;
  const instances = spec.dataset.files.length;
  const before = {
    counters: spec.countWire ? await readCounters() : undefined,
    sender: await procUsage(sides.sender.pid),
    receiver: await procUsage(sides.receiver.pid),
    client: sides.client ? await procUsage(sides.client.pid) : undefined,
    load: loadavg()[0] ?? 0,
  };
  const t0 = performance.now();
  let error: string | undefined;
  let job: JobView | undefined;
  try {
    boundSeconds =
      METHODS[method].baseline && spec.baselineTimeoutSeconds !== null
        ? Math.min(spec.runTimeoutSeconds, spec.baselineTimeoutSeconds)
        : spec.runTimeoutSeconds;
    job = await transfer(Date.now() + boundSeconds * 1000);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
    job = (e as { job?: JobView }).job;
  }
  const wallSeconds = (performance.now() - t0) / 1000;
  const after = {
    counters: spec.countWire ? await readCounters() : undefined,
    sender: await procUsage(sides.sender.pid).catch(() => undefined),
    receiver: await procUsage(sides.receiver.pid).catch(() => undefined),
    client: sides.client ? await procUsage(sides.client.pid).catch(() => undefined) : undefined,
    load: loadavg()[0] ?? 0,
  };
  // Nothing more may arrive while the destination is checked.
  await sides.sender.stop();
  let verification: Verification | null = null;
  try {
    verification = await verify(sides.receiver.url, source);
  } catch (e) {
    error ??= `verification failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  await sides.receiver.stop();

  const wire = wireBytes(before.counters, after.counters);
  const { rateMbit, rttMs } = spec.profile;
  const best = METHODS[method].compression !== 'none' ? spec.dataset.gzip6Bytes : bytes;
  const limitSeconds = rateMbit === null ? null : (best * FRAME_OVERHEAD * 8) / (rateMbit * 1e6) + rttMs / 1000;
  const sender = after.sender ? usageDelta(before.sender, after.sender) : null;
  const client = before.client && after.client ? usageDelta(before.client, after.client) : undefined;
  const result: RunResult = {
    method,
    ok: error === undefined && verification?.ok === true,
    wallSeconds,
    instances,
    dicomBytes: bytes,
    dicomMBps: bytes / 1e6 / wallSeconds,
    wire,
    linkUtilisation: wire && rateMbit !== null ? (wire.busierBytes * 8) / (wallSeconds * rateMbit * 1e6) : null,
    limitSeconds,
    ratioToLimit: limitSeconds === null ? null : limitSeconds / wallSeconds,
    sender,
    receiver: after.receiver ? usageDelta(before.receiver, after.receiver) : null,
    verify: verification,
    speedup: {},
    loadAverage: { before: before.load, after: after.load },
  };
  if (sides.client) result.client = client ?? null;
  if (error !== undefined) result.error = error;
  else if (verification && !verification.ok) result.error = 'instances lost or altered at the destination';
  if (!result.ok) {
    result.logs = { sender: tail(sides.sender.log()), receiver: tail(sides.receiver.log()) };
    if (sides.client) result.logs.client = tail(sides.client.log());
  }
  if (job?.Content) result.job = job.Content;
  return result;
}

function wireBytes(before: Counters | undefined, after: Counters | undefined): WireBytes | null {
  if (!before || !after) return null;
  const originalBytes = after.original - before.original;
  const replyBytes = after.reply - before.reply;
  return {
    originalBytes,
    replyBytes,
    busierBytes: Math.max(originalBytes, replyBytes),
    totalBytes: originalBytes + replyBytes,
    loopbackBytes: after.loopback - before.loopback,
  };
}

async function studiesOf(base: string): Promise<string[]> {
  return control.json<string[]>(base, 'GET', '/studies');
}

/** With knownPeer: the port of each method's receiver, kept across its runs (one run at a time). */
const knownPorts = new Map<MethodName, { a: number; b: number }>();

async function runXfer(method: MethodName, source: Md5Map): Promise<RunResult> {
  const { kind, compression } = METHODS[method];
  const fresh = { a: await freePort(), b: await freePort() };
  const ports = spec.knownPeer ? (knownPorts.get(method) ?? fresh) : fresh;
  knownPorts.set(method, ports);
  const [portA, portB] = [ports.a, ports.b];
  const urlA = `http://127.0.0.1:${portA}`;
  const urlB = `http://127.0.0.1:${portB}`;
  // gzip stays gzip on the wire (Zstd off on both nodes); zstd is what two nodes that list it use.
  const Transfers = { Zstd: compression === 'zstd' };
  const a = await startXferA(portA, { b: [urlB] }, Transfers);
  const configB = { Name: 'bench-b', LogLevel: 'warn', OrthancPeers: { a: [urlA] }, Transfers };
  const b = track(await startXferNode({ port: portB, config: configB, nodeArgs: nodeArgsOf('BENCH_RECEIVER_NODE_ARGS') }));
  const studies = await studiesOf(urlA);
  const Resources = studies.map((ID) => ({ Level: 'Study', ID }));
  return timed(method, { sender: a, receiver: b }, source, async (deadline) => {
    const handle =
      kind === 'push'
        ? await control.json<{ ID: string }>(urlA, 'POST', '/transfers/send', { Resources, Compression: compression, Peer: 'b' })
        : await control.json<{ ID: string }>(urlB, 'POST', '/transfers/pull', { Resources, Compression: compression, Peer: 'a' });
    return waitJob(kind === 'push' ? urlA : urlB, handle.ID, deadline);
  });
}

async function runOrthanc(method: MethodName, source: Md5Map): Promise<RunResult> {
  const b = track(await startOrthanc({ name: 'bench-orthanc-b', config: orthancConfig('bench-orthanc-b') }));
  const a = await startOrthancA({ b: [`${b.url}/`] });
  const studies = await studiesOf(a.url);
  return timed(method, { sender: a, receiver: b }, source, async (deadline) => {
    const handle = await control.json<{ ID: string }>(a.url, 'POST', '/peers/b/store', {
      Resources: studies,
      Asynchronous: true,
      Compress: METHODS[method].compression === 'gzip',
    });
    return waitJob(a.url, handle.ID, deadline);
  });
}

/** The baseline client as a child process, ready (it has the source's list) and waiting for "go". */
async function startPostClient(
  sourceUrl: string,
  destUrl: string,
): Promise<{
  pid: number;
  log(): string;
  go(deadline: number): Promise<void>;
  stop(): Promise<void>;
}> {
  const args = ['--import', 'tsx', join(REPO, 'bench', 'wan', 'post-client.ts'), '--source', sourceUrl, '--dest', destUrl];
  if (spec.controlAddress) args.push('--control-address', spec.controlAddress);
  const child: ChildProcess = spawn(process.execPath, args, { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stderr?.on('data', (b: Buffer) => {
    output = (output + b.toString()).slice(-20_000);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const messages: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  lines.on('line', (l) => {
    output = `${output}${l}\n`.slice(-20_000);
    try {
      messages.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      messages.push({ error: `unexpected output: ${l}` });
    }
    wake?.();
  });
  child.once('exit', () => wake?.());
  const next = async (deadline: number): Promise<Record<string, unknown>> => {
    for (let i = 0; i < 1_000_000; i++) {
      const m = messages.shift();
      if (m) return m;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error('the POST client exited');
      const left = deadline - Date.now();
      if (left <= 0) throw new Timeout(`timeout: not done after ${boundSeconds} s`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, Math.min(left, 1000));
      });
      wake = undefined;
    }
    throw new Timeout('timeout');
  };
  const handle = {
    pid: child.pid ?? -1,
    log: () => output,
    async go(deadline: number) {
      child.stdin?.write('go\n');
      const m = await next(deadline);
      if (m.error !== undefined) throw new Error(String(m.error));
      if (m.done === undefined) throw new Error(`unexpected message ${JSON.stringify(m)}`);
    },
    async stop() {
      child.stdin?.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      if (child.exitCode === null && child.signalCode === null) await exited;
      clearTimeout(t);
    },
  };
  track(handle);
  const ready = await next(Date.now() + 120_000).catch(async (e: unknown) => {
    await handle.stop();
    throw e;
  });
  if (ready.ready === undefined) {
    await handle.stop();
    throw new Error(`POST client: ${JSON.stringify(ready)}`);
  }
  return handle;
}

async function runPost(method: MethodName, source: Md5Map): Promise<RunResult> {
  const [portA, portB] = [await freePort(), await freePort()];
  const a = await startXferA(portA, {});
  const b = track(await startXferNode({ port: portB, config: { Name: 'bench-b', LogLevel: 'warn' } }));
  const client = await startPostClient(a.url, b.url);
  // The client is part of the sending side: it stops with the sender, before the destination is checked.
  const sender = {
    pid: a.pid,
    log: () => a.log(),
    async stop() {
      await client.stop();
      await a.stop();
    },
  };
  const result = await timed(method, { sender, receiver: b, client }, source, async (deadline) => {
    await client.go(deadline);
    return undefined;
  });
  return result;
}

const stowDeps: StowRunDeps = {
  control,
  track,
  orthancConfig,
  startXferA: (port, extra) => startXferA(port, {}, {}, extra),
  startOrthancA: (extra) => startOrthancA({}, extra),
  timed,
  waitJob,
};

// ---- the link check and the profile's runs ---------------------------------------------------------------

/** Smallest of five keep-alive HTTP round trips over 127.0.0.1 in this namespace (the shaped path). */
async function measureRtt(): Promise<number> {
  const server = createServer((_q, r) => r.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < 6; i++) {
      const t = performance.now();
      await new Promise<void>((resolveGet, reject) => {
        const req = get({ host: '127.0.0.1', port, agent, timeout: 15_000 }, (res) => {
          res.resume();
          res.on('end', () => resolveGet());
        });
        req.on('timeout', () => req.destroy(new Error('no answer over the emulated link within 15 s (is nfdelay running?)')));
        req.on('error', reject);
      });
      if (i > 0) times.push(performance.now() - t); // the first one includes the TCP handshake
    }
  } finally {
    agent.destroy();
    server.close();
  }
  return Math.min(...times);
}

function speedups(runs: RunResult[]): void {
  for (const run of runs) {
    for (const b of BASELINES) {
      const base = runs.find((r) => r.method === b);
      if (!base || b === run.method) continue;
      // A baseline that ran out of time gives a lower bound; one that failed otherwise gives nothing.
      const timedOut = !base.ok && base.error?.startsWith('timeout') === true;
      run.speedup[b] = run.ok && (base.ok || timedOut) ? { x: base.wallSeconds / run.wallSeconds, atLeast: timedOut } : null;
    }
  }
}

/**
 * The run that stands for several runs of one method: the first failed one if any failed (a method that
 * lost data once is not reported by its lucky runs), else the one of median wall time (the slower of the
 * two middle ones for an even count), carrying every run's wall time.
 */
function representative(runs: RunResult[]): RunResult | undefined {
  if (runs.length <= 1) return runs[0];
  const walls = runs.map((r) => r.wallSeconds);
  const failed = runs.find((r) => !r.ok);
  const sorted = [...runs].sort((a, b) => a.wallSeconds - b.wallSeconds);
  const chosen = failed ?? (sorted[Math.floor(sorted.length / 2)] as RunResult);
  return { ...chosen, repeatedWallSeconds: walls };
}

async function main(): Promise<void> {
  try {
    result.measuredRttMs = await measureRtt();
    log(`measured RTT ${result.measuredRttMs.toFixed(1)} ms (profile ${spec.profile.rttMs} ms)`);
    const sources: Partial<Record<'xfer' | 'orthanc', Md5Map>> = {};
    for (const method of spec.methods) {
      if (interrupted) break;
      const kind = METHODS[method].kind;
      if ((kind === 'orthanc' || kind === 'stow' || kind === 'orthanc-stow') && !orthancInstalled()) {
        result.skipped.push({ method, reason: 'Orthanc is not installed (/usr/sbin/Orthanc)' });
        continue;
      }
      const noStow = kind === 'stow' || kind === 'orthanc-stow' ? stowUnavailable() : undefined;
      if (noStow) {
        result.skipped.push({ method, reason: noStow });
        continue;
      }
      const sourceKind = kind === 'orthanc' || kind === 'orthanc-stow' ? 'orthanc' : 'xfer';
      sources[sourceKind] ??= await prepareSource(sourceKind);
      const source = sources[sourceKind];
      // The baselines run once: they are slow, and bounded in time besides.
      const times = METHODS[method].baseline ? 1 : Math.max(1, spec.repeat ?? 1);
      const runs: RunResult[] = [];
      for (let k = 1; k <= times && !interrupted; k++) {
        log(`${method}${times > 1 ? ` (run ${k} of ${times})` : ''} ...`);
        let run: RunResult;
        try {
          run =
            kind === 'orthanc'
              ? await runOrthanc(method, source)
              : kind === 'post'
                ? await runPost(method, source)
                : kind === 'stow' || kind === 'orthanc-stow'
                  ? await runStow(kind, stowDeps, source)
                  : await runXfer(method, source);
        } finally {
          await stopAll();
        }
        if (interrupted) break;
        runs.push(run);
        log(
          `${method}: ${run.ok ? 'ok' : `FAILED (${run.error ?? ''})`} ${run.wallSeconds.toFixed(1)} s, ${run.dicomMBps.toFixed(2)} MB/s` +
            (run.wire ? `, wire ${(run.wire.busierBytes / 1e6).toFixed(1)} MB` : ''),
        );
      }
      const chosen = representative(runs);
      if (chosen) result.runs.push(chosen);
    }
    speedups(result.runs);
  } finally {
    await stopAll();
    await control.close();
    await writeFile(spec.out, JSON.stringify(result, null, 1));
  }
}

// Exits as soon as the result is written, whatever keep-alive sockets or timers are left.
await main().then(
  () => process.exit(0),
  (e: unknown) => {
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
