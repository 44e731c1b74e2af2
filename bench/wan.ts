// npm run bench:wan — dicom-xfer push and pull (gzip and none) against one-request-per-instance
// baselines (Orthanc's peer store, a sequential POST client) over an emulated WAN link, in one run.
// Sets up a network namespace per link profile with ../shared/wan/wanemu.sh, runs bench/wan/runner.ts
// inside it, and prints a Markdown table (and --json FILE). Needs root, except with --no-wan.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { orthancInstalled } from '../test/helpers/orthanc.ts';
import {
  BASELINES,
  FRAME_OVERHEAD,
  METHOD_NAMES,
  PROFILES,
  SETS,
  linkProfile,
  type DatasetManifest,
  type LinkProfile,
  type MethodName,
  type ProfileName,
  type ProfileResult,
  type RunResult,
  type RunnerSpec,
  type SetName,
} from './wan/common.ts';
import { prepareDataset } from './wan/dataset.ts';
import { bypassControl, plainDown, plainUp, wanDown, wanUnavailable, wanUp } from './wan/netns.ts';
import { priorityReportMarkdown, priorityScenario, type PriorityReport } from './wan/scenario-priority.ts';

const REPO = resolve(import.meta.dirname, '..');
const CONTROL_ADDRESS = '127.0.0.2';

const HELP = `usage: npm run bench:wan -- [options]      (as root; --no-wan runs without the emulator)

  --set full|study|small|tiny  generated data set (default small; full ~1 GB, study ~210 MB: 300 CT slices
                            and a 52 MB multi-frame, small ~150 MB, tiny ~8 MB)
  --profiles LIST           link profiles of wanemu.sh: ${Object.keys(PROFILES).join(',')} (default all)
  --methods LIST            ${METHOD_NAMES.join(',')} (default all)
                            stow and orthanc-stow: STOW-RS by a dicom-xfer node and by Orthanc's DICOMweb plugin
                            into an Orthanc with that plugin (needs orthanc-dicomweb; orthanc-stow is a baseline)
  --cc cubic|bbr            congestion control inside the namespace (default cubic)
  --no-wan                  plain loopback, no emulated link (for comparison)
  --json FILE               write the full report as JSON
  --seed N                  data set seed (default 1)
  --data-dir DIR            where data sets are generated and kept (default bench-output)
  --render FILE             print the Markdown tables of a JSON report written earlier, run nothing
  --run-timeout SECONDS     bound of each run (default 120 + 30 x the link time of the raw data set,
                            100 x on lossy profiles)
  --baseline-timeout SECONDS  shorter bound for the baselines (one request per instance can take hours
                            on a lossy link): one that runs out of time is reported with a lower bound (≥)
  --scenario ratelimit|schedule  instead of the methods: the bandwidth policy measured on the wire (peer
                            RateLimit 20 and 50 Mbit/s, push and pull; or a RateSchedule switching during a
                            push), on --no-wan or the given --profiles (default good); see bench/wan/scenario-ratelimit.ts
  --scenario priority       instead of the methods: a push of Priority 10 alone, a bulk push alone, then
                            both, the first started while the bulk one runs (bench/wan/scenario-priority.ts)
  --scenario many-senders|many-jobs  instead of the methods: 20 sender nodes push at once to one receiver,
                            or one node runs 20 jobs at once to 20 receivers; per-job rate against the fair
                            share, aggregate against the link, peak RSS per node (bench/wan/scenario-many.ts)
                            and CPU per node; BENCH_MANY_WARM=1: each job pushes one instance first (warm nodes)
  --repeat N                run each dicom-xfer method N times (default 1) and report the run of median
                            wall time, with the fastest and slowest beside it; the baselines run once
  --known-peer              the nodes of a dicom-xfer method keep their ports across its runs: every run
                            after the first goes to a peer the sender knows (it starts from the link
                            profile the run before recorded); the JSON's repeatedWallSeconds are in run
                            order, the first one to a peer not known yet

Exit status: 0 every run verified, 3 some run failed or lost data, 1 the benchmark could not run, 130 interrupted.`;

function fail(msg: string): never {
  process.stderr.write(`bench:wan: ${msg}\n`);
  process.exit(1);
}

