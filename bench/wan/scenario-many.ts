// The many-transfers scenarios of the WAN benchmark (npm run bench:wan -- --scenario many-senders|many-jobs):
// twenty sender nodes pushing at once to one receiver, or one node running twenty jobs at once to twenty
// receivers, over one link. Reports each job's rate against the fair share, the aggregate against the
// link, each node's peak RSS and CPU seconds, and the bytes offered to the link second by second (where the
// aggregate falls short: the start, the tail). The jobs carry what --set gives: `small` 4.5 MB each (mostly
// start and tail), `full` about 30 MB each (611 MB; files over half a job's share left out). bench/wan.ts
// calls manyScenario, which sets up each profile's namespace and runs this file inside it
// (node --import tsx bench/wan/scenario-many.ts SPEC.json).
import { readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOrthancTimestamp } from '../../src/protocol/progress.ts';
import { mapLimit } from '../../src/util/concurrency.ts';
import { startXferNode, type XferNode } from '../../test/helpers/node.ts';
import { ControlClient, linkProfile, procUsage, sleep, type DatasetManifest, type LinkProfile, type ProfileName } from './common.ts';
import { readCounters, runPerProfile } from './netns.ts';

export type ManyMode = 'many-senders' | 'many-jobs';
/** Transfers at once: senders (many-senders) or jobs and receivers (many-jobs). */
const COUNT = 20;
const CONTROL_ADDRESS = '127.0.0.2';

interface ManySpec {
  mode: ManyMode;
  profile: LinkProfile;
  cc: string;
  dataset: DatasetManifest;
  controlAddress: string | null;
  timeoutSeconds: number;
  /** Each sender pushes one instance of its group first (then removed at the destination): warm processes. */
  warm: boolean;
  out: string;
}

/** What one profile measured. */
export interface ManyResult {
  mode: ManyMode;
  profile: LinkProfile;
  cc: string;
  jobs: number;
  /** Each job's payload bytes and seconds from the common start to its success. */
  perJob: { bytes: number; seconds: number }[];
  /** From the common start to the last success. */
  makespan: number | null;
  /** Peak RSS (VmHWM) of every node, MB: the receivers (or receiver) and the senders (or sender). */
  rssMB: { senders: number[]; receivers: number[] };
  /** CPU seconds of every node from the common start to the last success. */
  cpuSeconds?: { senders: number[]; receivers: number[] };
  /** The machine's CPU busy over the same time, in cores (all processes, the benchmark's own and others'). */
  machineBusyCores?: number;
  /**
   * What was offered to the link between the nodes (IP bytes entering the emulator's queue: headers, drops
   * and retransmissions included, the benchmark's control traffic left out), in the busier direction: per
   * second since the common start (Mbit/s), and in all.
   */
  series?: number[];
  wireBytes?: number;
  /** Seconds from the common start to each job's first finished request, and to its last. */
  firstByte?: number[];
  lastByte?: number[];
  verified: boolean;
  /** Whether every node had run one small push before (BENCH_MANY_WARM=1). */
  warm?: boolean;
  error?: string;
}

// ---- inside the namespace ---------------------------------------------------------------------------------

/** The files cut into `n` groups of about equal bytes (largest first, each to the lightest group). */
function balanced(files: DatasetManifest['files'], n: number): DatasetManifest['files'][] {
  const groups = Array.from({ length: n }, () => ({ bytes: 0, files: [] as DatasetManifest['files'] }));
  for (const f of [...files].sort((a, b) => b.size - a.size)) {
    const g = groups.reduce((m, x) => (x.bytes < m.bytes ? x : m));
    g.files.push(f);
    g.bytes += f.size;
  }
  return groups.map((g) => g.files);
}

async function peakRssMB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return Math.round(kb / 1024);
}

interface Job {
  ID?: string;
  State?: string;
  ErrorDetails?: string;
  Content?: { WireBytes?: number };
  CompletionTime?: string;
}

/** What the polls saw of the jobs: when each succeeded, its first and last byte, the aggregate per second. */
interface Watched {
  wireBytes: number;
  done: number[];
  firstByte: number[];
  lastByte: number[];
  series: number[];
}

/** Machine CPU jiffies (busy, total) from /proc/stat. */
async function machineJiffies(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const n = line.trim().split(/\s+/).slice(1).map(Number);
  const total = n.reduce((s, x) => s + x, 0);
  // idle and iowait
  return { busy: total - (n[3] ?? 0) - (n[4] ?? 0), total };
}

