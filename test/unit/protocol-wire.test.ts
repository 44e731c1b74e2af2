// Wire schemas of the transfers protocol: parsing the real captured bodies, re-serialising them byte for
// byte, and the Orthanc error code of each malformed input.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isXferError, type ErrorCode } from '../../src/errors.ts';
import {
  CommitStateSchema,
  HaveAnswerSchema,
  HeldBucketsSchema,
  RemoteJobSchema,
  firstIssue,
  isJsonRealToken,
  jsonMemberRawText,
  parseBucket,
  parseCompression,
  parseInstanceInfo,
  parseJobHandle,
  parseLevel,
  parseLookupAnswer,
  parseLookupRequest,
  parsePushCreate,
  parsePushHandle,
  parseRemoteJobHandle,
  parseTransferQuery,
  sortUniqueInstances,
  toWireJobHandle,
  toWireLookupAnswer,
  toWireLookupRequest,
  toWirePullTrigger,
  toWirePushCreate,
  toWirePushHandle,
  toWireRemoteJobHandle,
  toWireTransferQuery,
} from '../../src/protocol/wire.ts';
import { scheduleBuckets, DEFAULT_BUCKET_SIZE } from '../../src/protocol/buckets.ts';
import { CAPTURES, describe, needs } from '../helpers/data.ts';

const text = (name: string) => readFileSync(join(CAPTURES, name), 'utf8');
const json = (name: string): unknown => JSON.parse(text(name));

function throwsCode(fn: () => unknown, code: ErrorCode, http?: number): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isXferError(e), `expected an XferError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code} (${e.message})`);
    if (http !== undefined) assert.equal(e.http, http);
    return true;
  });
}

const ID1 = '0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd83918';
const MD5 = '8c76a5517571f846ba24f177c00506c2';

