// npm run bench:wan -- --scenario ratelimit|schedule: the bandwidth policy measured on the wire. Two
// dicom-xfer nodes talk through a counting TCP relay (HTTP heads and bodies, as the policy counts them;
// TCP/IP framing not included); `ratelimit` pushes and pulls the real DICOM test files under a peer
// RateLimit of 20 and 50 Mbit/s, `schedule` pushes them while the node's RateSchedule switches from 40 to
// 10 Mbit/s (the node's clock is set just before the boundary). bench/wan.ts calls runRateScenario,
// which runs this file inside the namespace of each profile: node --import tsx THIS SPEC.json.
import { readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mapLimit } from '../../src/util/concurrency.ts';
import { TEST_CLOCK_ENV } from '../../src/transfer/bandwidth/policy.ts';
import { REAL_DICOM, listFiles } from '../../test/helpers/data.ts';
import { startXferNode, type XferNode } from '../../test/helpers/node.ts';
import { freePort } from '../../test/helpers/ports.ts';
import { ControlClient, linkProfile, sleep, type LinkProfile, type ProfileName } from './common.ts';
import { runPerProfile } from './netns.ts';

export type RateScenario = 'ratelimit' | 'schedule';
const REPO = resolve(import.meta.dirname, '..', '..');
const CONTROL_ADDRESS = '127.0.0.2';
/** Limits of the ratelimit scenario, Mbit/s; the schedule's before and after its boundary. */
const LIMITS = [20, 50];
const SCHEDULE = { before: 40, after: 10, leadSeconds: 8 };
/** Bound of each transfer. */
const RUN_SECONDS = 300;

interface InnerSpec {
  scenario: RateScenario;
  profile: LinkProfile;
  controlAddress: string | null;
  out: string;
}

/** One measured transfer. */
export interface RateRow {
  profile: string;
  case: string;
  configuredMbps: number;
  /** From the time 10% of the bytes had crossed to 90%: the rate the limit holds once under way. */
  steadyMbps: number;
  /** From the first byte to the last. */
  wholeMbps: number;
  wireMB: number;
  wallSeconds: number;
  ok: boolean;
  note?: string;
}

// ---- the counting relay ---------------------------------------------------------------------------------

/** Bytes that crossed one way, with the time each piece went: the relay's record of the wire. */
class WireLog {
  readonly t: number[] = [];
  readonly n: number[] = [];
  add(bytes: number): void {
    this.t.push(performance.now());
    this.n.push(bytes);
  }
  clear(): void {
    this.t.length = 0;
    this.n.length = 0;
  }
  get bytes(): number {
    return this.n.reduce((a, b) => a + b, 0);
  }
  /** When the cumulative count first reached `share` of the total. */
  at(share: number): number {
    const goal = this.bytes * share;
    let sum = 0;
    for (let i = 0; i < this.n.length; i++) {
      sum += this.n[i] as number;
      if (sum >= goal) return this.t[i] as number;
    }
    return this.t[this.t.length - 1] ?? 0;
  }
  /** Mbit/s between the times `a` and `b` of the cumulative shares `from` and `to`. */
  rate(from: number, to: number): number {
    const a = this.at(from);
    const b = this.at(to);
    return b > a ? ((to - from) * this.bytes * 8) / ((b - a) * 1000) : 0;
  }
  /** Mbit/s between two instants (performance.now). */
  between(a: number, b: number): number {
    let sum = 0;
    for (let i = 0; i < this.n.length; i++) if ((this.t[i] as number) >= a && (this.t[i] as number) < b) sum += this.n[i] as number;
    return b > a ? (sum * 8) / ((b - a) * 1000) : 0;
  }
}

interface Relay {
  port: number;
  /** Client to target (a request's way), target to client (an answer's way). */
  up: WireLog;
  down: WireLog;
  close(): Promise<void>;
}

