// The priority scenario of the WAN benchmark (npm run bench:wan -- --scenario priority): how long a push of
// higher Priority takes alone and while a bulk push runs on the same link (which it preempts), and what the
// bulk push costs in all. bench/wan.ts calls priorityScenario, which sets up the namespace of each link
// profile and runs this file inside it (node --import tsx bench/wan/scenario-priority.ts SPEC.json).
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mapLimit } from '../../src/util/concurrency.ts';
import { startXferNode, type XferNode } from '../../test/helpers/node.ts';
import { freePort } from '../../test/helpers/ports.ts';
import { ControlClient, linkProfile, sleep, type DatasetManifest, type LinkProfile, type ProfileName } from './common.ts';
import { runPerProfile } from './netns.ts';

/** Share of the data set's bytes that the high-priority push moves (the rest is the bulk push). */
const HIGH_SHARE = 0.1;
/** The high-priority push starts once the bulk push has moved this share of its bytes. */
const START_AT = 0.3;
const CONTROL_ADDRESS = '127.0.0.2';

interface PrioritySpec {
  profile: LinkProfile;
  cc: string;
  dataset: DatasetManifest;
  controlAddress: string | null;
  timeoutSeconds: number;
  out: string;
}

/** What one profile measured (seconds; null when a run did not get that far). */
export interface PriorityResult {
  profile: LinkProfile;
  cc: string;
  high: { instances: number; bytes: number };
  bulk: { instances: number; bytes: number };
  highAlone: number | null;
  bulkAlone: number | null;
  /** The high push, from its submission to its success, while the bulk push ran. */
  highWithBulk: number | null;
  /** The bulk push, from its submission to its success, preempted by the high one. */
  bulkWithHigh: number | null;
  /** From the high push's submission to the bulk job seen Pending (polled every 50 ms). */
  gaveWayAfter: number | null;
  /** Every instance of both at the destination with its MD5, after the run of both. */
  verified: boolean;
  error?: string;
}

// ---- inside the namespace ---------------------------------------------------------------------------------

interface Job {
  State?: string;
  ErrorDetails?: string;
  Content?: Record<string, unknown>;
}

