// Every kind of state a node writes and reads back (job queries, Content and private state per job type;
// a push transaction's manifest, commit outcomes and received-bucket log) round-trips through its schema,
// and a value of the wrong shape is refused with the field at fault named.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { z } from 'zod';
import { isXferError } from '../../src/errors.ts';
import {
  FollowerPrivateSchema,
  PullContentSchema,
  PullPrivateSchema,
  PushContentSchema,
  PushPrivateSchema,
  RemotePullContentSchema,
  RemotePullQuerySchema,
  TransferJobQuerySchema,
} from '../../src/transfer/job-kinds.ts';
import { commitOutcomeCodec, doneEntryCodec, manifestCodec, type Manifest } from '../../src/transfer/push-state/files.ts';
import { storedCodec, type StoredCodec } from '../../src/util/stored-json.ts';

const ID1 = 'a1b2c3d4-e5f60718-293a4b5c-6d7e8f90-12345678';
const ID2 = 'b1b2c3d4-e5f60718-293a4b5c-6d7e8f90-12345678';
const MD5 = '0123456789abcdef0123456789abcdef';
const STUDY = [{ ID: 'e5f5fac1-c137ec9b-c47789fa-77fdbd9b-449b236d', Level: 'Study' as const }];
const instances = [
  { ID: ID1, Size: 525_738, MD5 },
  { ID: ID2, Size: 1_000, MD5 },
];
const buckets = [[{ ID: ID1, Offset: 0, Size: 525_738 }], [{ ID: ID2, Offset: 0, Size: 1_000 }]];

/** `value` written and read back equals itself; each of `bad` is refused naming `field`. */
function roundTrip<T>(codec: StoredCodec<T>, value: T, bad: [unknown, RegExp][]): void {
  const text = codec.toJSON(value);
  assert.deepEqual(codec.fromJSON(text), value);
  // Keys may come back in the schema's order; from then on the text is stable.
  const again = codec.toJSON(codec.fromJSON(text));
  assert.equal(codec.toJSON(codec.fromJSON(again)), again, 'stable text');
  for (const [b, field] of bad) {
    assert.throws(
      () => codec.fromJSON(JSON.stringify(b)),
      (e) => isXferError(e, 'BadFileFormat') && field.test(e.details ?? ''),
      `refused: ${JSON.stringify(b)}`,
    );
  }
  assert.throws(
    () => codec.fromJSON(text.slice(0, -1)),
    (e) => isXferError(e, 'BadFileFormat') && /not JSON/.test(e.details ?? ''),
  );
}

const codec = <S extends z.ZodType>(schema: S, what: string) => storedCodec(schema, what);

