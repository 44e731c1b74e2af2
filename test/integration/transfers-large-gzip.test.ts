// End to end on generated data of every bucket class, with gzip (one member per bucket,
// docs/protocol.md#compression): push and pull deliver identical bytes, with one PUT per scheduled bucket and
// exactly the scheduled chunk URLs. The large multi-frame is 100 MB here (gzip runs at ~15 MB/s per core on
// the test machine); the 300 MB one travels uncompressed in transfers-large.test.ts.
import assert from 'node:assert/strict';
import { createGunzip } from 'node:zlib';
import { specChunkUrl } from '../helpers/transfer-nodes.ts';
import { bucketClassSuite } from './transfers-large-common.ts';

bucketClassSuite({
  compression: 'gzip',
  splitPieces: 2,
  largeMB: 100,
  suite: 'transfers of every bucket class, gzip',
  push: 'push: one gzip PUT per scheduled bucket; B has the same bytes',
  pull: 'pull: exactly the scheduled chunk URLs, answered as one gzip member each; B has the same bytes',
  async checkPut(r) {
    assert.equal(r.headers['content-encoding'], undefined);
  },
  async checkGet() {},
  async afterPull(buckets, s) {
    // A chunk answer asked again by hand is a gzip stream of exactly the bucket's length.
    const small = buckets.find((b) => b.length > 1);
    assert.ok(small);
    const res = await fetch(`${s.pair.a.url}${specChunkUrl(small, 'gzip')}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/gzip');
    let inflated = 0;
    const gunzip = createGunzip();
    gunzip.on('data', (d: Buffer) => (inflated += d.length));
    const done = new Promise<void>((r, j) => {
      gunzip.on('end', r);
      gunzip.on('error', j);
    });
    gunzip.end(Buffer.from(await res.arrayBuffer()));
    await done;
    assert.equal(
      inflated,
      small.reduce((x, c) => x + c.Size, 0),
    );
  },
});
