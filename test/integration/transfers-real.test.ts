// End to end on real DICOM: every real test file imported into node A travels to node B by push, by pull
// and by send-in-pull-mode, with gzip and without compression; B then holds exactly A's instances, byte
// for byte (same IDs, same MD5s).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  REAL_DICOM,
  assertSameInstances,
  emptyNode,
  getJson,
  importFiles,
  listFiles,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type Imported,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { describe, needs } from '../helpers/data.ts';

describe('transfers of the real DICOM files between two nodes', { skip: needs(REAL_DICOM), timeout: 240_000 }, () => {
  let pair: Pair;
  let imported: Imported;
  /** Instance ID -> MD5 as A stores it. */
  let source: Map<string, string>;
  let patients: string[];

  before(async () => {
    // gzip stays gzip on the wire here; zstd, which two nodes otherwise use for it, has transfers-zstd.test.ts.
    pair = await startPair({ common: { Transfers: { Zstd: false } }, aliasesOfB: { 'b-pull': { RemoteSelf: 'a' } } });
    const files = await listFiles(REAL_DICOM);
    assert.equal(files.length, 239);
    imported = await importFiles(pair.a.url, files);
    // One file of the set is not DICOM that a node accepts; every other one is stored.
    assert.equal(imported.refused.length, 1, JSON.stringify(imported.refused));
    source = await storedMd5s(pair.a.url);
    assert.deepEqual([...source.keys()].sort(), [...imported.path.keys()].sort());
    patients = await getJson<string[]>(pair.a.url, '/patients');
    assert.ok(patients.length > 10);
  });
  after(async () => {
    await pair?.stop();
  });

  const resources = () => patients.map((ID) => ({ Level: 'Patient', ID }));

  for (const compression of ['gzip', 'none'] as const) {
    test(`push (${compression}): B ends up with every instance of A, same MD5s`, async () => {
      await emptyNode(pair.b.url);
      pair.toB.clearRecords();
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources(), Compression: compression, Peer: 'b' });
      const job = await waitJob(pair.a.url, h.ID as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Type, 'PushTransfer');
      assert.equal(job.Content.TotalInstances, source.size);
      await assertSameInstances(pair.b.url, source);
      // The data reached B as the bucket PUTs of one transaction, each bucket sent once (several
      // consecutive ones per PUT, as spans "first-last"), then one commit.
      const creates = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
      assert.equal(creates.length, 1);
      const puts = pair.toB.records({ method: 'PUT' });
      assert.ok(puts.every((r) => r.status === 200));
      assert.equal(puts.length, job.Content.BucketRequests);
      assert.equal(job.Content.Retries ?? 0, 0, String(job.Content.LastRetryCause));
      // A dicom-xfer peer gets gzip bodies as they are compressed (chunked), plain ones with their length.
      // A streamed gzip member is checked by its own trailer; a plain body by the CRC-32 read ahead.
      for (const put of puts) {
        if (compression === 'gzip') assert.equal(put.headers['transfer-encoding'], 'chunked', put.path);
        else assert.equal(put.headers['content-length'] !== undefined, true, put.path);
        if (compression === 'gzip') assert.equal(put.headers['x-dicom-xfer-crc32'], 'member', put.path);
        else assert.match(String(put.headers['x-dicom-xfer-crc32']), /^[0-9a-f]{8}$/, put.path);
      }
      const sent = new Map<number, number>();
      for (const put of puts) {
        const m = /\/(\d+)(?:-(\d+))?$/.exec(put.path);
        assert.ok(m, put.path);
        const first = Number(m[1]);
        const last = m[2] === undefined ? first : Number(m[2]);
        assert.ok(last >= first, put.path);
        for (let i = first; i <= last; i++) sent.set(i, (sent.get(i) ?? 0) + 1);
      }
      assert.equal(job.Content.CompletedHttpQueries, job.Content.TotalBuckets);
      assert.equal(sent.size, job.Content.TotalBuckets);
      assert.ok([...sent.values()].every((n) => n === 1));
      assert.ok([...sent.keys()].every((i) => i >= 0 && i < (job.Content.TotalBuckets as number)));
      // Small buckets joined into fewer requests: the extension bucket-span, on by default, at work.
      assert.ok((job.Content.PeerExtensions as string[]).includes('bucket-span'), JSON.stringify(job.Content.PeerExtensions));
      assert.ok(puts.length < (job.Content.TotalBuckets as number), `${puts.length} PUTs for ${job.Content.TotalBuckets} buckets`);
      assert.equal(pair.toB.records({ method: 'POST', path: /\/commit$/ }).length, 1);
      // Every answer says how many body bytes the transaction had received (extension receiver-progress):
      // each at least its own request's, the largest all of them, the clock never going back.
      assert.ok((job.Content.PeerExtensions as string[]).includes('receiver-progress'));
      const counts = puts.map((put) => {
        const m = /^(\d+) (\d+)$/.exec(String(put.responseHeaders?.['x-dicom-xfer-received']));
        assert.ok(m, `${put.path}: ${String(put.responseHeaders?.['x-dicom-xfer-received'])}`);
        assert.ok(Number(m[1]) >= put.requestBytes, put.path);
        return { bytes: Number(m[1]), at: Number(m[2]) };
      });
      const wire = puts.reduce((sum, put) => sum + put.requestBytes, 0);
      assert.equal(Math.max(...counts.map((c) => c.bytes)), wire);
      const byTime = [...counts].sort((x, y) => x.at - y.at || x.bytes - y.bytes);
      for (let i = 1; i < byTime.length; i++)
        assert.ok((byTime[i] as { bytes: number }).bytes >= (byTime[i - 1] as { bytes: number }).bytes);
    });

    // Damaged in its middle, a span is refused once it has all arrived (the CRC-32 differs); damaged in its
    // first byte, a gzip span is refused while the sender is still sending the rest, and the sender must
    // still read the refusal (not a cut connection) and send the span again.
    for (const at of [undefined, 0] as const) {
      const where = at === undefined ? 'in flight' : 'in its first byte';
      test(`push (${compression}): a span damaged ${where} is refused by its checksum (422) and sent again`, async () => {
        await emptyNode(pair.b.url);
        pair.toB.clearRecords();
        // The third PUT of the transfer has one byte flipped on its way to B.
        pair.toB.corruptRequest({
          method: 'PUT',
          path: /\/transfers\/push\/[0-9a-f-]+\/\d+(-\d+)?$/,
          skip: 2,
          times: 1,
          ...(at === undefined ? {} : { at }),
        });
        const h = await startTransfer(pair.a.url, 'send', { Resources: resources(), Compression: compression, Peer: 'b' });
        const job = await waitJob(pair.a.url, h.ID as string);
        assert.equal(job.State, 'Success', JSON.stringify(job));
        const puts = pair.toB.records({ method: 'PUT' });
        const damaged = puts.filter((r) => r.actions.includes('corrupt-request'));
        assert.equal(damaged.length, 1);
        assert.equal(damaged[0]!.status, 422, 'refused by its checksum');
        // The same span went again, whole, and was taken.
        const again = puts.filter((r) => r.path === damaged[0]!.path);
        assert.deepEqual(
          again.map((r) => r.status),
          [422, 200],
        );
        assert.ok((job.Content.Retries as number) >= 1);
        await assertSameInstances(pair.b.url, source);
      });
    }

    test(`pull (${compression}): B pulls every instance of A, same MD5s`, async () => {
      await emptyNode(pair.b.url);
      const h = await startTransfer(pair.b.url, 'pull', { Resources: resources(), Compression: compression, Peer: 'a' });
      const job = await waitJob(pair.b.url, h.ID as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Type, 'PullTransfer');
      assert.equal(job.Content.TotalInstances, source.size);
      await assertSameInstances(pair.b.url, source);
    });

    test(`send in pull mode (${compression}): A asks B to pull, B's job brings every instance`, async () => {
      await emptyNode(pair.b.url);
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources(), Compression: compression, Peer: 'b-pull' });
      assert.deepEqual(Object.keys(h).sort(), ['Peer', 'RemoteJob', 'URL']);
      assert.equal(h.Peer, 'b-pull');
      assert.equal(h.URL, `${pair.toB.url}//jobs/${h.RemoteJob}`);
      const job = await waitJob(pair.b.url, h.RemoteJob as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Type, 'PullTransfer');
      assert.equal(job.Content.Peer, 'a');
      assert.equal(typeof job.Content.Originator, 'string');
      await assertSameInstances(pair.b.url, source);
    });
  }
});
