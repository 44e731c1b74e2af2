// Bad input on every route of the transfers protocol, sent to a real node: each request gets the status
// and Orthanc error code that docs/protocol.md#errors and #routes and the captured Orthanc answers
// (CAPTURES.md §7) give, other methods get 405 with Allow, `//` paths work, and none of it changes the node
// (no job, no instance, no transaction, a transaction hit by bad PUTs still commits).
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { REAL_DICOM, call, getJson, json, md5, type Answer } from '../helpers/transfer-nodes.ts';
import { describe, needs } from '../helpers/data.ts';

interface Case {
  name: string;
  method: string;
  path: string;
  body?: Buffer | string;
  status: number;
  /** OrthancStatus of the error body; absent for 405 (empty body). */
  code?: number;
  /** The Allow header of a 405. */
  allow?: string;
}

/** Orthanc error codes used below (docs/protocol.md#errors). */
const E = {
  ParameterOutOfRange: 3,
  BadParameterType: 5,
  BadSequenceOfCalls: 6,
  NetworkProtocol: 9,
  BadFileFormat: 15,
  UnknownResource: 17,
  FullStorage: 19,
};

const UNKNOWN_ID = '0123abcd-0123abcd-0123abcd-0123abcd-0123abcd';
const UNKNOWN_TX = '00000000-0000-0000-0000-000000000000';

function checkAnswer(c: Case, a: Answer): void {
  const what = `${c.name}: ${c.method} ${c.path} -> ${a.status} ${a.body.toString('utf8').slice(0, 300)}`;
  assert.equal(a.status, c.status, what);
  if (c.status === 405) {
    assert.equal(a.headers.allow, c.allow, what);
    assert.equal(a.body.length, 0, what);
    return;
  }
  const body = json(a);
  assert.equal(body.HttpStatus, c.status, what);
  if (c.code !== undefined) assert.equal(body.OrthancStatus, c.code, what);
  assert.equal(body.Method, c.method, what);
  assert.equal(typeof body.Message, 'string', what);
}

