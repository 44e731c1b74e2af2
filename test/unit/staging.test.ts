// The staging area of an incoming transfer on real files: sparse pre-sizing, bucket payloads streamed
// into place (plain and gzip, split across pieces), the length check, bad buckets, offsets past 2 GiB,
// reopening after a restart, and removal.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, readdir, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { after, before, test } from 'node:test';
import { isXferError } from '../../src/errors.ts';
import { gzipBuffer } from '../../src/protocol/compression.ts';
import type { Bucket, InstanceInfo } from '../../src/protocol/wire.ts';
import { StagingArea, stagedFileName } from '../../src/transfer/staging.ts';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { describe, generatedDicom, needs, REAL_DICOM } from '../helpers/data.ts';

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
/** A series of the real files, or without them a generated MR series (about 62 KB an image). */
const series = async (): Promise<string> =>
  needs(REAL_DICOM) ? join(await generatedDicom(), 'mr/DX000010004/study1/series01') : join(REAL_DICOM, 'Knee/T1');

/** A payload delivered in pieces of `piece` bytes, as a network body arrives. */
function pieces(data: Buffer, piece: number): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += piece) parts.push(data.subarray(at, at + piece));
  return Readable.from(parts);
}

function payloadOf(files: Map<string, Buffer>, bucket: Bucket): Buffer {
  return Buffer.concat(bucket.map((c) => (files.get(c.ID) as Buffer).subarray(c.Offset, c.Offset + c.Size)));
}