/** A TCP relay on 127.0.0.1 to `target`, counting what crosses; it reaches the target from `via` (past the link). */
async function startRelay(target: number, via: string | null): Promise<Relay> {
  const up = new WireLog();
  const down = new WireLog();
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ port: target, host: '127.0.0.1', ...(via ? { localAddress: via } : {}) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d: Buffer) => up.add(d.length));
    upstream.on('data', (d: Buffer) => down.add(d.length));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    up,
    down,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

// ---- inside the namespace ---------------------------------------------------------------------------------

interface Nodes {
  a: XferNode;
  b: XferNode;
  /** A's calls to B go through `toB`, B's to A through `toA`. */
  toB: Relay;
  toA: Relay;
}

const control = (spec: InnerSpec) => new ControlClient(spec.controlAddress);

async function startNodes(spec: InnerSpec, aConfig: Record<string, unknown>, env: Record<string, string>, dirA?: string): Promise<Nodes> {
  const [pa, pb] = [await freePort(), await freePort()];
  const via = spec.controlAddress;
  const toB = await startRelay(pb, via);
  const toA = await startRelay(pa, via);
  const common = { LogLevel: 'warn', HttpTimeout: 600 };
  const b = await startXferNode({
    port: pb,
    config: { ...common, Name: 'rate-b', OrthancPeers: { a: { Url: `http://127.0.0.1:${toA.port}/` } } },
  });
  const peers = { b: { Url: `http://127.0.0.1:${toB.port}/` } };
  const a = await startXferNode({
    port: pa,
    env,
    ...(dirA ? { dir: dirA } : {}),
    config: { ...common, ...aConfig, Name: 'rate-a', OrthancPeers: peers },
  });
  return { a, b, toB, toA };
}

async function stopNodes(n: Nodes, keepA = false): Promise<void> {
  await Promise.all([n.a.stop({ keep: keepA }), n.b.stop()]);
  await Promise.all([n.toA.close(), n.toB.close()]);
}

/** Imports the real DICOM files into `base` from the control address; answers their instance IDs. */
async function importReal(c: ControlClient, base: string): Promise<string[]> {
  const files = await listFiles(REAL_DICOM);
  const ids = await mapLimit(files, 4, async (f) => {
    const a = await c.call(base, 'POST', '/instances', await readFile(f));
    return a.status === 200 ? (JSON.parse(a.body.toString('utf8')) as { ID: string }).ID : undefined;
  });
  return ids.filter((id): id is string => id !== undefined);
}

/** Runs one transfer job on `base` and waits for it; answers the wall seconds, or throws its failure. */
async function transfer(c: ControlClient, base: string, route: 'send' | 'pull', peer: string, ids: readonly string[]): Promise<number> {
  const t0 = performance.now();
  const query = { Resources: ids.map((ID) => ({ Level: 'Instance', ID })), Compression: 'none', Peer: peer };
  const h = await c.json<{ ID: string }>(base, 'POST', `/transfers/${route}`, query);
  const deadline = Date.now() + RUN_SECONDS * 1000;
  for (let i = 0; i < 1_000_000 && Date.now() < deadline; i++) {
    const job = await c.json<{ State: string; ErrorDetails?: string }>(base, 'GET', `/jobs/${h.ID}`);
    if (job.State === 'Success') return (performance.now() - t0) / 1000;
    if (job.State === 'Failure') throw new Error(`job failed: ${job.ErrorDetails ?? ''}`);
    await sleep(100);
  }
  throw new Error(`not done within ${RUN_SECONDS} s`);
}

async function emptyB(c: ControlClient, base: string): Promise<void> {
  for (const p of await c.json<string[]>(base, 'GET', '/patients')) await c.call(base, 'DELETE', `/patients/${p}`);
}

function row(spec: InnerSpec, name: string, limit: number, log: WireLog, wall: number): RateRow {
  const whole = log.rate(0, 1);
  const steady = log.rate(0.1, 0.9);
  return {
    profile: spec.profile.name,
    case: name,
    configuredMbps: limit,
    steadyMbps: steady,
    wholeMbps: whole,
    wireMB: log.bytes / 1e6,
    wallSeconds: wall,
    ok: Math.abs(steady - limit) <= limit * 0.05,
  };
}

