// Shared plumbing of the resilience tests (resilience-*.test.ts): a generated ~500 MB multi-frame on a
// pair of nodes, the scheduled buckets of a transfer, and the count of bytes a transfer sent more than
// once, read from the proxy's records per bucket index.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makePatient, makeSeries, makeStudy, writeMultiframe } from '../../src/generate/index.ts';
import { scheduleBuckets } from '../../src/protocol/buckets.ts';
import type { Bucket } from '../../src/protocol/wire.ts';
import type { ProxyRecord } from '../helpers/proxy.ts';
import {
  getJson,
  importFiles,
  listFiles,
  PER_BUCKET,
  REAL_DICOM,
  startPair,
  storedMd5s,
  type Pair,
  type PairOptions,
} from '../helpers/transfer-nodes.ts';

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
    const instances = [...imported.md5.keys()].map((ID) => ({
      ID,
      Size: imported.size.get(ID) as number,
      MD5: imported.md5.get(ID) as string,
    }));
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

export interface BrainixSetup {
  pair: Pair;
  /** Instance ID -> MD5 on A. */
  source: Map<string, string>;
  resources: { Level: string; ID: string }[];
}

/**
 * A pair (HttpTimeout 30 s, BucketSize `bucketKb`, RetryBudget 120 s, PER_BUCKET) with the Brainix study
 * imported into A: the outage tests' setup.
 */
export async function setupBrainix(bucketKb: number): Promise<BrainixSetup> {
  const pair = await startPair({ common: { HttpTimeout: 30, Transfers: { BucketSize: bucketKb, ...PER_BUCKET, RetryBudget: 120 } } });
  try {
    await importFiles(pair.a.url, await listFiles(join(REAL_DICOM, 'Brainix')));
    const source = await storedMd5s(pair.a.url);
    const resources = (await getJson<string[]>(pair.a.url, '/studies')).map((ID) => ({ Level: 'Study', ID }));
    return { pair, source, resources };
  } catch (e) {
    await pair.stop();
    throw e;
  }
}

/** The buckets a push of `instances` is cut into (docs/protocol.md#bucket-scheduling). */
export function pushBuckets(instances: readonly { ID: string; Size: number }[], bucketBytes: number): Bucket[] {
  return scheduleBuckets(instances, { bucketSize: bucketBytes });
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
 * What an uncompressed transfer moved more than once, from the proxy's records of its requests (`side`:
 * the request bodies of PUTs, the answers of chunk GETs), each carrying a span of consecutive buckets
 * (`rangeOf` gives a record's [first, last]; a single bucket is a span of one). Every bucket must have gone
 * through whole at least once, in a record whose bytes are its span's total (a whole request is not always
 * a "completed" record: a PUT forwarded whole to a receiver whose sender was killed before the answer
 * shows as aborted, and the receiver holds it). The extra bytes are all the records' bytes beyond the
 * transfer's size; the indexes, those covered by more than one request that carried bytes.
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
  sizes.forEach((_s, i) => {
    assert.ok(whole.has(i), `bucket ${i} went through whole`);
  });
  const total = sizes.reduce((n, s) => n + s, 0);
  const indexes = [...carried]
    .filter(([, n]) => n > 1)
    .map(([i]) => i)
    .sort((a, b) => a - b);
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