describe('staging area', () => {
  let root: string;
  const files = new Map<string, Buffer>();
  let instances: InstanceInfo[];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'dx-staging-'));
    const dir = await series();
    const names = (await readdir(dir)).sort().slice(0, 3);
    instances = [];
    for (const [i, name] of names.entries()) {
      const data = await readFile(join(dir, name));
      const id = `0000000${i}-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd`;
      files.set(id, data);
      instances.push({ ID: id, Size: data.length, MD5: md5(data) });
    }
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('creates one file per instance at its declared size without writing data', async () => {
    const area = await StagingArea.create(join(root, 'a', 'tx'), instances);
    for (const i of instances) {
      const st = await stat(area.pathOf(i.ID));
      assert.equal(st.size, i.Size);
      // Sparse: (almost) no block is allocated yet.
      assert.ok(st.blocks * 512 < i.Size, `${i.ID} takes ${st.blocks * 512} bytes on disk for ${i.Size}`);
    }
    assert.equal(
      area.totalSize,
      instances.reduce((s, i) => s + i.Size, 0),
    );
    assert.deepEqual(
      (await area.staged()).map((s) => s.path),
      instances.map((i) => join(root, 'a', 'tx', stagedFileName(i.ID))),
    );
  });

  test('writes buckets in any order, split across pieces, plain and gzip, and more than once', async () => {
    const [a, b, c] = instances as [InstanceInfo, InstanceInfo, InstanceInfo];
    const half = Math.floor(a.Size / 2);
    const buckets: Bucket[] = [
      // The tail of a, whole b, the head of c: the general bucket shape the receiver must accept.
      [
        { ID: a.ID, Offset: half, Size: a.Size - half },
        { ID: b.ID, Offset: 0, Size: b.Size },
        { ID: c.ID, Offset: 0, Size: 1000 },
      ],
      [{ ID: c.ID, Offset: 1000, Size: c.Size - 1000 }],
      [{ ID: a.ID, Offset: 0, Size: half }],
    ];
    const area = await StagingArea.create(join(root, 'b'), instances);
    const plain0 = payloadOf(files, buckets[0] as Bucket);
    assert.equal(await area.writeBucket(buckets[0] as Bucket, pieces(plain0, 7777)), plain0.length);
    const gz1 = gzipBuffer(payloadOf(files, buckets[1] as Bucket));
    assert.equal(await area.writeBucket(buckets[1] as Bucket, pieces(gz1, 1000), { gunzip: true }), c.Size - 1000);
    await area.writeBucket(buckets[2] as Bucket, pieces(payloadOf(files, buckets[2] as Bucket), 65536));
    // Again: positional writes make it idempotent.
    await area.writeBucket(buckets[0] as Bucket, pieces(plain0, 1));
    for (const i of instances) assert.equal(md5(await readFile(area.pathOf(i.ID))), i.MD5, i.ID);
  });

  test("a payload of the wrong length is NetworkProtocol with Orthanc's Details", async () => {
    const [a] = instances as [InstanceInfo];
    const area = await StagingArea.create(join(root, 'c'), instances);
    const bucket: Bucket = [{ ID: a.ID, Offset: 0, Size: 37422 }];
    await assert.rejects(area.writeBucket(bucket, Readable.from([Buffer.from('xyz')])), (e: unknown) => {
      assert.ok(isXferError(e, 'NetworkProtocol'));
      assert.equal(e.details, 'WriteUncompressedBucket: 3 != 37422');
      assert.equal(e.http, 500);
      return true;
    });
    // Too long fails as soon as it runs over, and writes nothing past the bucket.
    const long = Buffer.concat([(files.get(a.ID) as Buffer).subarray(0, 37422), Buffer.alloc(100, 0xee)]);
    await assert.rejects(area.writeBucket(bucket, pieces(long, 37400)), (e: unknown) => isXferError(e, 'NetworkProtocol'));
    const staged = await readFile(area.pathOf(a.ID));
    assert.equal(staged.indexOf(0xee, 37422), -1);
    // Inflated length checked too.
    await assert.rejects(
      area.writeBucket(bucket, Readable.from([gzipBuffer(Buffer.alloc(10))]), { gunzip: true }),
      (e: unknown) => isXferError(e, 'NetworkProtocol') && e.details === 'WriteUncompressedBucket: 10 != 37422',
    );
  });

  test('refuses corrupt gzip (400), undeclared instances (404) and chunks outside their instance (400)', async () => {
    const [a] = instances as [InstanceInfo];
    const area = await StagingArea.create(join(root, 'd'), instances);
    const bucket: Bucket = [{ ID: a.ID, Offset: 0, Size: 100 }];
    const gz = gzipBuffer((files.get(a.ID) as Buffer).subarray(0, 100));
    gz[gz.length - 6] = (gz[gz.length - 6] ?? 0) ^ 0xff; // CRC-32 of the trailer
    await assert.rejects(
      area.writeBucket(bucket, Readable.from([gz]), { gunzip: true }),
      (e: unknown) => isXferError(e, 'BadFileFormat') && e.http === 400,
    );
    await assert.rejects(area.writeBucket(bucket, Readable.from([Buffer.from('not gzip at all')]), { gunzip: true }), (e: unknown) =>
      isXferError(e, 'BadFileFormat'),
    );
    const unknown: Bucket = [{ ID: 'ffffffff-ffffffff-ffffffff-ffffffff-ffffffff', Offset: 0, Size: 1 }];
    assert.throws(
      () => area.checkBucket(unknown),
      (e: unknown) => isXferError(e, 'UnknownResource') && e.http === 404,
    );
    await assert.rejects(area.writeBucket(unknown, Readable.from([Buffer.from('x')])), (e: unknown) => isXferError(e, 'UnknownResource'));
    const outside: Bucket = [{ ID: a.ID, Offset: a.Size - 10, Size: 11 }];
    await assert.rejects(
      area.writeBucket(outside, Readable.from([Buffer.alloc(11)])),
      (e: unknown) => isXferError(e, 'ParameterOutOfRange') && e.http === 400,
    );
  });

  test('stops between pieces once the transfer is aborted', async () => {
    const [a] = instances as [InstanceInfo];
    const area = await StagingArea.create(join(root, 'e'), instances);
    const ac = new AbortController();
    const data = files.get(a.ID) as Buffer;
    async function* slow() {
      yield data.subarray(0, 1000);
      ac.abort();
      yield data.subarray(1000);
    }
    await assert.rejects(area.writeBucket([{ ID: a.ID, Offset: 0, Size: a.Size }], slow(), { signal: ac.signal }), (e: unknown) =>
      isXferError(e, 'UnknownResource'),
    );
  });

  test('writes at offsets past 2 GiB in a sparse file', async (t) => {
    const size = 2 ** 31 + 50 * 1024 * 1024; // 2.05 GiB, sparse: a few blocks on disk
    const id = 'eeeeeeee-eeeeeeee-eeeeeeee-eeeeeeee-eeeeeeee';
    let area: StagingArea;
    try {
      area = await StagingArea.create(join(root, 'big'), [{ ID: id, Size: size, MD5: '0'.repeat(32) }]);
    } catch (e) {
      t.skip(`this file system cannot hold a ${size}-byte sparse file: ${(e as Error).message}`);
      return;
    }
    const marker = randomBytes(300_000);
    const offset = 2 ** 31 + 12_345;
    await area.writeBucket([{ ID: id, Offset: offset, Size: marker.length }], pieces(gzipBuffer(marker), 4096), { gunzip: true });
    const tail = randomBytes(1000);
    await area.writeAt(id, size - tail.length, tail);
    const fh = await open(area.pathOf(id), 'r');
    try {
      const back = Buffer.alloc(marker.length + 2);
      await fh.read(back, 0, back.length, offset - 1);
      assert.equal(back[0], 0);
      assert.ok(back.subarray(1, 1 + marker.length).equals(marker));
      assert.equal(back[back.length - 1], 0);
      const end = Buffer.alloc(tail.length);
      await fh.read(end, 0, end.length, size - tail.length);
      assert.ok(end.equals(tail));
    } finally {
      await fh.close();
    }
    assert.equal((await stat(area.pathOf(id))).size, size);
    await area.remove();
  });

  test('a large area takes writes at once, its files made in the background, and goes away whole', async () => {
    const data = files.get(instances[0]?.ID as string) as Buffer;
    const many: InstanceInfo[] = Array.from({ length: 300 }, (_, i) => ({
      ID: `${i.toString(16).padStart(8, '0')}-eeeeeeee-bbbbbbbb-cccccccc-dddddddd`,
      Size: data.length,
      MD5: md5(data),
    }));
    const dir = join(root, 'many');
    const area = await StagingArea.create(dir, many);
    // The last instance first: its file is made on demand, not after the 299 others.
    const last = many[many.length - 1] as InstanceInfo;
    await area.writeBucket([{ ID: last.ID, Offset: 0, Size: data.length }], pieces(data, 7000));
    const staged = await area.staged();
    assert.equal(staged.length, 300);
    for (const s of staged) assert.equal((await stat(s.path)).size, data.length, s.id);
    assert.equal(md5(await readFile(area.pathOf(last.ID))), last.MD5);
    assert.deepEqual(
      staged.filter((s) => s.verified).map((s) => s.id),
      [last.ID],
    );
    await area.remove();
    await assert.rejects(stat(dir));
    // Removed right after it was made: nothing is left behind by the files still being made.
    const gone = await StagingArea.create(join(root, 'gone'), many);
    await gone.remove();
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(stat(join(root, 'gone')));
  });

  test('an instance written in pieces, out of order, is hashed as they land and verified with its header', async () => {
    const inst = instances[1] as InstanceInfo;
    const data = files.get(inst.ID) as Buffer;
    const cut = [0, 100, 5000, 20_000, 21_000, data.length];
    const piece = (k: number): Bucket => [{ ID: inst.ID, Offset: cut[k] as number, Size: (cut[k + 1] as number) - (cut[k] as number) }];
    const area = await StagingArea.create(join(root, 'pieces'), [inst]);
    for (const k of [2, 0, 4, 1, 3]) await area.writeBucket(piece(k), pieces(payloadOf(files, piece(k)), 3000));
    let staged = (await area.staged())[0];
    assert.equal(md5(await readFile(area.pathOf(inst.ID))), inst.MD5);
    assert.equal(staged?.verified, true);
    assert.equal(staged?.header?.sopInstanceUid, (await readDicomHeaderFromFile(area.pathOf(inst.ID))).sopInstanceUid);
    // The same piece again: what was counted may have changed, so the commit checks the file itself.
    await area.writeBucket(piece(1), pieces(payloadOf(files, piece(1)), 3000));
    staged = (await area.staged())[0];
    assert.equal(staged?.verified, false);
    assert.equal(staged?.header, undefined);
    await area.remove();
  });

  test('pieces that do not add up to the declared MD5 are not verified', async () => {
    const inst = instances[2] as InstanceInfo;
    const data = Buffer.from(files.get(inst.ID) as Buffer);
    data.writeUInt8((data.at(-1) as number) ^ 0xff, data.length - 1);
    const half = Math.floor(data.length / 2);
    const area = await StagingArea.create(join(root, 'bad-pieces'), [inst]);
    await area.writeBucket([{ ID: inst.ID, Offset: half, Size: data.length - half }], pieces(data.subarray(half), 4096));
    await area.writeBucket([{ ID: inst.ID, Offset: 0, Size: half }], pieces(data.subarray(0, half), 4096));
    assert.equal((await area.staged())[0]?.verified, false);
    await area.remove();
  });

  test('reopens an existing area: a file a recorded bucket wrote must be whole, any other is made again when written', async () => {
    const dir = join(root, 'f');
    const first = await StagingArea.create(dir, instances);
    const [a, b, c] = instances as [InstanceInfo, InstanceInfo, InstanceInfo];
    await first.writeAt(a.ID, 0, files.get(a.ID) as Buffer);
    const again = await StagingArea.open(dir, instances, new Set([a.ID]));
    assert.equal(md5(await readFile(again.pathOf(a.ID))), a.MD5);
    // b resized, c gone (a pause or a crash before the background made them): fine while nothing was
    // recorded as written into them...
    await truncate(again.pathOf(b.ID), 10);
    await rm(again.pathOf(c.ID));
    const third = await StagingArea.open(dir, instances, new Set([a.ID]));
    await third.writeAt(c.ID, 0, files.get(c.ID) as Buffer);
    await third.writeAt(b.ID, 0, files.get(b.ID) as Buffer);
    assert.equal(md5(await readFile(third.pathOf(c.ID))), c.MD5);
    assert.equal((await stat(third.pathOf(b.ID))).size, b.Size);
    assert.equal(md5(await readFile(third.pathOf(b.ID))), b.MD5);
    // ...but a file that a recorded bucket wrote into must be there, whole.
    await truncate(third.pathOf(b.ID), 10);
    await assert.rejects(StagingArea.open(dir, instances, new Set([a.ID, b.ID])), (e: unknown) => isXferError(e, 'InexistentFile'));
    await rm(third.pathOf(a.ID));
    await assert.rejects(StagingArea.open(dir, instances, new Set([a.ID])), (e: unknown) => isXferError(e, 'InexistentFile'));
    await again.remove();
    await assert.rejects(stat(dir));
    await again.remove(); // twice is fine
  });

  test('a reopened area whose empty instance was never made makes it for the commit', async () => {
    const dir = join(root, 'g');
    const empty: InstanceInfo = { ID: '00000009-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd', Size: 0, MD5: md5(Buffer.alloc(0)) };
    const a = instances[0] as InstanceInfo;
    const first = await StagingArea.create(dir, [a, empty]);
    await first.writeAt(a.ID, 0, files.get(a.ID) as Buffer);
    await rm(first.pathOf(empty.ID));
    const again = await StagingArea.open(dir, [a, empty], new Set([a.ID]));
    const staged = await again.staged();
    assert.deepEqual(
      staged.map((x) => [x.id, x.size]),
      [
        [a.ID, a.Size],
        [empty.ID, 0],
      ],
    );
    assert.equal((await stat(again.pathOf(empty.ID))).size, 0);
    await again.remove();
  });
  test('a whole instance in one chunk is verified as it is written, with its header; damaged bytes are not', async () => {
    const [a, b] = instances as [InstanceInfo, InstanceInfo];
    const area = await StagingArea.create(join(root, 'whole'), [a, b]);
    await area.writeBucket([{ ID: a.ID, Offset: 0, Size: a.Size }], pieces(files.get(a.ID) as Buffer, 5000));
    const damaged = Buffer.from(files.get(b.ID) as Buffer);
    damaged.writeUInt8((damaged.at(-1) as number) ^ 0xff, damaged.length - 1);
    await area.writeBucket([{ ID: b.ID, Offset: 0, Size: b.Size }], pieces(damaged, 5000));
    const [sa, sb] = await area.staged();
    assert.equal(sa?.verified, true);
    assert.equal(sa?.header?.sopInstanceUid, (await readDicomHeaderFromFile(area.pathOf(a.ID))).sopInstanceUid);
    assert.equal(sb?.verified, false);
    assert.equal(sb?.header, undefined);
    // The good bytes sent again make it verified; a piece written over it afterwards takes that back.
    await area.writeBucket([{ ID: b.ID, Offset: 0, Size: b.Size }], pieces(files.get(b.ID) as Buffer, 5000));
    assert.equal((await area.staged())[1]?.verified, true);
    await area.writeBucket([{ ID: b.ID, Offset: 10, Size: 10 }], Readable.from([(files.get(b.ID) as Buffer).subarray(10, 20)]));
    assert.equal((await area.staged())[1]?.verified, false);
    await area.remove();
  });

  test('a file made by the bucket that writes all of it is not sized first; one cut short is never taken for whole', async () => {
    // More instances than create() makes ahead, so that the last two are made by their buckets; those two
    // are larger than one write batch (1 MiB), so that a payload broken off halfway has reached the disk.
    const bytes = new Map<string, Buffer>();
    const many: InstanceInfo[] = [];
    for (let k = 0; k < 24; k++) {
      const ID = `${k.toString(16).padStart(8, '0')}-eeeeeeee-ffffffff-00000000-11111111`;
      const b = k < 22 ? (files.get((instances[k % instances.length] as InstanceInfo).ID) as Buffer) : randomBytes(3 * 1024 * 1024 + k);
      bytes.set(ID, b);
      many.push({ ID, Size: b.length, MD5: md5(b) });
    }
    const data = (i: InstanceInfo) => bytes.get(i.ID) as Buffer;
    const dir = join(root, 'unsized');
    const area = await StagingArea.create(dir, many);
    const [x, y] = many.slice(-2) as [InstanceInfo, InstanceInfo];
    await assert.rejects(stat(area.pathOf(x.ID)));
    // A payload that breaks off halfway: the file holds what was written, at the size it came to.
    const half = data(x).subarray(0, Math.floor(x.Size / 2));
    const broken = Readable.from(
      (async function* () {
        for (let at = 0; at < half.length; at += 65536) yield half.subarray(at, at + 65536);
        throw new Error('connection reset');
      })(),
    );
    await assert.rejects(area.writeBucket([{ ID: x.ID, Offset: 0, Size: x.Size }], broken));
    const cut = (await stat(area.pathOf(x.ID))).size;
    assert.ok(cut > 0 && cut < x.Size, `${cut} bytes of ${x.Size}`);
    // Not recorded as written, so reopening takes it; recorded, it would be refused as not whole.
    await assert.rejects(StagingArea.open(dir, many, new Set([x.ID])), (e: unknown) => isXferError(e, 'InexistentFile'));
    const again = await StagingArea.open(dir, many, new Set());
    // Sent again, whole: the file is the instance, verified; and one sent whole at once is too.
    await again.writeBucket([{ ID: x.ID, Offset: 0, Size: x.Size }], pieces(data(x), 65536));
    await again.writeBucket([{ ID: y.ID, Offset: 0, Size: y.Size }], pieces(data(y), 65536));
    const staged = await again.staged();
    for (const i of [x, y]) {
      assert.equal(md5(await readFile(again.pathOf(i.ID))), i.MD5);
      assert.equal(staged.find((s) => s.id === i.ID)?.verified, true);
    }
    // The ones no bucket wrote are made at their declared size for the commit.
    assert.equal((await stat(again.pathOf((many[20] as InstanceInfo).ID))).size, (many[20] as InstanceInfo).Size);
    await again.remove();
  });

  test('the header of a whole instance is the one read from its file, whatever the pieces it came in', async () => {
    const dir = await series();
    const names = (await readdir(dir)).sort().slice(0, 4);
    const list: InstanceInfo[] = [];
    const bytes = new Map<string, Buffer>();
    for (const [k, name] of names.entries()) {
      const b = await readFile(join(dir, name));
      const ID = `${k.toString(16).padStart(8, '0')}-12121212-34343434-56565656-78787878`;
      bytes.set(ID, b);
      list.push({ ID, Size: b.length, MD5: md5(b) });
    }
    // Pieces smaller than a header, about its size, and larger: the first piece holds all of it or not.
    for (const piece of [700, 3000, 65536]) {
      const area = await StagingArea.create(join(root, `header-${piece}`), list);
      for (const i of list) await area.writeBucket([{ ID: i.ID, Offset: 0, Size: i.Size }], pieces(bytes.get(i.ID) as Buffer, piece));
      for (const s of await area.staged()) {
        assert.equal(s.verified, true);
        assert.deepEqual(s.header, await readDicomHeaderFromFile(s.path), `${s.id} in pieces of ${piece}`);
      }
      await area.remove();
    }
  });

  test('the CRC-32 of a payload: checked plain and gzip; a mismatch is CorruptedFile 422, "member" only with gzip', async () => {
    const [a] = instances as [InstanceInfo];
    const data = files.get(a.ID) as Buffer;
    const bucket: Bucket = [{ ID: a.ID, Offset: 0, Size: a.Size }];
    const area = await StagingArea.create(join(root, 'crc'), [a]);
    const right = crc32(data).toString(16).padStart(8, '0');
    assert.equal(await area.writeBucket(bucket, pieces(data, 3000), { crc32: right }), a.Size);
    assert.equal(await area.writeBucket(bucket, pieces(gzipBuffer(data), 3000), { gunzip: true, crc32: 'member' }), a.Size);
    assert.equal(await area.writeBucket(bucket, pieces(gzipBuffer(data), 3000), { gunzip: true, crc32: right }), a.Size);
    const wrong = (crc32(data) ^ 1).toString(16).padStart(8, '0');
    for (const opts of [{ crc32: wrong }, { gunzip: true, crc32: wrong }]) {
      const payload = opts.gunzip ? gzipBuffer(data) : data;
      await assert.rejects(
        area.writeBucket(bucket, pieces(payload, 3000), opts),
        (e: unknown) => isXferError(e, 'CorruptedFile') && e.http === 422,
      );
    }
    // A body cut short under a checksum is a bucket to send again too.
    await assert.rejects(
      area.writeBucket(bucket, Readable.from([data.subarray(0, 100)]), { crc32: right }),
      (e: unknown) => isXferError(e, 'CorruptedFile') && e.http === 422,
    );
    await assert.rejects(area.writeBucket(bucket, pieces(data, 3000), { crc32: 'member' }), (e: unknown) => isXferError(e, 'BadRequest'));
    assert.equal(md5(await readFile(area.pathOf(a.ID))), a.MD5);
    await area.remove();
  });

  test('a sender that pauses finds what it sent already on disk', async () => {
    const [a] = instances as [InstanceInfo];
    const data = files.get(a.ID) as Buffer;
    const area = await StagingArea.create(join(root, 'pause'), [a]);
    const half = Math.floor(a.Size / 2);
    let seen = false;
    async function* paused(): AsyncGenerator<Buffer> {
      yield data.subarray(0, half);
      // The rest comes only once the first half is in the file (at most 10 s of looking).
      for (let i = 0; i < 1000 && !seen; i++) {
        await new Promise((r) => setTimeout(r, 10));
        const fh = await open(area.pathOf(a.ID), 'r');
        const head = Buffer.alloc(half);
        await fh.read(head, 0, half, 0);
        await fh.close();
        seen = head.equals(data.subarray(0, half));
      }
      yield data.subarray(half);
    }
    await area.writeBucket([{ ID: a.ID, Offset: 0, Size: a.Size }], Readable.from(paused()));
    assert.ok(seen, 'the first half was written while the sender paused');
    assert.equal(md5(await readFile(area.pathOf(a.ID))), a.MD5);
    await area.remove();
  });
});
