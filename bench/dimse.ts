// npm run bench:dimse — the DICOM network both ways, dicom-xfer beside Orthanc in one run: dcmtk's storescu
// sends the same generated CT slices to each (C-STORE in), then each sends them all to dcmtk's storescp
// through its REST route POST /modalities/{name}/store (C-STORE out). Prints instances/s, MB/s and the
// ratios. Orthanc listens on every interface: the npm script runs this inside a loopback-only namespace
// (test/netns.mjs). Options: --count N (default 1000), --associations LIST (storescu processes at once, one
// inbound figure for each; default 1,4; the outbound figure is taken after the first), --rounds N (default 1),
// --targets dicom-xfer,orthanc (default both), --json FILE.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { generateDataset } from '../src/generate/index.ts';
import { runTool } from '../test/helpers/dcmtk.ts';
import { startXferNode } from '../test/helpers/node.ts';
import { orthancInstalled, startOrthanc } from '../test/helpers/orthanc.ts';
import { freePort, waitFor } from '../test/helpers/ports.ts';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    associations: { type: 'string', default: '1,4' },
    rounds: { type: 'string', default: '1' },
    seed: { type: 'string', default: '7' },
    targets: { type: 'string', default: 'dicom-xfer,orthanc' },
    json: { type: 'string' },
  },
});
const count = Number(values.count);
const associationCounts = (values.associations ?? '1').split(',').map((a) => Math.max(1, Math.floor(Number(a)) || 1));
const rounds = Math.max(1, Number(values.rounds));
const seed = Number(values.seed);
const SINK_AET = 'BENCHSINK';
const RUN_BOUND_MS = 30 * 60_000;

interface Figure {
  target: string;
  /** 'in 1' (storescu with one association), 'in 4', 'out'. */
  direction: string;
  instances: number;
  seconds: number;
  instancesPerSecond: number;
  mbPerSecond: number;
}

/** Runs a dcmtk tool to its end (bounded); rejects with its output when it fails. */
async function run(tool: string, args: string[]): Promise<void> {
  const r = await runTool(tool, args, { timeoutMs: RUN_BOUND_MS });
  if (r.code !== 0) throw new Error(`${tool} exited with ${r.code}:\n${(r.stdout + r.stderr).slice(-20_000)}`);
}

/** storescu of every file to host:port, split over `associations` processes at once. */
async function storeIn(port: number, calledAet: string, files: string[], associations: number): Promise<void> {
  const parts = Array.from({ length: associations }, (_, i) => files.filter((_, j) => j % associations === i));
  await Promise.all(
    parts.filter((p) => p.length > 0).map((p) => run('storescu', ['-aet', 'BENCHSCU', '-aec', calledAet, '127.0.0.1', String(port), ...p])),
  );
}