describe('captured JSON bodies', { skip: needs(CAPTURES) }, () => {
  test('every captured JSON body parses with the matching schema', () => {
    const jsonFiles = readdirSync(CAPTURES).filter((f) => {
      const head = readFileSync(join(CAPTURES, f)).subarray(0, 1).toString();
      return head === '{' || head === '[';
    });
    assert.ok(jsonFiles.length >= 12, `found ${jsonFiles.length} JSON captures`);
    const seen = new Set<string>();
    for (const f of jsonFiles) {
      const body = json(f);
      if (Array.isArray(body)) {
        if (body.every((x) => typeof x === 'string'))
          seen.add('plugins'); // GET /plugins
        else {
          assert.ok(parseLookupRequest(body).length > 0, f);
          seen.add('lookup-request');
        }
      } else if (body && typeof body === 'object') {
        const keys = Object.keys(body);
        if (keys.includes('CountInstances')) {
          const a = parseLookupAnswer(body);
          assert.equal(a.CountInstances, a.Instances.length, f);
          seen.add('lookup-answer');
        } else if (keys.includes('Buckets')) {
          parsePushCreate(body);
          seen.add('push-create');
        } else if (keys.includes('Resources')) {
          parseTransferQuery(body, text(f));
          seen.add('pull-trigger');
        } else if (keys.includes('Path')) {
          const h = parseJobHandle(body);
          assert.equal(parsePushHandle(body).Path, h.Path);
          seen.add('handle');
        } else {
          assert.deepEqual(keys, [], `${f}: unexpected object`); // the `{}` answers of PUT and commit
        }
      }
    }
    assert.deepEqual([...seen].sort(), ['handle', 'lookup-answer', 'lookup-request', 'plugins', 'pull-trigger', 'push-create']);
  });

  test('the Knee lookup answer: 50 instances, sizes as numbers, TotalSizeMB 4', () => {
    const a = parseLookupAnswer(json('18142-0002-POST-resp.bin'));
    assert.equal(a.Instances.length, 50);
    assert.equal(a.Originator, '3b0233aa-0a4e-4486-ae92-2f980e0d243d');
    assert.equal(a.TotalSize, 4118738);
    assert.equal(a.TotalSizeMB, 4);
    assert.deepEqual(a.Instances[0], { ID: '0793962c-6eb34ca2-51913662-1e684d1a-910a2f14', Size: 76560, MD5 });
    assert.equal(
      a.Instances.reduce((s, i) => s + i.Size, 0),
      4118738,
    );
  });

  test('the lookup answer is rebuilt byte for byte (sorted, compact, alphabetical keys)', () => {
    for (const f of ['18142-0002-POST-resp.bin', '18142-0005-POST-resp.bin']) {
      const a = parseLookupAnswer(json(f));
      const shuffled = [...a.Instances].reverse();
      assert.equal(JSON.stringify(toWireLookupAnswer(shuffled, a.Originator)), text(f), f);
    }
  });

  test('the push-create body is rebuilt byte for byte from its instances and the scheduler', () => {
    const body = parsePushCreate(json('18143-0003-POST-req.bin'));
    assert.equal(body.Compression, 'gzip');
    assert.equal(body.Instances.length, 50);
    const instances = sortUniqueInstances(body.Instances);
    const rebuilt = toWirePushCreate({
      Instances: instances,
      Buckets: scheduleBuckets(instances, { bucketSize: DEFAULT_BUCKET_SIZE }),
      Compression: 'gzip',
    });
    assert.equal(JSON.stringify(rebuilt), text('18143-0003-POST-req.bin'));
  });

  test('lookup request and pull trigger are rebuilt byte for byte', () => {
    for (const f of ['18142-0002-POST-req.bin', '18142-0005-POST-req.bin']) {
      assert.equal(JSON.stringify(toWireLookupRequest(parseLookupRequest(json(f)))), text(f));
    }
    const q = parseTransferQuery(json('18143-0006-POST-req.bin'));
    assert.equal(q.Originator, '3b0233aa-0a4e-4486-ae92-2f980e0d243d');
    assert.equal(q.Priority, 0);
    assert.equal(q.SenderTransferID, undefined);
    const trigger = toWirePullTrigger({ Compression: q.Compression, Originator: q.Originator ?? '', Peer: q.Peer, Resources: q.Resources });
    assert.equal(JSON.stringify(trigger), text('18143-0006-POST-req.bin'));
  });

  test('handles: job, push transaction and remote job', () => {
    const h = parseJobHandle(json('18143-0006-POST-resp.bin'));
    assert.deepEqual(h, toWireJobHandle('30c7349a-cfbc-4c6f-8784-b0ae3e468180'));
    const p = parsePushHandle(json('18143-0003-POST-resp.bin'));
    assert.deepEqual(p, toWirePushHandle('dd0a1eb1-e7d8-4462-94d8-59aa121e358f'));
    assert.deepEqual(parsePushHandle({ Path: '/x/y' }), { Path: '/x/y' });
    const r = {
      Peer: 'bproxy-pullmode',
      RemoteJob: '30c7349a-cfbc-4c6f-8784-b0ae3e468180',
      URL: 'http://127.0.0.1:18143//jobs/30c7349a-cfbc-4c6f-8784-b0ae3e468180',
    };
    assert.deepEqual(parseRemoteJobHandle(r), r);
    assert.deepEqual(Object.keys(toWireRemoteJobHandle(r.Peer, r.RemoteJob, r.URL)), ['Peer', 'RemoteJob', 'URL']);
  });
});

describe('resources and levels', { skip: needs(CAPTURES) }, () => {
  test('levels match case-insensitively, singular or plural, and are normalised', () => {
    const cases: [string, string][] = [
      ['Patient', 'Patient'],
      ['patients', 'Patient'],
      ['STUDY', 'Study'],
      ['Studies', 'Study'],
      ['series', 'Series'],
      ['Instance', 'Instance'],
      ['instances', 'Instance'],
      ['Image', 'Instance'],
      ['IMAGES', 'Instance'],
    ];
    for (const [input, level] of cases) assert.equal(parseLevel(input), level, input);
    for (const bad of ['Serie', 'Seriess', '', 'studys', 'toString', 'constructor'])
      throwsCode(() => parseLevel(bad), 'ParameterOutOfRange', 400);
  });

  test('lookup request: a bare array; shape errors are BadFileFormat, a bad level ParameterOutOfRange', () => {
    assert.deepEqual(parseLookupRequest([{ Level: 'studies', ID: ID1 }]), [{ ID: ID1, Level: 'Study' }]);
    assert.deepEqual(parseLookupRequest([]), []);
    throwsCode(() => parseLookupRequest({ Level: 'Study', ID: ID1 }), 'BadFileFormat', 400); // CAPTURES §2
    throwsCode(() => parseLookupRequest([{ Level: 'Study' }]), 'BadFileFormat');
    throwsCode(() => parseLookupRequest([{ Level: 5, ID: ID1 }]), 'BadFileFormat');
    throwsCode(() => parseLookupRequest(['x']), 'BadFileFormat');
    throwsCode(() => parseLookupRequest([{ Level: 'Stuff', ID: ID1 }]), 'ParameterOutOfRange', 400);
    // The plugin checks both fields are strings before reading the level.
    throwsCode(() => parseLookupRequest([{ Level: 'Stuff', ID: 7 }]), 'BadFileFormat');
    // Items are checked in order.
    throwsCode(() => parseLookupRequest([{ Level: 'Stuff', ID: ID1 }, { ID: 1 }]), 'ParameterOutOfRange');
    // Unknown resource IDs are not the schema's business (the lookup answers 404 later).
    assert.equal(parseLookupRequest([{ Level: 'Study', ID: 'nonexistent' }])[0]?.ID, 'nonexistent');
  });
});

