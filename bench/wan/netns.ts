// The benchmark's network namespace: created with ../shared/wan/wanemu.sh (the emulated link on the
// namespace's loopback) or plain (--no-wan as root), given a bypass for the benchmark's own control
// address, counted with iptables, and removed at the end. Everything here needs root.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { ProfileName } from './common.ts';

const run = promisify(execFile);
const MAX_OUTPUT = 4 * 1024 * 1024;

export const NFDELAY = '/usr/local/bin/nfdelay';

/** wanemu.sh beside the repository (../shared/wan), or $WANEMU. */
export function wanemuPath(repo: string): string {
  return process.env.WANEMU ?? resolve(repo, '..', 'shared', 'wan', 'wanemu.sh');
}

/** Why the emulator cannot run here, or undefined when it can. */
export function wanUnavailable(repo: string): string | undefined {
  if (process.getuid?.() !== 0) return 'the WAN emulator needs root';
  if (!existsSync(wanemuPath(repo))) return `${wanemuPath(repo)} is missing`;
  if (!existsSync(process.env.NFDELAY ?? NFDELAY)) return `${NFDELAY} is missing (run wanemu.sh install)`;
  return undefined;
}

async function sh(cmd: string, args: string[], env?: Record<string, string>): Promise<string> {
  const { stdout } = await run(cmd, args, { maxBuffer: MAX_OUTPUT, timeout: 60_000, env: { ...process.env, ...env } });
  return stdout;
}

/**
 * Creates namespace `ns` with the link emulated on its loopback (`CC` pins the congestion control of
 * connections to 127.0.0.1 and ::1; `maxSeconds` bounds nfdelay's life). wanemu.sh's summary goes to
 * stderr: nfdelay, left running in the background, keeps the script's stdout open, so a pipe there
 * would never end.
 */
export async function wanUp(repo: string, ns: string, profile: ProfileName, cc: string, maxSeconds: number): Promise<void> {
  const child = spawn('bash', [wanemuPath(repo), 'up', ns, profile], {
    stdio: ['ignore', 2, 2],
    env: { ...process.env, CC: cc, MAX_SEC: String(Math.ceil(maxSeconds)) },
  });
  const code = await new Promise<number | null>((r, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => r(c));
  });
  if (code !== 0) throw new Error(`wanemu.sh up ${ns} ${profile} exited with ${code}`);
}

/** Creates namespace `ns` with a plain loopback (default MTU and offloads) and counting rules only. */
export async function plainUp(ns: string): Promise<void> {
  await sh('ip', ['netns', 'add', ns]);
  await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  for (const ipt of ['iptables', 'ip6tables']) {
    for (const dir of ['REPLY', 'ORIGINAL']) {
      // A rule without a target only counts: the same counters the emulated namespace has on its queues.
      await sh('ip', ['netns', 'exec', ns, ipt, '-t', 'mangle', '-A', 'PREROUTING', '-i', 'lo', '-m', 'conntrack', '--ctdir', dir]);
    }
  }
}

/**
 * Lets packets from and to `address` (a loopback address the nodes do not use among themselves) past
 * the emulated link: the benchmark's imports, job polls and checks then neither wait on the link nor
 * show in the queue counters. Inserted before wanemu.sh's queue rules; IPv4 only, as the nodes are.
 */
export async function bypassControl(ns: string, address: string): Promise<void> {
  for (const side of ['-s', '-d']) {
    await sh('ip', ['netns', 'exec', ns, 'iptables', '-t', 'mangle', '-I', 'PREROUTING', '1', '-i', 'lo', side, address, '-j', 'ACCEPT']);
  }
}

/** Removes a namespace made by wanUp (wanemu.sh down: nfdelay and whatever runs inside are killed). */
export async function wanDown(repo: string, ns: string): Promise<void> {
  await sh('bash', [wanemuPath(repo), 'down', ns]);
}

/** Removes a namespace made by plainUp, after killing the processes still inside it (only those). */
export async function plainDown(ns: string): Promise<void> {
  const pids = (await sh('ip', ['netns', 'pids', ns]).catch(() => '')).split(/\s+/).filter(Boolean);
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await sh('ip', ['netns', 'del', ns]);
}