describe('persisted job state per job type', () => {
  const pushQuery = { Resources: STUDY, Peer: 'b', Compression: 'gzip' as const, Priority: 3, SenderTransferID: 'sender-1' };

  test('push and pull query', () => {
    const c = codec(TransferJobQuerySchema, 'query');
    roundTrip(c, pushQuery, [
      [{ ...pushQuery, Peer: 42 }, /^query: Peer: .*expected string/],
      [{ ...pushQuery, Compression: 'zip' }, /^query: Compression/],
      [{ ...pushQuery, Resources: [{ ID: 'x', Level: 'Galaxy' }] }, /^query: Resources\[0\]\.Level/],
      [{ ...pushQuery, Priority: 1.5 }, /^query: Priority/],
    ]);
    roundTrip(c, { ...pushQuery, Originator: 'origin-7' }, [[{ ...pushQuery, Originator: 7 }, /Originator/]]);
  });

  test('push Content, as a push writes it', () => {
    const content = {
      Adaptive: [
        [0.5, 4, 12.3],
        [1, 6, 20.1],
      ],
      BucketRequests: 2,
      BucketsInFlight: 4,
      CompletedHttpQueries: 2,
      Compression: 'gzip' as const,
      GzipLevel: 1,
      LastRetryCause: 'the capability probe: connection refused',
      LastRetryTime: '20261207T144839.140000',
      NetworkSpeedKBs: 1024,
      Peer: 'b',
      PeerExtensions: ['async-commit', 'bucket-crc32'],
      Resources: STUDY,
      Retries: 1,
      SkippedBytes: 0,
      SkippedInstances: 0,
      SkippedSizeMB: 0,
      TotalBuckets: 2,
      TotalBytes: 526_738,
      TotalInstances: 2,
      TotalSizeMB: 1,
      UploadedSizeMB: 1,
      WireBytes: 400_000,
      // A key of another version is kept as it is.
      SomethingNew: { nested: [1, 'two'] },
    };
    roundTrip(codec(PushContentSchema, 'Content'), content, [
      [{ ...content, TotalInstances: 'two' }, /^Content: TotalInstances: .*expected number/],
      [{ ...content, Adaptive: [[0, 'x']] }, /^Content: Adaptive\[0\]\[1\]/],
      [{ ...content, PeerExtensions: 'all' }, /^Content: PeerExtensions/],
      [[1, 2], /^Content: .*expected object/],
    ]);
  });

  test('push private state, before and after its transaction is made', () => {
    const c = codec(PushPrivateSchema, 'private state');
    roundTrip(c, { instances }, [[{ instances: [{ ID: ID1, Size: '10', MD5 }] }, /^private state: instances\[0\]\.Size/]]);
    roundTrip(
      c,
      {
        instances,
        sent: instances.slice(1),
        buckets: buckets.slice(1),
        skipped: { count: 1, bytes: 525_738 },
        path: '/transfers/push/x',
        cookie: 'c=1',
      },
      [
        [{ instances, buckets: [[{ ID: ID1, Offset: -1, Size: 1 }]] }, /^private state: buckets\[0\]\[0\]\.Offset/],
        [{ instances, path: 5 }, /^private state: path/],
        [{}, /^private state: instances/],
      ],
    );
  });

  test('pull Content and private state', () => {
    const content = {
      Compression: 'none' as const,
      Peer: 'a',
      Resources: STUDY,
      Originator: 'o',
      DownloadedSizeMB: 3,
      TotalInstances: 2,
      NetworkSpeedKBs: 0,
    };
    roundTrip(codec(PullContentSchema, 'Content'), content, [[{ ...content, DownloadedSizeMB: '3' }, /^Content: DownloadedSizeMB/]]);
    const priv = {
      instances,
      fetched: instances.slice(0, 1),
      buckets: buckets.slice(0, 1),
      staging: '/data/staging/pull/j',
      skipped: { count: 1, bytes: 1_000 },
    };
    roundTrip(codec(PullPrivateSchema, 'private state'), priv, [
      [{ ...priv, staging: undefined }, /^private state: staging/],
      [{ ...priv, skipped: { count: 'one', bytes: 1 } }, /^private state: skipped\.count/],
    ]);
  });

  test('remote pull follower query, Content (with keys mirrored from the peer) and private state', () => {
    const query = {
      Peer: 'b',
      RemoteJob: 'j-1',
      RemotePath: '/jobs/j-1',
      URL: 'http://127.0.0.1:1/jobs/j-1',
      Resources: STUDY,
      Compression: 'gzip' as const,
      Priority: 0,
      SenderTransferID: 's',
    };
    roundTrip(codec(RemotePullQuerySchema, 'query'), query, [[{ ...query, RemotePath: null }, /^query: RemotePath/]]);
    const content = {
      Peer: 'b',
      Resources: STUDY,
      Compression: 'gzip' as const,
      RemoteJob: 'j-1',
      RemoteJobURL: query.URL,
      RemoteState: 'Running',
      TotalInstances: 'as the peer wrote it',
    };
    roundTrip(codec(RemotePullContentSchema, 'Content'), content, [[{ ...content, RemoteState: 1 }, /^Content: RemoteState/]]);
    roundTrip(codec(FollowerPrivateSchema, 'private state'), { pausedRemote: true }, [
      [{ pausedRemote: 'yes' }, /^private state: pausedRemote/],
    ]);
    roundTrip(codec(FollowerPrivateSchema, 'private state'), {}, []);
  });
});

describe('persisted push transaction state', () => {
  test('manifest: the create body in its wire form on disk, parsed when read back', () => {
    const m: Manifest = {
      Version: 1,
      ID: '718f26a7-a982-440f-980b-c316051ba217',
      CreatedAt: 1_796_654_920_997,
      LastActivity: 1_796_654_921_000,
      Create: { Instances: instances, Buckets: buckets, Compression: 'gzip' },
    };
    const text = manifestCodec.toJSON(m);
    assert.equal(
      (JSON.parse(text) as { Create: { Instances: { Size: unknown }[] } }).Create.Instances[0]?.Size,
      '525738',
      'sizes as decimal strings',
    );
    const create = (JSON.parse(text) as { Create: unknown }).Create;
    roundTrip(manifestCodec, m, [
      [{ ...m, Create: create, Version: 2 }, /^manifest: Version/],
      [{ ...m, Create: create, CreatedAt: 'yesterday' }, /^manifest: CreatedAt/],
      [{ ...m, Create: create, ID: '../etc' }, /^manifest: ID/],
      [{ ...m, Create: { ...(create as object), Compression: 'zip' } }, /^manifest: Create\.Compression/],
      [{ ...m, Create: m.Create }, /^manifest: Create\.Instances\[0\]\.Size/],
    ]);
  });

  test('commit outcome and received-bucket log line', () => {
    const ok = { ID: '718f26a7-a982-440f-980b-c316051ba217', State: 'Success' as const, At: 1_796_654_920_997 };
    roundTrip(commitOutcomeCodec, ok, [
      [{ ...ok, State: 'Done' }, /^commit outcome: State/],
      [{ ...ok, At: 1.5 }, /^commit outcome: At/],
    ]);
    roundTrip(commitOutcomeCodec, { ...ok, State: 'Failure' as const, Details: 'disk full' }, [
      [{ ...ok, Details: 3 }, /^commit outcome: Details/],
    ]);
    roundTrip(doneEntryCodec, { Bucket: 3, At: 1_796_654_920_997 }, [
      [{ Bucket: -1, At: 1 }, /^received bucket: Bucket/],
      [{ Bucket: 1 }, /^received bucket: At/],
    ]);
  });
});
