// Starts dicom-xfer nodes as child processes (the real command), on free loopback ports with temporary
// storage, and stops them by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, waitFor } from './ports.ts';

export const REPO = resolve(import.meta.dirname, '..', '..');
export const BIN = join(REPO, 'bin', 'dicom-xfer.mjs');

export interface XferNode {
  url: string;
  port: number;
  pid: number;
  dir: string;
  dataDir: string;
  /** Everything the process wrote to stdout and stderr so far. */
  log(): string;
  /** SIGTERM, waits for the exit (SIGKILL after 15 s); removes the directory unless `keep`. */
  stop(opts?: { keep?: boolean }): Promise<number | null>;
  /** SIGKILL, waits for the exit; keeps the directory. */
  kill(): Promise<void>;
  exited(): boolean;
}

export interface NodeOptions {
  /** Configuration file content (keys as in an Orthanc configuration). */
  config?: Record<string, unknown>;
  /** Reuse this directory (e.g. after a kill). */
  dir?: string;
  port?: number;
  extraArgs?: string[];
  /** Options for node itself, before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
  env?: Record<string, string>;
  /** Credentials for the readiness probe. */
  auth?: { username: string; password: string };
  /** URL scheme of the readiness probe. */
  https?: boolean;
}

export async function startXferNode(opts: NodeOptions = {}): Promise<XferNode> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'dx-node-')));
  const port = opts.port ?? (await freePort());
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify({ Name: `node-${port}`, ...opts.config }, null, 2));
  const child: ChildProcess = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), BIN, 'serve', '--port', String(port), '--data', dataDir, '--config', configPath, ...(opts.extraArgs ?? [])],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } },
  );
  let output = '';
  const keep = (b: Buffer) => {
    output += b.toString();
    if (output.length > 400_000) output = output.slice(-200_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exitCode: number | null | undefined;
  const exitPromise = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      exitCode = code;
      r(code);
    }),
  );
  const url = `${opts.https ? 'https' : 'http'}://127.0.0.1:${port}`;
  const node: XferNode = {
    url,
    port,
    pid: child.pid ?? -1,
    dir,
    dataDir,
    log: () => output,
    exited: () => exitCode !== undefined,
    async stop(o) {
      if (exitCode === undefined && child.pid !== undefined) {
        process.kill(child.pid, 'SIGTERM');
        const t = setTimeout(() => {
          if (exitCode === undefined && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        }, 15_000);
        await exitPromise;
        clearTimeout(t);
      }
      if (!o?.keep && opts.dir === undefined) await rm(dir, { recursive: true, force: true });
      return exitCode ?? null;
    },
    async kill() {
      if (exitCode === undefined && child.pid !== undefined) {
        process.kill(child.pid, 'SIGKILL');
        await exitPromise;
      }
    },
  };
  const headers: Record<string, string> = {};
  if (opts.auth) headers.authorization = `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}`;
  try {
    await waitFor(
      'dicom-xfer to answer /system',
      async () => {
        if (exitCode !== undefined) throw new Error(`dicom-xfer exited (${exitCode}) during start:\n${output}`);
        // this process says it listens: another server on the port (a port picked twice) does not count
        if (!output.includes('dicom-xfer listening on')) return false;
        if (opts.https) return true;
        const r = await fetch(`${url}/system`, { headers });
        return r.ok;
      },
      30_000,
    );
  } catch (e) {
    await node.stop();
    throw e;
  }
  return node;
}