export interface Counters {
  original: number;
  reply: number;
  loopback: number;
}

/**
 * Byte counters of the namespace the caller runs in: the queue (or counting) rules by conntrack
 * direction, IPv4 and IPv6 summed, and the loopback interface's transmitted bytes.
 */
export async function readCounters(): Promise<Counters> {
  const c: Counters = { original: 0, reply: 0, loopback: 0 };
  for (const ipt of ['iptables', 'ip6tables']) {
    const text = await sh(ipt, ['-t', 'mangle', '-L', 'PREROUTING', '-v', '-x', '-n']);
    for (const line of text.split('\n')) {
      const m = /^\s*\d+\s+(\d+)\s.*ctdir (REPLY|ORIGINAL)/.exec(line);
      if (!m) continue;
      if (m[2] === 'REPLY') c.reply += Number(m[1]);
      else c.original += Number(m[1]);
    }
  }
  c.loopback = Number((await readFile('/sys/class/net/lo/statistics/tx_bytes', 'utf8')).trim());
  return c;
}

/** How a scenario runs its inner part once per profile, each in a namespace of its own. */
export interface PerProfileRun<R> {
  repo: string;
  /** Name of the namespace (made and removed for each profile in turn). */
  ns: string;
  profiles: readonly (ProfileName | 'loopback')[];
  cc: string;
  /** Root may make a plain namespace for 'loopback'; without root it runs in the machine's network. */
  isRoot: boolean;
  /** The address that bypasses the emulated link (the benchmark's control traffic). */
  controlAddress: string;
  /** The inner script, run as `node --import tsx SCRIPT SPEC.json`. */
  script: string;
  /** Seconds the emulator lives and the inner run may take before it is killed. */
  maxSeconds: number;
  /** The inner run's spec for a profile: `made` says whether a namespace was made (the control address bypasses it). */
  spec: (name: ProfileName | 'loopback', made: 'wan' | 'plain' | undefined, out: string) => object;
  /** The result when an inner run wrote none (undefined: that is an error). */
  missing?: R;
}

/**
 * Runs the inner script once per profile inside a namespace made for it (the emulated link, or a plain
 * loopback as root), and answers each run's result: the JSON the run wrote to the `out` of its spec.
 */
export async function runPerProfile<R>(o: PerProfileRun<R>): Promise<R[]> {
  const work = await mkdtemp(join(tmpdir(), `${o.ns}-`));
  const results: R[] = [];
  try {
    for (const name of o.profiles) {
      let made: 'wan' | 'plain' | undefined;
      try {
        if (name !== 'loopback') {
          made = 'wan';
          await wanUp(o.repo, o.ns, name, o.cc, o.maxSeconds + 600);
        } else if (o.isRoot) {
          made = 'plain';
          await plainUp(o.ns);
        }
        if (made) await bypassControl(o.ns, o.controlAddress);
        const out = join(work, `${name}.json`);
        const specPath = join(work, `${name}.spec.json`);
        await writeFile(specPath, JSON.stringify({ ...o.spec(name, made, out), out }));
        const node = [process.execPath, '--import', 'tsx', o.script, specPath];
        const [cmd, ...args] = made ? ['ip', 'netns', 'exec', o.ns, ...node] : node;
        const child = spawn(cmd as string, args, { cwd: o.repo, stdio: ['ignore', 'inherit', 'inherit'] });
        const kill = setTimeout(() => child.kill('SIGKILL'), (o.maxSeconds + 300) * 1000);
        await new Promise<void>((r) => child.once('exit', () => r()));
        clearTimeout(kill);
        const text = await readFile(out, 'utf8').catch((e: unknown) => {
          if (o.missing === undefined) throw e;
          return undefined;
        });
        results.push(text === undefined ? (o.missing as R) : (JSON.parse(text) as R));
      } finally {
        if (made === 'wan')
          await wanDown(o.repo, o.ns).catch((e: unknown) => process.stderr.write(`wanemu.sh down ${o.ns}: ${String(e)}\n`));
        if (made === 'plain') await plainDown(o.ns).catch((e: unknown) => process.stderr.write(`removing ${o.ns}: ${String(e)}\n`));
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return results;
}
