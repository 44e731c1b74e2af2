// Shared vocabulary of the WAN benchmark (bench/wan.ts and the runner it starts inside the namespace):
// link profiles, transfer methods, the spec handed to the runner, the results it hands back, and the
// small helpers both sides use (process usage from /proc, a control HTTP client).
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';

/** Link profiles of ../shared/wan/wanemu.sh (per direction), repeated here for the report's arithmetic. */
export const PROFILES = {
  good: { rttMs: 40, rateMbit: 100, lossPct: 0 },
  goodloss: { rttMs: 40, rateMbit: 100, lossPct: 0.5 },
  bad: { rttMs: 150, rateMbit: 20, lossPct: 1 },
} as const;
export type ProfileName = keyof typeof PROFILES;
export interface LinkProfile {
  /** A wanemu.sh profile, or 'loopback' for --no-wan. */
  name: ProfileName | 'loopback';
  rttMs: number;
  /** Rate of each direction in Mbit/s; null on plain loopback (no emulated rate). */
  rateMbit: number | null;
  lossPct: number;
}

export function linkProfile(name: ProfileName | 'loopback'): LinkProfile {
  if (name === 'loopback') return { name, rttMs: 0, rateMbit: null, lossPct: 0 };
  return { name, ...PROFILES[name] };
}

/**
 * Transfer methods. dicom-xfer: push (POST /transfers/send on the source, peer without RemoteSelf) and
 * pull (POST /transfers/pull on the destination); gzip between two nodes with Transfers.Zstd false (gzip on
 * the wire, as with the plugin), zstd between two nodes that list the extension. Baselines that move one instance per request:
 * Orthanc's own POST /peers/{peer}/store between two real Orthanc servers (with and without its
 * Compress option), and a sequential keep-alive client that re-posts the source's files to the
 * destination's POST /instances. STOW-RS into an Orthanc with its DICOMweb plugin: `stow` from a dicom-xfer
 * node (a DicomWebStow job), `orthanc-stow` from an Orthanc with the plugin (its own STOW-RS client, the
 * baseline); both send the raw instances in multipart/related bodies.
 */
export const METHODS = {
  'push-gzip': { kind: 'push', compression: 'gzip', baseline: false },
  'push-none': { kind: 'push', compression: 'none', baseline: false },
  'pull-gzip': { kind: 'pull', compression: 'gzip', baseline: false },
  'pull-none': { kind: 'pull', compression: 'none', baseline: false },
  'push-zstd': { kind: 'push', compression: 'zstd', baseline: false },
  'pull-zstd': { kind: 'pull', compression: 'zstd', baseline: false },
  'orthanc-store': { kind: 'orthanc', compression: 'none', baseline: true },
  'orthanc-store-gzip': { kind: 'orthanc', compression: 'gzip', baseline: true },
  'post-sequential': { kind: 'post', compression: 'none', baseline: true },
  stow: { kind: 'stow', compression: 'none', baseline: false },
  'orthanc-stow': { kind: 'orthanc-stow', compression: 'none', baseline: true },
} as const;
export type MethodName = keyof typeof METHODS;
export const METHOD_NAMES = Object.keys(METHODS) as MethodName[];
export const BASELINES = METHOD_NAMES.filter((m) => METHODS[m].baseline);

/** Data set presets of the generator that the benchmark offers. */
export const SETS = ['full', 'study', 'small', 'tiny'] as const;
export type SetName = (typeof SETS)[number];

/** A generated data set on disk, described once and reused by later runs. */
export interface DatasetManifest {
  set: SetName;
  seed: number;
  /** Absolute directory of the files. */
  dir: string;
  /** Paths relative to `dir`, with sizes. */
  files: { path: string; size: number }[];
  totalBytes: number;
  /** Sum over the files of each file's gzip level 6 size: the best compression the benchmark credits. */
  gzip6Bytes: number;
}

/** What bench/wan.ts hands the runner for one profile (as a JSON file). */
export interface RunnerSpec {
  profile: LinkProfile;
  /** Congestion control in force for connections between the nodes, as reported. */
  cc: string;
  methods: MethodName[];
  dataset: DatasetManifest;
  /** Directory kept across profiles: the source stores, imported once. */
  workDir: string;
  /**
   * Local address the benchmark's own control traffic (imports, job polls, MD5 checks, the baseline
   * client's reads from the source) comes from; the namespace lets it bypass the emulated link. Null
   * when there is no namespace (everything on plain loopback).
   */
  controlAddress: string | null;
  /** True when iptables counters of the namespace measure the bytes between the nodes. */
  countWire: boolean;
  runTimeoutSeconds: number;
  /** Shorter bound for the baselines (null: the same): one that runs out of time gives a lower bound. */
  baselineTimeoutSeconds: number | null;
  /** Runs of each dicom-xfer method (the baselines run once); the median one is reported. */
  repeat?: number;
  /**
   * The receiver of a dicom-xfer method keeps its port (so its URL) across the method's runs: every run
   * after the first transfers to a peer the sender knows, starting from the link profile the run before
   * recorded.
   */
  knownPeer?: boolean;
  /** Where the runner writes its ProfileResult. */
  out: string;
}

export interface ProcUsage {
  cpuSeconds: number;
  peakRssMB: number;
}

