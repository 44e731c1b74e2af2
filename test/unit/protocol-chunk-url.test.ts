// Chunk URLs: the strings of docs/protocol.md#chunk-urls and the plugin's unit tests, parsing back with
// Orthanc's error codes, and the byte-range walk of docs/protocol.md#chunks checked against a captured chunk
// answer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isXferError, type ErrorCode } from '../../src/errors.ts';
import {
  ChunkWalk,
  buildChunkPath,
  chunkPathLength,
  parseChunkIds,
  parseChunkQuery,
  parseChunkUrl,
  planChunkRanges,
} from '../../src/protocol/chunk-url.ts';
import { scheduleBuckets, DEFAULT_BUCKET_SIZE } from '../../src/protocol/buckets.ts';
import { parseLookupAnswer, type Bucket } from '../../src/protocol/wire.ts';
import { CAPTURES, describe, needs } from '../helpers/data.ts';

function throwsCode(fn: () => unknown, code: ErrorCode, http: number): void {
  assert.throws(fn, (e: unknown) => isXferError(e, code) && e.http === http);
}

const d1d2d3: Bucket = [
  { ID: 'd1', Offset: 5, Size: 5 },
  { ID: 'd2', Offset: 0, Size: 20 },
  { ID: 'd3', Offset: 0, Size: 7 },
];

describe('building chunk URLs', () => {
  test('the plugin unit-test strings', () => {
    assert.equal(buildChunkPath(d1d2d3, 'none'), '/transfers/chunks/d1.d2.d3?offset=5&size=32&compression=none');
    assert.equal(buildChunkPath(d1d2d3, 'gzip'), '/transfers/chunks/d1.d2.d3?offset=5&size=32&compression=gzip');
    const whole: Bucket = [
      { ID: 'd1', Offset: 0, Size: 10 },
      { ID: 'd2', Offset: 0, Size: 20 },
      { ID: 'd3', Offset: 0, Size: 30 },
    ];
    assert.equal(buildChunkPath(whole, 'none'), '/transfers/chunks/d1.d2.d3?offset=0&size=60&compression=none');
  });

  test('chunkPathLength equals the built length', () => {
    for (const b of [d1d2d3, [{ ID: 'e768b558-70ef06ab-a7b8e24e-372d4db9-efada411', Offset: 128297520, Size: 8018596 }]]) {
      for (const c of ['none', 'gzip'] as const) assert.equal(chunkPathLength(b, c), buildChunkPath(b, c).length);
    }
  });

  test('an empty bucket or a later chunk inside its instance cannot be addressed', () => {
    assert.throws(
      () => buildChunkPath([], 'none'),
      (e) => isXferError(e, 'InternalError'),
    );
    assert.throws(
      () =>
        buildChunkPath(
          [
            { ID: 'a', Offset: 0, Size: 1 },
            { ID: 'b', Offset: 1, Size: 1 },
          ],
          'none',
        ),
      (e) => isXferError(e, 'InternalError'),
    );
  });

  test('offsets past 2 GiB are written in full', () => {
    assert.equal(
      buildChunkPath([{ ID: 'ab', Offset: 6_000_000_000, Size: 8_388_608 }], 'gzip'),
      '/transfers/chunks/ab?offset=6000000000&size=8388608&compression=gzip',
    );
  });
});

describe('parsing chunk URLs', { skip: needs(CAPTURES) }, () => {
  test('round trip of the unit-test URL and the captured URLs', () => {
    assert.deepEqual(parseChunkUrl('/transfers/chunks/d1.d2.d3?offset=5&size=32&compression=none'), {
      ids: ['d1', 'd2', 'd3'],
      offset: 5,
      size: 32,
      compression: 'none',
    });
    const two = 'dd3d63c3-43519b7e-45a429ed-7cfe6726-e3a6e086.4bc35b95-0e358f9d-214003e9-64a0a85d-8132be38';
    // The hand-made requests of CAPTURES §6, including the one without arguments.
    assert.deepEqual(parseChunkUrl(`http://127.0.0.1:18042/transfers/chunks/${two}?offset=1000&size=100000&compression=gzip`), {
      ids: two.split('.'),
      offset: 1000,
      size: 100000,
      compression: 'gzip',
    });
    assert.deepEqual(parseChunkUrl(`/transfers/chunks/${two}`), { ids: two.split('.'), offset: 0, size: 0, compression: 'none' });
    // As an Orthanc puller sends it: peer URL + URI, hence `//`.
    const big = 'e768b558-70ef06ab-a7b8e24e-372d4db9-efada411';
    assert.deepEqual(parseChunkUrl(`http://127.0.0.1:18142//transfers/chunks/${big}?offset=128297520&size=8018596&compression=gzip`), {
      ids: [big],
      offset: 128297520,
      size: 8018596,
      compression: 'gzip',
    });
  });

  test('ids must be lowercase hex and dashes, else 404', () => {
    assert.deepEqual(parseChunkIds('ab-12.cd'), ['ab-12', 'cd']);
    for (const bad of ['nonexistent', 'AB12', 'a..b', '.a', 'a.', '', 'a%2e', 'a/b', 'a b']) {
      throwsCode(() => parseChunkIds(bad), 'UnknownResource', 404);
    }
    throwsCode(() => parseChunkUrl('/transfers/push/ab'), 'UnknownResource', 404);
  });

  test('offset and size: non-negative integers, up to 2^53 - 1; garbage is BadParameterType 400', () => {
    assert.deepEqual(parseChunkQuery('offset=2147483648&size=4294967296'), { offset: 2147483648, size: 4294967296, compression: 'none' });
    assert.equal(parseChunkQuery('?offset=9007199254740991').offset, 2 ** 53 - 1);
    assert.equal(parseChunkQuery('offset=007').offset, 7);
    for (const bad of [
      'offset=abc',
      'offset=-1',
      'size=-5',
      'size=',
      'offset=1.5',
      'size=1e3',
      'offset=0x10',
      'offset=9007199254740992',
      'offset=%201',
      'size=+1',
    ]) {
      throwsCode(() => parseChunkQuery(bad), 'BadParameterType', 400);
    }
  });

  test('compression: none or gzip, else ParameterOutOfRange 400; unknown parameters ignored', () => {
    assert.equal(parseChunkQuery('compression=gzip').compression, 'gzip');
    assert.equal(parseChunkQuery('').compression, 'none');
    for (const bad of ['compression=None', 'compression=bzip2', 'compression='])
      throwsCode(() => parseChunkQuery(bad), 'ParameterOutOfRange', 400);
    assert.deepEqual(parseChunkQuery('foo=bar&offset=3&x'), { offset: 3, size: 0, compression: 'none' });
  });

  test('repeated parameters: each is checked, the last counts', () => {
    assert.equal(parseChunkQuery('offset=1&offset=2').offset, 2);
    throwsCode(() => parseChunkQuery('offset=x&offset=2'), 'BadParameterType', 400);
    assert.equal(parseChunkQuery({ offset: ['1', '9'], size: '4', other: 'y' }).offset, 9);
    assert.deepEqual(parseChunkQuery(new URLSearchParams({ size: '12', compression: 'gzip' })), {
      offset: 0,
      size: 12,
      compression: 'gzip',
    });
  });
});

