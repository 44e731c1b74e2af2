// Bucket compression: gzip out as an Orthanc peer writes it, exactly one gzip member in, the length check
// of docs/protocol.md#compression, and the real gzip buckets of the captures rebuilt into instances with the
// right MD5s.

import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { isXferError, type ErrorCode } from '../../src/errors.ts';
import {
  ByteCounter,
  GunzipOneMember,
  createGunzipStream,
  createGzipStream,
  createLengthCheck,
  gunzipBuffer,
  gzipBuffer,
} from '../../src/protocol/compression.ts';
import { DEFAULT_BUCKET_SIZE, bucketSize, payloadLayout, scheduleBuckets } from '../../src/protocol/buckets.ts';
import { parseLookupAnswer, parsePushCreate, type Bucket, type InstanceInfo } from '../../src/protocol/wire.ts';
import { CAPTURES, describe, needs, REAL_DICOM } from '../helpers/data.ts';

// Empty without the shared data (the suites that need it are skipped then).
const readReal = (name: string): Buffer => (needs(REAL_DICOM) ? Buffer.alloc(0) : readFileSync(join(REAL_DICOM, name)));
const DICOM_A = readReal('Issue164.dcm');
const DICOM_B = readReal('PrivateTags.dcm');

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

/** Feeds `data` in pieces of `piece` bytes through `transforms` and collects the output. */
async function run(data: Uint8Array, piece: number, ...transforms: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const out: Buffer[] = [];
  function* pieces() {
    for (let i = 0; i < data.length; i += piece) yield Buffer.from(data.subarray(i, i + piece));
  }
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk);
      cb();
    },
  });
  await pipeline([Readable.from(pieces()), ...transforms, sink]);
  return Buffer.concat(out);
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, http: number): Promise<XferErrorLike> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    return isXferError(e, code) && e.http === http;
  });
  return caught as XferErrorLike;
}
type XferErrorLike = { details: string | undefined };

/** Rebuilds the instances a bucket payload carries: instance ID -> its bytes in this payload. */
function splitPayload(bucket: Bucket, payload: Buffer): Map<string, Buffer> {
  const parts = new Map<string, Buffer>();
  for (const c of payloadLayout(bucket)) parts.set(c.ID, payload.subarray(c.payloadOffset, c.payloadOffset + c.Size));
  return parts;
}

describe('gzip out', { skip: needs(REAL_DICOM, CAPTURES) }, () => {
  test('the header is the one the plugin sends: 1f8b 0800 00000000 00 03', async () => {
    const gz = await run(DICOM_A.subarray(0, 100000), 8192, createGzipStream());
    const captured = readFileSync(`${CAPTURES}/18143-0004-PUT-req.bin`);
    assert.equal(gz.subarray(0, 10).toString('hex'), '1f8b0800000000000003');
    assert.equal(captured.subarray(0, 10).toString('hex'), '1f8b0800000000000003');
  });

  test('one member, readable by zlib and by our gunzip, at several levels', async () => {
    for (const level of [0, 1, 6, 9]) {
      const gz = await run(DICOM_A, 65536, createGzipStream(level));
      assert.deepEqual(zlib.gunzipSync(gz), DICOM_A);
      assert.deepEqual(await gunzipBuffer(gz), DICOM_A);
    }
    assert.throws(
      () => createGzipStream(10),
      (e) => isXferError(e, 'ParameterOutOfRange'),
    );
  });
});

