// Requests sized to the link: a transfer plans small buckets (SPAN_UNIT) and sends several consecutive
// ones in one request (a span) while the link is fast, shrinking the spans as the work left gets small,
// so that the last requests of a transfer end together instead of one slow straggler holding the link
// idle. A push span is one `PUT {path}/{first}-{last}` (extension bucket-span); a pull span is one chunk
// request whose instances follow each other (any dicom-xfer source serves those cheaply).
import { bucketSize } from '../protocol/buckets.ts';
import { chunkPathLength } from '../protocol/chunk-url.ts';
import type { Bucket, Chunk, Compression } from '../protocol/wire.ts';

/** Bucket size a transfer plans with when it can join buckets into spans (at most BucketSize). */
export const SPAN_UNIT = 512 * 1024;

/** Most buckets in one span (a bound on the receiver's bookkeeping per request). */
export const MAX_SPAN_BUCKETS = 1024;

/** Longest chunk path of a pull span (a dicom-xfer source accepts far longer ones). */
export const MAX_SPAN_PATH = 16_000;

/** Consecutive buckets `first`..`last` sent as one request, their chunks joined. */
export interface Span {
  first: number;
  last: number;
  chunks: Chunk[];
  bytes: number;
}

/** "bucket 7" or "buckets 7-12", for retries, logs and errors. */
export function spanLabel(span: Pick<Span, 'first' | 'last'>): string {
  return span.first === span.last ? `bucket ${span.first}` : `buckets ${span.first}-${span.last}`;
}

/** The last segment of a span's push PUT: `7`, or `7-12` (extension bucket-span). */
export function spanSegment(span: Pick<Span, 'first' | 'last'>): string {
  return span.first === span.last ? `${span.first}` : `${span.first}-${span.last}`;
}

/** The chunks of consecutive buckets as one list, adjacent pieces of one instance joined into one chunk. */
export function joinChunks(buckets: readonly Bucket[]): Chunk[] {
  const out: Chunk[] = [];
  for (const b of buckets) {
    for (const c of b) {
      if (c.Size === 0) continue;
      const prev = out[out.length - 1];
      if (prev && prev.ID === c.ID && prev.Offset + prev.Size === c.Offset) prev.Size += c.Size;
      else out.push({ ID: c.ID, Offset: c.Offset, Size: c.Size });
    }
  }
  return out;
}

/**
 * Whether one chunk URL can ask for `chunks`: each instance in it once, every chunk but the first
 * starting at its instance's beginning and every chunk but the last reaching its end.
 */
export function addressable(chunks: readonly Chunk[], sizeOf: (id: string) => number | undefined): boolean {
  const seen = new Set<string>();
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i] as Chunk;
    if (seen.has(c.ID)) return false;
    seen.add(c.ID);
    if (i > 0 && c.Offset !== 0) return false;
    if (i < chunks.length - 1 && c.Offset + c.Size !== sizeOf(c.ID)) return false;
  }
  return true;
}

export interface SpanQueueOptions {
  /** Largest span in bytes (BucketSize): a span never grows past it, though one bucket alone may. */
  maxBytes: number;
  /** Whether buckets may be joined at all (false: every span is one bucket). */
  join: boolean;
  /** Pull: spans must be one chunk URL of the instances' sizes, no longer than MAX_SPAN_PATH. */
  pull?: { sizeOf: (id: string) => number | undefined; compression: Compression };
}

/**
 * Which stream a bucket of the plan travels in: many small instances together ('group': a file, a hash and
 * an index row per instance, the costly part of a receiver's work per byte), a piece of an instance split
 * over several buckets ('piece'), or one instance alone ('whole').
 */
export type SpanStream = 'group' | 'piece' | 'whole';

/** The stream of bucket `i` of `buckets` (a piece shares its instance with a neighbouring bucket). */
export function streamOf(buckets: readonly Bucket[], i: number): SpanStream {
  const b = buckets[i] as Bucket;
  if (b.length > 1) return 'group';
  const id = b[0]?.ID;
  const before = buckets[i - 1];
  const after = buckets[i + 1];
  if (id !== undefined && ((before?.length === 1 && before[0]?.ID === id) || (after?.length === 1 && after[0]?.ID === id))) return 'piece';
  return 'whole';
}