async function inner(spec: PrioritySpec): Promise<void> {
  const control = new ControlClient(spec.controlAddress);
  const log = (s: string) => process.stderr.write(`[priority ${spec.profile.name}] ${s}\n`);
  const res: PriorityResult = {
    profile: spec.profile,
    cc: spec.cc,
    high: { instances: 0, bytes: 0 },
    bulk: { instances: 0, bytes: 0 },
    highAlone: null,
    bulkAlone: null,
    highWithBulk: null,
    bulkWithHigh: null,
    gaveWayAfter: null,
    verified: false,
  };
  const nodes: XferNode[] = [];
  const deadline = Date.now() + spec.timeoutSeconds * 1000;
  const job = (base: string, id: string) => control.json<Job>(base, 'GET', `/jobs/${id}`);
  async function until(base: string, id: string, ok: (j: Job) => boolean): Promise<Job> {
    for (let i = 0; i < 10_000_000; i++) {
      const j = await job(base, id);
      if (j.State === 'Failure') throw new Error(`job ${id} failed: ${j.ErrorDetails ?? ''}`);
      if (ok(j)) return j;
      if (Date.now() > deadline) throw new Error(`timeout after ${spec.timeoutSeconds} s (job ${id} ${j.State ?? '?'})`);
      await sleep(50);
    }
    throw new Error('timeout');
  }
  try {
    const [portA, portB] = [await freePort(), await freePort()];
    const urlA = `http://127.0.0.1:${portA}`;
    const urlB = `http://127.0.0.1:${portB}`;
    const a = await startXferNode({
      port: portA,
      config: { Name: 'prio-a', LogLevel: 'warn', ConcurrentJobs: 2, OrthancPeers: { b: [urlB] } },
    });
    nodes.push(a);
    // The first files, up to HIGH_SHARE of the bytes, are the urgent study; the rest is the bulk.
    const files = spec.dataset.files;
    let cut = 0;
    for (let sum = 0; cut < files.length && sum < HIGH_SHARE * spec.dataset.totalBytes; cut++) sum += files[cut]?.size ?? 0;
    log(`importing ${files.length} files into the source (not timed)`);
    const ids = await mapLimit(files, 4, async (f) => {
      const a1 = await control.call(urlA, 'POST', '/instances', await readFile(join(spec.dataset.dir, f.path)));
      if (a1.status !== 200) throw new Error(`import of ${f.path}: HTTP ${a1.status}`);
      return (JSON.parse(a1.body.toString('utf8')) as { ID: string }).ID;
    });
    const highIds = ids.slice(0, cut);
    const bulkIds = ids.slice(cut);
    const bytes = (from: number, to: number) => files.slice(from, to).reduce((s, f) => s + f.size, 0);
    res.high = { instances: highIds.length, bytes: bytes(0, cut) };
    res.bulk = { instances: bulkIds.length, bytes: bytes(cut, files.length) };
    const send = async (list: string[], priority: number) =>
      (
        await control.json<{ ID: string }>(urlA, 'POST', '/transfers/send', {
          Resources: list.map((ID) => ({ Level: 'Instance', ID })),
          Compression: 'none',
          Peer: 'b',
          Priority: priority,
        })
      ).ID;
    /** A fresh receiver for each run, on the port A knows. */
    async function withReceiver<T>(fn: (b: XferNode) => Promise<T>): Promise<T> {
      const b = await startXferNode({ port: portB, config: { Name: 'prio-b', LogLevel: 'warn' } });
      nodes.push(b);
      try {
        return await fn(b);
      } finally {
        await b.stop();
        nodes.splice(nodes.indexOf(b), 1);
      }
    }
    const alone = async (list: string[], priority: number): Promise<number> =>
      withReceiver(async () => {
        const t0 = performance.now();
        await until(urlA, await send(list, priority), (j) => j.State === 'Success');
        return (performance.now() - t0) / 1000;
      });
    log(`high push alone: ${highIds.length} instances`);
    res.highAlone = await alone(highIds, 10);
    log(`bulk push alone: ${bulkIds.length} instances`);
    res.bulkAlone = await alone(bulkIds, 0);
    log('both: the high push starts while the bulk one runs');
    await withReceiver(async (b) => {
      const t0 = performance.now();
      const bulk = await send(bulkIds, 0);
      await until(urlA, bulk, (j) => Number(j.Content?.['WireBytes'] ?? 0) >= START_AT * res.bulk.bytes);
      const t1 = performance.now();
      const high = await send(highIds, 10);
      let highDone: number | null = null;
      for (let i = 0; i < 10_000_000 && highDone === null; i++) {
        const [h, k] = [await job(urlA, high), await job(urlA, bulk)];
        if (h.State === 'Failure') throw new Error(`the high push failed: ${h.ErrorDetails ?? ''}`);
        if (res.gaveWayAfter === null && k.State === 'Pending') res.gaveWayAfter = (performance.now() - t1) / 1000;
        if (h.State === 'Success') highDone = performance.now();
        else if (Date.now() > deadline) throw new Error(`timeout after ${spec.timeoutSeconds} s (high push ${h.State ?? '?'})`);
        else await sleep(50);
      }
      res.highWithBulk = ((highDone ?? performance.now()) - t1) / 1000;
      await until(urlA, bulk, (j) => j.State === 'Success');
      res.bulkWithHigh = (performance.now() - t0) / 1000;
      const dest = new Set(await control.json<string[]>(b.url, 'GET', '/instances'));
      const md5 = (base: string, id: string) => control.text(base, `/instances/${id}/attachments/dicom/md5`);
      const same = await mapLimit(ids, 16, async (id) => dest.has(id) && (await md5(urlA, id)) === (await md5(b.url, id)));
      res.verified = dest.size === ids.length && same.every(Boolean);
    });
  } catch (e) {
    res.error = e instanceof Error ? e.message : String(e);
    log(`failed: ${res.error}`);
  } finally {
    for (const n of nodes) await n.stop().catch(() => undefined);
    await control.close();
    await writeFile(spec.out, JSON.stringify(res, null, 1));
  }
}

// ---- from bench/wan.ts --------------------------------------------------------------------------------------

const f1 = (n: number | null): string => (n === null ? '–' : n.toFixed(1));

