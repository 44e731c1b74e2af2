// A dicom-xfer node (extensions on) talking to a peer that lists no extension (a dicom-xfer node with
// Transfers.Extensions false, which answers as an Orthanc with the plugin does) speaks exactly the classic
// protocol: every request seen by the proxy has the shape of the real plugin's traffic in
// ../shared/protocol/CAPTURES.md (method, path, header names, JSON keys of the bodies and answers),
// no x-dicom-xfer header and no extension route, apart from the one capability probe per job that the
// peer answers 404. The other way round, the peer's classic requests get classic answers.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ProxyRecord } from '../helpers/proxy.ts';
import {
  REAL_DICOM,
  assertSameInstances,
  call,
  emptyNode,
  getJson,
  importFiles,
  listFiles,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { CAPTURES, describe, needs } from '../helpers/data.ts';

/**
 * The requests of the classic protocol as CAPTURES.md shows them between two Orthancs with the plugin
 * (§3 push, §4 send in pull mode, §5 and §6 pull): method, path, the header names each carries beyond
 * Host/Accept/Content-Length, the JSON keys of the body and of the answer.
 */
interface Shape {
  name: string;
  method: string;
  path: RegExp;
  /** Header names (lowercase) the request carries, with their value when it is fixed. */
  headers: Record<string, string | RegExp>;
  /** JSON keys of the request body (sorted); 'array' for an array of objects with `itemKeys`; 'empty'. */
  body: string[] | 'array' | 'empty' | 'binary';
  itemKeys?: string[];
  /** JSON keys of the answer (sorted), or 'binary'. */
  answer: string[] | 'binary';
  /** The answer has at least the keys of `answer` (an Orthanc job, whose keys depend on its state). */
  answerAtLeast?: boolean;
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const ANY = /.+/;

const CLASSIC: Shape[] = [
  {
    // CAPTURES §3 "#3 POST /transfers/push": Content-Type application/json, sender-transfer-id.
    name: 'push create',
    method: 'POST',
    path: /^\/+transfers\/push$/,
    headers: { 'content-type': 'application/json', 'sender-transfer-id': ANY },
    body: ['Buckets', 'Compression', 'Instances'],
    answer: ['ID', 'Path'],
  },
  {
    // §3 "#4 PUT /transfers/push/<tx>/1": Content-Type application/octet-stream, sender-transfer-id; answer {}.
    name: 'bucket PUT',
    method: 'PUT',
    path: new RegExp(`^/+transfers/push/${UUID}/\\d+$`),
    headers: { 'content-type': 'application/octet-stream', 'sender-transfer-id': ANY },
    body: 'binary',
    answer: [],
  },
  {
    // §3 "#6 POST .../commit": empty body, sender-transfer-id (libcurl's form Content-Type aside); answer {}.
    name: 'commit',
    method: 'POST',
    path: new RegExp(`^/+transfers/push/${UUID}/commit$`),
    headers: { 'sender-transfer-id': ANY },
    body: 'empty',
    answer: [],
  },
  {
    // §4 "#2 POST /transfers/lookup": Content-Type application/json, sender-transfer-id; body [{ID, Level}].
    name: 'lookup',
    method: 'POST',
    path: /^\/+transfers\/lookup$/,
    headers: { 'content-type': 'application/json', 'sender-transfer-id': ANY },
    body: 'array',
    itemKeys: ['ID', 'Level'],
    answer: ['CountInstances', 'Instances', 'Originator', 'TotalSize', 'TotalSizeMB'],
  },
  {
    // §4 "#3 GET /transfers/chunks/...?offset=&size=&compression=": no custom header at all.
    name: 'chunk GET',
    method: 'GET',
    path: /^\/+transfers\/chunks\/[0-9a-f.-]+\?offset=\d+&size=\d+&compression=(none|gzip)$/,
    headers: {},
    body: 'empty',
    answer: 'binary',
  },
  {
    // §4 "#6 POST /transfers/pull": sender-transfer-id, no Content-Type of the sender's own.
    name: 'pull trigger',
    method: 'POST',
    path: /^\/+transfers\/pull$/,
    headers: { 'sender-transfer-id': ANY },
    body: ['Compression', 'Originator', 'Peer', 'Resources'],
    answer: ['ID', 'Path'],
  },
  {
    // docs/protocol.md#routes (routes of Orthanc itself): the job a send in pull mode started on the peer,
    // read by the sending node's job that follows it.
    name: 'peer job',
    method: 'GET',
    path: new RegExp(`^/+jobs/${UUID}$`),
    headers: {},
    body: 'empty',
    answer: ['Content', 'ID', 'Progress', 'State', 'Type'],
    answerAtLeast: true,
  },
];

/** Headers any HTTP client adds; everything else a request carries must be in its shape. */
const TRANSPORT_HEADERS = new Set(['host', 'accept', 'user-agent', 'content-length', 'connection', 'expect']);

/** The capability probe: the one request outside CAPTURES.md, answered 404 by a peer without extensions. */
const PROBE = /^\/+transfers\/capabilities$/;

function shapeOf(r: ProxyRecord): Shape {
  const s = CLASSIC.find((c) => c.method === r.method && c.path.test(r.path));
  assert.ok(s, `a request of the classic protocol: ${r.method} ${r.path}`);
  return s;
}

function keysOf(v: unknown): string[] {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.keys(v).sort() : [];
}

/** Checks one recorded request (and its answer) against its shape in CAPTURES.md. */
function assertClassic(r: ProxyRecord): void {
  const s = shapeOf(r);
  const what = `${s.name} ${r.method} ${r.path}`;
  assert.equal(r.status, 200, what);
  const names = Object.keys(r.headers).map((h) => h.toLowerCase());
  for (const n of names) assert.ok(!n.startsWith('x-dicom-xfer'), `${what}: no extension header (${n})`);
  for (const [n, v] of Object.entries(s.headers)) {
    const got = r.headers[n];
    assert.ok(typeof got === 'string', `${what}: header ${n}`);
    if (typeof v === 'string') assert.equal(got, v, `${what}: ${n}`);
    else assert.match(got, v, `${what}: ${n}`);
  }
  const extra = names.filter((n) => !TRANSPORT_HEADERS.has(n) && !(n in s.headers));
  // CAPTURES.md shows libcurl's form Content-Type on the body-less commit; sending none is what
  // docs/protocol.md#headers says.
  assert.deepEqual(
    extra.filter((n) => !(s.name === 'commit' && n === 'content-type')),
    [],
    `${what}: no other header`,
  );
  if (s.name === 'commit' && r.headers['content-type'] !== undefined)
    assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
  if (s.body === 'empty') assert.equal(r.requestBytes, 0, `${what}: empty body`);
  else if (s.body === 'binary') assert.ok(r.requestBytes > 0, `${what}: a bucket body`);
  else {
    assert.ok(r.requestBody, `${what}: body kept`);
    const b = JSON.parse(r.requestBody.toString('utf8')) as unknown;
    if (s.body === 'array') {
      assert.ok(Array.isArray(b), `${what}: an array`);
      for (const item of b) assert.deepEqual(keysOf(item), s.itemKeys, `${what}: item keys`);
    } else assert.deepEqual(keysOf(b), s.body, `${what}: body keys`);
  }
  if (s.answer === 'binary') assert.ok(r.responseBytes > 0, `${what}: bytes`);
  else {
    assert.ok(r.responseBody, `${what}: answer kept`);
    const a = JSON.parse(r.responseBody.toString('utf8')) as unknown;
    if (s.answerAtLeast) for (const k of s.answer) assert.ok(keysOf(a).includes(k), `${what}: answer key ${k}`);
    else assert.deepEqual(keysOf(a), s.answer, `${what}: answer keys`);
    if (s.name === 'lookup') {
      for (const i of (a as { Instances: unknown[] }).Instances) assert.deepEqual(keysOf(i), ['ID', 'MD5', 'Size']);
    }
  }
}

/**
 * Every request but the capability probes is classic; the probes (at most `jobs`) were answered 404 and
 * carried no extension header. Answers the classic requests.
 */
function assertOnlyClassic(records: readonly ProxyRecord[], jobs: number): ProxyRecord[] {
  const probes = records.filter((r) => r.method === 'GET' && PROBE.test(r.path));
  assert.ok(probes.length <= jobs, `at most one probe per job (${probes.length})`);
  for (const p of probes) {
    assert.equal(p.status, 404, 'the peer lists no extension');
    assert.ok(Object.keys(p.headers).every((n) => !n.startsWith('x-dicom-xfer')));
  }
  const classic = records.filter((r) => !probes.includes(r));
  for (const r of classic) assertClassic(r);
  return classic;
}

const byName = (rs: readonly ProxyRecord[]) => rs.map((r) => shapeOf(r).name);

/** The instance IDs named by the chunk GETs among `rs`, sorted (each bucket lists its instances). */
function chunkIds(rs: readonly ProxyRecord[]): string[] {
  return rs
    .filter((r) => r.method === 'GET' && r.path.includes('/transfers/chunks/'))
    .flatMap((r) => (/\/transfers\/chunks\/([0-9a-f.-]+)\?/.exec(r.path)?.[1] ?? '').split('.'))
    .sort();
}

describe('with a peer that lists no extension, the wire is exactly the classic protocol', {
  skip: needs(REAL_DICOM, CAPTURES),
  timeout: 120_000,
}, () => {
  let pair: Pair;
  let flair: Map<string, string>;
  let knee: Map<string, string>;
  let flairResources: { Level: string; ID: string }[];
  let kneeResources: { Level: string; ID: string }[];

  before(async () => {
    pair = await startPair({
      common: { HttpTimeout: 30, Transfers: { BucketSize: 128, Threads: 4, RetryBudget: 30 } },
      // B answers and behaves as an Orthanc with the plugin; A is a dicom-xfer node with its extensions.
      b: { Transfers: { Extensions: false } },
      aliasesOfB: { 'b-pullmode': { RemoteSelf: 'a' } },
      keepBodies: [{ method: 'POST' }, { method: 'PUT' }, { method: 'GET', path: /^\/+jobs\// }],
    });
    await importFiles(pair.a.url, await listFiles(join(REAL_DICOM, 'Brainix', 'Flair')));
    flair = await storedMd5s(pair.a.url);
    flairResources = (await getJson<string[]>(pair.a.url, '/series')).map((ID) => ({ Level: 'Series', ID }));
    await importFiles(pair.b.url, await listFiles(join(REAL_DICOM, 'Knee', 'T2')));
    knee = await storedMd5s(pair.b.url);
    kneeResources = (await getJson<string[]>(pair.b.url, '/series')).map((ID) => ({ Level: 'Series', ID }));
  });
  after(async () => {
    await pair?.stop();
  });

  const clear = () => {
    for (const p of [pair.toA, pair.toB]) {
      p.clearRules();
      p.clearRecords();
    }
  };

  test('the peer lists no extension: /transfers/capabilities is unknown, as on an Orthanc', async () => {
    assert.equal((await call(pair.b.url, 'GET', '/transfers/capabilities')).status, 404);
    assert.equal((await call(pair.b.url, 'POST', '/transfers/have', '[]')).status, 404);
    const plugin = await getJson<{ Capabilities: { Extensions: object } }>(pair.b.url, '/plugins/transfers');
    assert.deepEqual(plugin.Capabilities.Extensions, {});
  });

  test('push, then pull, from the dicom-xfer node: classic requests only', async () => {
    clear();
    const push = await startTransfer(pair.a.url, 'send', { Resources: flairResources, Compression: 'gzip', Peer: 'b' });
    const pushed = await waitJob(pair.a.url, push.ID as string);
    assert.equal(pushed.State, 'Success', JSON.stringify(pushed));
    assert.deepEqual(pushed.Content.PeerExtensions, []);
    const pull = await startTransfer(pair.a.url, 'pull', { Resources: kneeResources, Compression: 'none', Peer: 'b' });
    const pulled = await waitJob(pair.a.url, pull.ID as string);
    assert.equal(pulled.State, 'Success', JSON.stringify(pulled));

    const classic = assertOnlyClassic(pair.toB.records(), 2);
    const names = byName(classic);
    assert.equal(names.filter((n) => n === 'push create').length, 1);
    assert.equal(names.filter((n) => n === 'bucket PUT').length, flair.size);
    assert.equal(names.filter((n) => n === 'commit').length, 1);
    assert.equal(names.filter((n) => n === 'lookup').length, 1);
    assert.deepEqual(chunkIds(classic), [...knee.keys()].sort(), 'the chunk GETs cover every instance once');
    for (const id of flair.keys())
      assert.equal((await call(pair.b.url, 'GET', `/instances/${id}/attachments/dicom/md5`)).body.toString().trim(), flair.get(id));
    for (const id of knee.keys())
      assert.equal((await call(pair.a.url, 'GET', `/instances/${id}/attachments/dicom/md5`)).body.toString().trim(), knee.get(id));
    // A sends nothing to B outside a job.
    assert.deepEqual(
      pair.toA.records().filter((r) => r.path.includes('/transfers/')),
      [],
    );
  });

  test('send in pull mode: the trigger, then the peer pulls with classic requests and gets classic answers', async () => {
    clear();
    await emptyNode(pair.b.url);
    const h = await startTransfer(pair.a.url, 'send', { Resources: flairResources, Compression: 'gzip', Peer: 'b-pullmode' });
    assert.deepEqual(Object.keys(h).sort(), ['Peer', 'RemoteJob', 'URL']);
    const job = await waitJob(pair.b.url, h.RemoteJob as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, flair);
    // The trigger, then the sending node's job that follows the peer's reads it (Orthanc's GET /jobs/{id}).
    const toB = byName(assertOnlyClassic(pair.toB.records(), 0));
    assert.equal(toB[0], 'pull trigger');
    assert.ok(toB.length > 1 && toB.slice(1).every((n) => n === 'peer job'), toB.join(', '));
    const fromB = assertOnlyClassic(pair.toA.records(), 0);
    assert.equal(byName(fromB)[0], 'lookup');
    assert.deepEqual(chunkIds(fromB), [...flair.keys()].sort(), 'the chunk GETs cover every instance once');
    // The chunk answers of the dicom-xfer node carry no checksum header when none is asked for.
    const first = fromB.find((r) => r.method === 'GET') as ProxyRecord;
    const again = await call(pair.a.url, 'GET', first.path);
    assert.equal(again.status, 200);
    assert.deepEqual(
      Object.keys(again.headers).filter((n) => n.startsWith('x-dicom-xfer')),
      [],
    );
    assert.equal(again.headers['content-type'], 'application/gzip');
  });

  test('a push from the peer to the dicom-xfer node: classic requests, classic answers', async () => {
    clear();
    // B holds the Flair series since the pull above; A gets it back from B.
    await emptyNode(pair.a.url);
    const h = await startTransfer(pair.b.url, 'send', { Resources: flairResources, Compression: 'none', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.a.url, flair);
    const names = byName(assertOnlyClassic(pair.toA.records(), 0));
    assert.deepEqual(
      names.filter((n) => n !== 'bucket PUT'),
      ['push create', 'commit'],
    );
    for (const r of pair.toA.records({ method: 'PUT' })) assert.equal(r.responseBody?.toString().trim(), '{}');
    assert.equal(
      pair.toA
        .records({ method: 'POST', path: /\/commit$/ })[0]
        ?.responseBody?.toString()
        .trim(),
      '{}',
    );
  });
});
