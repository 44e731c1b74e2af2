// npm run bench:dimse — C-STORE of the same generated CT slices by dcmtk's dcmsend into a dicom-xfer node's
// DICOM server and into a real Orthanc's, in one run; prints instances/s, MB/s, the server's CPU and peak
// RSS, and the ratio. Inbound only (the node as the SCP). Options: --count N (default 1000), --associations
// N (dcmsend processes at once, each with its share of the files; default 4), --rounds N (default 3),
// --json FILE. Orthanc listens on every interface: run inside the loopback-only namespace (test/netns.mjs),
// as the npm script does.
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { generateDataset } from '../src/generate/index.ts';
import { dcmsend } from '../test/helpers/dcmtk.ts';
import { startXferNode } from '../test/helpers/node.ts';
import { orthancInstalled, startOrthanc } from '../test/helpers/orthanc.ts';
import { freePort } from '../test/helpers/ports.ts';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    associations: { type: 'string', default: '4' },
    json: { type: 'string' },
    seed: { type: 'string', default: '7' },
    rounds: { type: 'string', default: '3' },
  },
});
const count = Number(values.count);
const associations = Math.max(1, Number(values.associations));
const seed = Number(values.seed);
const rounds = Number(values.rounds);
const CLK_TCK = 100;

/** CPU seconds (user + system) and peak RSS (MB) of a process, read from /proc. */
async function procUsage(pid: number): Promise<{ cpuSeconds: number; peakRssMB: number }> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  const cpu = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
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

/** The files dealt round-robin to `n` senders. */
function shares<T>(items: readonly T[], n: number): T[][] {
  const out: T[][] = Array.from({ length: n }, () => []);
  items.forEach((x, i) => {
    out[i % n]?.push(x);
  });
  return out.filter((s) => s.length > 0);
}

async function send(target: string, port: number, aet: string, pid: number, files: { path: string; size: number }[]): Promise<Result> {
  const before = await procUsage(pid);
  const t0 = performance.now();
  const runs = await Promise.all(
    shares(files, associations).map((part) =>
      dcmsend(
        { port, aet },
        part.map((f) => f.path),
      ),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  const failed = runs.find((r) => r.code !== 0);
  if (failed) throw new Error(`${target}: dcmsend failed (${failed.code}):\n${failed.stderr.slice(-2000)}`);
  const after = await procUsage(pid);
  const bytes = files.reduce((s, f) => s + f.size, 0);
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

async function countOf(url: string): Promise<number> {
  return ((await (await fetch(`${url}/statistics`)).json()) as { CountInstances: number }).CountInstances;
}

async function round(files: { path: string; size: number }[], runs: Result[]): Promise<void> {
  const dicomPort = await freePort();
  const node = await startXferNode({ config: { LogLevel: 'warn', DicomServerEnabled: true, DicomPort: dicomPort } });
  try {
    runs.push(await send('dicom-xfer', dicomPort, 'DICOMXFER', node.pid, files));
    const stored = await countOf(node.url);
    if (stored !== files.length) throw new Error(`dicom-xfer holds ${stored} instances of ${files.length}`);
  } finally {
    await node.stop();
  }
  if (!orthancInstalled()) return;
  const orthancPort = await freePort();
  const orthanc = await startOrthanc({ config: { DicomServerEnabled: true, DicomPort: orthancPort, DicomAet: 'ORTHANC' } });
  try {
    runs.push(await send('Orthanc 1.10.1', orthancPort, 'ORTHANC', orthanc.pid, files));
    const stored = await countOf(orthanc.url);
    if (stored !== files.length) throw new Error(`Orthanc holds ${stored} instances of ${files.length}`);
  } finally {
    await orthanc.stop();
  }
}

async function main(): Promise<void> {
  const dataDir = resolve('bench-output', `ingest-ct-${count}-seed${seed}`);
  await mkdir(dataDir, { recursive: true });
  const perSeries = Math.min(count, 300);
  process.stderr.write(`generating ${count} CT slices in ${dataDir} ...\n`);
  const generated = await generateDataset({
    out: dataDir,
    seed,
    ctSeries: Math.ceil(count / perSeries),
    ctSlices: perSeries,
    mr: 0,
    multiframe: 0,
    us: 0,
    jpegSeries: 0,
  });
  const files = generated.files.slice(0, count).map((f) => ({ path: f.path, size: f.size }));
  for (const f of files) f.size = (await stat(f.path)).size;
  const totalMB = files.reduce((s, f) => s + f.size, 0) / 1e6;
  if (!orthancInstalled()) process.stderr.write('Orthanc is not installed (apt-get install orthanc): no baseline\n');
  // Rounds alternate between the two servers, each on fresh storage, so that the disk's moods fall on both
  // alike; the median round of each is reported.
  const runs: Result[] = [];
  for (let r = 0; r < rounds; r++) {
    await round(files, runs);
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
    `C-STORE by dcmsend of ${files.length} generated CT slices (${totalMB.toFixed(0)} MB), ${associations} associations at once, ` +
      `median of ${rounds} rounds, ${new Date().toISOString()}`,
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
  if (values.json) await writeFile(values.json, JSON.stringify({ count, associations, totalMB, rounds, results, runs }, null, 2));
}

await main();
