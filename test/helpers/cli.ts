// The dicom-xfer command run as a child process by the CLI tests, with no DICOM_XFER_* variable of the
// caller's environment (the test run's own settings must not reach the command under test).
import { spawn } from 'node:child_process';
import { BIN, REPO } from './node.ts';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliRunning {
  pid: number;
  /** Everything written on stderr so far. */
  stderr(): string;
  done: Promise<CliRun>;
}

export interface CliOptions {
  /** Variables added to the environment. */
  env?: Record<string, string>;
  /** Killed by its pid after this long (default 60 s). */
  timeoutMs?: number;
}

/** Starts `dicom-xfer ARGS`; `done` resolves with its exit code and output. */
export function startCli(args: string[], opts: CliOptions = {}): CliRunning {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DICOM_XFER_')));
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const guard = setTimeout(() => {
    if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }, opts.timeoutMs ?? 60_000);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.once('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
  return { pid: child.pid ?? -1, stderr: () => stderr, done };
}

/** Runs `dicom-xfer ARGS` to its end. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliRun> {
  return startCli(args, opts).done;
}

/** Runs `dicom-xfer serve ARGS` expecting it to fail at start (killed after 20 s otherwise). */
export function serveFails(args: string[]): Promise<CliRun> {
  return runCli(['serve', ...args], { timeoutMs: 20_000 });
}