/** A storescp that writes what it receives to a fresh folder; one child process per association. */
async function startSink(): Promise<{ port: number; dir: string; received(): Promise<number>; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-bench-sink-'));
  const port = await freePort();
  const child = spawn('storescp', ['--fork', '-aet', SINK_AET, '-od', dir, String(port)], { stdio: 'ignore' });
  const received = async () => (await readdir(dir)).length;
  await waitFor('storescp to listen', () => run('echoscu', ['-aec', SINK_AET, '127.0.0.1', String(port)]).then(() => true));
  return {
    port,
    dir,
    received,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function figure(target: string, direction: Figure['direction'], bytes: number, n: number, t0: number): Promise<Figure> {
  const seconds = (performance.now() - t0) / 1000;
  return { target, direction, instances: n, seconds, instancesPerSecond: n / seconds, mbPerSecond: bytes / 1e6 / seconds };
}

/** The studies a server holds (Orthanc's REST API, which both answer). */
async function studies(url: string): Promise<string[]> {
  const r = await fetch(`${url}/studies`);
  if (!r.ok) throw new Error(`GET ${url}/studies: ${r.status}`);
  return (await r.json()) as string[];
}

/** C-STORE out: the server sends every study to the sink through its REST route, synchronously. */
async function storeOut(url: string, sink: { port: number; received(): Promise<number> }, n: number): Promise<void> {
  const body = JSON.stringify({ Resources: await studies(url), Synchronous: true, Timeout: 600 });
  const r = await fetch(`${url}/modalities/sink/store`, { method: 'POST', body, signal: AbortSignal.timeout(RUN_BOUND_MS) });
  if (!r.ok) throw new Error(`POST ${url}/modalities/sink/store: ${r.status} ${await r.text()}`);
  await r.text();
  const got = await sink.received();
  if (got !== n) throw new Error(`${url}: the sink received ${got} files, not ${n}`);
}

interface Server {
  url: string;
  dicomPort: number;
  aet: string;
  stop(): Promise<unknown>;
}

async function startServer(kind: 'dicom-xfer' | 'Orthanc', sinkPort: number): Promise<Server> {
  const dicomPort = await freePort();
  const modalities = { sink: [SINK_AET, '127.0.0.1', sinkPort] };
  const common = { DicomServerEnabled: true, DicomPort: dicomPort, DicomModalities: modalities, LogLevel: 'warn' };
  if (kind === 'dicom-xfer') {
    const node = await startXferNode({ config: { ...common, DicomAet: 'DICOMXFER' } });
    return { url: node.url, dicomPort, aet: 'DICOMXFER', stop: () => node.stop() };
  }
  const { LogLevel: _, ...orthancConfig } = common;
  const orthanc = await startOrthanc({ config: { ...orthancConfig, DicomAet: 'ORTHANC' } });
  return { url: orthanc.url, dicomPort, aet: 'ORTHANC', stop: () => orthanc.stop() };
}

/** One server on fresh storage: C-STORE in with `associations` storescu at once, then, when asked, out. */
async function round(
  kind: 'dicom-xfer' | 'Orthanc',
  files: string[],
  bytes: number,
  associations: number,
  out: boolean,
): Promise<Figure[]> {
  const sink = await startSink();
  const server = await startServer(kind, sink.port);
  try {
    const target = kind === 'Orthanc' ? 'Orthanc 1.10.1' : kind;
    let t0 = performance.now();
    await storeIn(server.dicomPort, server.aet, files, associations);
    const figures = [await figure(target, `in ${associations}`, bytes, files.length, t0)];
    if (!out) return figures;
    t0 = performance.now();
    await storeOut(server.url, sink, files.length);
    figures.push(await figure(target, 'out', bytes, files.length, t0));
    return figures;
  } finally {
    await server.stop();
    await sink.stop();
  }
}

function directionName(direction: string): string {
  if (direction === 'out') return 'C-STORE out (to storescp)';
  const n = Number(direction.split(' ')[1]);
  return `C-STORE in (${n} storescu at once)`;
}

function table(figures: Figure[]): string[] {
  const lines = ['| direction | target | seconds | instances/s | MB/s | rate vs Orthanc |', '|---|---|---|---|---|---|'];
  for (const direction of [...new Set(figures.map((f) => f.direction))]) {
    const mine = figures.filter((f) => f.direction === direction);
    const base = mine.find((f) => f.target.startsWith('Orthanc'));
    for (const f of mine) {
      const ratio = base ? `${(f.instancesPerSecond / base.instancesPerSecond).toFixed(2)}x` : '-';
      const cells = [directionName(direction), f.target];
      cells.push(f.seconds.toFixed(2), f.instancesPerSecond.toFixed(1), f.mbPerSecond.toFixed(1), ratio);
      lines.push(`| ${cells.join(' | ')} |`);
    }
  }
  return lines;
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
  const files = generated.files.slice(0, count).map((f) => f.path);
  let bytes = 0;
  for (const f of files) bytes += (await stat(f)).size;
  if (!orthancInstalled()) process.stderr.write('Orthanc is not installed (apt-get install orthanc): no baseline\n');
  const wanted = (values.targets ?? '').toLowerCase().split(',');
  const kinds: ('dicom-xfer' | 'Orthanc')[] = [];
  if (wanted.includes('dicom-xfer')) kinds.push('dicom-xfer');
  if (wanted.includes('orthanc') && orthancInstalled()) kinds.push('Orthanc');
  const runs: Figure[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const kind of kinds) {
      for (const [i, associations] of associationCounts.entries()) {
        const got = await round(kind, files, bytes, associations, i === 0);
        runs.push(...got);
        const said = got.map((f) => `${f.direction} ${f.seconds.toFixed(1)} s`).join(', ');
        process.stderr.write(`round ${r + 1}/${rounds} ${kind}: ${said}\n`);
      }
    }
  }
  // The median round of each target and direction.
  const median = (target: string, direction: string) => {
    const mine = runs.filter((f) => f.target === target && f.direction === direction).sort((x, y) => x.seconds - y.seconds);
    return mine[Math.floor((mine.length - 1) / 2)];
  };
  const directions = [...new Set(runs.map((f) => f.direction))];
  const figures = [...new Set(runs.map((f) => f.target))]
    .flatMap((t) => directions.map((d) => median(t, d)))
    .filter((f): f is Figure => f !== undefined);
  const head = `${files.length} generated CT slices (${(bytes / 1e6).toFixed(0)} MB), `;
  const lines = [`${head}median of ${rounds} round(s), ${new Date().toISOString()}`, '', ...table(figures)];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values.json)
    await writeFile(values.json, JSON.stringify({ count, associations: associationCounts, rounds, bytes, figures, runs }, null, 2));
}

await main();
