// Bucket bodies held in memory, read from an embedded store of real DICOM files: their bytes and CRC-32,
// and the payload buffers a push reuses from one request to the next (PayloadBuffers).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { crc32 } from 'node:zlib';
import type { Bucket } from '../../src/protocol/wire.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { bucketBody, type BodyOptions, PayloadBuffers, readBucket } from '../../src/transfer/bucket-body.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';

const FLAIR = join(REAL_DICOM, 'Brainix/Flair');
const NONE: BodyOptions = { compression: 'none', checksum: true, gzip: { level: 6, chunked: true } };

describe('bucket bodies in memory and their reused buffers', { skip: needs(FLAIR) }, () => {
  let dir: string;
  let store: EmbeddedStore;
  /** Instance ID -> the stored file's bytes. */
  const files = new Map<string, Buffer>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-bucket-body-'));
    store = await EmbeddedStore.open(join(dir, 'store'));
    for (const [i, f] of (await listFiles(FLAIR)).slice(0, 6).entries()) {
      const bytes = await readFile(f);
      const copy = join(dir, `in-${i}.dcm`);
      await copyFile(f, copy);
      const r = await store.ingestFile(copy, bytes.length, createHash('md5').update(bytes).digest('hex'));
      files.set(r.ids.instance, bytes);
    }
  });
  after(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A bucket from the middle of the first instance to the middle of the third, and what it must hold. */
  function span(first: number): { bucket: Bucket; bytes: Buffer } {
    const ids = [...files.keys()].slice(first, first + 3);
    const [a, b, c] = ids.map((id) => files.get(id) as Buffer) as [Buffer, Buffer, Buffer];
    const bucket: Bucket = [
      { ID: ids[0] as string, Offset: 1000, Size: a.length - 1000 },
      { ID: ids[1] as string, Offset: 0, Size: b.length },
      { ID: ids[2] as string, Offset: 0, Size: 5000 },
    ];
    return { bucket, bytes: Buffer.concat([a.subarray(1000), b, c.subarray(0, 5000)]) };
  }

  test('a body without compression holds the bucket bytes and their CRC-32, with or without reused buffers', async () => {
    const { bucket, bytes } = span(0);
    const hex = (crc32(bytes) >>> 0).toString(16).padStart(8, '0');
    for (const buffers of [undefined, new PayloadBuffers()]) {
      const made = await bucketBody(store, bucket, NONE, buffers);
      assert.ok(Buffer.isBuffer(made.body));
      assert.ok((made.body as Buffer).equals(bytes));
      assert.equal(made.crc32, hex);
    }
  });

  test('a buffer given back is reused for the next body and holds its bytes, not the ones before', async () => {
    const buffers = new PayloadBuffers();
    const one = span(0);
    const two = span(3);
    const first = await bucketBody(store, one.bucket, NONE, buffers);
    const memory = (first.body as Buffer).buffer;
    first.release?.();
    assert.ok(buffers.held > 0, 'the buffer waits to be reused');
    // Both spans round up to the same size: the second body is read into the first one's memory.
    const second = await bucketBody(store, two.bucket, NONE, buffers);
    assert.equal((second.body as Buffer).buffer, memory);
    assert.equal(buffers.held, 0);
    assert.ok((second.body as Buffer).equals(two.bytes));
    assert.equal(second.crc32, (crc32(two.bytes) >>> 0).toString(16).padStart(8, '0'));
  });

  test('a buffer not given back is never handed out again; giving back twice keeps it once; the pool is bounded', async () => {
    const buffers = new PayloadBuffers(600 * 1024);
    const { bucket } = span(0);
    const kept = await readBucket(store, bucket, buffers);
    const other = await readBucket(store, bucket, buffers);
    assert.notEqual(other.payload.buffer, kept.payload.buffer, 'a buffer in use is not shared');
    kept.give();
    kept.give();
    const held = buffers.held;
    assert.ok(held > 0 && held <= 600 * 1024);
    // The second one does not fit under the bound: it is left to the collector.
    other.give();
    assert.equal(buffers.held, held);
    const a = await readBucket(store, bucket, buffers);
    const b = await readBucket(store, bucket, buffers);
    assert.equal(a.payload.buffer, kept.payload.buffer);
    assert.notEqual(b.payload.buffer, kept.payload.buffer);
  });

  test('a body smaller than the pooled size is its own small buffer and giving it back keeps nothing', async () => {
    const buffers = new PayloadBuffers();
    const id = [...files.keys()][0] as string;
    const small = await readBucket(store, [{ ID: id, Offset: 128, Size: 4096 }], buffers);
    assert.ok(small.payload.equals((files.get(id) as Buffer).subarray(128, 128 + 4096)));
    small.give();
    assert.equal(buffers.held, 0);
  });
});
