// Spans: consecutive small buckets joined into one request, as the transfer jobs send them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bucketSize, scheduleBuckets } from '../../src/protocol/buckets.ts';
import { buildChunkPath, parseChunkUrl } from '../../src/protocol/chunk-url.ts';
import type { Bucket, Chunk } from '../../src/protocol/wire.ts';
import { SPAN_UNIT, SpanQueue, addressable, joinChunks, type Span } from '../../src/transfer/spans.ts';

const id = (n: number): string => `${n.toString(16).padStart(8, '0')}-00000000-00000000-00000000-00000000`;

// A mix like a study: two large multi-frame instances, CT slices of 525 KB, small MR-like instances.
const instances = [
  { ID: id(1), Size: 9_000_000 },
  { ID: id(2), Size: 3_100_000 },
  ...Array.from({ length: 30 }, (_, i) => ({ ID: id(100 + i), Size: 525_000 })),
  ...Array.from({ length: 60 }, (_, i) => ({ ID: id(1000 + i), Size: 60_000 + i })),
];
const sizes = new Map(instances.map((i) => [i.ID, i.Size]));
const buckets = scheduleBuckets(instances, { bucketSize: SPAN_UNIT });
const all = buckets.map((_, i) => i);
const MAX = 4096 * 1024;

/** Every span of a queue drained asking for `target` bytes each time. */
function drain(q: SpanQueue, target: (q: SpanQueue) => number): Span[] {
  const out: Span[] = [];
  for (let n = 0; n < 100_000; n++) {
    const s = q.next(target(q));
    if (!s) return out;
    out.push(s);
  }
  throw new Error('the queue never ran dry');
}

/** The byte ranges a chunk list stands for, in order, with touching ranges of one instance merged. */
function ranges(chunks: readonly Chunk[]): string[] {
  const runs: [string, number, number][] = [];
  for (const c of chunks) {
    const last = runs[runs.length - 1];
    if (last && last[0] === c.ID && last[2] === c.Offset) last[2] += c.Size;
    else runs.push([c.ID, c.Offset, c.Offset + c.Size]);
  }
  return runs.map(([i, a, b]) => `${i}[${a},${b})`);
}

test('joinChunks joins the adjacent pieces of one instance and keeps the rest in order', () => {
  const a = id(1);
  const b = id(2);
  const joined = joinChunks([
    [{ ID: a, Offset: 0, Size: 10 }],
    [
      { ID: a, Offset: 10, Size: 5 },
      { ID: b, Offset: 0, Size: 7 },
    ],
    [{ ID: b, Offset: 9, Size: 1 }],
  ]);
  assert.deepEqual(joined, [
    { ID: a, Offset: 0, Size: 15 },
    { ID: b, Offset: 0, Size: 7 },
    { ID: b, Offset: 9, Size: 1 },
  ]);
  assert.equal(
    addressable(joined, (i) => (i === a ? 15 : 10)),
    false,
    'b twice',
  );
  assert.equal(
    addressable(joined.slice(0, 2), (i) => (i === a ? 15 : 10)),
    true,
  );
  assert.equal(
    addressable(
      [
        { ID: a, Offset: 0, Size: 14 },
        { ID: b, Offset: 0, Size: 7 },
      ],
      () => 15,
    ),
    false,
    'a not to its end',
  );
});

test('a push queue hands out every pending bucket once, in spans no larger than asked', () => {
  const q = new SpanQueue(buckets, all, { join: true, maxBytes: MAX });
  const total = buckets.reduce((n, b) => n + bucketSize(b), 0);
  assert.equal(q.bytesLeft, total);
  const spans = drain(q, (qq) => qq.bytesLeft / 8);
  assert.equal(q.bytesLeft, 0);
  const seen: number[] = [];
  for (const s of spans) {
    for (let i = s.first; i <= s.last; i++) seen.push(i);
    const parts = buckets.slice(s.first, s.last + 1);
    assert.equal(
      s.bytes,
      parts.reduce((n, b) => n + bucketSize(b), 0),
    );
    assert.ok(s.first === s.last || s.bytes <= MAX, `span ${s.first}-${s.last} of ${s.bytes} bytes`);
    // The span's chunks are its buckets' bytes, in the same order.
    assert.deepEqual(ranges(s.chunks), ranges(parts.flat()));
  }
  assert.deepEqual(seen, all);
  assert.ok(spans.length < buckets.length * 0.75, `${spans.length} spans for ${buckets.length} buckets`);
  // Guided: spans shrink to single buckets as the work left runs out.
  assert.equal(spans.at(-1)?.first, spans.at(-1)?.last);
});

test('done buckets are skipped and never joined across', () => {
  const pending = all.filter((i) => i % 5 !== 2);
  const spans = drain(new SpanQueue(buckets, pending, { join: true, maxBytes: MAX }), () => MAX);
  const seen = spans.flatMap((s) => Array.from({ length: s.last - s.first + 1 }, (_, k) => s.first + k));
  assert.deepEqual(seen, pending);
});

test('without join, or asked for little, every span is one bucket', () => {
  for (const q of [
    new SpanQueue(buckets, all, { join: false, maxBytes: MAX }),
    new SpanQueue(buckets, all, { join: true, maxBytes: MAX }),
  ]) {
    const spans = drain(q, () => 1);
    assert.equal(spans.length, buckets.length);
    assert.ok(spans.every((s, i) => s.first === i && s.last === i));
  }
});

test('pull spans are one chunk URL each, and the URL asks for exactly their bytes', () => {
  const spans = drain(
    new SpanQueue(buckets, all, { join: true, maxBytes: MAX, pull: { sizeOf: (i) => sizes.get(i), compression: 'gzip' } }),
    () => MAX,
  );
  assert.ok(spans.length < buckets.length, `${spans.length} spans for ${buckets.length} buckets`);
  for (const s of spans) {
    assert.ok(addressable(s.chunks, (i) => sizes.get(i)));
    const path = buildChunkPath(s.chunks as Bucket, 'gzip');
    const req = parseChunkUrl(path);
    assert.deepEqual(
      req.ids,
      s.chunks.map((c) => c.ID),
    );
    assert.equal(req.offset, s.chunks[0]?.Offset);
    assert.equal(req.size, s.bytes);
  }
});