describe('bad input on the transfers routes', { skip: needs(REAL_DICOM), timeout: 120_000 }, () => {
  let node: XferNode;
  /** Two stored instances (sorted by ID) with their bytes. */
  let inst: { ID: string; data: Buffer; MD5: string }[];
  let study: string;

  const snapshot = async () => ({
    jobs: await getJson<string[]>(node.url, '/jobs'),
    instances: (await getJson<string[]>(node.url, '/instances')).sort(),
    staging: (await readdir(join(node.dataDir, 'staging', 'push')).catch(() => [] as string[])).sort(),
  });

  before(async () => {
    const port = await freePort();
    node = await startXferNode({
      port,
      config: { HttpTimeout: 5, Transfers: { MaxHttpRetries: 0, RetryBudget: 0 }, OrthancPeers: { self: [`http://127.0.0.1:${port}/`] } },
    });
    inst = [];
    for (const f of ['IM-0001-0001.dcm', 'IM-0001-0002.dcm']) {
      const data = await readFile(join(REAL_DICOM, 'Brainix', 'Flair', f));
      const a = await call(node.url, 'POST', '/instances', data);
      assert.equal(a.status, 200);
      const r = json<{ ID: string; ParentStudy: string }>(a);
      inst.push({ ID: r.ID, data, MD5: md5(data) });
      study = r.ParentStudy;
    }
    inst.sort((x, y) => (x.ID < y.ID ? -1 : 1));
  });
  after(async () => {
    await node?.stop();
  });

  const query = (over: Record<string, unknown>) =>
    JSON.stringify({ Resources: [{ Level: 'Study', ID: study }], Compression: 'gzip', Peer: 'self', ...over });

  test('/transfers/send and /transfers/pull refuse bad queries and create no job', async () => {
    const before = await snapshot();
    const cases: Case[] = [];
    for (const route of ['/transfers/send', '/transfers/pull']) {
      cases.push(
        { name: 'not JSON', method: 'POST', path: route, body: '{"Resources": [', status: 400, code: E.BadFileFormat },
        { name: 'empty body', method: 'POST', path: route, body: '', status: 400, code: E.BadFileFormat },
        { name: 'an array', method: 'POST', path: route, body: '[]', status: 400, code: E.BadFileFormat },
        { name: 'Resources not an array', method: 'POST', path: route, body: query({ Resources: {} }), status: 400, code: E.BadFileFormat },
        {
          name: 'Level a number',
          method: 'POST',
          path: route,
          body: query({ Resources: [{ Level: 3, ID: study }] }),
          status: 400,
          code: E.BadFileFormat,
        },
        {
          name: 'unknown Level',
          method: 'POST',
          path: route,
          body: query({ Resources: [{ Level: 'Galaxy', ID: study }] }),
          status: 400,
          code: E.ParameterOutOfRange,
        },
        { name: 'Peer a number', method: 'POST', path: route, body: query({ Peer: 1 }), status: 400, code: E.BadFileFormat },
        { name: 'unknown peer', method: 'POST', path: route, body: query({ Peer: 'nosuchpeer' }), status: 404, code: E.UnknownResource },
        {
          name: 'Compression bzip2',
          method: 'POST',
          path: route,
          body: query({ Compression: 'bzip2' }),
          status: 400,
          code: E.ParameterOutOfRange,
        },
        {
          name: 'Compression "None"',
          method: 'POST',
          path: route,
          body: query({ Compression: 'None' }),
          status: 400,
          code: E.ParameterOutOfRange,
        },
        {
          name: 'Compression missing',
          method: 'POST',
          path: route,
          body: query({ Compression: undefined }),
          status: 400,
          code: E.BadFileFormat,
        },
        { name: 'Compression a number', method: 'POST', path: route, body: query({ Compression: 0 }), status: 400, code: E.BadFileFormat },
        { name: 'Priority 1.0', method: 'POST', path: route, body: query({}).replace(/}$/, ',"Priority":1.0}'), status: 400 },
        { name: 'Priority a string', method: 'POST', path: route, body: query({ Priority: '5' }), status: 400 },
        {
          name: 'SenderTransferID a number',
          method: 'POST',
          path: route,
          body: query({ SenderTransferID: 5 }),
          status: 400,
          code: E.BadFileFormat,
        },
        { name: 'GET', method: 'GET', path: route, status: 405, allow: 'POST' },
        { name: 'PUT', method: 'PUT', path: route, body: query({}), status: 405, allow: 'POST' },
        { name: 'DELETE', method: 'DELETE', path: route, status: 405, allow: 'POST' },
      );
    }
    for (const c of cases) checkAnswer(c, await call(node.url, c.method, c.path, c.body));
    assert.deepEqual(await snapshot(), before, 'no job, no instance, no transaction');
  });

  test('/transfers/lookup refuses bad bodies and unknown resources', async () => {
    const p = '/transfers/lookup';
    const cases: Case[] = [
      { name: 'not JSON', method: 'POST', path: p, body: 'nope', status: 400, code: E.BadFileFormat },
      {
        name: 'an object, not an array',
        method: 'POST',
        path: p,
        body: JSON.stringify({ Level: 'Study', ID: study }),
        status: 400,
        code: E.BadFileFormat,
      },
      {
        name: 'an item without ID',
        method: 'POST',
        path: p,
        body: JSON.stringify([{ Level: 'Study' }]),
        status: 400,
        code: E.BadFileFormat,
      },
      {
        name: 'ID a number',
        method: 'POST',
        path: p,
        body: JSON.stringify([{ Level: 'Study', ID: 7 }]),
        status: 400,
        code: E.BadFileFormat,
      },
      {
        name: 'unknown Level',
        method: 'POST',
        path: p,
        body: JSON.stringify([{ Level: 'Frame', ID: study }]),
        status: 400,
        code: E.ParameterOutOfRange,
      },
      {
        name: 'unknown study',
        method: 'POST',
        path: p,
        body: JSON.stringify([{ Level: 'Study', ID: 'nonexistent' }]),
        status: 404,
        code: E.UnknownResource,
      },
      {
        name: 'unknown instance',
        method: 'POST',
        path: p,
        body: JSON.stringify([{ Level: 'Instance', ID: UNKNOWN_ID }]),
        status: 404,
        code: E.UnknownResource,
      },
      {
        name: 'uppercase instance ID',
        method: 'POST',
        path: p,
        body: JSON.stringify([{ Level: 'Instance', ID: inst[0]!.ID.toUpperCase() }]),
        status: 404,
        code: E.UnknownResource,
      },
      { name: 'GET', method: 'GET', path: p, status: 405, allow: 'POST' },
    ];
    for (const c of cases) checkAnswer(c, await call(node.url, c.method, c.path, c.body));
    // Level names are matched without regard to case, plural forms included (docs/protocol.md#json-encoding).
    const ok = await call(
      node.url,
      'POST',
      p,
      JSON.stringify([
        { Level: 'studies', ID: study },
        { Level: 'instance', ID: inst[0]!.ID },
      ]),
    );
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal(json(ok).CountInstances, 2);
  });

  test('/transfers/chunks refuses bad IDs and parameters; out-of-bounds ranges are simply shorter', async () => {
    const [x, y] = inst as [(typeof inst)[0], (typeof inst)[0]];
    const base = `/transfers/chunks/${x.ID}`;
    const cases: Case[] = [
      { name: 'uppercase ID', method: 'GET', path: `/transfers/chunks/${x.ID.toUpperCase()}?offset=0&size=10`, status: 404 },
      { name: 'unknown ID', method: 'GET', path: `/transfers/chunks/${UNKNOWN_ID}?offset=0&size=10`, status: 404, code: E.UnknownResource },
      { name: 'not an ID', method: 'GET', path: '/transfers/chunks/nonexistent?offset=0&size=10', status: 404 },
      { name: 'empty ID between dots', method: 'GET', path: `/transfers/chunks/${x.ID}..${y.ID}`, status: 404 },
      { name: 'offset not a number', method: 'GET', path: `${base}?offset=abc`, status: 400, code: E.BadParameterType },
      { name: 'negative offset', method: 'GET', path: `${base}?offset=-1&size=10`, status: 400, code: E.BadParameterType },
      { name: 'size not a number', method: 'GET', path: `${base}?offset=0&size=1e3`, status: 400, code: E.BadParameterType },
      {
        name: 'compression bzip2',
        method: 'GET',
        path: `${base}?offset=0&size=10&compression=bzip2`,
        status: 400,
        code: E.ParameterOutOfRange,
      },
      { name: 'POST', method: 'POST', path: base, status: 405, allow: 'GET' },
      { name: 'DELETE', method: 'DELETE', path: base, status: 405, allow: 'GET' },
    ];
    for (const c of cases) checkAnswer(c, await call(node.url, c.method, c.path, c.body));

    // docs/protocol.md#chunks: no length validation; a range past the data gives what there is (possibly
    // nothing).
    const past = await call(node.url, 'GET', `${base}?offset=${x.data.length - 100}&size=1000&compression=none`);
    assert.equal(past.status, 200);
    assert.deepEqual(past.body, x.data.subarray(x.data.length - 100));
    const beyond = await call(node.url, 'GET', `${base}?offset=${x.data.length + 5}&size=10&compression=none`);
    assert.equal(beyond.status, 200);
    assert.equal(beyond.body.length, 0);
    // A range across two instances, and size 0 meaning "to the end" (docs/protocol.md#chunks).
    const across = await call(node.url, 'GET', `/${base}.${y.ID}?offset=${x.data.length - 10}&size=0&compression=none`);
    assert.equal(across.status, 200);
    assert.deepEqual(across.body, Buffer.concat([x.data.subarray(x.data.length - 10), y.data]));
  });

  test('push transactions: bad creates change nothing; bad PUTs are refused and the transaction still commits', async () => {
    const before = await snapshot();
    const [x, y] = inst as [(typeof inst)[0], (typeof inst)[0]];
    const instances = [
      { ID: x.ID, MD5: x.MD5, Size: String(x.data.length) },
      { ID: y.ID, MD5: y.MD5, Size: String(y.data.length) },
    ];
    const half = Math.floor(x.data.length / 2);
    const buckets = [
      [{ ID: x.ID, Offset: '0', Size: String(half) }],
      [
        { ID: x.ID, Offset: String(half), Size: String(x.data.length - half) },
        { ID: y.ID, Offset: '0', Size: String(y.data.length) },
      ],
      // Out of bounds of x: refused when it is PUT.
      [{ ID: x.ID, Offset: String(x.data.length - 10), Size: '20' }],
      // An instance the transaction does not declare.
      [{ ID: UNKNOWN_ID, Offset: '0', Size: '10' }],
    ];
    const create = (over: Record<string, unknown>) =>
      JSON.stringify({ Instances: instances, Buckets: buckets, Compression: 'none', ...over });
    const p = '/transfers/push';
    const bad: Case[] = [
      { name: 'not JSON', method: 'POST', path: p, body: '{', status: 400, code: E.BadFileFormat },
      { name: 'empty', method: 'POST', path: p, body: '', status: 400, code: E.BadFileFormat },
      {
        name: 'Size a number',
        method: 'POST',
        path: p,
        body: create({ Instances: [{ ...instances[0], Size: x.data.length }, instances[1]] }),
        status: 400,
        code: E.BadFileFormat,
      },
      {
        name: 'Offset a number',
        method: 'POST',
        path: p,
        body: create({ Buckets: [[{ ID: x.ID, Offset: 0, Size: '10' }]] }),
        status: 400,
        code: E.BadFileFormat,
      },
      {
        name: 'a bucket not an array',
        method: 'POST',
        path: p,
        body: create({ Buckets: [{ ID: x.ID, Offset: '0', Size: '10' }] }),
        status: 400,
        code: E.BadFileFormat,
      },
      { name: 'Buckets missing', method: 'POST', path: p, body: create({ Buckets: undefined }), status: 400, code: E.BadFileFormat },
      { name: 'Instances missing', method: 'POST', path: p, body: create({ Instances: undefined }), status: 400, code: E.BadFileFormat },
      {
        name: 'MD5 a number',
        method: 'POST',
        path: p,
        body: create({ Instances: [{ ...instances[0], MD5: 5 }] }),
        status: 400,
        code: E.BadFileFormat,
      },
      {
        name: 'Compression bzip2',
        method: 'POST',
        path: p,
        body: create({ Compression: 'bzip2' }),
        status: 400,
        code: E.ParameterOutOfRange,
      },
      {
        name: 'Compression missing',
        method: 'POST',
        path: p,
        body: create({ Compression: undefined }),
        status: 400,
        code: E.BadFileFormat,
      },
      {
        name: 'a declared size larger than the free disk',
        method: 'POST',
        path: p,
        body: create({ Instances: [{ ID: x.ID, MD5: x.MD5, Size: '999999999999999' }] }),
        status: 507,
        code: E.FullStorage,
      },
      { name: 'GET', method: 'GET', path: p, status: 405, allow: 'POST' },
      { name: 'PUT', method: 'PUT', path: p, body: 'x', status: 405, allow: 'POST' },
    ];
    for (const c of bad) checkAnswer(c, await call(node.url, c.method, c.path, c.body));
    assert.deepEqual(await snapshot(), before, 'no transaction was created');

    // A good create, through `//` as an Orthanc sender writes it.
    const created = await call(node.url, 'POST', '//transfers/push', create({}));
    assert.equal(created.status, 200, created.body.toString());
    const tx = json<{ ID: string; Path: string }>(created);
    assert.equal(tx.Path, `/transfers/push/${tx.ID}`);
    assert.match(tx.ID, /^[0-9a-f-]{36}$/);

    const b0 = x.data.subarray(0, half);
    const b1 = Buffer.concat([x.data.subarray(half), y.data]);
    const putBad: Case[] = [
      {
        name: 'unknown transaction',
        method: 'PUT',
        path: `/transfers/push/${UNKNOWN_TX}/0`,
        body: b0,
        status: 404,
        code: E.UnknownResource,
      },
      { name: 'uppercase transaction', method: 'PUT', path: `/transfers/push/${tx.ID.toUpperCase()}/0`, body: b0, status: 404 },
      { name: 'index out of range', method: 'PUT', path: `${tx.Path}/7`, body: b0, status: 400, code: E.ParameterOutOfRange },
      { name: 'index not a number', method: 'PUT', path: `${tx.Path}/x1`, body: b0, status: 404 },
      { name: 'wrong size', method: 'PUT', path: `${tx.Path}/0`, body: 'xyz', status: 500, code: E.NetworkProtocol },
      { name: 'empty body', method: 'PUT', path: `${tx.Path}/1`, body: '', status: 500, code: E.NetworkProtocol },
      {
        name: 'chunk out of bounds',
        method: 'PUT',
        path: `${tx.Path}/2`,
        body: Buffer.alloc(20),
        status: 400,
        code: E.ParameterOutOfRange,
      },
      { name: 'undeclared instance', method: 'PUT', path: `${tx.Path}/3`, body: Buffer.alloc(10), status: 404, code: E.UnknownResource },
      // Spans of buckets (extension bucket-span): "first-last", in order, within the transaction.
      { name: 'span backwards', method: 'PUT', path: `${tx.Path}/1-0`, body: b0, status: 400, code: E.ParameterOutOfRange },
      { name: 'span past the end', method: 'PUT', path: `${tx.Path}/0-4`, body: b0, status: 400, code: E.ParameterOutOfRange },
      {
        name: 'span past 2^53',
        method: 'PUT',
        path: `${tx.Path}/0-99999999999999999999`,
        body: b0,
        status: 400,
        code: E.ParameterOutOfRange,
      },
      { name: 'span of the wrong size', method: 'PUT', path: `${tx.Path}/0-1`, body: b0, status: 500, code: E.NetworkProtocol },
      {
        name: 'span with a chunk out of bounds',
        method: 'PUT',
        path: `${tx.Path}/1-2`,
        body: Buffer.alloc(20),
        status: 400,
        code: E.ParameterOutOfRange,
      },
      { name: 'span without its end', method: 'PUT', path: `${tx.Path}/0-`, body: b0, status: 404 },
      { name: 'span without its start', method: 'PUT', path: `${tx.Path}/-1`, body: b0, status: 404 },
      { name: 'span of three numbers', method: 'PUT', path: `${tx.Path}/0-1-2`, body: b0, status: 404 },
      { name: 'GET a bucket', method: 'GET', path: `${tx.Path}/0`, status: 405, allow: 'PUT' },
      { name: 'POST a bucket', method: 'POST', path: `${tx.Path}/0`, body: b0, status: 405, allow: 'PUT' },
      { name: 'GET the transaction', method: 'GET', path: tx.Path, status: 405, allow: 'DELETE' },
      { name: 'GET the commit', method: 'GET', path: `${tx.Path}/commit`, status: 405, allow: 'POST' },
      {
        name: 'commit of an unknown transaction',
        method: 'POST',
        path: `/transfers/push/${UNKNOWN_TX}/commit`,
        status: 404,
        code: E.UnknownResource,
      },
      {
        name: 'DELETE of an unknown transaction',
        method: 'DELETE',
        path: `/transfers/push/${UNKNOWN_TX}`,
        status: 404,
        code: E.UnknownResource,
      },
    ];
    for (const c of putBad) checkAnswer(c, await call(node.url, c.method, c.path, c.body));

    // The bad PUTs did not hurt the transaction: the right buckets (as a span, then again one by one in
    // any order, through `//` paths) then commit.
    const spanPut = await call(node.url, 'PUT', `${tx.Path}/0-1`, Buffer.concat([b0, b1]));
    assert.equal(spanPut.status, 200, spanPut.body.toString());
    const held = await call(node.url, 'GET', `${tx.Path}/buckets`);
    assert.deepEqual(json(held), { Buckets: [0, 1], Count: 2 });
    assert.equal((await call(node.url, 'PUT', `/${tx.Path}/1`, b1)).status, 200);
    assert.equal((await call(node.url, 'PUT', `//transfers//push/${tx.ID}/0`, b0)).status, 200);
    const commit = await call(node.url, 'POST', `/${tx.Path}/commit`);
    assert.equal(commit.status, 200, commit.body.toString());
    assert.deepEqual(json(commit), {});
    assert.deepEqual(await snapshot(), before, 'the two instances were stored already; the transaction is gone');
    checkAnswer(
      { name: 'commit again', method: 'POST', path: `${tx.Path}/commit`, status: 404, code: E.UnknownResource },
      await call(node.url, 'POST', `${tx.Path}/commit`),
    );
  });

  test('a gzip transaction refuses a body that is not gzip, then accepts the real one', async () => {
    const [x] = inst as [(typeof inst)[0]];
    const create = JSON.stringify({
      Instances: [{ ID: x.ID, MD5: x.MD5, Size: String(x.data.length) }],
      Buckets: [[{ ID: x.ID, Offset: '0', Size: String(x.data.length) }]],
      Compression: 'gzip',
    });
    const tx = json<{ Path: string }>(await call(node.url, 'POST', '/transfers/push', create));
    checkAnswer(
      { name: 'raw bytes to a gzip transaction', method: 'PUT', path: `${tx.Path}/0`, status: 400, code: E.BadFileFormat },
      await call(node.url, 'PUT', `${tx.Path}/0`, x.data),
    );
    const gz = gzipSync(x.data);
    const mid = Math.floor(gz.length / 2);
    gz[mid] = (gz[mid] as number) ^ 0xff;
    checkAnswer(
      { name: 'corrupt gzip', method: 'PUT', path: `${tx.Path}/0`, status: 400, code: E.BadFileFormat },
      await call(node.url, 'PUT', `${tx.Path}/0`, gz),
    );
    assert.equal((await call(node.url, 'PUT', `${tx.Path}/0`, gzipSync(x.data))).status, 200);
    assert.equal((await call(node.url, 'DELETE', tx.Path)).status, 200);
    checkAnswer(
      { name: 'DELETE again', method: 'DELETE', path: tx.Path, status: 404, code: E.UnknownResource },
      await call(node.url, 'DELETE', tx.Path),
    );
  });

  test('/transfers/peers and /jobs: other methods, unknown and uppercase job IDs', async () => {
    const cases: Case[] = [
      { name: 'POST peers', method: 'POST', path: '/transfers/peers', body: '{}', status: 405, allow: 'GET' },
      { name: 'unknown job', method: 'GET', path: `/jobs/${UNKNOWN_TX}`, status: 404, code: E.UnknownResource },
      { name: 'pause unknown job', method: 'POST', path: `/jobs/${UNKNOWN_TX}/pause`, body: '', status: 404, code: E.UnknownResource },
      { name: 'GET a job control', method: 'GET', path: `/jobs/${UNKNOWN_TX}/cancel`, status: 405, allow: 'POST' },
    ];
    for (const c of cases) checkAnswer(c, await call(node.url, c.method, c.path, c.body));
    // A finished job cannot be resumed or cancelled; it can be resubmitted only after a failure.
    const h = json<{ ID: string }>(await call(node.url, 'POST', '/transfers/send', query({ Compression: 'none' })));
    for (let i = 0; i < 200; i++) {
      const j = await getJson<{ State: string }>(node.url, `/jobs/${h.ID}`);
      if (j.State === 'Success') break;
      assert.notEqual(j.State, 'Failure');
      await new Promise((r) => setTimeout(r, 50));
    }
    checkAnswer(
      { name: 'uppercase job', method: 'GET', path: `/jobs/${h.ID.toUpperCase()}`, status: 404 },
      await call(node.url, 'GET', `/jobs/${h.ID.toUpperCase()}`),
    );
    for (const action of ['resume', 'cancel', 'resubmit']) {
      checkAnswer(
        { name: `${action} a finished job`, method: 'POST', path: `/jobs/${h.ID}/${action}`, status: 400, code: E.BadSequenceOfCalls },
        await call(node.url, 'POST', `/jobs/${h.ID}/${action}`, ''),
      );
    }
    const peers = await call(node.url, 'GET', '//transfers/peers');
    assert.equal(peers.status, 200);
    assert.deepEqual(json(peers), { self: 'installed' });
  });
});
