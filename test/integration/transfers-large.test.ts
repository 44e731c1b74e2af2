// End to end on generated data of every bucket class, without compression: instances below BucketSize
// (grouped), between one and two BucketSize (one bucket each) and beyond (split), one a ~300 MB
// multi-frame. Push and pull deliver identical bytes, and the proxy sees exactly the buckets of
// docs/protocol.md#bucket-scheduling: the PUT bodies and the chunk URLs (docs/protocol.md#chunk-urls) and
// answers that the scheduler computes from the instances.
import assert from 'node:assert/strict';
import type { Bucket } from '../../src/protocol/wire.ts';
import { bucketMd5, putIndex } from '../helpers/transfer-nodes.ts';
import { bucketClassSuite } from './transfers-large-common.ts';

const total = (b: Bucket) => b.reduce((s, c) => s + c.Size, 0);

bucketClassSuite({
  compression: 'none',
  splitPieces: 101,
  largeMB: 300,
  suite: 'transfers of every bucket class, no compression',
  push: 'push: the create body and the PUT bodies are exactly the scheduled buckets; B has the same bytes',
  pull: 'pull: the chunk URLs and answers are exactly the scheduled buckets; B has the same bytes',
  async checkPut(r, b, s) {
    assert.equal(r.requestBytes, total(b), `length of bucket ${putIndex(r)}`);
    assert.equal(r.requestMd5, await bucketMd5(b, s.imported.path), `bytes of bucket ${putIndex(r)}`);
  },
  async checkGet(r, b, s) {
    assert.equal(r.responseBytes, total(b));
    assert.equal(r.responseMd5, await bucketMd5(b, s.imported.path));
  },
});