/** Starts the nodes: one receiver and COUNT senders (many-senders), or COUNT receivers and one sender. */
async function startNodes(manySenders: boolean, senders: XferNode[], receivers: XferNode[]): Promise<void> {
  // Every job stays in the history until it is read (Orthanc's default keeps 10).
  const quiet = { LogLevel: 'warn', HttpTimeout: 120, JobsHistorySize: 100 };
  if (manySenders) {
    // The receiver as configured by default: its MaxPushTransactions (32) holds a transaction per sender.
    receivers.push(await startXferNode({ config: { ...quiet, Name: 'rx' } }));
    const peers = { rx: [`${(receivers[0] as XferNode).url}/`] };
    for (let i = 0; i < COUNT; i++) senders.push(await startXferNode({ config: { ...quiet, Name: `tx${i}`, OrthancPeers: peers } }));
  } else {
    for (let i = 0; i < COUNT; i++) receivers.push(await startXferNode({ config: { ...quiet, Name: `rx${i}` } }));
    const peers = Object.fromEntries(receivers.map((r, i) => [`rx${i}`, [`${r.url}/`]]));
    senders.push(await startXferNode({ config: { ...quiet, Name: 'tx', ConcurrentJobs: COUNT, OrthancPeers: peers } }));
  }
}

/**
 * Polls the jobs (one `GET /jobs?expand` per source node) until all succeed: each one's seconds since `t0`,
 * its first and last byte on the wire, and the aggregate rate per second. Throws on a failure or the deadline.
 */
async function waitAll(control: ControlClient, jobs: { base: string; id: string }[], t0: number, deadline: number): Promise<Watched> {
  const n = jobs.length;
  const w: Watched = { wireBytes: 0, done: Array(n).fill(-1), firstByte: Array(n).fill(-1), lastByte: Array(n).fill(-1), series: [] };
  const wire: number[] = Array(n).fill(0);
  const bases = [...new Set(jobs.map((j) => j.base))];
  // The namespace's counters (the busier direction), from the common start.
  const busier = async (): Promise<number> => {
    // Without a namespace (no root), nothing counts the link: zeros.
    const c = await readCounters().catch(() => ({ original: 0, reply: 0 }));
    return Math.max(c.original, c.reply);
  };
  const wire0 = await busier();
  const samples: [number, number][] = [[0, 0]];
  // The common start on the wall clock, which the jobs' CompletionTime uses.
  const epoch0 = Date.now() - (performance.now() - t0);
  for (let round = 0; round < 10_000_000 && w.done.some((d) => d < 0); round++) {
    const listed = new Map<string, Job>();
    for (const b of bases) for (const j of await control.json<Job[]>(b, 'GET', '/jobs?expand')) listed.set(`${b} ${j.ID}`, j);
    const t = (performance.now() - t0) / 1000;
    for (let i = 0; i < n; i++) {
      const job = jobs[i] as { base: string; id: string };
      const j = listed.get(`${job.base} ${job.id}`);
      if (j?.State === 'Failure') throw new Error(`job ${i} failed: ${j.ErrorDetails ?? ''}`);
      const bytes = j?.Content?.WireBytes ?? 0;
      if (bytes > 0 && (w.firstByte[i] as number) < 0) w.firstByte[i] = t;
      if (bytes > (wire[i] as number)) w.lastByte[i] = t;
      wire[i] = Math.max(wire[i] as number, bytes);
      // The job's own completion time (not when a poll saw it), from the common start.
      const completed = j?.CompletionTime ? parseOrthancTimestamp(j.CompletionTime) : undefined;
      if (j?.State === 'Success' && (w.done[i] as number) < 0) w.done[i] = completed === undefined ? t : (completed - epoch0) / 1000;
    }
    samples.push([t, (await busier()) - wire0]);
    if (Date.now() > deadline) throw new Error('timeout');
    await sleep(200);
  }
  // The bytes moved in each whole second, the cumulative count interpolated between polls.
  const at = (x: number): number => {
    for (let k = 1; k < samples.length; k++) {
      const [t1, b1] = samples[k] as [number, number];
      const [t0s, b0] = samples[k - 1] as [number, number];
      if (x <= t1) return t1 === t0s ? b1 : b0 + ((b1 - b0) * (x - t0s)) / (t1 - t0s);
    }
    return (samples[samples.length - 1] as [number, number])[1];
  };
  const [end, moved] = samples[samples.length - 1] as [number, number];
  w.wireBytes = moved;
  for (let k = 0; k < Math.ceil(end); k++) w.series.push(((at(k + 1) - at(k)) * 8) / 1e6 / Math.min(1, end - k));
  return w;
}