async function rateLimitRuns(spec: InnerSpec): Promise<RateRow[]> {
  const c = control(spec);
  const n = await startNodes(spec, {}, {});
  const rows: RateRow[] = [];
  try {
    const ids = await importReal(c, n.a.url);
    for (const limit of LIMITS) {
      // The limits are set at run time, as an operator would: PUT /peers/{name} with RateLimit.
      await putPeer(c, n.a.url, 'b', n.toB.port, limit);
      await putPeer(c, n.b.url, 'a', n.toA.port, limit);
      for (const route of ['send', 'pull'] as const) {
        await emptyB(c, n.b.url);
        n.toA.up.clear();
        n.toA.down.clear();
        n.toB.up.clear();
        n.toB.down.clear();
        const wall = route === 'send' ? await transfer(c, n.a.url, 'send', 'b', ids) : await transfer(c, n.b.url, 'pull', 'a', ids);
        // A push's bytes go up to B; a pull's come down from A.
        rows.push(
          row(spec, `${route === 'send' ? 'push' : 'pull'}, peer RateLimit`, limit, route === 'send' ? n.toB.up : n.toA.down, wall),
        );
        process.stderr.write(`  ${JSON.stringify(rows[rows.length - 1])}\n`);
      }
    }
  } finally {
    await stopNodes(n);
    await c.close();
  }
  return rows;
}

/** PUT /peers/{name}: the peer through its relay, with its RateLimit. */
async function putPeer(c: ControlClient, base: string, name: string, port: number, limit: number): Promise<void> {
  const body = JSON.stringify({ Url: `http://127.0.0.1:${port}/`, RateLimit: limit });
  const res = await c.pool(base).request({ method: 'PUT', path: `/peers/${name}`, body, headers: { 'content-type': 'application/json' } });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`PUT /peers/${name}: HTTP ${res.statusCode} ${text}`);
}

