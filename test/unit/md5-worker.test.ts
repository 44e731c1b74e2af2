// The MD5 worker thread: running hashes fed with file ranges, one per key, equal to a hash of the same
// bytes on the main thread; an unreadable file refuses its call and the worker goes on with the next.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Md5Worker } from '../../src/transfer/md5-worker.ts';
import { REAL_DICOM, needs } from '../helpers/data.ts';

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

test('hashes of file ranges, fed in order per key, match the bytes hashed at once', { skip: needs(REAL_DICOM) }, async () => {
  const dir = join(REAL_DICOM, 'Knee/T1');
  const files = (await readdir(dir))
    .sort()
    .slice(0, 3)
    .map((f) => join(dir, f));
  const w = new Md5Worker();
  // Two files hashed at once under two keys, their ranges interleaved: each key keeps its own hash.
  const [a, b] = [files[0] as string, files[1] as string];
  const [ba, bb] = [await readFile(a), await readFile(b)];
  const [ka, kb] = [w.newKey(), w.newKey()];
  const cut = (n: number) => Math.floor(n / 3);
  const steps = [
    w.hash(ka, a, 0, cut(ba.length), false),
    w.hash(kb, b, 0, cut(bb.length), false),
    w.hash(ka, a, cut(ba.length), ba.length, false),
    w.hash(kb, b, cut(bb.length), bb.length, false),
  ];
  await Promise.all(steps);
  assert.equal(await w.hash(ka, a, 0, 0, true), md5(ba));
  assert.equal(await w.hash(kb, b, 0, 0, true), md5(bb));
  // A whole file in one call, and a range inside it.
  const c = files[2] as string;
  const bc = await readFile(c);
  assert.equal(await w.hash(w.newKey(), c, 0, bc.length, true), md5(bc));
  assert.equal(await w.hash(w.newKey(), c, 100, 1000, true), md5(bc.subarray(100, 1000)));
});

test('a missing file or a range past its end is refused, and the worker answers the next call', { skip: needs(REAL_DICOM) }, async () => {
  const dir = join(REAL_DICOM, 'Knee/T1');
  const f = join(dir, (await readdir(dir)).sort()[0] as string);
  const bytes = await readFile(f);
  const w = new Md5Worker();
  await assert.rejects(w.hash(w.newKey(), join(dir, 'no-such-file'), 0, 10, true), /ENOENT/);
  await assert.rejects(w.hash(w.newKey(), f, 0, bytes.length + 10, true), /ends at/);
  assert.equal(await w.hash(w.newKey(), f, 0, bytes.length, true), md5(bytes));
  // Asked in one turn (one message to the worker): each call gets its own answer, a failed one alone refused.
  const together = [
    w.hash(w.newKey(), f, 0, bytes.length, true),
    w.hash(w.newKey(), join(dir, 'no-such-file'), 0, 10, true),
    w.hash(w.newKey(), f, 10, 20, true),
  ];
  const settled = await Promise.allSettled(together);
  assert.deepEqual(settled[0], { status: 'fulfilled', value: md5(bytes) });
  assert.equal(settled[1]?.status, 'rejected');
  assert.deepEqual(settled[2], { status: 'fulfilled', value: md5(bytes.subarray(10, 20)) });
});