/**
 * Every job's first instance pushed once, all at once, then deleted at the destination: the timed run then
 * meets processes that have run a transfer (code compiled, connections and link profiles made), as a node
 * that serves for days does, instead of 21 cold processes starting together on the benchmark's few cores.
 */
async function warmUp(
  control: ControlClient,
  ids: string[][],
  source: (i: number) => XferNode,
  target: (i: number) => XferNode,
  deadline: number,
  log: (s: string) => void,
): Promise<void> {
  log('warm-up: one instance per job');
  const peer = (i: number) => (source(0) === source(1) ? `rx${i}` : 'rx');
  const jobs = await Promise.all(
    ids.map(async (list, i) => {
      const body = { Resources: [{ Level: 'Instance', ID: list[0] }], Compression: 'none', Peer: peer(i) };
      return { base: source(i).url, id: (await control.json<{ ID: string }>(source(i).url, 'POST', '/transfers/send', body)).ID };
    }),
  );
  await waitAll(control, jobs, performance.now(), deadline);
  await Promise.all(ids.map((list, i) => control.call(target(i).url, 'DELETE', `/instances/${list[0]}`)));
}

/**
 * Starts every push at once and waits for all: what the polls saw, and into `res` the CPU seconds of each
 * node (`nodes`, the first `nSenders` of them senders) and the machine's busy cores over that time, and
 * what crossed the link.
 */
async function timedPushes(
  control: ControlClient,
  pushes: { base: string; peer: string; list: string[] }[],
  nodes: XferNode[],
  nSenders: number,
  res: ManyResult,
  deadline: number,
): Promise<Watched> {
  const cpu0 = await Promise.all(nodes.map((x) => procUsage(x.pid)));
  const machine0 = await machineJiffies();
  const t0 = performance.now();
  const jobIds = await Promise.all(
    pushes.map(async ({ base, peer, list }) => {
      const body = { Resources: list.map((ID) => ({ Level: 'Instance', ID })), Compression: 'none', Peer: peer };
      return (await control.json<{ ID: string }>(base, 'POST', '/transfers/send', body)).ID;
    }),
  );
  const seen = await waitAll(
    control,
    jobIds.map((id, i) => ({ base: (pushes[i] as { base: string }).base, id })),
    t0,
    deadline,
  );
  const machine1 = await machineJiffies();
  const cpu1 = await Promise.all(nodes.map((x) => procUsage(x.pid)));
  const cpu = nodes.map((_, k) => Math.round(((cpu1[k]?.cpuSeconds ?? 0) - (cpu0[k]?.cpuSeconds ?? 0)) * 10) / 10);
  res.cpuSeconds = { senders: cpu.slice(0, nSenders), receivers: cpu.slice(nSenders) };
  res.machineBusyCores = ((machine1.busy - machine0.busy) / Math.max(1, machine1.total - machine0.total)) * cpus().length;
  if (seen.wireBytes > 0) res.wireBytes = seen.wireBytes;
  const tenth = (xs: number[]) => xs.map((x) => Math.round(x * 10) / 10);
  res.series = tenth(seen.series);
  res.firstByte = tenth(seen.firstByte);
  res.lastByte = tenth(seen.lastByte);
  return seen;
}

