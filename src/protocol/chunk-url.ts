// The pull address of a bucket (docs/protocol.md#chunks, #chunk-urls):
// `/transfers/chunks/<id>.<id>...?offset=O&size=S&compression=C`, built from a bucket, parsed back by the
// chunk route, and the walk that turns (ids, offset, size) into byte ranges of each instance.

import { XferError } from '../errors.ts';
import { INSTANCE_ID, parseCompression, type Chunk, type Compression } from './wire.ts';

export const CHUNKS_PATH = '/transfers/chunks/';

/**
 * The chunk path and query of a bucket, parameters in the plugin's order (offset, size, compression):
 * ids joined by '.', offset of the first chunk, size = sum of chunk sizes. InternalError for an empty
 * bucket or one whose later chunks do not start at offset 0, which no URL can express.
 */
export function buildChunkPath(bucket: readonly Chunk[], compression: Compression): string {
  const first = checkAddressable(bucket);
  let size = 0;
  for (const c of bucket) size += c.Size;
  return `${CHUNKS_PATH}${bucket.map((c) => c.ID).join('.')}?offset=${first.Offset}&size=${size}&compression=${compression}`;
}

/** buildChunkPath(bucket, compression).length, without building the string. */
export function chunkPathLength(bucket: readonly Chunk[], compression: Compression): number {
  const first = checkAddressable(bucket);
  let size = 0;
  let ids = bucket.length - 1; // the dots
  for (const c of bucket) {
    size += c.Size;
    ids += c.ID.length;
  }
  return (
    CHUNKS_PATH.length +
    ids +
    '?offset='.length +
    String(first.Offset).length +
    '&size='.length +
    String(size).length +
    '&compression='.length +
    compression.length
  );
}

function checkAddressable(bucket: readonly Chunk[]): Chunk {
  const first = bucket[0];
  if (first === undefined) throw new XferError('InternalError', 'Cannot address an empty bucket');
  for (let i = 1; i < bucket.length; i++) {
    if (bucket[i]?.Offset !== 0) throw new XferError('InternalError', 'Only the first chunk of a bucket may start inside its instance');
  }
  return first;
}

export interface ChunkRequest {
  /** Instance IDs in URL order. */
  ids: string[];
  /** Offset into the concatenation of the instances. */
  offset: number;
  /** Bytes wanted; 0 means up to the end of the last instance. */
  size: number;
  compression: Compression;
}

/**
 * The ids of the path segment after /transfers/chunks/ (split on '.'). Each must be lowercase hex and
 * dashes, else UnknownResource (404), which is what an Orthanc peer answers when its route regex does
 * not match or the instance does not exist. An empty id (as in "a..b") is refused the same way.
 */
export function parseChunkIds(segment: string): string[] {
  const ids = segment.split('.');
  for (const id of ids) {
    if (!INSTANCE_ID.test(id)) throw new XferError('UnknownResource', `Not an instance ID in a chunk URL: "${id}"`);
  }
  return ids;
}

/** Query of a chunk URL: a query string (with or without '?'), URLSearchParams, or a parsed object. */
export type ChunkQueryInput = string | URLSearchParams | Readonly<Record<string, unknown>>;

/**
 * offset, size and compression of a chunk URL. Every occurrence is checked in order and the last one
 * counts, as the plugin does. offset and size default to 0 and must be decimal digits only; unlike the
 * plugin, which stops at 2^31 - 1, values up to 2^53 - 1 are accepted, so offsets past 2 GiB work.
 * Negative, empty, non-numeric or larger values give BadParameterType (400). compression defaults to
 * "none"; another value gives ParameterOutOfRange (400). Unknown parameters are ignored.
 */
