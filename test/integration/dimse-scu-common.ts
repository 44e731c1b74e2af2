// What the SCU tests share: dcmtk's storescp as the receiving modality (bit-preserving, every transfer syntax,
// one file per reception), real DICOM files picked one per transfer syntax, and the node's REST calls.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataSetLayout } from '../../src/dicom/dataset.ts';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { REAL_DICOM, listFiles } from '../helpers/data.ts';
import { freePort, waitFor } from '../helpers/ports.ts';

export interface StoreScp {
  port: number;
  aet: string;
  dir: string;
  /** The files received so far (one per C-STORE received, duplicates included). */
  files(): Promise<string[]>;
  log(): string;
  stop(): Promise<void>;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Starts storescp on loopback (`slowSeconds`: it waits that long after each reception, before answering). */
export async function startStoreScp(opts: { aet?: string; port?: number; slowSeconds?: number } = {}): Promise<StoreScp> {
  const aet = opts.aet ?? 'STORESCP';
  const port = opts.port ?? (await freePort());
  const dir = await mkdtemp(join(tmpdir(), 'dx-storescp-'));
  const args = ['-aet', aet, '-od', dir, '+xa', '-pm', '+B', '+uf', '-dhl'];
  if (opts.slowSeconds !== undefined) args.push('-xcr', `sleep ${opts.slowSeconds}`, '-xs');
  args.push(String(port));
  const child: ChildProcess = spawn('/usr/bin/storescp', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (b: Buffer) => {
    output += b.toString();
    if (output.length > 100_000) output = output.slice(-50_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const scp: StoreScp = {
    port,
    aet,
    dir,
    log: () => output,
    files: async () => (await readdir(dir)).filter((f) => !f.startsWith('.')).map((f) => join(dir, f)),
    async stop() {
      if (!exited && child.pid !== undefined) {
        process.kill(child.pid, 'SIGTERM');
        await exit;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor('storescp to listen', async () => {
      if (exited) throw new Error(`storescp exited:\n${output}`);
      return listening(port);
    });
  } catch (e) {
    await scp.stop();
    throw e;
  }
  return scp;
}

/** Transfer syntaxes dcmtk's storescp does not accept even with +xa (JPEG process 14 is one). */
export const NOT_IN_STORESCP = ['1.2.840.10008.1.2.4.57'];

/** One real file per transfer syntax found in the test data (sorted by syntax), at most `max`, but `except`. */
export async function onePerSyntax(max = 20, except: readonly string[] = NOT_IN_STORESCP): Promise<{ path: string; ts: string }[]> {
  const byTs = new Map<string, string>();
  for (const path of (await listFiles(REAL_DICOM)).sort()) {
    try {
      const h = await readDicomHeaderFromFile(path);
      if (h.sopClassUid && !byTs.has(h.transferSyntaxUid) && !except.includes(h.transferSyntaxUid)) byTs.set(h.transferSyntaxUid, path);
    } catch {
      // Not every test file is a sound instance: those are not sent.
    }
  }
  return [...byTs.entries()]
    .sort()
    .slice(0, max)
    .map(([ts, path]) => ({ ts, path }));
}

/** The data set bytes of a DICOM file (the file meta group aside). */
export async function datasetOf(pathOrBytes: string | Buffer): Promise<Buffer> {
  const bytes = typeof pathOrBytes === 'string' ? await readFile(pathOrBytes) : pathOrBytes;
  return bytes.subarray(dataSetLayout(bytes).start);
}

export async function postJson(url: string, body: unknown, raw = false): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(url, { method: 'POST', body: raw ? String(body) : JSON.stringify(body) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try {
    json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    json = { text };
  }
  return { status: r.status, json };
}

/** Uploads files to a node; answers their instance IDs in the same order. */
export async function upload(nodeUrl: string, paths: readonly string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const p of paths) {
    const r = await fetch(`${nodeUrl}/instances`, { method: 'POST', body: await readFile(p) });
    if (!r.ok) throw new Error(`upload of ${p}: HTTP ${r.status} ${await r.text()}`);
    ids.push(((await r.json()) as { ID: string }).ID);
  }
  return ids;
}

/** Waits for a job to end; answers its JSON. */
export async function jobEnd(nodeUrl: string, id: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  let job: Record<string, unknown> = {};
  await waitFor(
    `job ${id} to end`,
    async () => {
      job = (await (await fetch(`${nodeUrl}/jobs/${id}`)).json()) as Record<string, unknown>;
      return job.State === 'Success' || job.State === 'Failure';
    },
    timeoutMs,
    200,
  );
  return job;
}
