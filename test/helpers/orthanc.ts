// Starts a real Orthanc (Debian's package) for interop tests: temporary storage, free ports, loopback only,
// stopped by its pid. Tests skip themselves when the binary is not installed.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './ports.ts';

export const ORTHANC_BINARY = '/usr/sbin/Orthanc';

export function orthancInstalled(): boolean {
  return existsSync(ORTHANC_BINARY);
}

export interface OrthancServer {
  url: string;
  port: number;
  pid: number;
  dir: string;
  /** Orthanc's stdout and stderr, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

export interface OrthancOptions {
  /** Extra configuration keys merged into the generated file. */
  config?: Record<string, unknown>;
  name?: string;
}

export async function startOrthanc(opts: OrthancOptions = {}): Promise<OrthancServer> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-orthanc-'));
  // A port given in the configuration (an Orthanc started again on its own port) is the one it listens on.
  const given = opts.config?.['HttpPort'];
  const port = typeof given === 'number' ? given : await freePort();
  const config = {
    Name: opts.name ?? 'orthanc-test',
    HttpPort: port,
    DicomServerEnabled: false,
    DicomPort: 0,
    StorageDirectory: join(dir, 'storage'),
    IndexDirectory: join(dir, 'index'),
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    Plugins: [],
    StableAge: 60,
    HttpDescribeErrors: true,
    ...opts.config,
  };
  const configPath = join(dir, 'orthanc.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const child: ChildProcess = spawn(ORTHANC_BINARY, [configPath], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (b: Buffer) => {
    output += b.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  const url = `http://127.0.0.1:${port}`;
  const server: OrthancServer = {
    url,
    port,
    pid: child.pid ?? -1,
    dir,
    log: () => output,
    async stop() {
      if (!exited && child.pid !== undefined) {
        const gone = new Promise<void>((r) => child.once('exit', () => r()));
        process.kill(child.pid, 'SIGTERM');
        const t = setTimeout(() => {
          if (!exited && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        }, 10_000);
        await gone;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor('Orthanc to answer /system', async () => {
      if (exited) throw new Error(`Orthanc exited during start:\n${output}`);
      const r = await fetch(`${url}/system`);
      return r.ok;
    });
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}