describe('the chunk walk', { skip: needs(CAPTURES) }, () => {
  const sizes = [
    { ID: 'd1', Size: 10 },
    { ID: 'd2', Size: 20 },
    { ID: 'd3', Size: 30 },
  ];
  const ranges = (offset: number, size: number) => planChunkRanges(sizes, offset, size).map((r) => `${r.ID}[${r.start},${r.end})`);

  test('the plugin unit-test bucket: d1 from 5, all d2, 7 bytes of d3', () => {
    assert.deepEqual(ranges(5, 32), ['d1[5,10)', 'd2[0,20)', 'd3[0,7)']);
  });

  test('size 0 means to the end of the last instance', () => {
    assert.deepEqual(ranges(0, 0), ['d1[0,10)', 'd2[0,20)', 'd3[0,30)']);
    assert.deepEqual(ranges(15, 0), ['d2[5,20)', 'd3[0,30)']);
  });

  test('an offset past whole instances skips them; exactly at a boundary starts the next', () => {
    assert.deepEqual(ranges(10, 5), ['d2[0,5)']);
    assert.deepEqual(ranges(30, 100), ['d3[0,30)']);
    assert.deepEqual(ranges(29, 2), ['d2[19,20)', 'd3[0,1)']);
  });

  test('ranges past the data simply end early', () => {
    assert.deepEqual(ranges(55, 100), ['d3[25,30)']);
    assert.deepEqual(ranges(60, 1), []);
    assert.deepEqual(ranges(1000, 0), []);
  });

  test('instances after the last needed one are not visited', () => {
    const walk = new ChunkWalk(0, 10);
    assert.deepEqual(walk.visit('d1', 10), { ID: 'd1', start: 0, end: 10 });
    assert.equal(walk.done, true);
    assert.equal(walk.visit('d2', 20), undefined);
    assert.equal(walk.taken, 10);
    const unlimited = new ChunkWalk(0, 0);
    unlimited.visit('d1', 10);
    assert.equal(unlimited.done, false);
  });

  test('zero-length instances contribute nothing', () => {
    assert.deepEqual(
      planChunkRanges(
        [
          { ID: 'z', Size: 0 },
          { ID: 'a', Size: 4 },
        ],
        0,
        0,
      ),
      [{ ID: 'a', start: 0, end: 4 }],
    );
  });

  test('offsets and sizes past 4 GiB', () => {
    const big = [
      { ID: 'a', Size: 5 * 2 ** 30 },
      { ID: 'b', Size: 6 * 2 ** 30 },
    ];
    assert.deepEqual(planChunkRanges(big, 5 * 2 ** 30 - 10, 2 ** 32), [
      { ID: 'a', start: 5 * 2 ** 30 - 10, end: 5 * 2 ** 30 },
      { ID: 'b', start: 0, end: 2 ** 32 - 10 },
    ]);
  });

  test('the captured 8-instance chunk answer is the walk over the scheduled bucket', () => {
    // Bucket 1 of the captured Knee pull; its answer 18142-0003 holds 8 whole instances whose MD5s the lookup gives.
    const lookup = parseLookupAnswer(JSON.parse(readFileSync(`${CAPTURES}/18142-0002-POST-resp.bin`, 'utf8')));
    const bucket = scheduleBuckets(lookup.Instances, {
      bucketSize: DEFAULT_BUCKET_SIZE,
      pullBaseUrl: 'http://127.0.0.1:18142/',
    })[1] as Bucket;
    const req = parseChunkUrl(buildChunkPath(bucket, 'none'));
    const byId = new Map(lookup.Instances.map((i) => [i.ID, i]));
    const plan = planChunkRanges(
      req.ids.map((id) => ({ ID: id, Size: byId.get(id)?.Size ?? -1 })),
      req.offset,
      req.size,
    );
    assert.equal(plan.length, 8);
    const payload = readFileSync(`${CAPTURES}/18142-0003-GET-resp.bin`);
    let at = 0;
    for (const r of plan) {
      const bytes = payload.subarray(at, at + (r.end - r.start));
      at += r.end - r.start;
      assert.equal(createHash('md5').update(bytes).digest('hex'), byId.get(r.ID)?.MD5, r.ID);
    }
    assert.equal(at, payload.length);
  });
});
