// Spans: consecutive small buckets joined into one request, as the transfer jobs send them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bucketSize, scheduleBuckets } from '../../src/protocol/buckets.ts';
import { buildChunkPath, parseChunkUrl } from '../../src/protocol/chunk-url.ts';
import type { Bucket, Chunk } from '../../src/protocol/wire.ts';
import { SPAN_UNIT, SpanQueue, addressable, joinChunks, streamOf, type Span, type SpanStream } from '../../src/transfer/spans.ts';

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
  // Every bucket once (the streams interleave, so not in plan order).
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    all,
  );
  assert.ok(spans.length < buckets.length * 0.75, `${spans.length} spans for ${buckets.length} buckets`);
  // Guided: spans shrink to single buckets as the work left runs out.
  assert.equal(spans.at(-1)?.first, spans.at(-1)?.last);
});

test('done buckets are skipped and never joined across', () => {
  const pending = all.filter((i) => i % 5 !== 2);
  const spans = drain(new SpanQueue(buckets, pending, { join: true, maxBytes: MAX }), () => MAX);
  const seen = spans.flatMap((s) => Array.from({ length: s.last - s.first + 1 }, (_, k) => s.first + k));
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    pending,
  );
});

test('without join, or asked for little, every span is one bucket', () => {
  for (const q of [
    new SpanQueue(buckets, all, { join: false, maxBytes: MAX }),
    new SpanQueue(buckets, all, { join: true, maxBytes: MAX }),
  ]) {
    const spans = drain(q, () => 1);
    assert.equal(spans.length, buckets.length);
    assert.ok(spans.every((s) => s.first === s.last));
    assert.deepEqual(
      spans.map((s) => s.first).sort((a, b) => a - b),
      all,
    );
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

// A study's end: many small instances (grouped many to a bucket, planned last), CT-like slices alone in a
// bucket, and two large multi-frame instances split over many buckets.
const mixed = [
  ...Array.from({ length: 40 }, (_, i) => ({ ID: id(1 + i), Size: 700_000 + i })),
  { ID: id(500), Size: 12_000_000 },
  { ID: id(501), Size: 7_000_001 },
  ...Array.from({ length: 900 }, (_, i) => ({ ID: id(10_000 + i), Size: 30_000 + i })),
];
const mixedPlan = scheduleBuckets(mixed, { bucketSize: SPAN_UNIT });

test('the plan falls in three streams: groups of small instances, pieces of split ones, whole ones', () => {
  const kinds = mixedPlan.map((_, i) => streamOf(mixedPlan, i));
  const count = (k: SpanStream): number => kinds.filter((x) => x === k).length;
  assert.equal(count('whole'), 40);
  assert.equal(count('piece'), Math.ceil(12_000_000 / (2 * SPAN_UNIT)) + Math.ceil(7_000_001 / (2 * SPAN_UNIT)));
  assert.equal(count('group'), mixedPlan.length - count('whole') - count('piece'));
  // The plan itself puts every group last: sent in its order, the transfer would end on them alone.
  assert.ok(kinds.indexOf('group') > kinds.lastIndexOf('whole') && kinds.indexOf('group') > kinds.lastIndexOf('piece'));
});

test('spans of small instances and of large ones alternate in proportion to their bytes, to the very end', () => {
  const pending = mixedPlan.map((_, i) => i);
  const q = new SpanQueue(mixedPlan, pending, { join: true, maxBytes: MAX });
  const kind = (i: number): SpanStream => streamOf(mixedPlan, i);
  const total = new Map<SpanStream, number>();
  for (const [i, b] of mixedPlan.entries()) total.set(kind(i), (total.get(kind(i)) ?? 0) + bucketSize(b));
  const handed = new Map<SpanStream, number>([...total.keys()].map((k) => [k, 0]));
  const largestShare = new Map<SpanStream, number>([...total.keys()].map((k) => [k, 0]));
  const order: SpanStream[] = [];
  const seen: number[] = [];
  for (let n = 0; n < 100_000 && !q.empty; n++) {
    // Guided self-scheduling, as the bucket phase asks (8 requests in flight).
    const target = Math.min(MAX, q.bytesLeft / 16);
    const s = q.next(target) as Span;
    const k = kind(s.first);
    for (let i = s.first; i <= s.last; i++) {
      assert.equal(kind(i), k, `span ${s.first}-${s.last} mixes streams`);
      seen.push(i);
    }
    assert.ok(s.first === s.last || s.bytes <= target, `span ${s.first}-${s.last}: ${s.bytes} bytes for ${target} asked`);
    order.push(k);
    handed.set(k, (handed.get(k) ?? 0) + s.bytes);
    largestShare.set(k, Math.max(largestShare.get(k) ?? 0, s.bytes / (total.get(k) as number)));
    // Every stream is as far through its bytes as the others, within one span.
    const shares = [...total.keys()].map((x) => (handed.get(x) as number) / (total.get(x) as number));
    const slack = Math.max(...largestShare.values());
    assert.ok(Math.max(...shares) - Math.min(...shares) <= slack + 1e-9, `after span ${order.length}: shares ${shares.join(', ')}`);
  }
  assert.ok(q.empty);
  assert.equal(q.bytesLeft, 0);
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    pending,
  );
  // Groups of small instances come all along, not in one block at the end: many runs, each short.
  const runs = order.filter((k, i) => k === 'group' && order[i - 1] !== 'group').length;
  assert.ok(runs >= 10, `${runs} runs of group spans in ${order.join(' ')}`);
  // The last tenth of the spans holds small instances and large ones alike.
  const tail = order.slice(-Math.ceil(order.length / 10));
  assert.ok(tail.includes('group') && tail.some((k) => k !== 'group'), `tail: ${tail.join(' ')}`);
  assert.ok(order.slice(0, 3).includes('group'), `start: ${order.slice(0, 3).join(' ')}`);
});

test('a resumed plan interleaves what is left, and a plan of one stream keeps its order', () => {
  const pending = mixedPlan.map((_, i) => i).filter((i) => i % 3 !== 0);
  const spans = drain(new SpanQueue(mixedPlan, pending, { join: true, maxBytes: MAX }), (q) => q.bytesLeft / 16);
  const seen = spans.flatMap((s) => Array.from({ length: s.last - s.first + 1 }, (_, k) => s.first + k));
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    pending,
  );
  for (const s of spans)
    for (let i = s.first; i < s.last; i++) assert.ok(pending.includes(i + 1), `span ${s.first}-${s.last} crosses a done bucket`);
  assert.notDeepEqual(seen, pending, 'interleaved, not in plan order');
  const groupsOnly = scheduleBuckets(
    Array.from({ length: 200 }, (_, i) => ({ ID: id(i + 1), Size: 50_000 })),
    { bucketSize: SPAN_UNIT },
  );
  const only = drain(
    new SpanQueue(
      groupsOnly,
      groupsOnly.map((_, i) => i),
      { join: true, maxBytes: MAX },
    ),
    () => 2 * SPAN_UNIT,
  );
  assert.deepEqual(
    only.map((s) => s.first),
    [...only.map((s) => s.first)].sort((a, b) => a - b),
  );
});