describe('gunzip in: exactly one member', { skip: needs(REAL_DICOM) }, () => {
  test('streams real DICOM bytes written in pieces of every size, header and trailer split', async () => {
    // Each write is one trip to zlib's thread pool, so the tiny pieces go over a smaller slice.
    const part = DICOM_B.subarray(0, 40000);
    const gzPart = gzipBuffer(part);
    for (const piece of [3, 7, 10, 11]) assert.deepEqual(await run(gzPart, piece, createGunzipStream()), part, `pieces of ${piece}`);
    const gz = gzipBuffer(DICOM_B);
    for (const piece of [4096, 65536, gz.length]) {
      const out = await run(gz, piece, createGunzipStream());
      assert.equal(md5(out), md5(DICOM_B), `pieces of ${piece}`);
    }
    // A small member fed one byte at a time, so that header, data and trailer all arrive byte by byte.
    const small = gzipBuffer(DICOM_B.subarray(0, 3000));
    assert.deepEqual(await run(small, 1, createGunzipStream()), DICOM_B.subarray(0, 3000));
  });

  test('an empty payload round-trips', async () => {
    assert.equal((await gunzipBuffer(gzipBuffer(Buffer.alloc(0)))).length, 0);
  });

  test('headers with a file name, comment, extra field and header CRC are accepted', async () => {
    const data = DICOM_A.subarray(0, 8000);
    const raw = zlib.deflateRawSync(data);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(zlib.crc32(data), 0);
    trailer.writeUInt32LE(data.length, 4);
    const header = Buffer.concat([
      Buffer.from([0x1f, 0x8b, 8, 2 | 4 | 8 | 16, 0, 0, 0, 0, 0, 3]),
      Buffer.from([4, 0, 1, 2, 3, 4]), // FEXTRA: XLEN 4
      Buffer.from('bucket.bin\0comment\0', 'latin1'),
      Buffer.from([0xaa, 0xbb]), // FHCRC (not checked)
    ]);
    for (const piece of [1, 5, 100000]) {
      assert.deepEqual(await run(Buffer.concat([header, raw, trailer]), piece, new GunzipOneMember()), data);
    }
  });

  test('a second member is refused, where zlib would have read it', async () => {
    const two = Buffer.concat([gzipBuffer(Buffer.from('hello ')), gzipBuffer(Buffer.from('world'))]);
    assert.equal(zlib.gunzipSync(two).toString(), 'hello world');
    await rejectsCode(gunzipBuffer(two), 'BadFileFormat', 400);
    for (const piece of [1, 4, 9, 64]) await rejectsCode(run(two, piece, createGunzipStream()), 'BadFileFormat', 400);
  });

  test('corrupt input fails clearly with BadFileFormat (400)', async () => {
    const gz = gzipBuffer(DICOM_A.subarray(0, 30000));
    const flip = (at: number) => {
      const b = Buffer.from(gz);
      b[at] = (b[at] ?? 0) ^ 0xff;
      return b;
    };
    const cases: [string, Buffer][] = [
      ['not gzip', Buffer.from('xyz')],
      ['raw DICOM', DICOM_A.subarray(0, 5000)],
      ['bad method', Buffer.from([0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 3, 1, 2])],
      ['reserved flags', Buffer.from([0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 3, 1, 2])],
      ['truncated header', gz.subarray(0, 6)],
      ['truncated data', gz.subarray(0, Math.floor(gz.length / 2))],
      ['truncated trailer', gz.subarray(0, gz.length - 3)],
      ['corrupt data', flip(200)],
      ['bad CRC', flip(gz.length - 6)],
      ['bad length', flip(gz.length - 2)],
      ['trailing garbage', Buffer.concat([gz, Buffer.from('garbage')])],
      ['trailing zeros', Buffer.concat([gz, Buffer.alloc(4)])],
      ['empty body', Buffer.alloc(0)],
    ];
    for (const [name, input] of cases) {
      for (const piece of [7, 65536]) {
        const e = await rejectsCode(run(input, piece, createGunzipStream()), 'BadFileFormat', 400);
        assert.match(e.details ?? '', /gzip|empty/i, name);
      }
    }
  });

  test('memory stays bounded: a slow consumer pauses the inflater', async () => {
    const zeros = Buffer.alloc(1024 * 1024);
    // 64 MiB of zeros compress to about 64 KiB.
    const gz = await run(Buffer.concat(Array.from({ length: 64 }, () => zeros)), 1024 * 1024, createGzipStream());
    assert.ok(gz.length < 200_000);
    const g = createGunzipStream();
    let total = 0;
    let maxBuffered = 0;
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _enc, cb) {
        total += chunk.length;
        maxBuffered = Math.max(maxBuffered, g.readableLength);
        setImmediate(cb);
      },
    });
    await pipeline(Readable.from([gz]), g, slow);
    assert.equal(total, 64 * 1024 * 1024);
    assert.ok(maxBuffered <= 1024 * 1024, `our readable buffer reached ${maxBuffered} bytes`);
  });
});