describe('transfer query', { skip: needs(CAPTURES) }, () => {
  const ok = { Resources: [{ Level: 'Study', ID: ID1 }], Compression: 'gzip', Peer: 'b' };

  test('the send body of docs/protocol.md#send: its fields, other keys ignored, Priority defaults to 0', () => {
    const q = parseTransferQuery({ ...ok, Priority: -10, SenderTransferID: 'example-push-gzip', Originator: 'u', Extra: [1] });
    assert.deepEqual(q, {
      Resources: [{ Level: 'Study', ID: ID1 }],
      Peer: 'b',
      Compression: 'gzip',
      Priority: -10,
      SenderTransferID: 'example-push-gzip',
      Originator: 'u',
    });
    assert.equal(parseTransferQuery(ok).Priority, 0);
    assert.deepEqual(
      JSON.stringify(toWireTransferQuery(parseTransferQuery({ ...ok, Priority: 5 }))),
      `{"Compression":"gzip","Peer":"b","Priority":5,"Resources":[{"ID":"${ID1}","Level":"Study"}]}`,
    );
  });

  test('errors of CAPTURES §7: missing Compression is BadFileFormat, "bzip2" ParameterOutOfRange', () => {
    throwsCode(() => parseTransferQuery({ Resources: ok.Resources, Peer: 'b' }), 'BadFileFormat', 400);
    throwsCode(() => parseTransferQuery({ ...ok, Compression: 'bzip2' }), 'ParameterOutOfRange', 400);
    throwsCode(() => parseTransferQuery({ ...ok, Compression: 'None' }), 'ParameterOutOfRange');
    throwsCode(() => parseTransferQuery({ ...ok, Compression: 'GZIP' }), 'ParameterOutOfRange');
  });

  test('shape errors are BadFileFormat', () => {
    throwsCode(() => parseTransferQuery(null), 'BadFileFormat');
    throwsCode(() => parseTransferQuery([ok]), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, Resources: ok.Resources[0] }), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, Peer: 3 }), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, Compression: true }), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, Originator: 5 }), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, SenderTransferID: 5 }), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, Priority: '5' }), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, Priority: 1.5 }), 'BadFileFormat');
  });

  test('checks come in the plugin order: shape of the three required keys first, then the compression value', () => {
    // Peer missing and Compression bad: the shape check fails first.
    throwsCode(() => parseTransferQuery({ Resources: [], Compression: 'bzip2' }), 'BadFileFormat');
    // Compression bad and Originator bad: the compression value is checked before Originator.
    throwsCode(() => parseTransferQuery({ ...ok, Compression: 'bzip2', Originator: 5 }), 'ParameterOutOfRange');
    throwsCode(() => parseTransferQuery({ ...ok, Compression: 'bzip2', Priority: 1.5 }), 'ParameterOutOfRange');
  });

  test('Priority written 1.0 in the raw body is refused, 1 is accepted', () => {
    const raw = (p: string) => `{"Resources":[],"Compression":"gzip","Peer":"b","Priority":${p}}`;
    for (const p of ['1.0', '1e0', '10E-1', '-2.50', '0.0']) {
      throwsCode(() => parseTransferQuery(JSON.parse(raw(p)), raw(p)), 'BadFileFormat', 400);
    }
    for (const [p, v] of [
      ['1', 1],
      ['-10', -10],
      ['0', 0],
      ['42', 42],
    ] as const) {
      assert.equal(parseTransferQuery(JSON.parse(raw(p)), raw(p)).Priority, v);
    }
    // Without the raw text 1.0 cannot be told from 1.
    assert.equal(parseTransferQuery(JSON.parse(raw('1.0'))).Priority, 1);
    throwsCode(() => parseTransferQuery(JSON.parse(raw('4294967296')), raw('4294967296')), 'ParameterOutOfRange');
  });

  test('resources are checked after the plugin checks', () => {
    throwsCode(() => parseTransferQuery({ ...ok, Resources: [{ Level: 'Study' }] }), 'BadFileFormat');
    throwsCode(() => parseTransferQuery({ ...ok, Resources: [{ Level: 'Planet', ID: ID1 }] }), 'ParameterOutOfRange');
    assert.equal(parseTransferQuery({ ...ok, Resources: [{ Level: 'images', ID: ID1 }] }).Resources[0]?.Level, 'Instance');
  });
});