async function inner(spec: ManySpec): Promise<void> {
  const control = new ControlClient(spec.controlAddress);
  const log = (s: string) => process.stderr.write(`[${spec.mode} ${spec.profile.name}] ${s}\n`);
  const res: ManyResult = {
    mode: spec.mode,
    profile: spec.profile,
    cc: spec.cc,
    jobs: COUNT,
    perJob: [],
    makespan: null,
    rssMB: { senders: [], receivers: [] },
    verified: false,
    warm: spec.warm,
  };
  const senders: XferNode[] = [];
  const receivers: XferNode[] = [];
  const deadline = Date.now() + spec.timeoutSeconds * 1000;
  try {
    const manySenders = spec.mode === 'many-senders';
    await startNodes(manySenders, senders, receivers);
    // Files larger than half a job's share are left out, so that every job moves about the same bytes and
    // the jobs' rates compare.
    const cap = spec.dataset.totalBytes / COUNT / 2;
    const groups = balanced(
      spec.dataset.files.filter((f) => f.size <= cap),
      COUNT,
    );
    const source = (i: number) => (manySenders ? senders[i] : senders[0]) as XferNode;
    const target = (i: number) => (manySenders ? receivers[0] : receivers[i]) as XferNode;
    log(`importing ${spec.dataset.files.length} files into ${senders.length} source node(s) (not timed)`);
    const ids = await mapLimit(
      groups.map((g, i) => ({ g, i })),
      4,
      async ({ g, i }) =>
        mapLimit(g, 2, async (f) => {
          const a = await control.call(source(i).url, 'POST', '/instances', await readFile(join(spec.dataset.dir, f.path)));
          if (a.status !== 200) throw new Error(`import of ${f.path}: HTTP ${a.status}`);
          return (JSON.parse(a.body.toString('utf8')) as { ID: string }).ID;
        }),
    );
    if (spec.warm) await warmUp(control, ids, source, target, deadline, log);
    log(`${COUNT} pushes at once`);
    const pushes = ids.map((list, i) => ({ base: source(i).url, peer: manySenders ? 'rx' : `rx${i}`, list }));
    const seen = await timedPushes(control, pushes, [...senders, ...receivers], senders.length, res, deadline);
    res.perJob = groups.map((g, i) => ({ bytes: g.reduce((s, f) => s + f.size, 0), seconds: seen.done[i] as number }));
    res.makespan = Math.max(...seen.done);
    res.rssMB = {
      senders: await Promise.all(senders.map((n) => peakRssMB(n.pid))),
      receivers: await Promise.all(receivers.map((n) => peakRssMB(n.pid))),
    };
    const md5 = (base: string, id: string) => control.text(base, `/instances/${id}/attachments/dicom/md5`);
    const same = await mapLimit(
      ids.flatMap((list, i) => list.map((id) => ({ id, i }))),
      16,
      async ({ id, i }) => (await md5(source(i).url, id)) === (await md5(target(i).url, id).catch(() => '')),
    );
    res.verified = same.every(Boolean);
  } catch (e) {
    res.error = e instanceof Error ? e.message : String(e);
    log(`failed: ${res.error}`);
  } finally {
    await Promise.allSettled([...senders, ...receivers].map((n) => n.stop()));
    await control.close();
    await writeFile(spec.out, JSON.stringify(res, null, 1));
  }
}

/**
 * What was offered to the link over the same time: IP bytes counted as they enter the emulator's queue,
 * headers included, and so also the packets its full buffer dropped and their retransmissions (above 100%
 * when many connections overflow it).
 */
function wireRow(r: ManyResult): string[] {
  const rate = r.profile.rateMbit;
  if (r.wireBytes === undefined || r.makespan === null || !rate) return [];
  const mbit = (r.wireBytes * 8) / 1e6 / r.makespan;
  return [
    `| offered to the link (IP bytes, drops included) | ${mbit.toFixed(1)} Mbit/s (${Math.round((mbit / rate) * 100)}% of its rate) |`,
  ];
}

/** CPU rows of the table: seconds per node during the transfers, and the machine's load. */
function cpuRows(r: ManyResult): string[] {
  if (!r.cpuSeconds || r.makespan === null) return [];
  const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
  const range = (xs: number[]) => (xs.length === 1 ? `${xs[0]}` : `${Math.min(...xs)}–${Math.max(...xs)} (sum ${sum(xs).toFixed(1)})`);
  const rows = [
    `| CPU s, senders | ${range(r.cpuSeconds.senders)} |`,
    `| CPU s, receivers | ${range(r.cpuSeconds.receivers)} |`,
    `| nodes' CPU, cores busy | ${((sum(r.cpuSeconds.senders) + sum(r.cpuSeconds.receivers)) / r.makespan).toFixed(2)} |`,
  ];
  if (r.machineBusyCores !== undefined)
    rows.push(`| machine CPU, cores busy (everything) | ${r.machineBusyCores.toFixed(2)} of ${cpus().length} |`);
  return rows;
}

// ---- from bench/wan.ts --------------------------------------------------------------------------------------

