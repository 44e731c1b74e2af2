// npm run bench:ingest — ingest the same generated CT slices into a dicom-xfer node and into a real
// Orthanc, with the same client and concurrency, in one run; prints instances/s, MB/s, CPU, peak RSS
// and the ratios. Options: --count N (default 1000), --concurrency N (default 4), --json FILE.
import { createReadStream } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { generateDataset } from '../src/generate/index.ts';
import { mapLimit } from '../src/util/concurrency.ts';
import { startXferNode } from '../test/helpers/node.ts';
import { orthancInstalled, startOrthanc } from '../test/helpers/orthanc.ts';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '4' },
    json: { type: 'string' },
    seed: { type: 'string', default: '7' },
    rounds: { type: 'string', default: '3' },
  },
});
const count = Number(values.count);
const concurrency = Number(values.concurrency);
const seed = Number(values.seed);
const rounds = Number(values.rounds);
const CLK_TCK = 100;

/** CPU seconds (user + system) and peak RSS (MB) of a process, read from /proc. */
async function procUsage(pid: number): Promise<{ cpuSeconds: number; peakRssMB: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  const cpu = (Number(stat[11]) + Number(stat[12])) / CLK_TCK;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  return { cpuSeconds: cpu, peakRssMB: hwm ? Number(hwm[1]) / 1024 : NaN };
}

interface Result {
  target: string;
  instances: number;
  seconds: number;
  instancesPerSecond: number;
  mbPerSecond: number;
  serverCpuSeconds: number;
  serverPeakRssMB: number;
}

async function ingest(target: string, url: string, pid: number, files: { path: string; size: number }[]): Promise<Result> {
  const pool = new Pool(url, { connections: concurrency, pipelining: 1 });
  const before = await procUsage(pid);
  const t0 = performance.now();
  let bytes = 0;
  await mapLimit(files, concurrency, async (f) => {
    const res = await pool.request({
      method: 'POST',
      path: '/instances',
      body: createReadStream(f.path),
      headers: { 'content-length': String(f.size), 'content-type': 'application/dicom' },
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${target}: ${f.path}: HTTP ${res.statusCode} ${text}`);
    bytes += f.size;
  });
  const seconds = (performance.now() - t0) / 1000;
  const after = await procUsage(pid);
  await pool.close();
  return {
    target,
    instances: files.length,
    seconds,
    instancesPerSecond: files.length / seconds,
    mbPerSecond: bytes / 1e6 / seconds,
    serverCpuSeconds: after.cpuSeconds - before.cpuSeconds,
    serverPeakRssMB: after.peakRssMB,
  };
}

async function main(): Promise<void> {
  const dataDir = resolve('bench-output', `ingest-ct-${count}-seed${seed}`);
  await mkdir(dataDir, { recursive: true });
  const perSeries = Math.min(count, 300);
  const series = Math.ceil(count / perSeries);
  process.stderr.write(`generating ${count} CT slices in ${dataDir} ...\n`);
  const generated = await generateDataset({
    out: dataDir,
    seed,
    ctSeries: series,
    ctSlices: perSeries,
    mr: 0,
    multiframe: 0,
    us: 0,
    jpegSeries: 0,
  });
  const files = generated.files.slice(0, count).map((f) => ({ path: f.path, size: f.size }));
  for (const f of files) f.size = (await stat(f.path)).size;
  const totalMB = files.reduce((s, f) => s + f.size, 0) / 1e6;

  // Rounds alternate between the two servers, each on fresh storage, so that the disk's moods (this
  // machine's fsync times vary a lot) fall on both alike; the median round of each is reported.
  const runs: Result[] = [];
  if (!orthancInstalled()) process.stderr.write('Orthanc is not installed (apt-get install orthanc): no baseline\n');
  for (let r = 0; r < rounds; r++) {
    const node = await startXferNode({ config: { LogLevel: 'warn' } });
    try {
      runs.push(await ingest('dicom-xfer', node.url, node.pid, files));
    } finally {
      await node.stop();
    }
    if (orthancInstalled()) {
      const orthanc = await startOrthanc();
      try {
        runs.push(await ingest('Orthanc 1.10.1', orthanc.url, orthanc.pid, files));
      } finally {
        await orthanc.stop();
      }
    }
    process.stderr.write(
      `round ${r + 1}/${rounds}: ${runs
        .slice(-2)
        .map((x) => `${x.target} ${x.seconds.toFixed(2)} s`)
        .join(', ')}\n`,
    );
  }
  const median = (target: string): Result | undefined => {
    const mine = runs.filter((x) => x.target === target).sort((a, b) => a.seconds - b.seconds);
    return mine[Math.floor((mine.length - 1) / 2)];
  };
  const results = ['dicom-xfer', 'Orthanc 1.10.1'].map(median).filter((x): x is Result => x !== undefined);
  const base = results.find((r) => r.target.startsWith('Orthanc'));
  const lines = [
    `ingest of ${files.length} generated CT slices (${totalMB.toFixed(0)} MB), ${concurrency} uploads at a time, median of ${rounds} ` +
      `rounds, ${new Date().toISOString()}`,
    '',
    '| target | seconds | instances/s | MB/s | server CPU s | server peak RSS MB | speed vs Orthanc |',
    '|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${[
          r.target,
          r.seconds.toFixed(2),
          r.instancesPerSecond.toFixed(1),
          r.mbPerSecond.toFixed(1),
          r.serverCpuSeconds.toFixed(2),
          r.serverPeakRssMB.toFixed(0),
          base ? `${(r.instancesPerSecond / base.instancesPerSecond).toFixed(2)}x` : '-',
        ].join(' | ')} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values.json) await writeFile(values.json, JSON.stringify({ count, concurrency, totalMB, rounds, results, runs }, null, 2));
}

await main();