/** The Markdown of one profile's result. */
export function priorityMarkdown(r: PriorityResult): string[] {
  const p = r.profile;
  const link =
    p.name === 'loopback' ? 'loopback (no emulated link)' : `${p.name}: ${p.rttMs} ms RTT, ${p.rateMbit} Mbit/s, ${p.lossPct}% loss`;
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const lines = [
    `### priority, ${link}, ${r.cc.toUpperCase()}`,
    '',
    `High push (Priority 10): ${r.high.instances} instances, ${mb(r.high.bytes)} MB; bulk push (Priority 0): ${r.bulk.instances} ` +
      `instances, ${mb(r.bulk.bytes)} MB; the high push starts when the bulk one has moved ${START_AT * 100}% of its bytes.`,
    '',
    '| run | high push s | bulk push s | bulk gave way after s |',
    '|---|---:|---:|---:|',
    `| alone, one after the other | ${f1(r.highAlone)} | ${f1(r.bulkAlone)} | – |`,
    `| both at once | ${f1(r.highWithBulk)} | ${f1(r.bulkWithHigh)} | ${r.gaveWayAfter === null ? '–' : r.gaveWayAfter.toFixed(2)} |`,
  ];
  if (r.highAlone && r.highWithBulk)
    lines.push('', `High push with the bulk one running: ${(r.highWithBulk / r.highAlone).toFixed(2)}x its time alone.`);
  if (r.bulkAlone && r.bulkWithHigh && r.highAlone) {
    lines.push(`Bulk push: ${f1(r.bulkWithHigh - r.bulkAlone)} s longer than alone (the high push alone takes ${f1(r.highAlone)} s).`);
  }
  lines.push(r.error ? `**Failed**: ${r.error}` : `Destination verified (every instance, MD5): ${r.verified ? 'yes' : 'NO'}.`);
  return lines;
}

/** The JSON report of the scenario (--json), which --render prints again. */
export interface PriorityReport {
  benchmark: 'wan';
  scenario: 'priority';
  date: string;
  dataset: { set: string; seed: number; instances: number; totalBytes: number };
  results: PriorityResult[];
}

export function priorityReportMarkdown(r: PriorityReport): string {
  const d = r.dataset;
  const size = `${d.instances} instances, ${(d.totalBytes / 1e6).toFixed(1)} MB`;
  const head = `Priority scenario, ${r.date}: data set \`${d.set}\` (seed ${d.seed}), ${size}`;
  return `${[head, '', ...r.results.flatMap((x) => [...priorityMarkdown(x), ''])].join('\n')}\n`;
}

export interface PriorityOptions {
  repo: string;
  dataset: DatasetManifest;
  profiles: (ProfileName | 'loopback')[];
  cc: string;
  isRoot: boolean;
  timeoutSeconds: number;
  json: string | undefined;
}

/** Runs the scenario on each profile (a namespace each, as the other runs); prints Markdown; answers the exit status. */
export async function priorityScenario(o: PriorityOptions): Promise<number> {
  const results = await runPerProfile<PriorityResult>({
    repo: o.repo,
    ns: `dxprio${process.pid}`,
    profiles: o.profiles,
    cc: o.cc,
    isRoot: o.isRoot,
    controlAddress: CONTROL_ADDRESS,
    script: fileURLToPath(import.meta.url),
    maxSeconds: o.timeoutSeconds,
    spec: (name, made) => ({
      profile: linkProfile(name),
      cc: made === 'wan' ? o.cc : 'host',
      dataset: o.dataset,
      controlAddress: made ? CONTROL_ADDRESS : null,
      timeoutSeconds: o.timeoutSeconds,
    }),
  });
  const { set, seed, files, totalBytes } = o.dataset;
  const report: PriorityReport = {
    benchmark: 'wan',
    scenario: 'priority',
    date: new Date().toISOString(),
    dataset: { set, seed, instances: files.length, totalBytes },
    results,
  };
  process.stdout.write(priorityReportMarkdown(report));
  if (o.json) await writeFile(o.json, JSON.stringify(report, null, 1));
  return results.length === o.profiles.length && results.every((r) => !r.error && r.verified) ? 0 : 3;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await inner(JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as PrioritySpec);
}
