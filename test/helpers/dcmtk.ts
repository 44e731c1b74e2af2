// Runs Debian's dcmtk tools (echoscu, storescu, findscu, movescu, storescp) for the DICOM network tests,
// each bounded in time and stopped by its pid, and reads what they answer: the C-FIND responses they
// extract as files, parsed by the node's own DICOM parser.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simplifiedTags } from '../../src/dicom/parse.ts';

export function dcmtkInstalled(): boolean {
  return existsSync('/usr/bin/storescu') && existsSync('/usr/bin/findscu');
}

/** The skip reason of a test that needs dcmtk, or false. */
export function needsDcmtk(): string | false {
  return dcmtkInstalled() ? false : 'needs dcmtk (apt-get install dcmtk)';
}

export interface ToolRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Killed because it ran past its time. */
  timedOut: boolean;
}

/** Runs one dcmtk tool to its end (killed after `timeoutMs`). */
export function runTool(tool: string, args: string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(`/usr/bin/${tool}`, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => {
      if (stdout.length < 2_000_000) stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 2_000_000) stderr += b.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

/** Where a DICOM server listens and what it is called. */
export interface Peer {
  host?: string;
  port: number;
  aet: string;
}

function target(p: Peer, callingAet: string): string[] {
  return ['-aet', callingAet, '-aec', p.aet, p.host ?? '127.0.0.1', String(p.port)];
}

export function echoscu(p: Peer, callingAet = 'ECHOSCU'): Promise<ToolRun> {
  return runTool('echoscu', ['-to', '20', '-ta', '20', ...target(p, callingAet)], { timeoutMs: 60_000 });
}

/** The timeouts (connection, association, DIMSE) and the folder scan that storescu and dcmsend share. */
const SEND_ARGS = ['-to', '30', '-ta', '30', '-td', '60', '+sd', '+r'];

/** storescu of files or folders (scanned recursively), in the transfer syntaxes `extra` proposes (-xi, -xd, ...). */
export function storescu(p: Peer, paths: string[], opts: { callingAet?: string; extra?: string[] } = {}): Promise<ToolRun> {
  const args = [...SEND_ARGS, '-nh', ...(opts.extra ?? []), ...target(p, opts.callingAet ?? 'STORESCU'), ...paths];
  return runTool('storescu', args, { timeoutMs: 600_000 });
}

/** One C-FIND answer as the simplified tags of the response data set. */
export type FindAnswer = Record<string, unknown>;

/**
 * findscu with `model` ('-P' patient root, '-S' study root) and keys ("PatientName=", "QueryRetrieveLevel=STUDY"...):
 * the responses, extracted by findscu as files and read back; the run itself for its status.
 */
export async function findscu(
  p: Peer,
  model: '-P' | '-S',
  keys: string[],
  callingAet = 'FINDSCU',
): Promise<{ run: ToolRun; answers: FindAnswer[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-findscu-'));
  try {
    const run = await runTool(
      'findscu',
      ['-to', '20', '-ta', '20', '-td', '60', model, '-X', '-od', dir, ...keys.flatMap((k) => ['-k', k]), ...target(p, callingAet)],
      { timeoutMs: 120_000 },
    );
    const answers: FindAnswer[] = [];
    for (const name of (await readdir(dir)).filter((n) => n.startsWith('rsp')).sort()) {
      answers.push(simplifiedTags(await readFile(join(dir, name)), 'simplify') as FindAnswer);
    }
    return { run, answers };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** movescu with `model` and keys, asking the server to send to `destination`. */
export function movescu(p: Peer, model: '-P' | '-S', keys: string[], destination: string, callingAet = 'MOVESCU'): Promise<ToolRun> {
  return runTool(
    'movescu',
    ['-v', '-to', '20', '-ta', '20', '-td', '120', model, '-aem', destination, ...keys.flatMap((k) => ['-k', k]), ...target(p, callingAet)],
    { timeoutMs: 300_000 },
  );
}

export interface Storescp {
  port: number;
  aet: string;
  dir: string;
  /** The files received so far. */
  files(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * A storescp on `port` that writes what it receives to a temporary folder, bit-preserving (each data set
 * written as it came on the wire), accepting every transfer syntax; stopped by its pid. It listens on every
 * interface (it has no bind option): tests run it inside the loopback-only namespace (test/netns.mjs).
 */
export async function startStorescp(port: number, aet = 'STORESCP'): Promise<Storescp> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-storescp-'));
  const child: ChildProcess = spawn('/usr/bin/storescp', ['--aetitle', aet, '-od', dir, '+xa', '+B', '+uf', '-dhl', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  // storescp says nothing when it is ready: the port answering an echo says so.
  for (let i = 0; i < 100; i++) {
    const r = await echoscu({ port, aet });
    if (r.code === 0) break;
    if (exited) throw new Error('storescp exited during start');
    await new Promise((res) => setTimeout(res, 100));
  }
  return {
    port,
    aet,
    dir,
    async files() {
      return (await readdir(dir)).map((n) => join(dir, n)).sort();
    },
    async stop() {
      if (!exited && child.pid !== undefined) {
        const gone = new Promise<void>((r) => child.once('exit', () => r()));
        process.kill(child.pid, 'SIGTERM');
        await gone;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * dcmsend of files or folders (scanned recursively): each file proposed in its own transfer syntax and sent
 * as it is (never decompressed), going on past files it cannot send.
 */
export function dcmsend(p: Peer, paths: string[], opts: { callingAet?: string; extra?: string[] } = {}): Promise<ToolRun> {
  const args = [...SEND_ARGS, '-dn', '-nh', ...(opts.extra ?? []), ...target(p, opts.callingAet ?? 'DCMSEND'), ...paths];
  return runTool('dcmsend', args, { timeoutMs: 600_000 });
}
