// The many-transfers scenarios of the WAN benchmark (npm run bench:wan -- --scenario many-senders|many-jobs):
// twenty sender nodes pushing at once to one receiver, or one node running twenty jobs at once to twenty
// receivers, over one link. Reports each job's rate against the fair share, the aggregate against the
// link, and each node's peak RSS. bench/wan.ts calls manyScenario, which sets up each profile's namespace
// and runs this file inside it (node --import tsx bench/wan/scenario-many.ts SPEC.json).
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mapLimit } from '../../src/util/concurrency.ts';
import { startXferNode, type XferNode } from '../../test/helpers/node.ts';
import { ControlClient, linkProfile, sleep, type DatasetManifest, type LinkProfile, type ProfileName } from './common.ts';
import { runPerProfile } from './netns.ts';

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
  verified: boolean;
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
  State?: string;
  ErrorDetails?: string;
}

/** Starts the nodes: one receiver and COUNT senders (many-senders), or COUNT receivers and one sender. */
async function startNodes(manySenders: boolean, senders: XferNode[], receivers: XferNode[]): Promise<void> {
  // Every job stays in the history until it is read (Orthanc's default keeps 10).
  const quiet = { LogLevel: 'warn', HttpTimeout: 120, JobsHistorySize: 100 };
  if (manySenders) {
    // The receiver holds a transaction per sender: MaxPushTransactions is not what this measures.
    receivers.push(await startXferNode({ config: { ...quiet, Name: 'rx', Transfers: { MaxPushTransactions: COUNT } } }));
    const peers = { rx: [`${(receivers[0] as XferNode).url}/`] };
    for (let i = 0; i < COUNT; i++) senders.push(await startXferNode({ config: { ...quiet, Name: `tx${i}`, OrthancPeers: peers } }));
  } else {
    for (let i = 0; i < COUNT; i++) receivers.push(await startXferNode({ config: { ...quiet, Name: `rx${i}` } }));
    const peers = Object.fromEntries(receivers.map((r, i) => [`rx${i}`, [`${r.url}/`]]));
    senders.push(await startXferNode({ config: { ...quiet, Name: 'tx', ConcurrentJobs: COUNT, OrthancPeers: peers } }));
  }
}

/** Polls every job (`base/jobs/id` URLs) until all succeed: each one's seconds since `t0`. Throws on a failure or the deadline. */
async function waitAll(control: ControlClient, jobs: string[], t0: number, deadline: number): Promise<number[]> {
  const done: (number | null)[] = jobs.map(() => null);
  for (let round = 0; round < 10_000_000 && done.some((d) => d === null); round++) {
    for (let i = 0; i < jobs.length; i++) {
      if (done[i] !== null) continue;
      const url = new URL(jobs[i] as string);
      const j = await control.json<Job>(url.origin, 'GET', url.pathname);
      if (j.State === 'Failure') throw new Error(`job ${i} failed: ${j.ErrorDetails ?? ''}`);
      if (j.State === 'Success') done[i] = (performance.now() - t0) / 1000;
    }
    if (Date.now() > deadline) throw new Error('timeout');
    await sleep(100);
  }
  return done as number[];
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
    log(`${COUNT} pushes at once`);
    const t0 = performance.now();
    const jobIds = await Promise.all(
      ids.map(async (list, i) => {
        const peer = manySenders ? 'rx' : `rx${i}`;
        const body = { Resources: list.map((ID) => ({ Level: 'Instance', ID })), Compression: 'none', Peer: peer };
        return (await control.json<{ ID: string }>(source(i).url, 'POST', '/transfers/send', body)).ID;
      }),
    );
    const done = await waitAll(
      control,
      jobIds.map((id, i) => `${source(i).url}/jobs/${id}`),
      t0,
      deadline,
    );
    res.perJob = groups.map((g, i) => ({ bytes: g.reduce((s, f) => s + f.size, 0), seconds: done[i] as number }));
    res.makespan = Math.max(...done);
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

// ---- from bench/wan.ts --------------------------------------------------------------------------------------

/** The Markdown of one profile's result. */
export function manyMarkdown(r: ManyResult): string[] {
  const p = r.profile;
  const link =
    p.name === 'loopback' ? 'loopback (no emulated link)' : `${p.name}: ${p.rttMs} ms RTT, ${p.rateMbit} Mbit/s, ${p.lossPct}% loss`;
  const title = r.mode === 'many-senders' ? `${r.jobs} sender nodes → 1 receiver` : `1 node, ${r.jobs} jobs → ${r.jobs} receivers`;
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
    `| payload | ${(total / 1e6).toFixed(1)} MB in ${r.jobs} jobs |`,
    `| time to the last success | ${r.makespan.toFixed(1)} s |`,
    `| aggregate | ${mbps(aggregate)} Mbit/s${p.rateMbit ? ` (${Math.round((aggregate / p.rateMbit) * 100)}% of the link)` : ''} |`,
    `| fair share | ${mbps(fair)} Mbit/s |`,
    `| per-job rate, min / max | ${mbps(lo)} / ${mbps(hi)} Mbit/s (${pct(lo)} / ${pct(hi)} of the fair share) |`,
    `| per-job time, min / max | ${Math.min(...r.perJob.map((j) => j.seconds)).toFixed(1)} / ${r.makespan.toFixed(1)} s |`,
    `| peak RSS, senders | ${mb(r.rssMB.senders)} MB |`,
    `| peak RSS, receivers | ${mb(r.rssMB.receivers)} MB |`,
    '',
    `Destination verified (every instance, MD5): ${r.verified ? 'yes' : 'NO'}.`,
  );
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
