// npm run bench:orthanc-memory — the memory a dicom-xfer node needs beside an Orthanc when it sends one
// large instance: a generated multi-frame (600 MB by default) is stored into Orthanc A, dicom-xfer A
// (Orthanc store) pushes it to dicom-xfer B (embedded store), then B pulls it from A; after each, prints
// dicom-xfer A's peak RSS (VmHWM from /proc/<pid>/status). Exits 1 when the peak exceeds the limit or
// the bytes differ. Options: --megabytes N (default 600), --limit MB (default 200), --json FILE.
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { orthancIds } from '../src/dicom/ids.ts';
import { readDicomHeaderFromFile } from '../src/dicom/parse.ts';
import { writeMultiframe } from '../src/generate/index.ts';
import { md5File } from '../src/util/fs.ts';
import { startXferNode, type XferNode } from '../test/helpers/node.ts';
import { orthancInstalled, startOrthanc } from '../test/helpers/orthanc.ts';
import { freePort } from '../test/helpers/ports.ts';

const { values } = parseArgs({
  options: {
    megabytes: { type: 'string', default: '600' },
    limit: { type: 'string', default: '200' },
    json: { type: 'string' },
  },
});
const megabytes = Number(values.megabytes);
const limitMB = Number(values.limit);

/** Peak and current RSS of a process in MB (VmHWM, VmRSS). */
async function memory(pid: number): Promise<{ peakMB: number; rssMB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { peakMB: kb('VmHWM') / 1024, rssMB: kb('VmRSS') / 1024 };
}

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  const r = await fetch(url, init);
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${init?.method ?? 'GET'} ${url}: HTTP ${r.status} ${text}`);
  return JSON.parse(text) as T;
}

/** Waits for a job to end (bounded: 30 minutes); throws unless it succeeded. */
async function waitJob(node: XferNode, id: string): Promise<void> {
  const deadline = Date.now() + 30 * 60_000;
  for (let i = 0; i < 1_000_000 && Date.now() < deadline; i++) {
    const job = await json<Record<string, unknown>>(`${node.url}/jobs/${id}`);
    if (job['State'] === 'Success') return;
    if (job['State'] === 'Failure') throw new Error(`job ${id} failed: ${String(job['ErrorDetails'])}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`job ${id} did not end in time`);
}

async function main(): Promise<number> {
  if (!orthancInstalled()) {
    process.stderr.write('Orthanc is not installed (/usr/sbin/Orthanc): nothing to measure\n');
    return 1;
  }
  const work = await mkdtemp(join(tmpdir(), 'dx-bench-omem-'));
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const file = join(work, 'big.dcm');
    process.stderr.write(`generating a ${megabytes} MB multi-frame instance...\n`);
    await writeMultiframe(file, { seed: 600, megabytes });
    const size = (await stat(file)).size;
    const sum = await md5File(file);
    const ids = orthancIds(await readDicomHeaderFromFile(file));

    const orthanc = await startOrthanc({ name: 'bench-orthanc-a' });
    stops.push(() => orthanc.stop());
    process.stderr.write(`storing it into Orthanc ${orthanc.url}...\n`);
    const pool = new Pool(orthanc.url);
    const res = await pool.request({
      method: 'POST',
      path: '/instances',
      body: createReadStream(file),
      headers: { 'content-length': String(size), 'content-type': 'application/dicom' },
      headersTimeout: 600_000,
    });
    const stored = JSON.parse(await res.body.text()) as Record<string, unknown>;
    await pool.close();
    if (stored['ID'] !== ids.instance) throw new Error(`Orthanc did not store the instance: ${JSON.stringify(stored)}`);

    const [portA, portB] = await Promise.all([freePort(), freePort()]);
    const a = await startXferNode({
      port: portA,
      extraArgs: ['--orthanc', orthanc.url],
      config: { Name: 'bench-a', OrthancPeers: { b: [`http://127.0.0.1:${portB}/`] } },
    });
    stops.push(() => a.stop());
    const b = await startXferNode({ port: portB, config: { Name: 'bench-b', OrthancPeers: { a: [`http://127.0.0.1:${portA}/`] } } });
    stops.push(() => b.stop());
    const idle = await memory(a.pid);
    const resources = [{ Level: 'Instance', ID: ids.instance }];
    const results: Record<string, unknown>[] = [];

    for (const mode of ['push', 'pull'] as const) {
      if (mode === 'pull') {
        const r = await fetch(`${b.url}/instances/${ids.instance}`, { method: 'DELETE' });
        await r.arrayBuffer();
      }
      const t0 = performance.now();
      const body = JSON.stringify({ Resources: resources, Peer: mode === 'push' ? 'b' : 'a', Compression: 'none' });
      const handle =
        mode === 'push'
          ? await json<{ ID: string }>(`${a.url}/transfers/send`, { method: 'POST', body })
          : await json<{ ID: string }>(`${b.url}/transfers/pull`, { method: 'POST', body });
      await waitJob(mode === 'push' ? a : b, handle.ID);
      const seconds = (performance.now() - t0) / 1000;
      const got = (await (await fetch(`${b.url}/instances/${ids.instance}/attachments/dicom/md5`)).text()).trim();
      const mem = await memory(a.pid);
      results.push({ mode, seconds: Number(seconds.toFixed(1)), peakRssMB: Math.round(mem.peakMB), md5Ok: got === sum });
      process.stdout.write(
        `${mode}: ${(size / 1e6).toFixed(0)} MB in ${seconds.toFixed(1)} s, dicom-xfer A peak RSS ${mem.peakMB.toFixed(0)} MB` +
          ` (idle ${idle.rssMB.toFixed(0)} MB), MD5 at B ${got === sum ? 'matches' : `DIFFERS (${got} vs ${sum})`}\n`,
      );
    }
    const peak = (await memory(a.pid)).peakMB;
    const ok = peak < limitMB && results.every((r) => r['md5Ok'] === true);
    process.stdout.write(`dicom-xfer A peak RSS (VmHWM): ${peak.toFixed(0)} MB — limit ${limitMB} MB: ${ok ? 'OK' : 'FAILED'}\n`);
    if (values.json) {
      await writeFile(
        values.json,
        JSON.stringify({ sizeBytes: size, limitMB, peakRssMB: Math.round(peak), idleRssMB: Math.round(idle.rssMB), results }, null, 2),
      );
    }
    return ok ? 0 : 1;
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
