// Request bodies with a Content-Encoding: which codings are taken, gzip inflated as a stream into the same
// bytes, a body that does not inflate refused 400 wherever it breaks (never a bare zlib error), a gzip bomb
// refused 413 after a bounded amount, the body's own failure passed on, and an early stop that ends the feed.
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import { bodyCoding, decodedBody, INFLATE_RATIO_FLOOR } from '../../src/server/content-encoding.ts';
import { isXferError, XferError } from '../../src/errors.ts';

/** Deterministic bytes that compress about 2:1 (a byte of noise, a byte of zero). */
function payload(n: number): Buffer {
  const b = Buffer.alloc(n);
  let s = 1;
  for (let i = 0; i < n; i += 2) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

async function* pieces(b: Buffer, size = 64 * 1024, onEnd?: () => void): AsyncGenerator<Buffer> {
  try {
    for (let at = 0; at < b.length; at += size) yield b.subarray(at, at + size);
  } finally {
    onEnd?.();
  }
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

describe('bodyCoding', () => {
  test('none, identity, gzip and x-gzip are taken; anything else is 415', () => {
    assert.equal(bodyCoding({}), 'identity');
    assert.equal(bodyCoding({ 'content-encoding': '' }), 'identity');
    assert.equal(bodyCoding({ 'content-encoding': 'identity' }), 'identity');
    assert.equal(bodyCoding({ 'content-encoding': 'gzip' }), 'gzip');
    assert.equal(bodyCoding({ 'content-encoding': 'GZip ' }), 'gzip');
    assert.equal(bodyCoding({ 'content-encoding': 'x-gzip' }), 'gzip');
    assert.equal(bodyCoding({ 'content-encoding': 'identity, gzip' }), 'gzip');
    for (const bad of ['br', 'deflate', 'gzip, gzip', 'gzip, br', 'compress']) {
      assert.throws(
        () => bodyCoding({ 'content-encoding': bad }),
        (e: unknown) => isXferError(e) && e.http === 415 && /unsupported Content-Encoding/.test(e.message),
        bad,
      );
    }
  });
});

describe('decodedBody', () => {
  test('gzip inflates to the same bytes, whatever the pieces; identity passes them as they are', async () => {
    const data = payload(5 * 1024 * 1024 + 17);
    const gz = gzipSync(data);
    for (const size of [1000, 64 * 1024, 1024 * 1024]) {
      assert.ok((await collect(decodedBody('gzip', pieces(gz, size), { maxRatio: 200 }))).equals(data), `pieces of ${size}`);
    }
    assert.ok((await collect(decodedBody('identity', pieces(data)))).equals(data));
  });

  test('a body that breaks anywhere is BadRequest 400, never a bare zlib error', async () => {
    const gz = gzipSync(payload(4 * 1024 * 1024));
    for (const at of [0, 5, 100, 70_000, 1_000_000, gz.length - 6]) {
      const broken = Buffer.from(gz);
      broken.fill(0xff, at, Math.min(at + 64, broken.length));
      await assert.rejects(
        collect(decodedBody('gzip', pieces(broken), { maxRatio: 0 })),
        (e: unknown) => isXferError(e, 'BadRequest') && e.http === 400 && /cannot be inflated/.test(e.message),
        `damaged at ${at}`,
      );
    }
    // Cut short.
    await assert.rejects(collect(decodedBody('gzip', pieces(gz.subarray(0, gz.length - 100)))), (e: unknown) =>
      isXferError(e, 'BadRequest'),
    );
  });

  test('a gzip bomb is refused 413 once past the floor, having yielded little more than the floor', async () => {
    const member = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
    const bomb = Buffer.concat(Array.from({ length: 2048 }, () => member)); // 2 GiB inflated
    let yielded = 0;
    await assert.rejects(
      (async () => {
        for await (const p of decodedBody('gzip', pieces(bomb), { maxRatio: 200 })) yielded += p.length;
      })(),
      (e: unknown) => isXferError(e) && e.http === 413 && /inflates more than 200 times/.test(e.message),
    );
    assert.ok(yielded <= INFLATE_RATIO_FLOOR + 1024 * 1024, `${yielded} bytes yielded`);
    // Without a ratio limit the same bytes inflate (the caller's size limit is then what stops them).
    let all = 0;
    for await (const p of decodedBody('gzip', pieces(bomb.subarray(0, member.length * 40)), { maxRatio: 0 })) all += p.length;
    assert.equal(all, 40 * 1024 * 1024);
  });

  test('a failure of the body itself is passed on as it is', async () => {
    const gz = gzipSync(payload(2 * 1024 * 1024));
    async function* failing(): AsyncGenerator<Buffer> {
      yield gz.subarray(0, 100_000);
      throw new XferError('Timeout', 'no data received for 1 s', { httpStatus: 408 });
    }
    await assert.rejects(collect(decodedBody('gzip', failing())), (e: unknown) => isXferError(e, 'Timeout') && e.http === 408);
  });

  test('a reader that stops early ends the feed: the body is let go', async () => {
    const gz = gzipSync(payload(8 * 1024 * 1024));
    let released!: () => void;
    const sourceDone = new Promise<void>((r) => (released = r));
    for await (const p of decodedBody(
      'gzip',
      pieces(gz, 64 * 1024, () => released()),
    )) {
      assert.ok(p.length > 0);
      break;
    }
    await sourceDone;
  });
});
