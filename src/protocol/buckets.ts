// The bucket scheduler of docs/protocol.md#bucket-scheduling: which byte ranges of which instances travel
// together in one HTTP query, exactly as the plugin cuts them so that an Orthanc peer sees the same buckets
// from us.

import { XferError } from '../errors.ts';
import { chunkPathLength } from './chunk-url.ts';
import { sortUniqueInstances, type Bucket, type Chunk, type Compression } from './wire.ts';

/** The plugin's default BucketSize: 4096 KB, in bytes (the group threshold G). */
export const DEFAULT_BUCKET_SIZE = 4096 * 1024;

/** A pull URL closes its group once it reaches this many characters: 2000 minus one Orthanc ID (44). */
export const MAX_PULL_URL_LENGTH = 2000 - 44;

export interface InstanceSize {
  ID: string;
  Size: number;
}

export interface ScheduleOptions {
  /** Group threshold G in bytes (configuration BucketSize x 1024). The split threshold is 2G. */
  bucketSize: number;
  /**
   * Pull mode: the text that will precede the chunk path in the request URL, as the plugin measures it
   * (the peer URL with its trailing '/', so Orthanc counts the `//`). Absent in push mode.
   */
  pullBaseUrl?: string;
  /** Pull mode: the compression written in the URL (it changes its length). Default "none". */
  compression?: Compression;
}

/**
 * Cuts instances into buckets. Instances are taken in ID order (duplicates collapse, the last wins):
 * size < G waits to be grouped; G <= size < 2G is a bucket alone; size >= 2G is split into
 * n = ceil(size / 2G) single-chunk buckets of floor(size / n) bytes, the last taking the rest. Then the
 * waiting instances fill buckets in ID order, each closed once its total reaches G or, in pull mode,
 * once its full URL reaches MAX_PULL_URL_LENGTH characters; a partial last group is emitted too.
 * Zero-length instances are left out. Sizes must be safe integers (exact up to 2^53 - 1).
 * ParameterOutOfRange for a bucket size that is not a positive integer or a bad instance size.
 */
export function scheduleBuckets(instances: readonly InstanceSize[], options: ScheduleOptions): Bucket[] {
  const g = options.bucketSize;
  if (!Number.isSafeInteger(g) || g <= 0 || !Number.isSafeInteger(2 * g)) {
    throw new XferError('ParameterOutOfRange', `Bad bucket size: ${g}`);
  }
  const s = 2 * g;
  const buckets: Bucket[] = [];
  const toGroup: InstanceSize[] = [];

  for (const instance of sortUniqueInstances(instances)) {
    const size = instance.Size;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new XferError('ParameterOutOfRange', `Bad size for instance ${instance.ID}: ${size}`);
    }
    if (size < g) {
      toGroup.push(instance);
    } else if (size < s) {
      buckets.push([{ ID: instance.ID, Offset: 0, Size: size }]);
    } else {
      const n = ceilDiv(size, s);
      const piece = floorDiv(size, n);
      for (let i = 0; i < n; i++) {
        const offset = i * piece;
        buckets.push([{ ID: instance.ID, Offset: offset, Size: i === n - 1 ? size - offset : piece }]);
      }
    }
  }

  const pull = options.pullBaseUrl !== undefined;
  const baseLength = options.pullBaseUrl?.length ?? 0;
  const compression = options.compression ?? 'none';
  let current: Chunk[] = [];
  let total = 0;
  for (const instance of toGroup) {
    if (instance.Size === 0) continue; // the plugin ignores empty chunks
    current.push({ ID: instance.ID, Offset: 0, Size: instance.Size });
    total += instance.Size;
    const full = total >= g || (pull && baseLength + chunkPathLength(current, compression) >= MAX_PULL_URL_LENGTH);
    if (full) {
      buckets.push(current);
      current = [];
      total = 0;
    }
  }
  if (current.length > 0) buckets.push(current);
  return buckets;
}

/** Sum of the chunk sizes of a bucket: the length of its (uncompressed) payload. */
export function bucketSize(bucket: readonly Chunk[]): number {
  let total = 0;
  for (const c of bucket) total += c.Size;
  return total;
}

/** A chunk with its place in the bucket payload: bytes [payloadOffset, payloadOffset + Size). */
export interface PlacedChunk extends Chunk {
  payloadOffset: number;
}

/**
 * Where each chunk's bytes sit in the bucket payload (the plain concatenation of
 * docs/protocol.md#bucket-payload).
 */
export function payloadLayout(bucket: readonly Chunk[]): PlacedChunk[] {
  let at = 0;
  return bucket.map((c) => {
    const placed = { ...c, payloadOffset: at };
    at += c.Size;
    return placed;
  });
}

// Integer division that stays exact for operands up to 2^53: the float quotient is corrected by at
// most a step or two, checked with exact products.
function floorDiv(a: number, b: number): number {
  let q = Math.floor(a / b);
  while (q * b > a) q--;
  while ((q + 1) * b <= a) q++;
  return q;
}

function ceilDiv(a: number, b: number): number {
  const q = floorDiv(a, b);
  return q * b === a ? q : q + 1;
}