describe('raw JSON scan', () => {
  test('finds the last top-level member, skipping nested ones and strings', () => {
    const t = '{"A":{"Priority":2.5},"s":"\\"Priority\\":9.0","Priority" : 7 ,"B":[1,{"Priority":3.0}]}';
    assert.equal(jsonMemberRawText(t, 'Priority'), '7');
    assert.equal(jsonMemberRawText('{"Priority":1,"Priority":2.0}', 'Priority'), '2.0');
    assert.equal(jsonMemberRawText('{"Pri\\u006frity":1.0}', 'Priority'), '1.0');
    assert.equal(jsonMemberRawText('{"X":1}', 'Priority'), undefined);
    assert.equal(jsonMemberRawText('[{"Priority":1.0}]', 'Priority'), undefined);
    assert.equal(jsonMemberRawText('{"Priority":', 'Priority'), undefined);
    assert.equal(jsonMemberRawText('', 'Priority'), undefined);
    assert.equal(jsonMemberRawText('\n\t{ "Priority"\n:\n-3\n}', 'Priority'), '-3');
  });

  test('real tokens have a fraction or an exponent', () => {
    for (const t of ['1.0', '-0.5', '1e3', '2E+1']) assert.equal(isJsonRealToken(t), true, t);
    for (const t of ['1', '-12', '"1.0"', 'true', 'null']) assert.equal(isJsonRealToken(t), false, t);
  });
});