function list<T extends string>(value: string | undefined, allowed: readonly T[], what: string): T[] {
  if (value === undefined) return [...allowed];
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) fail(`unknown ${what} "${i}" (${allowed.join(', ')})`);
  if (items.length === 0) fail(`no ${what} given`);
  return [...new Set(items)] as T[];
}

const { values } = parseArgs({
  options: {
    set: { type: 'string', default: 'small' },
    profiles: { type: 'string' },
    methods: { type: 'string' },
    cc: { type: 'string', default: 'cubic' },
    'no-wan': { type: 'boolean', default: false },
    json: { type: 'string' },
    seed: { type: 'string', default: '1' },
    'data-dir': { type: 'string', default: resolve(REPO, 'bench-output') },
    'run-timeout': { type: 'string' },
    'baseline-timeout': { type: 'string' },
    repeat: { type: 'string', default: '1' },
    'known-peer': { type: 'boolean', default: false },
    render: { type: 'string' },
    scenario: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
const set = values.set as SetName;
if (!SETS.includes(set)) fail(`unknown set "${values.set}" (${SETS.join(', ')})`);
const noWan = values['no-wan'];
const profiles: (ProfileName | 'loopback')[] = noWan
  ? ['loopback']
  : list(values.profiles, Object.keys(PROFILES) as ProfileName[], 'profile');
const methods = list(values.methods, METHOD_NAMES, 'method');
const cc = values.cc;
if (cc !== 'cubic' && cc !== 'bbr') fail(`--cc must be cubic or bbr, not "${cc}"`);
const seed = Number(values.seed);
if (!Number.isSafeInteger(seed) || seed < 0) fail(`--seed must be a non-negative integer`);
const runTimeoutArg = values['run-timeout'] === undefined ? undefined : Number(values['run-timeout']);
if (runTimeoutArg !== undefined && !(runTimeoutArg > 0)) fail('--run-timeout must be a number of seconds above 0');
const baselineTimeout = values['baseline-timeout'] === undefined ? null : Number(values['baseline-timeout']);
if (baselineTimeout !== null && !(baselineTimeout > 0)) fail('--baseline-timeout must be a number of seconds above 0');
const repeat = Number(values.repeat);
if (!Number.isSafeInteger(repeat) || repeat < 1 || repeat > 20) fail('--repeat must be a whole number from 1 to 20');
const isRoot = process.getuid?.() === 0;
const scenarios =
  values.scenario === undefined
    ? []
    : list(values.scenario, ['ratelimit', 'schedule', 'priority', 'many-senders', 'many-jobs'] as const, 'scenario');
if (scenarios.includes('priority') && scenarios.length > 1) fail('--scenario priority runs alone');
const many = scenarios.find((x) => x === 'many-senders' || x === 'many-jobs');
if (many && scenarios.length > 1) fail(`--scenario ${many} runs alone`);
if (!noWan) {
  const why = wanUnavailable(REPO);
  if (why) fail(`${why}; use --no-wan for plain loopback`);
}

/**
 * Default bound of one run: 30 times the time the link needs for the raw data set, 100 times on a lossy
 * profile (one CUBIC connection gets about 5% of a link with 1% loss), plus two minutes.
 */
function runTimeout(p: LinkProfile, dataset: DatasetManifest): number {
  if (runTimeoutArg !== undefined) return runTimeoutArg;
  const linkSeconds = (dataset.totalBytes * 8) / ((p.rateMbit ?? 1000) * 1e6);
  return Math.ceil(120 + (p.lossPct > 0 ? 100 : 30) * linkSeconds);
}

// ---- interruption: the runner stops its nodes, then the namespace goes --------------------------------------

let interrupted = false;
let runnerPid: number | undefined;
/** False while the data set is prepared: nothing to clean up then (a data set without manifest is redone). */
let started = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (!started) process.exit(130);
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`bench:wan: ${sig}, cleaning up ...\n`);
    // A Ctrl-C reaches the runner through the terminal's process group; a plain kill of this process does not.
    if (runnerPid !== undefined) {
      try {
        process.kill(runnerPid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  });
}

/** Runs the runner for one profile (inside `ns` when given) and returns what it wrote. */
async function runProfile(spec: RunnerSpec, ns: string | undefined, boundSeconds: number): Promise<ProfileResult> {
  const specPath = spec.out.replace(/\.json$/, '.spec.json');
  await writeFile(specPath, JSON.stringify(spec));
  const node = [process.execPath, '--import', 'tsx', join(REPO, 'bench', 'wan', 'runner.ts'), specPath];
  const [cmd, ...args] = ns ? ['ip', 'netns', 'exec', ns, ...node] : node;
  // `ip netns exec` execs the command, so this pid is the runner's own.
  const child = spawn(cmd as string, args, { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
  runnerPid = child.pid;
  const kill = setTimeout(() => child.kill('SIGKILL'), boundSeconds * 1000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(kill);
  runnerPid = undefined;
  const text = await readFile(spec.out, 'utf8').catch(() => undefined);
  if (text === undefined) throw new Error(`the runner for ${spec.profile.name} exited (${code}) without a result`);
  return JSON.parse(text) as ProfileResult;
}

// ---- report -------------------------------------------------------------------------------------------------

const f1 = (n: number | null | undefined, digits = 1): string =>
  n === null || n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits);
const pct = (n: number | null): string => (n === null ? '–' : `${(100 * n).toFixed(0)}%`);

function machine(): Record<string, unknown> {
  let orthanc: string | null = null;
  if (orthancInstalled()) {
    orthanc =
      execFileSync('/usr/sbin/Orthanc', ['--version'], { encoding: 'utf8' })
        .split('\n')[0]
        ?.replace(/^.*Orthanc\s*/, '') ?? null;
  }
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    memoryGB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    orthanc,
  };
}

function cell(run: RunResult, b: MethodName, p: ProfileResult): string {
  if (run.method === b) return '1';
  const s = run.speedup[b];
  if (s === undefined) return '';
  if (s === null) return '–';
  if (!s.atLeast) return `${s.x.toFixed(2)}x`;
  // A baseline stopped at its bound: the bound gives a lower bound; its pace until then, an estimate.
  const base = p.runs.find((r) => r.method === b);
  const est = base ? paceSeconds(base) : null;
  return `≥${s.x.toFixed(2)}x${est !== null ? ` (≈${(est / run.wallSeconds).toFixed(0)}x)` : ''}`;
}

/** The time a run stopped at its bound would have taken at the pace it had (wire bytes moved so far). */
function paceSeconds(r: RunResult): number | null {
  if (!r.wire || r.wire.busierBytes <= 0) return null;
  return (r.dicomBytes * FRAME_OVERHEAD) / (r.wire.busierBytes / r.wallSeconds);
}

/** A baseline cut short by its time bound: a lower bound for the comparison, not a failure. */
function stoppedBaseline(r: RunResult): boolean {
  return !r.ok && BASELINES.includes(r.method) && r.error?.startsWith('timeout') === true;
}

/** CPU seconds per GB (10^9 bytes) of the raw data set: comparable between methods, compressed or not. */
function perGB(cpuSeconds: number | null | undefined, r: RunResult): number | null {
  return cpuSeconds == null || !(r.dicomBytes > 0) ? null : cpuSeconds / (r.dicomBytes / 1e9);
}

function table(p: ProfileResult): string[] {
  const { profile } = p;
  const title =
    profile.name === 'loopback'
      ? `### loopback (no emulated link)`
      : `### ${profile.name}: ${profile.rttMs} ms RTT, ${profile.rateMbit} Mbit/s each way, ${profile.lossPct}% loss, ` +
        `${p.cc.toUpperCase()} (measured RTT ${f1(p.measuredRttMs)} ms)`;
  const baselines = BASELINES.filter((b) => p.runs.some((r) => r.method === b));
  const lines = [
    title,
    '',
    '| method | result | wall s | DICOM MB/s | wire MB | link use | of limit | sender CPU s | receiver CPU s | sender CPU s/GB ' +
      `| receiver CPU s/GB | sender peak RSS MB | receiver peak RSS MB |${baselines.map((b) => ` vs ${b} |`).join('')}`,
    `|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|${baselines.map(() => '---:|').join('')}`,
  ];
  for (const r of p.runs) {
    const lost = r.verify && !r.verify.ok ? `; ${r.verify.missing} of ${r.verify.expected} missing, ${r.verify.md5Mismatches} altered` : '';
    const result = r.ok
      ? 'ok'
      : stoppedBaseline(r)
        ? `stopped after ${f1(r.wallSeconds, 0)} s (bound), ${f1((r.wire?.busierBytes ?? 0) / 1e6, 0)} MB across: ` +
          `≈${f1(paceSeconds(r), 0)} s at that pace`
        : `FAILED: ${(r.error ?? '')
            .replace(/https?:\/\/\S+/g, '…')
            .replace(/\|/g, '/')
            .slice(0, 110)}${lost}`;
    // A failed run moved only part of the data: its rates would mislead.
    const rate = (x: string): string => (r.ok ? x : '–');
    const senderCpu = r.sender ? r.sender.cpuSeconds + (r.client?.cpuSeconds ?? 0) : null;
    const senderRss = r.sender
      ? r.client
        ? `${f1(r.sender.peakRssMB, 0)} + ${f1(r.client.peakRssMB, 0)}`
        : f1(r.sender.peakRssMB, 0)
      : '–';
    // Several runs: the median one, with the fastest and the slowest.
    const walls = r.repeatedWallSeconds ?? [];
    const wall = walls.length > 1 ? `${f1(r.wallSeconds)} (${f1(Math.min(...walls))}–${f1(Math.max(...walls))})` : f1(r.wallSeconds);
    lines.push(
      `| ${[
        r.method,
        result,
        wall,
        rate(f1(r.dicomMBps, 2)),
        r.wire ? f1(r.wire.busierBytes / 1e6) : '–',
        rate(pct(r.linkUtilisation)),
        rate(pct(r.ratioToLimit)),
        f1(senderCpu),
        f1(r.receiver?.cpuSeconds),
        rate(f1(perGB(senderCpu, r))),
        rate(f1(perGB(r.receiver?.cpuSeconds, r))),
        senderRss,
        f1(r.receiver?.peakRssMB, 0),
        ...baselines.map((b) => cell(r, b, p)),
      ].join(' | ')} |`,
    );
  }
  for (const s of p.skipped) lines.push('', `${s.method} skipped: ${s.reason}`);
  return lines;
}

const DEFINITIONS = [
  'wall s: from the request that starts the transfer to the moment the job (or the client) reports the end; one run per method, or with ' +
    "--repeat N the run of median wall time (every figure of the row is that run's), the fastest and the slowest in parentheses; a " +
    'method any of whose runs failed is reported by its failed run.',
  'DICOM MB/s: data set bytes (10^6 per MB) / wall time.',
  'wire MB: IP bytes (headers, ACKs and retransmissions included) that crossed the emulated link in the busier direction, from the ' +
    "namespace's iptables queue counters; the benchmark's own control traffic (imports, job polls, MD5 checks, the POST client's reads " +
    'from its local source) uses 127.0.0.2, which bypasses the link and is not counted.',
  'link use: wire MB x 8 / (wall time x link rate of one direction).',
  "of limit: (time the link needs for the method's best payload — the gzip -6 size of the data set for gzip and zstd methods, the " +
    'raw size otherwise — in 1500-byte frames carrying 1448 bytes each, plus one RTT) / wall time.',
  'CPU s: user + system time of the process during the run; peak RSS: VmHWM at the end of the run (every process starts fresh per run). ' +
    'post-sequential: sender = source node + the client process. CPU s/GB: CPU s / the raw data set in GB (10^9 bytes), whatever the ' +
    'compression.',
  "vs X: X's wall time / this wall time (above 1: faster than X). When X was stopped at its time bound (--baseline-timeout): ≥ the bound " +
    "/ this wall time, and in parentheses the estimate from X's pace until then (data set size / its wire rate).",
];

function markdown(report: {
  date: string;
  machine: Record<string, unknown>;
  dataset: DatasetManifest;
  profiles: ProfileResult[];
  interrupted: boolean;
}): string {
  const m = report.machine;
  const d = report.dataset;
  const lines = [
    `WAN benchmark, ${report.date}: data set \`${d.set}\` (seed ${d.seed}): ${d.files.length} instances, ` +
      `${(d.totalBytes / 1e6).toFixed(1)} MB, gzip -6 ${(d.gzip6Bytes / 1e6).toFixed(1)} MB; ` +
      `${String(m.cpus)} × ${String(m.cpuModel)}, ${String(m.memoryGB)} GB, Linux ${String(m.kernel)}, Node ${String(m.node)}` +
      (m.orthanc ? `, Orthanc ${String(m.orthanc)}` : ''),
    '',
  ];
  for (const p of report.profiles) lines.push(...table(p), '');
  if (report.interrupted) lines.push('**Interrupted**: the runs after the interruption are missing.', '');
  lines.push(...DEFINITIONS.map((t) => `- ${t}`));
  return `${lines.join('\n')}\n`;
}

// ---- main ---------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const dataset = await prepareDataset(set, seed, values['data-dir']);
  started = true;
  if (many) {
    const timeoutSeconds = Math.max(...profiles.map((p) => runTimeout(linkProfile(p), dataset)));
    const { manyScenario } = await import('./wan/scenario-many.ts');
    return manyScenario({ repo: REPO, mode: many, dataset, profiles, cc, isRoot, timeoutSeconds });
  }
  if (values.scenario === 'priority') {
    const timeoutSeconds = Math.max(...profiles.map((p) => runTimeout(linkProfile(p), dataset)));
    return priorityScenario({ repo: REPO, dataset, profiles, cc, isRoot, timeoutSeconds, json: values.json });
  }
  const workDir = await mkdtemp(join(tmpdir(), 'dxbench-'));
  const ns = `dxbench${process.pid}`;
  const results: ProfileResult[] = [];
  const date = new Date().toISOString();
  try {
    for (const name of profiles) {
      if (interrupted) break;
      const profile = linkProfile(name);
      const timeout = runTimeout(profile, dataset);
      // Import into the source (first profile only) plus every run, with room to start and stop servers.
      const bound = 3600 + methods.length * repeat * (timeout + 300);
      let made: 'wan' | 'plain' | undefined;
      try {
        if (name !== 'loopback') {
          made = 'wan';
          process.stderr.write(`link profile ${name}, congestion control ${cc}: `);
          await wanUp(REPO, ns, name, cc, bound);
        } else if (isRoot) {
          made = 'plain';
          await plainUp(ns);
        }
        if (made) await bypassControl(ns, CONTROL_ADDRESS);
        const spec: RunnerSpec = {
          profile,
          cc: made === 'wan' ? cc : readHostCc(),
          methods,
          dataset,
          workDir,
          controlAddress: made ? CONTROL_ADDRESS : null,
          countWire: made !== undefined,
          runTimeoutSeconds: timeout,
          baselineTimeoutSeconds: baselineTimeout,
          repeat,
          knownPeer: values['known-peer'],
          out: join(workDir, `${name}.json`),
        };
        results.push(await runProfile(spec, made ? ns : undefined, bound));
      } finally {
        if (made === 'wan') await wanDown(REPO, ns).catch((e: unknown) => process.stderr.write(`wanemu.sh down ${ns}: ${String(e)}\n`));
        if (made === 'plain') await plainDown(ns).catch((e: unknown) => process.stderr.write(`removing ${ns}: ${String(e)}\n`));
      }
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  const report = {
    benchmark: 'wan',
    date,
    command: process.argv.slice(2),
    machine: machine(),
    dataset,
    cc: noWan ? null : cc,
    interrupted,
    profiles: results,
    definitions: DEFINITIONS,
  };
  process.stdout.write(markdown(report));
  if (values.json) await writeFile(values.json, JSON.stringify(report, null, 1));
  if (interrupted) return 130;
  return results.every((p) => p.runs.every((r) => r.ok || (baselineTimeout !== null && stoppedBaseline(r)))) &&
    results.length === profiles.length
    ? 0
    : 3;
}

function readHostCc(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

if (values.render !== undefined) {
  const report = JSON.parse(await readFile(values.render, 'utf8')) as Parameters<typeof markdown>[0] | PriorityReport;
  process.stdout.write('scenario' in report ? priorityReportMarkdown(report) : markdown(report));
  process.exit(0);
}

if (scenarios.length > 0 && !scenarios.includes('priority') && !many) {
  const { runRateScenario } = await import('./wan/scenario-ratelimit.ts');
  const scenario = scenarios.filter((s) => s === 'ratelimit' || s === 'schedule');
  const where: (ProfileName | 'loopback')[] = noWan || values.profiles !== undefined ? profiles : ['good'];
  let code = 0;
  for (const s of scenario) code = Math.max(code, await runRateScenario({ scenario: s, profiles: where, cc, json: values.json }));
  process.exit(code);
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench:wan: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(interrupted ? 130 : 1);
  },
);
