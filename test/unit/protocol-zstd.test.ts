// zstd bodies (extension zstd): a frame made by zstdCompress declares its content size and decodes to the
// payload; whatever does not match the payload it stands for (no content size, another size, a second frame,
// trailing bytes, damage) is refused with BadFileFormat, the size before anything is decoded.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { Encoder } from '@toondepauw/node-zstd';
import { isXferError } from '../../src/errors.ts';
import {
  ZSTD_MAX_PAYLOAD,
  ZSTD_TASKS,
  ZstdOneFrame,
  checkZstdFrame,
  zstdCompress,
  zstdDecompress,
  zstdTasks,
} from '../../src/protocol/zstd.ts';
import { wireCompression } from '../../src/transfer/adaptive/gzip-level.ts';
import { REAL_DICOM, describe, listFilesSync, needs } from '../helpers/data.ts';

const corrupt = (e: unknown, details: RegExp): boolean => {
  assert.ok(isXferError(e, 'BadFileFormat'), String(e));
  assert.match(e.details ?? e.message, details);
  return true;
};

/** Feeds `data` in pieces of `piece` bytes through a ZstdOneFrame for `expected` bytes; the output. */
async function throughStream(data: Buffer, expected: number, piece: number): Promise<Buffer> {
  const out: Buffer[] = [];
  function* pieces() {
    for (let i = 0; i < data.length; i += piece) yield data.subarray(i, i + piece);
  }
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk);
      cb();
    },
  });
  await pipeline(Readable.from(pieces()), new ZstdOneFrame(expected), sink);
  return Buffer.concat(out);
}

/** Where the content of the first compressed block of a frame made by zstdCompress is (RFC 8878, 3.1.1). */
function firstCompressedBlock(frame: Buffer): { start: number; end: number } {
  const fhd = frame[4] as number;
  const single = (fhd & 0x20) !== 0;
  const fcs = fhd >> 6 === 0 ? (single ? 1 : 0) : 1 << (fhd >> 6);
  let at = 5 + (single ? 0 : 1) + fcs;
  for (let guard = 0; guard < 10_000 && at + 3 <= frame.length; guard++) {
    const bh = (frame[at] as number) | ((frame[at + 1] as number) << 8) | ((frame[at + 2] as number) << 16);
    const size = bh >>> 3;
    if (((bh >> 1) & 3) === 2) return { start: at + 3, end: at + 3 + size };
    at += 3 + (((bh >> 1) & 3) === 1 ? 1 : size);
  }
  throw new Error('no compressed block in the frame');
}