/** The pending buckets of one stream, in plan order, and how far it has been handed out. */
interface Stream {
  indexes: number[];
  at: number;
  bytes: number;
  handed: number;
}

/**
 * The buckets left to move, handed out as spans: consecutive pending buckets up to the size asked for.
 * Guided self-scheduling: the caller asks for about (bytes left) / (2 x requests in flight), so spans are
 * large while much is left and shrink to single buckets at the end.
 *
 * The plan lists large instances first and the groups of small ones last (protocol/buckets.ts): sent in
 * that order, a transfer would end on thousands of small instances, the receiver's slowest bytes, right
 * before its commit. So the buckets go in streams (SpanStream), each span from one stream, the stream
 * least far through its bytes first: every stream advances in proportion to its bytes, and the end of a
 * transfer holds a bit of each.
 */
export class SpanQueue {
  readonly #buckets: readonly Bucket[];
  readonly #streams: Stream[];
  readonly #o: SpanQueueOptions;
  #bytesLeft = 0;

  constructor(buckets: readonly Bucket[], pending: readonly number[], options: SpanQueueOptions) {
    this.#buckets = buckets;
    this.#o = options;
    const byStream = new Map<SpanStream, Stream>();
    for (const i of [...new Set(pending)].sort((a, b) => a - b)) {
      const kind = streamOf(buckets, i);
      let s = byStream.get(kind);
      if (!s) {
        s = { indexes: [], at: 0, bytes: 0, handed: 0 };
        byStream.set(kind, s);
      }
      const size = bucketSize(buckets[i] as Bucket);
      s.indexes.push(i);
      s.bytes += size;
      this.#bytesLeft += size;
    }
    this.#streams = [...byStream.values()];
  }

  /** Payload bytes of the buckets not handed out yet. */
  get bytesLeft(): number {
    return this.#bytesLeft;
  }

  get empty(): boolean {
    return this.#streams.every((s) => s.at >= s.indexes.length);
  }

  /** The stream least far through its bytes (the larger one first on a tie), undefined when all are done. */
  #stream(): Stream | undefined {
    let best: Stream | undefined;
    let bestShare = Number.POSITIVE_INFINITY;
    for (const s of this.#streams) {
      if (s.at >= s.indexes.length) continue;
      // A stream of empty buckets only is as far as it gets: it goes first, it costs nothing.
      const share = s.bytes > 0 ? s.handed / s.bytes : 0;
      if (share < bestShare || (share === bestShare && best !== undefined && s.bytes > best.bytes)) {
        best = s;
        bestShare = share;
      }
    }
    return best;
  }

  /** The next span of at most `targetBytes` (at least one bucket), or undefined when none is left. */
  next(targetBytes: number): Span | undefined {
    const s = this.#stream();
    if (!s) return undefined;
    const target = Math.min(this.#o.maxBytes, Math.max(1, targetBytes));
    const first = s.indexes[s.at++] as number;
    let last = first;
    const parts: Bucket[] = [this.#buckets[first] as Bucket];
    let bytes = bucketSize(parts[0] as Bucket);
    let chunks = joinChunks(parts);
    while (this.#o.join && s.at < s.indexes.length && last - first + 1 < MAX_SPAN_BUCKETS) {
      const i = s.indexes[s.at] as number;
      if (i !== last + 1) break;
      const b = this.#buckets[i] as Bucket;
      const size = bucketSize(b);
      if (bytes + size > target) break;
      const joined = joinChunks([...parts, b]);
      const pull = this.#o.pull;
      if (pull && (!addressable(joined, pull.sizeOf) || chunkPathLength(joined, pull.compression) > MAX_SPAN_PATH)) break;
      parts.push(b);
      chunks = joined;
      bytes += size;
      last = i;
      s.at++;
    }
    s.handed += bytes;
    this.#bytesLeft -= bytes;
    return { first, last, chunks, bytes };
  }
}