/** The schedule: A's clock starts SCHEDULE.leadSeconds (plus its start) before Monday 08:00 local time. */
async function scheduleRuns(spec: InnerSpec): Promise<RateRow[]> {
  const c = control(spec);
  // First the data, on a node without the schedule; then A again on the same directory, on the test clock.
  const dirA = await mkdtemp(join(tmpdir(), 'dxrate-a-'));
  let n = await startNodes(spec, {}, {}, dirA);
  const ids = await importReal(c, n.a.url);
  await stopNodes(n, true);
  const config = {
    Transfers: {
      RateLimit: SCHEDULE.before,
      RateSchedule: [{ Days: 'Mon', From: '08:00', To: '18:00', RateLimit: SCHEDULE.after }],
    },
  };
  // 2026-12-07 is a Monday; the node's start takes about a second of the lead.
  const clock = new Date(2026, 11, 7, 8, 0, 0).getTime() - (SCHEDULE.leadSeconds + 1) * 1000;
  const pad = (x: number) => String(x).padStart(2, '0');
  const d = new Date(clock);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const local = `${day}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  n = await startNodes(spec, config, { [TEST_CLOCK_ENV]: local }, dirA);
  const rows: RateRow[] = [];
  try {
    // The node says when its limit changed: its gauge, polled from the control address.
    let switchedAt: number | undefined;
    const watch = (async () => {
      for (let i = 0; i < RUN_SECONDS * 20 && switchedAt === undefined; i++) {
        const m = await c.text(n.a.url, '/tools/metrics-prometheus');
        if (/^dicom_xfer_transfers_rate_limit_mbps 10$/m.test(m)) switchedAt = performance.now();
        await sleep(50);
      }
    })();
    const wall = await transfer(c, n.a.url, 'send', 'b', ids);
    await watch;
    const log = n.toB.up;
    const first = log.t[0] ?? 0;
    const last = log.t[log.t.length - 1] ?? 0;
    if (switchedAt === undefined || switchedAt <= first + 1500 || switchedAt >= last - 1500) {
      rows.push({ ...row(spec, 'schedule', SCHEDULE.after, log, wall), ok: false, note: 'the boundary did not fall inside the transfer' });
    } else {
      // Each side of the boundary, leaving out the first second of the run and a second around the switch.
      const before = log.between(first + 1000, switchedAt - 100);
      const after = log.between(switchedAt + 200, last);
      const mk = (name: string, limit: number, mbps: number): RateRow => ({
        profile: spec.profile.name,
        case: name,
        configuredMbps: limit,
        steadyMbps: mbps,
        wholeMbps: log.rate(0, 1),
        wireMB: log.bytes / 1e6,
        wallSeconds: wall,
        ok: Math.abs(mbps - limit) <= limit * 0.05,
      });
      rows.push(mk('schedule, before 08:00', SCHEDULE.before, before), mk('schedule, from 08:00', SCHEDULE.after, after));
    }
  } finally {
    await stopNodes(n);
    await rm(dirA, { recursive: true, force: true });
    await c.close();
  }
  return rows;
}

// ---- from bench/wan.ts: one namespace per profile, this file inside it --------------------------------------

export interface RateScenarioOptions {
  scenario: RateScenario;
  profiles: (ProfileName | 'loopback')[];
  cc: string;
  json?: string | undefined;
}

export async function runRateScenario(o: RateScenarioOptions): Promise<number> {
  const runs = await runPerProfile<RateRow[]>({
    repo: REPO,
    ns: `dxrate${process.pid}`,
    profiles: o.profiles,
    cc: o.cc,
    isRoot: process.getuid?.() === 0,
    controlAddress: CONTROL_ADDRESS,
    script: join(REPO, 'bench', 'wan', 'scenario-ratelimit.ts'),
    maxSeconds: 1500,
    spec: (name, made) => ({ scenario: o.scenario, profile: linkProfile(name), controlAddress: made ? CONTROL_ADDRESS : null }),
    missing: [],
  });
  const rows = runs.flat();
  process.stdout.write(rateTable(o, rows));
  if (o.json) await writeFile(o.json, JSON.stringify({ scenario: o.scenario, date: new Date().toISOString(), rows }, null, 1));
  return rows.length > 0 && rows.every((r) => r.ok) ? 0 : 3;
}

function rateTable(o: RateScenarioOptions, rows: readonly RateRow[]): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  const lines = [
    `### scenario ${o.scenario} (${o.cc.toUpperCase()} on emulated links)`,
    '',
    '| profile | case | configured Mbit/s | measured Mbit/s | first to last byte Mbit/s | deviation | wire MB | wall s | within 5% |',
    '|---|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const dev = `${r.steadyMbps >= r.configuredMbps ? '+' : ''}${f((100 * (r.steadyMbps - r.configuredMbps)) / r.configuredMbps)}%`;
    lines.push(
      `| ${r.profile} | ${r.case} | ${r.configuredMbps} | ${f(r.steadyMbps, 2)} | ${f(r.wholeMbps, 2)} | ${dev} | ` +
        `${f(r.wireMB)} | ${f(r.wallSeconds)} | ` +
        `${r.ok ? 'yes' : `no${r.note ? ` (${r.note})` : ''}`} |`,
    );
  }
  lines.push(
    '',
    '- wire: the bytes of the transfer direction through a counting TCP relay between the nodes (HTTP request and answer heads and',
    '  bodies, as the policy counts them; TCP/IP headers, ACKs and retransmissions not included), 10^6 bits per Mbit.',
    "- measured: from the moment 10% of the bytes had crossed to 90% (the start and the end, with the job's own calls, left out).",
    '  A pull is paced by the reading node: the socket buffers between the relay and it fill ahead of the reads, by up to a few MB.',
    "- schedule: each side of the boundary, from the node's own report of the switch (its rate-limit gauge), leaving out the first second.",
  );
  return `${lines.join('\n')}\n`;
}

// ---- main, inside the namespace ------------------------------------------------------------------------------

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const spec = JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as InnerSpec;
  const rows = spec.scenario === 'ratelimit' ? await rateLimitRuns(spec) : await scheduleRuns(spec);
  await writeFile(spec.out, JSON.stringify(rows));
  process.exit(0);
}
