// The extension zstd between real nodes on real DICOM: a compressed push or pull between two dicom-xfer nodes
// that list it travels as zstd frames and arrives byte for byte; with a node that does not list it
// (Transfers.Zstd false) it falls back to gzip, and that node refuses "zstd" as the plugin would; a damaged
// zstd span, or a frame that declares another size, is refused like a damaged gzip one and stores nothing.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { Encoder } from '@toondepauw/node-zstd';
import { gzipBuffer } from '../../src/protocol/compression.ts';
import { zstdCompress } from '../../src/protocol/zstd.ts';
import {
  REAL_DICOM,
  assertSameInstances,
  call,
  emptyNode,
  getJson,
  importFiles,
  json,
  listFiles,
  postJson,
  startPair,
  stagingEntries,
  startTransfer,
  storedMd5s,
  waitJob,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { describe, needs } from '../helpers/data.ts';

const ZSTD_MAGIC = '28b52ffd';
const crcHex = (b: Buffer): string => (crc32(b) >>> 0).toString(16).padStart(8, '0');

describe('zstd between dicom-xfer nodes', { skip: needs(REAL_DICOM), timeout: 240_000 }, () => {
  /** Both nodes list zstd (the default). */
  let pair: Pair;
  /** A lists zstd, B has Transfers.Zstd false (as an older dicom-xfer node, or the plugin). */
  let mixed: Pair;
  let source: Map<string, string>;
  let sizes: Map<string, number>;
  let resources: { Level: string; ID: string }[];
  let mixedResources: { Level: string; ID: string }[];

  before(async () => {
    const keepBodies = [{ method: 'POST', path: /^\/+transfers\/push$/ }, { method: 'PUT' }];
    pair = await startPair({
      keepBodies: [...keepBodies, { method: 'POST', path: /^\/+transfers\/pull$/ }],
      aliasesOfB: { 'b-pull': { RemoteSelf: 'a' } },
    });
    mixed = await startPair({ keepBodies, b: { Transfers: { Zstd: false } } });
    const files = [
      ...(await listFiles(join(REAL_DICOM, 'Brainix'))),
      ...(await listFiles(join(REAL_DICOM, 'Knee'))),
      join(REAL_DICOM, 'PrivateTags.dcm'),
    ];
    const imported = await importFiles(pair.a.url, files);
    assert.equal(imported.refused.length, 0, JSON.stringify(imported.refused));
    await importFiles(mixed.a.url, files);
    source = await storedMd5s(pair.a.url);
    sizes = imported.size;
    assert.ok(source.size > 50);
    resources = (await getJson<string[]>(pair.a.url, '/patients')).map((ID) => ({ Level: 'Patient', ID }));
    mixedResources = (await getJson<string[]>(mixed.a.url, '/patients')).map((ID) => ({ Level: 'Patient', ID }));
  });
  after(async () => {
    await pair?.stop();
    await mixed?.stop();
  });

  const totalBytes = () => [...sizes.values()].reduce((s, n) => s + n, 0);

  test('a node lists zstd in its capabilities, and one with Transfers.Zstd false does not', async () => {
    const on = await getJson<{ Extensions: Record<string, number> }>(pair.b.url, '/transfers/capabilities');
    assert.equal(on.Extensions.zstd, 1);
    const off = await getJson<{ Extensions: Record<string, number> }>(mixed.b.url, '/transfers/capabilities');
    assert.equal(off.Extensions.zstd, undefined);
    assert.equal(off.Extensions['bucket-crc32'], 2, 'the other extensions stay');
  });

  for (const compression of ['gzip', 'zstd'] as const) {
    test(`push (${compression}) between two nodes that list zstd: zstd frames on the wire, every instance identical`, async () => {
      await emptyNode(pair.b.url);
      pair.toB.clearRecords();
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: compression, Peer: 'b' });
      const job = await waitJob(pair.a.url, h.ID as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Content.Compression, compression, 'the query as asked');
      assert.equal(job.Content.WireCompression, 'zstd');
      assert.ok(Number.isInteger(job.Content.ZstdLevel), JSON.stringify(job.Content));
      assert.equal(job.Content.GzipLevel, undefined);
      assert.equal(job.Content.CompressionNote, undefined);
      assert.ok((job.Content.PeerExtensions as string[]).includes('zstd'));
      await assertSameInstances(pair.b.url, source);
      const [create] = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
      assert.equal((JSON.parse(String(create?.requestBody)) as { Compression: string }).Compression, 'zstd');
      const puts = pair.toB.records({ method: 'PUT' });
      assert.ok(puts.length > 0);
      for (const put of puts) {
        assert.equal(put.status, 200, put.path);
        // One frame per span, sent with its length and the CRC-32 of its payload.
        assert.equal(put.requestBody?.subarray(0, 4).toString('hex'), ZSTD_MAGIC, put.path);
        assert.equal(Number(put.headers['content-length']), put.requestBytes, put.path);
        assert.match(String(put.headers['x-dicom-xfer-crc32']), /^[0-9a-f]{8}$/, put.path);
      }
      const wire = puts.reduce((s, p) => s + p.requestBytes, 0);
      assert.equal(job.Content.WireBytes, wire);
      assert.ok(wire < totalBytes(), `${wire} bytes on the wire for ${totalBytes()}`);
    });

    test(`pull (${compression}) from a node that lists zstd: chunk answers are zstd frames, every instance identical`, async () => {
      await emptyNode(pair.b.url);
      pair.toA.clearRecords();
      const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: compression, Peer: 'a' });
      const job = await waitJob(pair.b.url, h.ID as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Content.WireCompression, 'zstd');
      await assertSameInstances(pair.b.url, source);
      const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
      assert.ok(gets.length > 0);
      for (const g of gets) {
        assert.match(g.path, /[?&]compression=zstd(&|$)/);
        assert.equal(g.status, 200, g.path);
        assert.equal(g.responseHeaders?.['content-type'], 'application/zstd');
        assert.match(String(g.responseHeaders?.['x-dicom-xfer-crc32']), /^[0-9a-f]{8}$/);
      }
    });
  }

  test('send in pull mode (zstd): the peer is asked for gzip, which any peer reads, and pulls with zstd', async () => {
    await emptyNode(pair.b.url);
    pair.toB.clearRecords();
    pair.toA.clearRecords();
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'zstd', Peer: 'b-pull' });
    const job = await waitJob(pair.b.url, h.RemoteJob as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const [trigger] = pair.toB.records({ method: 'POST', path: /^\/+transfers\/pull$/ });
    assert.equal((JSON.parse(String(trigger?.requestBody)) as { Compression: string }).Compression, 'gzip');
    assert.equal(job.Content.WireCompression, 'zstd');
    const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    assert.ok(gets.length > 0 && gets.every((g) => /[?&]compression=zstd(&|$)/.test(g.path)));
    await assertSameInstances(pair.b.url, source);
  });

  for (const compression of ['gzip', 'zstd'] as const) {
    test(`push and pull (${compression}) with a node that does not list zstd: gzip, every instance identical`, async () => {
      await emptyNode(mixed.b.url);
      mixed.toB.clearRecords();
      const h = await startTransfer(mixed.a.url, 'send', { Resources: mixedResources, Compression: compression, Peer: 'b' });
      const job = await waitJob(mixed.a.url, h.ID as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Content.WireCompression, 'gzip');
      assert.ok(!(job.Content.PeerExtensions as string[]).includes('zstd'));
      if (compression === 'zstd')
        assert.match(String(job.Content.CompressionNote), /zstd is not used with peer "b" \(it does not list the extension\): gzip/);
      else assert.equal(job.Content.CompressionNote, undefined);
      const [create] = mixed.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
      assert.equal((JSON.parse(String(create?.requestBody)) as { Compression: string }).Compression, 'gzip');
      for (const put of mixed.toB.records({ method: 'PUT' })) assert.equal(put.requestBody?.subarray(0, 2).toString('hex'), '1f8b');
      const expected = await storedMd5s(mixed.a.url);
      await assertSameInstances(mixed.b.url, expected);

      // The other way: A pulls back from B, which serves gzip only.
      await emptyNode(mixed.a.url);
      mixed.toB.clearRecords();
      const p = await startTransfer(mixed.a.url, 'pull', { Resources: mixedResources, Compression: compression, Peer: 'b' });
      const pulled = await waitJob(mixed.a.url, p.ID as string);
      assert.equal(pulled.State, 'Success', JSON.stringify(pulled));
      assert.equal(pulled.Content.WireCompression, 'gzip');
      const gets = mixed.toB.records({ method: 'GET', path: '/transfers/chunks/' });
      assert.ok(gets.length > 0 && gets.every((g) => /[?&]compression=gzip(&|$)/.test(g.path)));
      await assertSameInstances(mixed.a.url, expected);
    });
  }

  test('a node that does not list zstd refuses it as the plugin refuses an unknown compression (400), creating nothing', async () => {
    const b = mixed.b.url;
    // Checked before anything else: B need not even hold the instance.
    const [id, md5] = [...source.entries()][0] as [string, string];
    const size = sizes.get(id) as number;
    const create = { Buckets: [], Compression: 'zstd', Instances: [{ ID: id, MD5: md5, Size: String(size) }] };
    const before = await stagingEntries(mixed.b.dataDir, 'push');
    const refusals = [
      await postJson(b, '/transfers/push', create),
      await call(b, 'GET', `/transfers/chunks/${id}?offset=0&size=${size}&compression=zstd`),
      await postJson(b, '/transfers/send', { Resources: [{ Level: 'Instance', ID: id }], Peer: 'a', Compression: 'zstd' }),
    ];
    for (const r of refusals) {
      assert.equal(r.status, 400, r.body.toString());
      const e = json(r);
      assert.equal(e.OrthancError, 'Parameter out of range');
      assert.equal(e.OrthancStatus, 3);
      assert.match(String(e.Message ?? e.Details), /compression|Parameter out of range/i);
    }
    assert.deepEqual(await stagingEntries(mixed.b.dataDir, 'push'), before);
  });

  /** A transaction on pair.b for one real instance in one bucket; its payload and an instance ID. */
  async function oneInstanceTransaction(compression: 'gzip' | 'zstd') {
    const file = await readFile(join(REAL_DICOM, 'PrivateTags.dcm'));
    const id = [...sizes.entries()].find(([, n]) => n === file.length)?.[0] as string;
    const body = {
      Buckets: [[{ ID: id, Offset: '0', Size: String(file.length) }]],
      Compression: compression,
      Instances: [{ ID: id, MD5: source.get(id), Size: String(file.length) }],
    };
    const r = await postJson(pair.b.url, '/transfers/push', body);
    assert.equal(r.status, 200, r.body.toString());
    return { path: json<{ Path: string }>(r).Path, file, id };
  }

  const put = (path: string, body: Buffer, crc: string) =>
    call(pair.b.url, 'PUT', `${path}/0`, body, { 'Content-Type': 'application/octet-stream', 'x-dicom-xfer-crc32': crc });

  /** Asserts a PUT was refused as a damaged bucket (422 CorruptedFile) and that nothing was kept of it. */
  async function assertRefused(path: string, id: string, answer: Awaited<ReturnType<typeof put>>, details: RegExp): Promise<void> {
    assert.equal(answer.status, 422, answer.body.toString());
    const e = json(answer);
    assert.equal(e.OrthancStatus, 20);
    assert.equal(e.HttpStatus, 422);
    assert.match(String(e.Details), details);
    assert.deepEqual(await getJson(pair.b.url, `${path}/buckets`), { Buckets: [], Count: 0 });
    assert.ok(!(await getJson<string[]>(pair.b.url, '/instances')).includes(id));
  }

  test('a zstd span damaged in flight is refused like a damaged gzip span (422), nothing kept; sent again, it is taken', async () => {
    await emptyNode(pair.b.url);
    const refusals: Record<string, unknown>[] = [];
    for (const compression of ['gzip', 'zstd'] as const) {
      const { path, file, id } = await oneInstanceTransaction(compression);
      const good = compression === 'zstd' ? await zstdCompress(file, 3) : gzipBuffer(file, 1);
      const bad = Buffer.from(good);
      const at = Math.floor(bad.length / 2);
      bad[at] = (bad[at] as number) ^ 0x55;
      const answer = await put(path, bad, crcHex(file));
      await assertRefused(path, id, answer, /arrived damaged|CRC-32/);
      const { Details: _d, Uri: _u, ...shape } = json(answer);
      refusals.push(shape);
      // The same span, undamaged, is taken, and the commit stores the instance as it was.
      assert.equal((await put(path, good, crcHex(file))).status, 200);
      assert.equal((await call(pair.b.url, 'POST', `${path}/commit`)).status, 200);
      assert.equal((await storedMd5s(pair.b.url)).get(id), source.get(id));
      await emptyNode(pair.b.url);
    }
    // The same error, code for code.
    assert.deepEqual(refusals[1], refusals[0]);
  });

  test('a zstd frame declaring more than its span, or no size at all, is refused before it is decoded', async () => {
    await emptyNode(pair.b.url);
    const { path, file, id } = await oneInstanceTransaction('zstd');
    // A frame for one byte more than the span: its header alone is refused.
    const larger = await zstdCompress(Buffer.concat([file, Buffer.alloc(1)]), 1);
    await assertRefused(
      path,
      id,
      await put(path, larger, crcHex(file)),
      new RegExp(`declares ${file.length + 1} bytes where the payload has ${file.length}`),
    );
    // A header that claims 1 TiB and nothing a decoder could read after it.
    const bomb = Buffer.from('28b52ffdc0580000000000010000', 'hex');
    await assertRefused(path, id, await put(path, Buffer.concat([bomb, Buffer.alloc(1024)]), crcHex(file)), /declares 1099511627776 bytes/);
    // A frame that does not say how large it is (as a streaming encoder writes it).
    const bare = new Encoder(1).encodeSync(file);
    await assertRefused(path, id, await put(path, bare, crcHex(file)), /does not declare its content size/);
    // Two frames, the second hidden behind the first.
    const good = await zstdCompress(file, 1);
    await assertRefused(path, id, await put(path, Buffer.concat([good, good]), crcHex(file)), /after the zstd frame/);
    assert.equal((await put(path, good, crcHex(file))).status, 200);
    assert.equal((await call(pair.b.url, 'DELETE', path)).status, 200);
  });
});