describe('instances, chunks and push-create bodies', { skip: needs(CAPTURES) }, () => {
  test('instance info: Size must be a decimal string, MD5 32 lowercase hex', () => {
    assert.deepEqual(parseInstanceInfo({ ID: 'd1', Size: '10', MD5 }), { ID: 'd1', Size: 10, MD5 });
    assert.equal(parseInstanceInfo({ ID: 'd1', Size: '9007199254740991', MD5 }).Size, 2 ** 53 - 1);
    assert.equal(parseInstanceInfo({ ID: 'd1', Size: '3000000000', MD5 }).Size, 3_000_000_000);
    throwsCode(() => parseInstanceInfo({ ID: 'd1', Size: 10, MD5 }), 'BadFileFormat', 400);
    for (const size of ['', '-1', '1.5', ' 1', '0x10', '1e3', '9007199254740992']) {
      throwsCode(() => parseInstanceInfo({ ID: 'd1', Size: size, MD5 }), 'BadFileFormat');
    }
    throwsCode(() => parseInstanceInfo({ ID: 'd1', Size: '1', MD5: MD5.toUpperCase() }), 'BadFileFormat');
    throwsCode(() => parseInstanceInfo({ ID: 'd1', Size: '1', MD5: MD5.slice(1) }), 'BadFileFormat');
    throwsCode(() => parseInstanceInfo({ ID: 'D1', Size: '1', MD5 }), 'BadFileFormat');
    throwsCode(() => parseInstanceInfo({ ID: '../etc', Size: '1', MD5 }), 'BadFileFormat');
    throwsCode(() => parseInstanceInfo({ Size: '1', MD5 }), 'BadFileFormat');
  });

  test('bucket: an array of {ID, Offset, Size} with string numbers', () => {
    assert.deepEqual(
      parseBucket([
        { ID: 'd1', Offset: '5', Size: '5' },
        { ID: 'd2', Offset: '0', Size: '20' },
      ]),
      [
        { ID: 'd1', Offset: 5, Size: 5 },
        { ID: 'd2', Offset: 0, Size: 20 },
      ],
    );
    throwsCode(() => parseBucket({ ID: 'd1', Offset: '0', Size: '1' }), 'BadFileFormat');
    throwsCode(() => parseBucket([{ ID: 'd1', Offset: 0, Size: '1' }]), 'BadFileFormat');
    throwsCode(() => parseBucket([{ ID: 'd1', Offset: '0' }]), 'BadFileFormat');
  });

  test('push create: shape first (BadFileFormat), then compression (ParameterOutOfRange)', () => {
    const base = {
      Instances: [{ ID: 'dd3d63c3-43519b7e-45a429ed-7cfe6726-e3a6e086', MD5: '132ff1f52afa91e6e7c386021bfb15c5', Size: '74844' }],
      Buckets: [
        [{ ID: 'dd3d63c3-43519b7e-45a429ed-7cfe6726-e3a6e086', Offset: '0', Size: '37422' }],
        [{ ID: 'dd3d63c3-43519b7e-45a429ed-7cfe6726-e3a6e086', Offset: '37422', Size: '37422' }],
      ],
      Compression: 'none',
    };
    const p = parsePushCreate(base); // the hand-made transaction of CAPTURES §7
    assert.equal(p.Buckets[1]?.[0]?.Offset, 37422);
    throwsCode(() => parsePushCreate({ ...base, Compression: 'bzip2' }), 'ParameterOutOfRange', 400);
    throwsCode(() => parsePushCreate({ Instances: base.Instances, Buckets: base.Buckets }), 'BadFileFormat');
    throwsCode(() => parsePushCreate({ ...base, Buckets: {} }), 'BadFileFormat');
    throwsCode(
      () => parsePushCreate({ ...base, Instances: [{ ...base.Instances[0], Size: 74844 }], Compression: 'bzip2' }),
      'BadFileFormat',
    );
    throwsCode(() => parsePushCreate({ ...base, Buckets: [[{ ID: 'a', Offset: '0', Size: 3 }]], Compression: 'bzip2' }), 'BadFileFormat');
    throwsCode(() => parsePushCreate('{}'), 'BadFileFormat');
    // Sizes past 2 GiB are exact.
    const big = parsePushCreate({ ...base, Buckets: [[{ ID: 'a', Offset: '4294967296', Size: '2147483648' }]] });
    assert.deepEqual(big.Buckets[0], [{ ID: 'a', Offset: 4294967296, Size: 2147483648 }]);
  });

  test('lookup answer: Instances and Originator are required, the other fields are informative', () => {
    const inst = [{ ID: 'ab', MD5, Size: '3' }];
    assert.deepEqual(parseLookupAnswer({ Instances: inst, Originator: 'o' }), { Instances: [{ ID: 'ab', MD5, Size: 3 }], Originator: 'o' });
    assert.deepEqual(parseLookupAnswer({ Instances: [], Originator: 'o', TotalSize: 5, CountInstances: 'x' }), {
      Instances: [],
      Originator: 'o',
    });
    throwsCode(() => parseLookupAnswer({ Instances: inst }), 'BadFileFormat');
    throwsCode(() => parseLookupAnswer({ Originator: 'o' }), 'BadFileFormat');
    throwsCode(() => parseLookupAnswer({ Instances: [{ ID: 'ab', MD5, Size: 3 }], Originator: 'o' }), 'BadFileFormat');
  });

  test('handles need string fields', () => {
    throwsCode(() => parseJobHandle({ ID: 'x' }), 'BadFileFormat');
    throwsCode(() => parseJobHandle({ ID: 1, Path: '/jobs/1' }), 'BadFileFormat');
    throwsCode(() => parsePushHandle({ ID: 'x' }), 'BadFileFormat');
    throwsCode(() => parsePushHandle(''), 'BadFileFormat');
    throwsCode(() => parseRemoteJobHandle({ Peer: 'b', RemoteJob: 'j' }), 'BadFileFormat');
  });

  test('compression names are exact', () => {
    assert.equal(parseCompression('gzip'), 'gzip');
    assert.equal(parseCompression('none'), 'none');
    for (const bad of ['None', 'GZIP', 'deflate', '', 'gzip ']) throwsCode(() => parseCompression(bad), 'ParameterOutOfRange', 400);
  });

  test('serializers write sizes as strings and keys alphabetically', () => {
    const body = toWirePushCreate({
      Instances: [{ ID: 'ab', Size: 3_000_000_000, MD5 }],
      Buckets: [[{ ID: 'ab', Offset: 2_147_483_648, Size: 852_516_352 }]],
      Compression: 'none',
    });
    assert.equal(
      JSON.stringify(body),
      '{"Buckets":[[{"ID":"ab","Offset":"2147483648","Size":"852516352"}]],"Compression":"none",' +
        `"Instances":[{"ID":"ab","MD5":"${MD5}","Size":"3000000000"}]}`,
    );
    assert.equal(JSON.stringify(toWireJobHandle('j1')), '{"ID":"j1","Path":"/jobs/j1"}');
    assert.throws(() => toWirePushCreate({ Instances: [{ ID: 'ab', Size: -1, MD5 }], Buckets: [], Compression: 'none' }));
  });

  test('parse(serialize(x)) round-trips queries and push-create bodies', () => {
    const queries = [
      { Resources: [{ Level: 'Study' as const, ID: ID1 }], Peer: 'b', Compression: 'gzip' as const, Priority: 0 },
      { Resources: [], Peer: 'p', Compression: 'none' as const, Priority: -3, SenderTransferID: 's', Originator: 'o' },
    ];
    for (const q of queries) {
      const raw = JSON.stringify(toWireTransferQuery(q));
      assert.deepEqual(parseTransferQuery(JSON.parse(raw), raw), q);
    }
    const body = {
      Instances: [
        { ID: 'ab', Size: 3_000_000_000, MD5 },
        { ID: 'cd', Size: 0, MD5 },
      ],
      Buckets: [[{ ID: 'ab', Offset: 2_147_483_648, Size: 852_516_352 }], [{ ID: 'ab', Offset: 0, Size: 2_147_483_648 }]],
      Compression: 'gzip' as const,
    };
    assert.deepEqual(parsePushCreate(JSON.parse(JSON.stringify(toWirePushCreate(body)))), body);
  });

  test('lookup answer of docs/protocol.md#lookup: TotalSize string, TotalSizeMB rounded', () => {
    const a = toWireLookupAnswer(
      [
        { ID: 'q', Size: 450000, MD5 },
        { ID: 'l', Size: 10000000, MD5 },
        { ID: 'p', Size: 300000, MD5 },
        { ID: 'p', Size: 300000, MD5 },
      ],
      'orig',
    );
    assert.deepEqual(Object.keys(a), ['CountInstances', 'Instances', 'Originator', 'TotalSize', 'TotalSizeMB']);
    assert.equal(a.CountInstances, 3);
    assert.deepEqual(
      a.Instances.map((i) => i.ID),
      ['l', 'p', 'q'],
    );
    assert.equal(a.TotalSize, '10750000');
    assert.equal(a.TotalSizeMB, 10);
  });
});

