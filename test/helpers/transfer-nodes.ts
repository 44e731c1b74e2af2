// Shared plumbing of the end-to-end transfer tests: two dicom-xfer nodes that name each other as peers,
// each reached through a recording proxy, plus raw HTTP calls, job polling and content checks.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { makePatient, makeSeries, makeStudy, writeCtSlice, writeMrImage, writeMultiframe } from '../../src/generate/index.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import { listFiles } from './data.ts';
import { startXferNode, type XferNode } from './node.ts';

export { listFiles };
import { freePort } from './ports.ts';
import { startProxy, type Matcher, type FaultProxy, type ProxyRecord } from './proxy.ts';

export { REAL_DICOM } from './data.ts';

/**
 * Transfers settings of the tests that count requests per bucket index: the plugin's bucket layout (no
 * spans between the two nodes) and a fixed 4 requests in flight.
 */
export const PER_BUCKET = { Threads: 4, MaxThreads: 4, BucketSpans: false } as const;

export const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Longest wait for one test call: a node that hangs fails the test instead of stalling the run. */
const CALL_TIMEOUT_MS = 60_000;

/** One request to `base` (a URL like http://127.0.0.1:port) with the path sent exactly as written. */
export function call(
  base: string,
  method: string,
  path: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: Number(u.port), method, path, headers, agent: false, timeout: CALL_TIMEOUT_MS },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${CALL_TIMEOUT_MS} ms`)));
    req.end(body);
  });
}

/** The body of an answer as JSON. */
export function json<T = Record<string, unknown>>(a: Answer): T {
  return JSON.parse(a.body.toString('utf8')) as T;
}

/** GET `path` and parse the JSON answer, failing on any status but 200. */
export async function getJson<T = Record<string, unknown>>(base: string, path: string): Promise<T> {
  const a = await call(base, 'GET', path);
  assert.equal(a.status, 200, `GET ${path}: ${a.status} ${a.body.toString()}`);
  return json<T>(a);
}

/** POST a JSON value (or raw text) and return the answer. */
export function postJson(base: string, path: string, value: unknown): Promise<Answer> {
  return call(base, 'POST', path, typeof value === 'string' ? value : JSON.stringify(value));
}

export interface Imported {
  /** Instance ID -> MD5 of the file it came from. */
  md5: Map<string, string>;
  /** Instance ID -> size of the file. */
  size: Map<string, number>;
  /** Instance ID -> path of the file. */
  path: Map<string, string>;
  /** Files the node refused (not DICOM it accepts), with the status. */
  refused: { path: string; status: number }[];
}

/** POSTs each file to /instances of `base`; records what was accepted. */
export async function importFiles(base: string, files: readonly string[]): Promise<Imported> {
  const out: Imported = { md5: new Map(), size: new Map(), path: new Map(), refused: [] };
  for (const f of files) {
    const data = await readFile(f);
    const a = await call(base, 'POST', '/instances', data);
    if (a.status !== 200) {
      out.refused.push({ path: f, status: a.status });
      continue;
    }
    const id = json<{ ID: string }>(a).ID;
    out.md5.set(id, md5(data));
    out.size.set(id, data.length);
    out.path.set(id, f);
  }
  return out;
}

/** Instance ID -> MD5 of every instance stored on a node, as its attachment route reports it. */
export async function storedMd5s(base: string): Promise<Map<string, string>> {
  const ids = await getJson<string[]>(base, '/instances');
  const out = new Map<string, string>();
  for (const id of ids) {
    const a = await call(base, 'GET', `/instances/${id}/attachments/dicom/md5`);
    assert.equal(a.status, 200, `md5 of ${id}: ${a.status}`);
    out.set(id, a.body.toString('utf8').trim().replace(/^"|"$/g, ''));
  }
  return out;
}

export type JobJson = {
  ID: string;
  Type: string;
  State: string;
  Priority: number;
  Progress: number;
  ErrorCode: number;
  ErrorDescription: string;
  ErrorDetails: string;
  Content: Record<string, unknown>;
};

/** Polls GET /jobs/{id} every 50 ms until `states` (default Success or Failure), at most `timeoutMs`. */
export async function waitJob(base: string, id: string, timeoutMs = 60_000, states = ['Success', 'Failure']): Promise<JobJson> {
  const deadline = Date.now() + timeoutMs;
  let last: JobJson | undefined;
  for (let i = 0; i < 1_000_000; i++) {
    last = await getJson<JobJson>(base, `/jobs/${id}`);
    if (states.includes(last.State)) return last;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id} did not reach ${states.join('/')} within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

/** Starts a transfer (POST /transfers/send or /transfers/pull) and answers its parsed handle. */
export async function startTransfer(base: string, route: 'send' | 'pull', query: Record<string, unknown>): Promise<Record<string, string>> {
  const a = await postJson(base, `/transfers/${route}`, query);
  assert.equal(a.status, 200, `POST /transfers/${route}: ${a.status} ${a.body.toString()}`);
  return json<Record<string, string>>(a);
}

/** Asserts that `base` stores exactly the instances of `expected`, each with the same MD5. */
export async function assertSameInstances(base: string, expected: ReadonlyMap<string, string>): Promise<void> {
  const got = await storedMd5s(base);
  assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort(), 'the same set of instance IDs');
  for (const [id, m] of expected) assert.equal(got.get(id), m, `MD5 of ${id}`);
}

/** Deletes every patient of a node (and so every instance). */
export async function emptyNode(base: string): Promise<void> {
  for (const p of await getJson<string[]>(base, '/patients')) {
    const a = await call(base, 'DELETE', `/patients/${p}`);
    assert.equal(a.status, 200, `DELETE /patients/${p}: ${a.status}`);
  }
  assert.deepEqual(await getJson<string[]>(base, '/instances'), []);
}

export interface Pair {
  /** Node A, the usual sender; its peer "b" is B seen through `toB`. */
  a: XferNode;
  /** Node B, the usual receiver; its peer "a" is A seen through `toA`. */
  b: XferNode;
  /** The proxy that A's calls to B go through. */
  toB: FaultProxy;
  /** The proxy that B's calls to A go through. */
  toA: FaultProxy;
  /** Stops a node (SIGTERM), keeping its storage; `up` brings it back on the same port and storage. */
  down(which: 'a' | 'b'): Promise<void>;
  /** Kills a node (SIGKILL, as a crash), keeping its storage. */
  crash(which: 'a' | 'b'): Promise<void>;
  /** Starts a node stopped by `down` or `crash` again (same port, configuration and storage). */
  up(which: 'a' | 'b'): Promise<void>;
  stop(): Promise<void>;
}

export interface PairOptions {
  /** Extra configuration of both nodes (merged under each node's own). */
  common?: Record<string, unknown>;
  a?: Record<string, unknown>;
  b?: Record<string, unknown>;
  /** Extra properties of A's peer "b" (e.g. RemoteSelf: "a"). */
  peerB?: Record<string, unknown>;
  /** Extra properties of B's peer "a". */
  peerA?: Record<string, unknown>;
  /** More names for B in A's OrthancPeers (through the same proxy), each with these extra properties. */
  aliasesOfB?: Record<string, Record<string, unknown>>;
  /** More names for A in B's OrthancPeers (through the same proxy), each with these extra properties. */
  aliasesOfA?: Record<string, Record<string, unknown>>;
  hashBodies?: boolean;
  keepBodies?: Matcher[];
}

function merge(base: Record<string, unknown>, over: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over ?? {})) {
    const b = out[k];
    out[k] =
      v !== null && typeof v === 'object' && !Array.isArray(v) && b !== null && typeof b === 'object' && !Array.isArray(b)
        ? { ...(b as Record<string, unknown>), ...(v as Record<string, unknown>) }
        : v;
  }
  return out;
}

/** Settings that keep failure tests fast: no retries beyond one, short timeouts. */
export const FAST_FAILURE = {
  HttpTimeout: 10,
  Transfers: { MaxHttpRetries: 0, RetryBudget: 0, PeerConnectivityTimeout: 1 },
};

/** Starts A and B, each peer of the other through a recording proxy. */
export async function startPair(o: PairOptions = {}): Promise<Pair> {
  const pa = await freePort();
  const pb = await freePort();
  const proxyOpts = { hashBodies: o.hashBodies ?? false, keepBodies: o.keepBodies ?? [] };
  const toA = await startProxy({ target: pa, ...proxyOpts });
  const toB = await startProxy({ target: pb, ...proxyOpts });
  const started: XferNode[] = [];
  try {
    const common = merge(FAST_FAILURE, o.common);
    const peersOfA: Record<string, unknown> = { b: { Url: `${toB.url}/`, ...o.peerB } };
    for (const [name, props] of Object.entries(o.aliasesOfB ?? {})) peersOfA[name] = { Url: `${toB.url}/`, ...props };
    const peersOfB: Record<string, unknown> = { a: { Url: `${toA.url}/`, ...o.peerA } };
    for (const [name, props] of Object.entries(o.aliasesOfA ?? {})) peersOfB[name] = { Url: `${toA.url}/`, ...props };
    const configs = {
      a: merge(merge(common, o.a), { Name: 'a', OrthancPeers: peersOfA }),
      b: merge(merge(common, o.b), { Name: 'b', OrthancPeers: peersOfB }),
    };
    const ports = { a: pa, b: pb };
    const a = await startXferNode({ port: pa, config: configs.a });
    started.push(a);
    const b = await startXferNode({ port: pb, config: configs.b });
    started.push(b);
    const dirs = { a: a.dir, b: b.dir };
    const pair: Pair = {
      a,
      b,
      toA,
      toB,
      async down(which) {
        await pair[which].stop({ keep: true });
      },
      async crash(which) {
        await pair[which].kill();
      },
      async up(which) {
        pair[which] = await startXferNode({ port: ports[which], config: configs[which], dir: dirs[which] });
      },
      async stop() {
        await Promise.all([pair.a.stop(), pair.b.stop()]);
        await Promise.all([toA.stop(), toB.stop()]);
        await Promise.all([rm(dirs.a, { recursive: true, force: true }), rm(dirs.b, { recursive: true, force: true })]);
      },
    };
    return pair;
  } catch (e) {
    for (const n of started) await n.stop();
    await toA.stop();
    await toB.stop();
    throw e;
  }
}

// ---- generated data covering every bucket class (docs/protocol.md#bucket-scheduling) ----------------------

/** Transfers.BucketSize (KB) for the generated set: G = 512 KiB, so a ~525 KB CT slice lies in [G, 2G). */
export const CLASSES_BUCKET_KB = 512;

/**
 * Writes one study into `dir`: 12 MR images (~63 KB, grouped), 3 CT slices (~526 KB, one bucket each
 * with BucketSize 512 KB), a 3-frame multi-frame (~1.6 MB, split in two) and a multi-frame of about
 * `largeMB` MB (default 300, split in about 290 pieces). Answers the paths.
 */
export async function writeBucketClassData(dir: string, largeMB = 300): Promise<string[]> {
  const patient = makePatient(7, 0);
  const study = makeStudy(7, patient, 0, 'TRANSFER CLASSES');
  const at = (n: number, what: string) => ({ patient, study, series: makeSeries(study, n, what) });
  const files: string[] = [];
  for (let i = 0; i < 12; i++) {
    files.push((await writeMrImage(join(dir, `mr${i}.dcm`), { seed: 7, index: i, slices: 12, ...at(1, 'AX T1') })).path);
  }
  for (let i = 0; i < 3; i++) {
    files.push((await writeCtSlice(join(dir, `ct${i}.dcm`), { seed: 7, index: i, slices: 3, ...at(2, 'AXIAL') })).path);
  }
  files.push((await writeMultiframe(join(dir, 'mf-small.dcm'), { seed: 7, frames: 3, ...at(3, 'SMALL VOLUME') })).path);
  files.push((await writeMultiframe(join(dir, 'mf-large.dcm'), { seed: 8, megabytes: largeMB, ...at(4, 'LARGE VOLUME') })).path);
  return files;
}

/**
 * MD5 of the payload of `bucket` read from the source files (the plain concatenation of
 * docs/protocol.md#bucket-payload).
 */
export async function bucketMd5(bucket: Bucket, files: ReadonlyMap<string, string>): Promise<string> {
  const h = createHash('md5');
  for (const c of bucket) {
    if (c.Size === 0) continue;
    const path = files.get(c.ID);
    assert.ok(path, `a file for ${c.ID}`);
    for await (const piece of createReadStream(path, { start: c.Offset, end: c.Offset + c.Size - 1 })) h.update(piece as Buffer);
  }
  return h.digest('hex');
}

/**
 * The chunk URL of a bucket written out from docs/protocol.md#chunk-urls (not through the code under test).
 */
export function specChunkUrl(bucket: Bucket, compression: string): string {
  const size = bucket.reduce((s, c) => s + c.Size, 0);
  return `/transfers/chunks/${bucket.map((c) => c.ID).join('.')}?offset=${bucket[0]?.Offset}&size=${size}&compression=${compression}`;
}

/** A bucket as the push create body writes it (sizes and offsets as strings). */
export function wireBucket(b: Bucket): { ID: string; Offset: string; Size: string }[] {
  return b.map((c) => ({ ID: c.ID, Offset: String(c.Offset), Size: String(c.Size) }));
}

/** Index of a bucket PUT (`.../transfers/push/<tx>/<index>`). */
export function putIndex(r: ProxyRecord): number {
  const m = /\/transfers\/push\/[0-9a-f-]+\/(\d+)$/.exec(r.path);
  assert.ok(m, `a bucket PUT: ${r.path}`);
  return Number(m[1]);
}

export interface ClassesSetup {
  pair: Pair;
  dir: string;
  imported: Imported;
  /** The instances as the scheduler takes them (ID, size and MD5 of the files). */
  instances: { ID: string; Size: number; MD5: string }[];
  /** Instance ID -> MD5 as A stores it. */
  source: Map<string, string>;
  /** The patients of A, as transfer resources. */
  resources: { Level: string; ID: string }[];
  /** G in bytes. */
  g: number;
  stop(): Promise<void>;
}

/**
 * Writes the bucket-class data set (its large multi-frame of about `largeMB` MB), starts a pair whose nodes
 * use CLASSES_BUCKET_KB and whose proxies hash every body and keep the create and lookup bodies, and
 * imports the set into A.
 */
export async function setupClasses(largeMB = 300): Promise<ClassesSetup> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-classes-'));
  const files = await writeBucketClassData(dir, largeMB);
  const pair = await startPair({
    // The plugin's bucket layout (no spans): the tests that use this check every bucket's PUT. Compressed
    // transfers are gzip on the wire, as with the plugin (no zstd).
    common: { Transfers: { BucketSize: CLASSES_BUCKET_KB, BucketSpans: false, Zstd: false } },
    hashBodies: true,
    keepBodies: [{ method: 'POST', path: /^\/+transfers\/(push|lookup)$/ }],
  });
  const imported = await importFiles(pair.a.url, files);
  assert.deepEqual(imported.refused, []);
  const source = await storedMd5s(pair.a.url);
  assert.equal(source.size, files.length, 'every generated file is a distinct instance');
  const instances = [...imported.md5.keys()].map((ID) => ({
    ID,
    Size: imported.size.get(ID) as number,
    MD5: imported.md5.get(ID) as string,
  }));
  for (const i of instances) assert.equal(source.get(i.ID), i.MD5, 'A stores the files unchanged');
  const resources = (await getJson<string[]>(pair.a.url, '/patients')).map((ID) => ({ Level: 'Patient', ID }));
  return {
    pair,
    dir,
    imported,
    instances,
    source,
    resources,
    g: CLASSES_BUCKET_KB * 1024,
    async stop() {
      await pair.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---- checks shared by the fault and restart tests ---------------------------------------------------

/** Entries left in a staging directory of a node (push or pull); a missing directory counts as empty. */
export async function stagingEntries(dataDir: string, kind: 'push' | 'pull'): Promise<string[]> {
  return readdir(join(dataDir, 'staging', kind)).catch(() => []);
}

/**
 * Waits until a staging directory holds exactly `expected` (default nothing): a DELETE that arrives while
 * PUTs of the transaction still run is answered at once, and the files go once those PUTs have stopped.
 */
export async function assertStaging(dataDir: string, kind: 'push' | 'pull', expected: readonly string[] = []): Promise<void> {
  let entries: string[] = [];
  for (let i = 0; i < 100; i++) {
    entries = await stagingEntries(dataDir, kind);
    if (entries.length === expected.length && entries.every((e) => expected.includes(e))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(entries.sort(), [...expected].sort(), `staging/${kind} of ${dataDir}`);
}

/** Instance ID of a chunk GET whose URL names one instance. */
export function chunkId(r: ProxyRecord): string {
  const m = /\/transfers\/chunks\/([0-9a-f-]+)\?/.exec(r.path);
  assert.ok(m, `a one-instance chunk URL: ${r.path}`);
  return m[1] as string;
}

/**
 * Counts the bucket requests per index of a transfer stopped and continued (pause, restart): every index
 * succeeded exactly once, and the only other requests are the ones held (in flight) when it stopped,
 * aborted by the stop.
 */
export function assertEachOnce(
  records: ProxyRecord[],
  indexOf: (r: ProxyRecord) => number,
  total: number,
  held: readonly ProxyRecord[],
): void {
  const ok = new Map<number, number>();
  const other = new Map<number, ProxyRecord[]>();
  for (const r of records) {
    const i = indexOf(r);
    if (r.status === 200 && r.outcome === 'completed') ok.set(i, (ok.get(i) ?? 0) + 1);
    else other.set(i, [...(other.get(i) ?? []), r]);
  }
  for (let i = 0; i < total; i++) assert.equal(ok.get(i), 1, `bucket ${i} succeeded exactly once`);
  assert.equal(ok.size, total);
  for (const [i, rs] of other) {
    for (const r of rs) {
      assert.ok(held.includes(r), `bucket ${i}: only a request held at pause time failed (${r.outcome} ${r.status})`);
      assert.equal(r.outcome, 'aborted');
    }
  }
}