export interface WireBytes {
  /** IP bytes (headers included) in the direction of each connection's opener, and of its answers. */
  originalBytes: number;
  replyBytes: number;
  /** The busier of the two directions: the one that bounds the time on a link shaped per direction. */
  busierBytes: number;
  totalBytes: number;
  /** Every byte on the namespace's loopback (control traffic included), for comparison. */
  loopbackBytes: number;
}

export interface Verification {
  expected: number;
  atDestination: number;
  missing: number;
  extra: number;
  md5Mismatches: number;
  ok: boolean;
}

export interface RunResult {
  method: MethodName;
  ok: boolean;
  error?: string;
  wallSeconds: number;
  instances: number;
  dicomBytes: number;
  /** DICOM bytes (10^6 per MB) moved per second of wall time. */
  dicomMBps: number;
  wire: WireBytes | null;
  /** Busier direction's wire bytes x 8 / (wall time x link rate). */
  linkUtilisation: number | null;
  /** Time the link needs for the best compression this method offers, plus one RTT. */
  limitSeconds: number | null;
  /** limitSeconds / wallSeconds: 1 would be the physical limit. */
  ratioToLimit: number | null;
  sender: ProcUsage | null;
  receiver: ProcUsage | null;
  /** The baseline client's own process (post-sequential), on the sending side. */
  client?: ProcUsage | null;
  verify: Verification | null;
  /**
   * Baseline name -> the baseline's wall time / this run's wall time (above 1: this run is faster);
   * `atLeast` when the baseline ran out of time, null when either failed otherwise.
   */
  speedup: Partial<Record<MethodName, { x: number; atLeast: boolean } | null>>;
  /** With --repeat: the wall time of every run of the method, in the order they ran (this one is the median). */
  repeatedWallSeconds?: number[];
  loadAverage: { before: number; after: number };
  /** What the job said at its end (dicom-xfer and Orthanc jobs). */
  job?: Record<string, unknown>;
  /** Failed runs: the last lines the processes wrote (the nodes log warnings and errors only). */
  logs?: { sender: string; receiver: string; client?: string };
}

export interface ProfileResult {
  profile: LinkProfile;
  cc: string;
  /** Minimum of a few keep-alive GET /system round trips between the nodes' addresses, in ms. */
  measuredRttMs: number | null;
  runs: RunResult[];
  skipped: { method: MethodName; reason: string }[];
}

const CLK_TCK = 100;

/** CPU seconds (user + system, all threads) and peak RSS of a live process, from /proc. */
export async function procUsage(pid: number): Promise<ProcUsage> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  const cpu = (Number(stat[11]) + Number(stat[12])) / CLK_TCK;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  return { cpuSeconds: cpu, peakRssMB: hwm ? Number(hwm[1]) / 1024 : NaN };
}

/** Usage during a window: CPU as the difference, peak RSS as the process's peak at the end. */
export function usageDelta(before: ProcUsage, after: ProcUsage): ProcUsage {
  return { cpuSeconds: after.cpuSeconds - before.cpuSeconds, peakRssMB: after.peakRssMB };
}

export interface Answer {
  status: number;
  body: Buffer;
}

/**
 * The benchmark's own HTTP client: one keep-alive pool per server, from `localAddress` when given (the
 * address that the namespace lets past the emulated link). Every call has a time bound.
 */
export class ControlClient {
  readonly #pools = new Map<string, Pool>();
  readonly #localAddress: string | undefined;

  constructor(localAddress: string | null) {
    this.#localAddress = localAddress ?? undefined;
  }

  pool(base: string, connections = 8): Pool {
    let p = this.#pools.get(base);
    if (!p) {
      p = new Pool(base, {
        connections,
        headersTimeout: 300_000,
        bodyTimeout: 300_000,
        ...(this.#localAddress ? { localAddress: this.#localAddress } : {}),
      });
      this.#pools.set(base, p);
    }
    return p;
  }

  async call(base: string, method: 'GET' | 'POST' | 'DELETE', path: string, body?: string | Buffer): Promise<Answer> {
    const res = await this.pool(base).request({
      method,
      path,
      body,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
    });
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return { status: res.statusCode, body: Buffer.concat(chunks) };
  }

  /** The JSON answer of a call; throws with the status and body on anything but 200. */
  async json<T>(base: string, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const a = await this.call(base, method, path, body === undefined ? undefined : JSON.stringify(body));
    if (a.status !== 200) throw new Error(`${method} ${base}${path}: HTTP ${a.status} ${a.body.toString('utf8').slice(0, 500)}`);
    return JSON.parse(a.body.toString('utf8')) as T;
  }

  async text(base: string, path: string): Promise<string> {
    const a = await this.call(base, 'GET', path);
    if (a.status !== 200) throw new Error(`GET ${base}${path}: HTTP ${a.status} ${a.body.toString('utf8').slice(0, 500)}`);
    return a.body.toString('utf8');
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close().catch(() => undefined)));
    this.#pools.clear();
  }
}

/** IP bytes per MSS-sized payload on the emulated link: 1500-byte frames carrying 1448 bytes of TCP payload. */
export const FRAME_OVERHEAD = 1500 / 1448;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