describe('length check', () => {
  test('exact length passes, short fails as Orthanc words it, long fails at once', async () => {
    assert.equal((await run(Buffer.from('abc'), 1, createLengthCheck(3))).toString(), 'abc');
    const short = await rejectsCode(run(Buffer.from('xyz'), 2, createLengthCheck(37422)), 'NetworkProtocol', 500);
    assert.equal(short.details, 'WriteUncompressedBucket: 3 != 37422');
    const long = await rejectsCode(run(Buffer.alloc(10), 4, createLengthCheck(5)), 'NetworkProtocol', 500);
    assert.equal(long.details, 'WriteUncompressedBucket: at least 8 != 5');
    const empty = await rejectsCode(run(Buffer.alloc(0), 1, createLengthCheck(1, 'bucket 3')), 'NetworkProtocol', 500);
    assert.equal(empty.details, 'bucket 3: 0 != 1');
  });

  test('a gzip bomb against a small bucket stops early', async () => {
    const gz = gzipBuffer(Buffer.alloc(64 * 1024 * 1024));
    const inflated = new ByteCounter();
    await rejectsCode(run(gz, 1024, createGunzipStream(), inflated, createLengthCheck(37422)), 'NetworkProtocol', 500);
    assert.ok(inflated.bytes < 4 * 1024 * 1024, `inflated ${inflated.bytes} bytes before stopping`);
  });
});

describe('the real buckets of the captures', { skip: needs(CAPTURES) }, () => {
  async function checkBucket(bucket: Bucket, body: Buffer, compressed: boolean, instances: Map<string, InstanceInfo>) {
    const steps = compressed ? [createGunzipStream(), createLengthCheck(bucketSize(bucket))] : [createLengthCheck(bucketSize(bucket))];
    const payload = await run(body, 65536, ...steps);
    let complete = 0;
    for (const [id, bytes] of splitPayload(bucket, payload)) {
      const info = instances.get(id);
      assert.ok(info, `instance ${id} declared`);
      if (bytes.length === info.Size) {
        assert.equal(md5(bytes), info.MD5, id);
        complete++;
      }
    }
    return complete;
  }

  test('push: the gzip PUT body is bucket 0 of the Knee create body; all 50 MD5s match', async () => {
    // CAPTURES.md calls it bucket index 1 of the Brainix push, but its inflated size (4118738) and
    // contents are those of the single bucket of 18143-0003, the Knee create body.
    const create = parsePushCreate(JSON.parse(readFileSync(`${CAPTURES}/18143-0003-POST-req.bin`, 'utf8')));
    const body = readFileSync(`${CAPTURES}/18143-0004-PUT-req.bin`);
    assert.equal(create.Buckets.length, 1);
    assert.equal(body.readUInt32LE(body.length - 4), bucketSize(create.Buckets[0] as Bucket));
    const instances = new Map(create.Instances.map((i) => [i.ID, i]));
    assert.equal(await checkBucket(create.Buckets[0] as Bucket, body, true, instances), 50);
  });

  test('pull without compression: the two Knee chunk answers rebuild all 50 instances', async () => {
    const lookup = parseLookupAnswer(JSON.parse(readFileSync(`${CAPTURES}/18142-0002-POST-resp.bin`, 'utf8')));
    const buckets = scheduleBuckets(lookup.Instances, {
      bucketSize: DEFAULT_BUCKET_SIZE,
      pullBaseUrl: 'http://127.0.0.1:18142/',
      compression: 'none',
    });
    const instances = new Map(lookup.Instances.map((i) => [i.ID, i]));
    const complete =
      (await checkBucket(buckets[0] as Bucket, readFileSync(`${CAPTURES}/18142-0004-GET-resp.bin`), false, instances)) +
      (await checkBucket(buckets[1] as Bucket, readFileSync(`${CAPTURES}/18142-0003-GET-resp.bin`), false, instances));
    assert.equal(complete, 50);
  });

  test('pull with gzip: the two chunk answers of the 72-instance pull rebuild all 72 instances', async () => {
    const lookup = parseLookupAnswer(JSON.parse(readFileSync(`${CAPTURES}/18142-0005-POST-resp.bin`, 'utf8')));
    const buckets = scheduleBuckets(lookup.Instances, {
      bucketSize: DEFAULT_BUCKET_SIZE,
      pullBaseUrl: 'http://127.0.0.1:18142/',
      compression: 'gzip',
    });
    const instances = new Map(lookup.Instances.map((i) => [i.ID, i]));
    const complete =
      (await checkBucket(buckets[0] as Bucket, readFileSync(`${CAPTURES}/18142-0007-GET-resp.bin`), true, instances)) +
      (await checkBucket(buckets[1] as Bucket, readFileSync(`${CAPTURES}/18142-0006-GET-resp.bin`), true, instances));
    assert.equal(complete, 72);
  });

  test('a wrong bucket for a captured body fails the length check', async () => {
    const body = readFileSync(`${CAPTURES}/18142-0006-GET-resp.bin`);
    await rejectsCode(run(body, 65536, createGunzipStream(), createLengthCheck(4_265_746)), 'NetworkProtocol', 500);
  });
});
