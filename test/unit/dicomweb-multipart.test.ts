// The multipart/related reader and writer of src/dicomweb/multipart.ts: what the writer makes the reader gives
// back whatever the pieces the bytes arrive in, parts left unread are skipped, and broken bodies are refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  multipartContentType,
  newBoundary,
  parseMultipartType,
  readMultipart,
  writeMultipart,
  type OutgoingPart,
} from '../../src/dicomweb/multipart.ts';
import { isXferError } from '../../src/errors.ts';

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const p of source) pieces.push(Buffer.from(p));
  return Buffer.concat(pieces);
}

/** The bytes in pieces of `size` (the last one shorter). */
async function* inPieces(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function readAll(bytes: Buffer, boundary: string, size: number) {
  const out: { headers: Record<string, string>; body: Buffer }[] = [];
  for await (const part of readMultipart(inPieces(bytes, size), boundary))
    out.push({ headers: part.headers, body: await collect(part.body) });
  return out;
}

test('what the writer writes, the reader gives back, whatever the size of the pieces', async () => {
  const boundary = newBoundary();
  // Bodies that hold CRLF, dashes and most of the boundary, to tempt a wrong cut.
  const bodies = [randomBytes(100_000), Buffer.alloc(0), Buffer.from(`\r\n--${boundary.slice(0, -1)}x\r\n--`), randomBytes(3)];
  const parts: OutgoingPart[] = bodies.map((b, i) => ({ headers: { 'Content-Type': 'application/dicom', 'X-Index': String(i) }, body: b }));
  const bytes = await collect(writeMultipart(parts, boundary));
  for (const size of [1, 7, boundary.length + 3, 65_536, bytes.length]) {
    const read = await readAll(bytes, boundary, size);
    assert.equal(read.length, bodies.length, `pieces of ${size}`);
    for (const [i, p] of read.entries()) {
      assert.deepEqual(p.body, bodies[i], `part ${i}, pieces of ${size}`);
      assert.equal(p.headers['x-index'], String(i));
      assert.equal(p.headers['content-type'], 'application/dicom');
    }
  }
  assert.deepEqual(parseMultipartType(multipartContentType('application/dicom', boundary)), {
    boundary,
    type: 'application/dicom',
    transferSyntax: undefined,
  });
});

test('a part left unread, or read in part, is skipped; a preamble and transport padding are allowed', async () => {
  const b = 'simple';
  const bytes = Buffer.from(
    `preamble\r\n--${b}  \r\nA: 1\r\n\r\nfirst part\r\n--${b}\r\nA: 2\r\n\r\nsecond\r\n--${b}\r\n\r\nthird\r\n--${b}--`,
  );
  const seen: string[] = [];
  let i = 0;
  for await (const part of readMultipart(inPieces(bytes, 3), b)) {
    i++;
    if (i === 1) {
      for await (const piece of part.body) {
        seen.push(`1:${piece.toString()}`);
        break;
      }
    } else if (i === 3) seen.push(`3:${(await collect(part.body)).toString()}`);
  }
  assert.equal(i, 3);
  assert.equal(seen[0], '1:fir');
  assert.equal(seen[1], '3:third');
});

test('broken bodies are refused with BadRequest: no boundary, no closing boundary, headers too long, a bad header', async () => {
  const b = 'bnd';
  const cases = [
    'no boundary at all',
    `--${b}\r\nA: 1\r\n\r\nbody that never ends`,
    `--${b}\r\n${'X'.repeat(20_000)}`,
    `--${b}\r\nno colon here\r\n\r\nbody\r\n--${b}--`,
    `--${b}garbage\r\n\r\nbody\r\n--${b}--`,
    '',
  ];
  for (const c of cases) {
    await assert.rejects(readAll(Buffer.from(c), b, 5), (e: unknown) => isXferError(e) && e.http === 400, JSON.stringify(c.slice(0, 40)));
  }
  assert.throws(
    () => parseMultipartType('application/dicom'),
    (e: unknown) => isXferError(e) && e.http === 415,
  );
  assert.throws(
    () => parseMultipartType('multipart/related; type="application/dicom"'),
    (e: unknown) => isXferError(e) && e.http === 400,
  );
});