describe('zstd frames of real DICOM', { skip: needs(REAL_DICOM) }, () => {
  const dicom = () => readFileSync(join(REAL_DICOM, 'PrivateTags.dcm'));

  test('a frame declares its content size, decodes to the payload, and is smaller', async () => {
    const payload = dicom();
    for (const level of [1, 3, 9]) {
      const frame = await zstdCompress(payload, level);
      assert.deepEqual([...frame.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
      assert.ok(frame.length < payload.length, `level ${level}: ${frame.length} of ${payload.length}`);
      checkZstdFrame(frame, payload.length);
      assert.ok((await zstdDecompress(frame, payload.length)).equals(payload));
      // Streamed in small pieces, as a request body arrives.
      assert.ok((await throughStream(frame, payload.length, 1000)).equals(payload));
    }
    const empty = await zstdCompress(Buffer.alloc(0), 1);
    assert.equal((await zstdDecompress(empty, 0)).length, 0);
  });

  test('a frame for another size, without a size, with more after it, or cut short is refused before decoding', async () => {
    const payload = dicom();
    const frame = await zstdCompress(payload, 1);
    await assert.rejects(zstdDecompress(frame, payload.length - 1), (e) => corrupt(e, /declares \d+ bytes where the payload has/));
    await assert.rejects(zstdDecompress(frame, payload.length + 1), (e) => corrupt(e, /declares/));
    // The encoder's own frame leaves the size out: refused, as a zip bomb could not be bounded.
    const bare = new Encoder(1).encodeSync(payload);
    await assert.rejects(zstdDecompress(bare, payload.length), (e) => corrupt(e, /does not declare its content size/));
    await assert.rejects(zstdDecompress(Buffer.concat([frame, frame]), payload.length), (e) => corrupt(e, /after the zstd frame/));
    await assert.rejects(zstdDecompress(Buffer.concat([frame, Buffer.from([0])]), payload.length), (e) => corrupt(e, /after/));
    await assert.rejects(zstdDecompress(frame.subarray(0, frame.length - 10), payload.length), (e) => corrupt(e, /truncated/));
    await assert.rejects(zstdDecompress(Buffer.from('not zstd at all'), payload.length), (e) => corrupt(e, /magic/));
    // A skippable frame is not a frame we read.
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]), frame]);
    await assert.rejects(zstdDecompress(skippable, payload.length), (e) => corrupt(e, /magic/));
  });

  test('as a stream: a header declaring more than the span fails as soon as it arrives, and so does an oversized body', async () => {
    const payload = dicom();
    // A header that declares 1 TiB, followed by bytes no decoder ever sees: refused on the header alone.
    const frame = await zstdCompress(payload, 1);
    const huge = Buffer.from(frame);
    huge.writeUInt32LE(0, 6);
    huge[4] = ((huge[4] as number) & 0x3f) | (3 << 6);
    const bomb = Buffer.concat([huge.subarray(0, 6), Buffer.from([0, 0, 0, 0, 0, 1, 0, 0]), Buffer.alloc(64 * 1024)]);
    await assert.rejects(throughStream(bomb, payload.length, 16), (e) => corrupt(e, /declares 1099511627776 bytes/));
    // A body far larger than any frame of the payload: refused before it is all held.
    const big = Buffer.concat([frame, Buffer.alloc(payload.length * 2)]);
    await assert.rejects(throughStream(big, payload.length, 64 * 1024), (e) => corrupt(e, /a body of more than/));
  });

  test('a frame damaged in its blocks is refused (or, decoding to other bytes, left to the CRC-32)', async () => {
    const payload = dicom();
    const frame = await zstdCompress(payload, 1);
    let refused = 0;
    // Forty bytes past the header flipped in turn: each is refused, or decodes to other bytes (which the
    // CRC-32 of the span then refuses), never to the payload unnoticed.
    const step = Math.floor((frame.length - 20) / 40);
    for (let at = 20; at < frame.length; at += step) {
      const bad = Buffer.from(frame);
      bad[at] = (bad[at] as number) ^ 0xff;
      try {
        const out = await zstdDecompress(bad, payload.length);
        assert.equal(out.length, payload.length);
        assert.ok(!out.equals(payload), `byte ${at} flipped, the same payload`);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(isXferError(e, 'BadFileFormat'), String(e));
        refused++;
      }
    }
    assert.ok(refused > 0, 'some damage is found by the frame itself');
  });

  test('many bodies at once: at most ZSTD_TASKS pool threads, each body round-trips, a damaged one frees its slot', async () => {
    // Real files, more of them than the slots, compressed and decoded at once as requests in flight are.
    const payloads = listFilesSync(REAL_DICOM)
      .filter((f) => statSync(f).size >= 64 * 1024 && statSync(f).size <= 4 * 1024 * 1024)
      .slice(0, 4 * ZSTD_TASKS + 3)
      .map((f) => readFileSync(f));
    assert.ok(payloads.length > ZSTD_TASKS, `${payloads.length} files`);
    const framing = payloads.map((p, i) => zstdCompress(p, 1 + (i % 3)));
    // The calls past the slots wait their turn, off the thread pool.
    assert.deepEqual(zstdTasks(), { running: ZSTD_TASKS, queued: payloads.length - ZSTD_TASKS });
    const frames = await Promise.all(framing);
    assert.deepEqual(zstdTasks(), { running: 0, queued: 0 });
    // One frame damaged past its header, one cut short, among the good ones decoded at once.
    // The first compressed block's content overwritten: the frame passes the check, the decoder refuses it.
    const damaged = Buffer.from(frames[0] as Buffer);
    const block = firstCompressedBlock(damaged);
    damaged.fill(0xff, block.start, block.end);
    const inputs = [damaged, (frames[1] as Buffer).subarray(0, 40), ...frames.slice(2)];
    const results = await Promise.allSettled(inputs.map((f, i) => zstdDecompress(f, (payloads[i] as Buffer).length)));
    for (const [i, r] of results.entries()) {
      if (i < 2) {
        assert.equal(r.status, 'rejected', `body ${i} is damaged`);
        if (r.status === 'rejected') assert.ok(isXferError(r.reason, 'BadFileFormat'), String(r.reason));
      } else {
        assert.equal(r.status, 'fulfilled', `body ${i}`);
        if (r.status === 'fulfilled') assert.ok(r.value.equals(payloads[i] as Buffer), `body ${i} decodes to its file`);
      }
    }
    // Every slot is free again: a failed call does not keep one.
    assert.deepEqual(zstdTasks(), { running: 0, queued: 0 });
    assert.ok((await zstdDecompress(frames[2] as Buffer, (payloads[2] as Buffer).length)).equals(payloads[2] as Buffer));
  });
});

test('a zstd body holds at most ZSTD_MAX_PAYLOAD bytes: a larger span is refused before a byte is read, and a sender uses gzip', () => {
  assert.throws(
    () => new ZstdOneFrame(ZSTD_MAX_PAYLOAD + 1),
    (e) => isXferError(e, 'ParameterOutOfRange') && /at most 67108864 payload bytes/.test(e.details ?? ''),
  );
  assert.doesNotThrow(() => new ZstdOneFrame(ZSTD_MAX_PAYLOAD));
  assert.equal(wireCompression('gzip', true, ZSTD_MAX_PAYLOAD), 'zstd');
  assert.equal(wireCompression('gzip', true, ZSTD_MAX_PAYLOAD + 1), 'gzip');
  assert.equal(wireCompression('zstd', true, ZSTD_MAX_PAYLOAD + 1), 'gzip');
});