describe('answers of the extensions, as a sender reads them', () => {
  test('the commit state: the four states of a receiver, the rest refused at State', () => {
    for (const s of [
      { State: 'Open', Buckets: 3, BucketsDone: 1 },
      { State: 'Open', Buckets: 3, BucketsDone: 3, LastCommitStatus: 507, LastCommitDetails: 'disk full' },
      { State: 'Committing' },
      { State: 'Success' },
      { State: 'Failure', Details: 'bad MD5' },
    ]) {
      const r = CommitStateSchema.safeParse(s);
      assert.ok(r.success, JSON.stringify(s));
      assert.equal(r.data.State, s.State);
    }
    for (const bad of [{ State: 'Done' }, { State: 1 }, {}, [], 'Success']) {
      const r = CommitStateSchema.safeParse(bad);
      assert.equal(r.success, false, JSON.stringify(bad));
      if (!r.success && typeof bad === 'object' && !Array.isArray(bad)) assert.equal(firstIssue(r.error).field, 'State');
    }
  });

  test('held buckets and held instances: indexes and Orthanc IDs only, the field of the first wrong item named', () => {
    assert.deepEqual(HeldBucketsSchema.parse({ Buckets: [0, 4], Count: 2 }).Buckets, [0, 4]);
    const b = HeldBucketsSchema.safeParse({ Buckets: [0, -1] });
    assert.ok(!b.success && firstIssue(b.error).field === 'Buckets[1]');
    assert.deepEqual(HaveAnswerSchema.parse({ Count: 1, Instances: ['ab-cd'] }).Instances, ['ab-cd']);
    const h = HaveAnswerSchema.safeParse({ Instances: ['AB'] });
    assert.ok(!h.success && firstIssue(h.error).field === 'Instances[0]');
  });

  test("a peer's job: State required, the informative keys dropped when malformed", () => {
    const j = RemoteJobSchema.parse({ State: 'Failure', Progress: 'x', Content: [1], ErrorCode: 20, ErrorDescription: 'Corrupted' });
    assert.deepEqual(j, { State: 'Failure', Progress: undefined, Content: undefined, ErrorCode: 20, ErrorDescription: 'Corrupted' });
    const r = RemoteJobSchema.safeParse({ Progress: 3 });
    assert.ok(!r.success && firstIssue(r.error).field === 'State');
  });
});
