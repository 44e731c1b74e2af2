// Shared plumbing of the resilience tests (resilience-*.test.ts): a generated ~500 MB multi-frame on a
// pair of nodes, the scheduled buckets of a transfer, and the count of bytes a transfer sent more than
// once, read from the proxy's records per bucket index.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makePatient, makeSeries, makeStudy, writeMultiframe } from '../../src/generate/index.ts';
import { bucketSize, scheduleBuckets } from '../../src/protocol/buckets.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import type { ProxyRecord } from '../helpers/proxy.ts';
import { getJson, importFiles, specChunkUrl, startPair, storedMd5s, type Pair, type PairOptions } from '../helpers/transfer-nodes.ts';

export interface LargeSetup {
  pair: Pair;
  /** Instance ID -> MD5 on A. */
  source: Map<string, string>;
  instances: { ID: string; Size: number; MD5: string }[];
  resources: { Level: string; ID: string }[];
  /** Transfers.BucketSize of both nodes, in bytes. */
  bucketBytes: number;
  stop(): Promise<void>;
}

/**
 * Writes a multi-frame of about `megabytes` MB, starts a pair (Threads 4, RetryBudget 120 s, BucketSize
 * `bucketKb`) and imports the file into A.
 */
export async function setupLarge(megabytes: number, bucketKb: number, extra: PairOptions = {}): Promise<LargeSetup> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-resilience-'));
  const patient = makePatient(11, 0);
  const study = makeStudy(11, patient, 0, 'RESILIENCE');
  const file = await writeMultiframe(join(dir, 'large.dcm'), {
    seed: 11,
    megabytes,
    patient,
    study,
    series: makeSeries(study, 1, 'LARGE VOLUME'),
  });
  const common = extra.common ?? {};
  const pair = await startPair({
    ...extra,
    common: {
      HttpTimeout: 30,
      ...common,
      Transfers: { BucketSize: bucketKb, Threads: 4, RetryBudget: 120, MaxHttpRetries: 0, ...(common.Transfers as object | undefined) },
    },
  });
  try {
    const imported = await importFiles(pair.a.url, [file.path]);
    assert.deepEqual(imported.refused, []);
    const source = await storedMd5s(pair.a.url);
    const instances = [...imported.md5.keys()].map((ID) => ({ ID, Size: imported.size.get(ID) as number, MD5: imported.md5.get(ID) as string }));
    // The file is imported; the node's copy is what travels.
    await rm(dir, { recursive: true, force: true });
    const resources = (await getJson<string[]>(pair.a.url, '/studies')).map((ID) => ({ Level: 'Study', ID }));
    return {
      pair,
      source,
      instances,
      resources,
      bucketBytes: bucketKb * 1024,
      async stop() {
        await pair.stop();
      },
    };
  } catch (e) {
    await pair.stop();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** The buckets a push of `instances` is cut into (SPEC §5.2). */
export function pushBuckets(instances: readonly { ID: string; Size: number }[], bucketBytes: number): Bucket[] {
  return scheduleBuckets(instances, { bucketSize: bucketBytes });
}

/** The chunk URL -> bucket index of a pull from `base` (the peer URL as the puller knows it), and the sizes. */
export function pullIndex(
  instances: readonly { ID: string; Size: number }[],
  bucketBytes: number,
  base: string,
  compression: 'none' | 'gzip',
): { index: Map<string, number>; sizes: number[] } {
  const buckets = scheduleBuckets(instances, { bucketSize: bucketBytes, pullBaseUrl: base, compression });
  return { index: new Map(buckets.map((b, i) => [specChunkUrl(b, compression), i])), sizes: buckets.map(bucketSize) };
}

export interface Resent {
  /** Bucket indexes with more than one request carrying bytes (sent or fetched again, even partly). */
  indexes: number[];
  /** Bytes moved beyond the transfer's own size: every body byte of a bucket's requests past its size. */
  bytes: number;
  /** Size of the largest bucket. */
  largestBucket: number;
}

/**
 * What an uncompressed transfer moved more than once, from the proxy's records: per bucket index, the
 * body bytes of all its requests (`side`: the request bodies of PUTs, the answers of chunk GETs) minus the
 * bucket's size. Asserts that every bucket went through whole at least once. (A whole request is not
 * always a "completed" record: a PUT forwarded whole to the receiver whose sender was killed before the
 * answer shows as aborted, and the receiver holds it.)
 */
export function resentBytes(records: readonly ProxyRecord[], indexOf: (r: ProxyRecord) => number, sizes: readonly number[], side: 'request' | 'response'): Resent {
  const bytes = (r: ProxyRecord) => (side === 'request' ? r.requestBytes : r.responseBytes);
  const byIndex = new Map<number, ProxyRecord[]>();
  for (const r of records) {
    const i = indexOf(r);
    assert.ok(i >= 0 && i < sizes.length, `a bucket request: ${r.method} ${r.path}`);
    byIndex.set(i, [...(byIndex.get(i) ?? []), r]);
  }
  let extra = 0;
  const indexes: number[] = [];
  sizes.forEach((size, i) => {
    const rs = byIndex.get(i) ?? [];
    const what = rs.map((r) => `${r.status}/${r.outcome}/${bytes(r)}`).join(', ');
    assert.ok(rs.some((r) => bytes(r) === size), `bucket ${i} (${size} bytes) went through whole: ${what}`);
    const sum = rs.reduce((n, r) => n + bytes(r), 0);
    extra += sum - size;
    if (rs.filter((r) => bytes(r) > 0).length > 1) indexes.push(i);
  });
  return { indexes, bytes: extra, largestBucket: Math.max(...sizes) };
}

/**
 * As resentBytes, for requests that each carry a span of consecutive buckets (extension bucket-span):
 * `rangeOf` gives a record's [first, last]. Every bucket must have gone through whole at least once (in a
 * record whose bytes are its span's total); the extra bytes are all the records' bytes beyond the
 * transfer's size, and the indexes those covered by more than one request that carried bytes.
 */
export function resentSpans(
  records: readonly ProxyRecord[],
  rangeOf: (r: ProxyRecord) => [number, number],
  sizes: readonly number[],
  side: 'request' | 'response',
): Resent & { largestRequest: number } {
  const bytes = (r: ProxyRecord) => (side === 'request' ? r.requestBytes : r.responseBytes);
  const whole = new Set<number>();
  const carried = new Map<number, number>();
  let moved = 0;
  let largestRequest = 0;
  for (const r of records) {
    const [first, last] = rangeOf(r);
    assert.ok(first >= 0 && last >= first && last < sizes.length, `a span request: ${r.method} ${r.path}`);
    let span = 0;
    for (let i = first; i <= last; i++) span += sizes[i] as number;
    largestRequest = Math.max(largestRequest, span);
    moved += bytes(r);
    for (let i = first; i <= last; i++) {
      if (bytes(r) === span) whole.add(i);
      if (bytes(r) > 0) carried.set(i, (carried.get(i) ?? 0) + 1);
    }
  }
  sizes.forEach((_s, i) => assert.ok(whole.has(i), `bucket ${i} went through whole`));
  const total = sizes.reduce((n, s) => n + s, 0);
  const indexes = [...carried].filter(([, n]) => n > 1).map(([i]) => i).sort((a, b) => a - b);
  return { indexes, bytes: moved - total, largestBucket: Math.max(...sizes), largestRequest };
}

/** MiB with two decimals, for diagnostics. */
export function mib(n: number): string {
  return (n / (1024 * 1024)).toFixed(2);
}

/** Waits `ms`, in steps, so that a long wait is still bounded and visible. */
export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

export { storedMd5s };