export function parseChunkQuery(query: ChunkQueryInput): Omit<ChunkRequest, 'ids'> {
  let offset = 0;
  let size = 0;
  let compression: Compression = 'none';
  for (const [key, value] of queryPairs(query)) {
    if (key === 'offset') offset = readByteCount(key, value);
    else if (key === 'size') size = readByteCount(key, value);
    else if (key === 'compression') compression = parseCompression(value);
  }
  return { offset, size, compression };
}

/**
 * A whole chunk URL or path (anything up to and including `/transfers/chunks/` is skipped; runs of
 * slashes count as one, as Orthanc's web server treats them), parsed into ids and parameters.
 * UnknownResource when the path is not a chunk path or an id is malformed.
 */
export function parseChunkUrl(url: string): ChunkRequest {
  const q = url.indexOf('?');
  const path = (q < 0 ? url : url.slice(0, q)).replace(/\/{2,}/g, '/');
  const at = path.lastIndexOf(CHUNKS_PATH);
  if (at < 0) throw new XferError('UnknownResource', `Not a chunk URL: ${url}`);
  const ids = parseChunkIds(path.slice(at + CHUNKS_PATH.length));
  return { ids, ...parseChunkQuery(q < 0 ? '' : url.slice(q + 1)) };
}

function readByteCount(key: string, value: string): number {
  if (/^[0-9]+$/.test(value)) {
    const n = Number(value);
    if (Number.isSafeInteger(n)) return n;
  }
  throw new XferError('BadParameterType', `The "${key}" GET argument must be a non-negative integer: ${value}`);
}

function queryPairs(query: ChunkQueryInput): [string, string][] {
  if (typeof query === 'string') return [...new URLSearchParams(query.startsWith('?') ? query.slice(1) : query)];
  if (query instanceof URLSearchParams) return [...query];
  const pairs: [string, string][] = [];
  for (const [key, value] of Object.entries(query)) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) if (v !== undefined) pairs.push([key, String(v)]);
  }
  return pairs;
}

// ---------------------------------------------------------------------------------------------------
// The walk of docs/protocol.md#chunks

/** Bytes [start, end) of instance ID. */
export interface ByteRange {
  ID: string;
  start: number;
  end: number;
}

/**
 * Walks the instances of a chunk request in URL order, one call per instance, so that a server can look
 * sizes up lazily and stop opening instances once the bucket is complete. While the remaining offset is
 * at least an instance's size the instance is skipped; otherwise bytes are taken from the remaining
 * offset up to the end of the instance or up to `size` bytes in all (0 = no limit), and the offset then
 * drops to 0. Requests past the data simply end early: the total can be less than `size`.
 */
export class ChunkWalk {
  #offset: number;
  readonly #size: number;
  #taken = 0;

  constructor(offset: number, size: number) {
    this.#offset = offset;
    this.#size = size;
  }

  /** True once `size` bytes have been taken (never when size is 0). */
  get done(): boolean {
    return this.#size !== 0 && this.#taken >= this.#size;
  }

  /** Bytes taken so far. */
  get taken(): number {
    return this.#taken;
  }

  /** The range to read from the next instance of the list, or undefined when it contributes nothing. */
  visit(id: string, instanceSize: number): ByteRange | undefined {
    if (this.done) return undefined;
    if (this.#offset >= instanceSize) {
      this.#offset -= instanceSize;
      return undefined;
    }
    const start = this.#offset;
    const available = instanceSize - start;
    const count = this.#size === 0 ? available : Math.min(available, this.#size - this.#taken);
    this.#offset = 0;
    this.#taken += count;
    return { ID: id, start, end: start + count };
  }
}

/** All ranges of a chunk request at once, given each listed instance's size in URL order. */
export function planChunkRanges(instances: readonly { ID: string; Size: number }[], offset: number, size: number): ByteRange[] {
  const walk = new ChunkWalk(offset, size);
  const ranges: ByteRange[] = [];
  for (const i of instances) {
    if (walk.done) break;
    const r = walk.visit(i.ID, i.Size);
    if (r) ranges.push(r);
  }
  return ranges;
}