/** The Markdown of one profile's result. */
export function manyMarkdown(r: ManyResult): string[] {
  const p = r.profile;
  const link =
    p.name === 'loopback' ? 'loopback (no emulated link)' : `${p.name}: ${p.rttMs} ms RTT, ${p.rateMbit} Mbit/s, ${p.lossPct}% loss`;
  const title =
    (r.mode === 'many-senders' ? `${r.jobs} sender nodes → 1 receiver` : `1 node, ${r.jobs} jobs → ${r.jobs} receivers`) +
    (r.warm ? ' (warm: each job pushed one instance before)' : '');
  const lines = [`### ${r.mode}, ${link}, ${r.cc.toUpperCase()}: ${title}`, ''];
  if (r.error || r.makespan === null) return [...lines, `**Failed**: ${r.error ?? 'no result'}`];
  const total = r.perJob.reduce((s, j) => s + j.bytes, 0);
  const aggregate = (total * 8) / 1e6 / r.makespan;
  // A job's share: its rate over its own time; the fair share: the aggregate rate split evenly.
  const rates = r.perJob.map((j) => (j.bytes * 8) / 1e6 / j.seconds);
  const fair = aggregate / r.jobs;
  const [lo, hi] = [Math.min(...rates), Math.max(...rates)];
  const pct = (x: number) => `${Math.round((x / fair) * 100)}%`;
  const mbps = (x: number) => x.toFixed(1);
  const mb = (xs: number[]) => (xs.length === 0 ? '–' : `${Math.min(...xs)}–${Math.max(...xs)}`);
  lines.push(
    '| figure | value |',
    '|---|---:|',
    `| payload | ${(total / 1e6).toFixed(1)} MB in ${r.jobs} jobs (${(total / r.jobs / 1e6).toFixed(1)} MB each) |`,
    `| time to the last success | ${r.makespan.toFixed(1)} s |`,
    `| aggregate | ${mbps(aggregate)} Mbit/s${p.rateMbit ? ` (${Math.round((aggregate / p.rateMbit) * 100)}% of the link)` : ''} |`,
    ...wireRow(r),
    `| fair share | ${mbps(fair)} Mbit/s |`,
    `| per-job rate, min / max | ${mbps(lo)} / ${mbps(hi)} Mbit/s (${pct(lo)} / ${pct(hi)} of the fair share) |`,
    `| per-job time, min / max | ${Math.min(...r.perJob.map((j) => j.seconds)).toFixed(1)} / ${r.makespan.toFixed(1)} s |`,
    `| peak RSS, senders | ${mb(r.rssMB.senders)} MB |`,
    `| peak RSS, receivers | ${mb(r.rssMB.receivers)} MB |`,
    ...cpuRows(r),
    '',
    `Destination verified (every instance, MD5): ${r.verified ? 'yes' : 'NO'}.`,
  );
  if (r.series) lines.push('', `Offered to the link per second (Mbit/s, IP bytes, drops included): ${r.series.join(' ')}`);
  if (r.firstByte && r.lastByte) {
    const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)} s`;
    lines.push(`First request done of each job: ${range(r.firstByte)}; last: ${range(r.lastByte)}.`);
  }
  return lines;
}

export interface ManyOptions {
  repo: string;
  mode: ManyMode;
  dataset: DatasetManifest;
  profiles: (ProfileName | 'loopback')[];
  cc: string;
  isRoot: boolean;
  timeoutSeconds: number;
}

/** Runs the scenario on each profile (a namespace each); prints Markdown; answers the exit status. */
export async function manyScenario(o: ManyOptions): Promise<number> {
  const results = await runPerProfile<ManyResult>({
    repo: o.repo,
    ns: `dxmany${process.pid}`,
    profiles: o.profiles,
    cc: o.cc,
    isRoot: o.isRoot,
    controlAddress: CONTROL_ADDRESS,
    script: fileURLToPath(import.meta.url),
    maxSeconds: o.timeoutSeconds,
    spec: (name, made) => ({
      mode: o.mode,
      profile: linkProfile(name),
      cc: made === 'wan' ? o.cc : 'host',
      dataset: o.dataset,
      controlAddress: made ? CONTROL_ADDRESS : null,
      timeoutSeconds: o.timeoutSeconds,
      warm: process.env.BENCH_MANY_WARM === '1',
    }),
  });
  const d = o.dataset;
  const size = `${d.files.length} instances, ${(d.totalBytes / 1e6).toFixed(1)} MB`;
  const head = `${o.mode} scenario, ${new Date().toISOString()}: data set \`${d.set}\` (seed ${d.seed}), ${size}`;
  process.stdout.write(`${[head, '', ...results.flatMap((x) => [...manyMarkdown(x), ''])].join('\n')}\n`);
  return results.length === o.profiles.length && results.every((r) => !r.error && r.verified) ? 0 : 3;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await inner(JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as ManySpec);
}
