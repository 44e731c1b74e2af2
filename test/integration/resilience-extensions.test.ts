// The protocol extensions between two dicom-xfer nodes, end to end through a recording proxy: capability
// discovery; no resend (a study sent or pulled twice moves no instance byte the second time, and only what
// the receiver lacks is sent); a bucket corrupted in flight is refused by its checksum and sent (or
// fetched) again; the commit answers at once and is followed to its end, and a commit retried after a lost
// answer is recognised; a transaction lost by the receiver is replaced.
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { toMegabytes } from '../../src/protocol/progress.ts';
import type { ProxyRecord } from '../helpers/proxy.ts';
import {
  REAL_DICOM,
  assertSameInstances,
  assertStaging,
  call,
  chunkId,
  emptyNode,
  getJson,
  importFiles,
  json,
  listFiles,
  putIndex,
  PER_BUCKET,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type Imported,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { describe, needs } from '../helpers/data.ts';

/** BucketSize 128 KB: each Brainix file (131-170 KB) travels alone in its bucket. */
const BUCKET_KB = 128;
const VERSION = (
  JSON.parse(await (await import('node:fs/promises')).readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

const isCreate = /^\/+transfers\/push$/;

function body(r: ProxyRecord, side: 'request' | 'response'): unknown {
  const b = side === 'request' ? r.requestBody : r.responseBody;
  assert.ok(b, `${side} body of ${r.method} ${r.path} kept`);
  return JSON.parse(b.toString('utf8'));
}

describe('protocol extensions between dicom-xfer nodes', { skip: needs(REAL_DICOM), timeout: 180_000 }, () => {
  let pair: Pair;
  let imported: Imported;
  let source: Map<string, string>;
  const files = new Map<string, Buffer>();
  /** CRC-32 of a bucket's payload, from the source node's files. */
  const payloadCrc = async (bucket: readonly { ID: string; Offset: string; Size: string }[]): Promise<string> => {
    let crc = 0;
    for (const c of bucket) {
      let f = files.get(c.ID);
      if (!f) {
        f = Buffer.from(await (await fetch(`${pair.a.url}/instances/${c.ID}/file`)).arrayBuffer());
        files.set(c.ID, f);
      }
      crc = crc32(f.subarray(Number(c.Offset), Number(c.Offset) + Number(c.Size)), crc);
    }
    return (crc >>> 0).toString(16).padStart(8, '0');
  };
  let resources: { Level: string; ID: string }[];
  let totalBytes: number;

  before(async () => {
    pair = await startPair({
      // The plugin's bucket layout (no spans), 4 requests in flight: the tests count PUTs per bucket. gzip
      // stays gzip on the wire (zstd has its own tests, in transfers-zstd.test.ts).
      common: { HttpTimeout: 30, Transfers: { BucketSize: BUCKET_KB, ...PER_BUCKET, RetryBudget: 30, Zstd: false } },
      hashBodies: true,
      keepBodies: [
        { method: 'POST', path: /^\/+transfers\/(push|have|lookup)$/ },
        { method: 'POST', path: /\/commit$/ },
        { method: 'GET', path: /\/transfers\/(capabilities|push\/.*\/(state|buckets))(\?wait=\d+)?$/ },
      ],
    });
    imported = await importFiles(pair.a.url, await listFiles(join(REAL_DICOM, 'Brainix')));
    assert.equal(imported.path.size, 44);
    source = await storedMd5s(pair.a.url);
    resources = (await getJson<string[]>(pair.a.url, '/studies')).map((ID) => ({ Level: 'Study', ID }));
    totalBytes = [...imported.size.values()].reduce((s, n) => s + n, 0);
  });
  after(async () => {
    await pair?.stop();
  });

  const reset = async (empty = true) => {
    if (empty) await emptyNode(pair.b.url);
    for (const p of [pair.toA, pair.toB]) {
      p.clearRules();
      p.clearRecords();
    }
  };

  test('each node lists its extensions in /transfers/capabilities and /plugins/transfers', async () => {
    const caps = await getJson(pair.a.url, '/transfers/capabilities');
    assert.deepEqual(caps, {
      Name: 'dicom-xfer',
      Version: VERSION,
      Protocol: 1,
      Extensions: { resume: 1, dedupe: 1, 'async-commit': 1, 'bucket-crc32': 2, 'receiver-progress': 1 },
    });
    const plugin = await getJson(pair.a.url, '/plugins/transfers');
    assert.equal(plugin.ID, 'transfers');
    assert.deepEqual(plugin.Capabilities, caps);
  });

  test('a push commits asynchronously: the commit answers at once and is followed to Success, recorded durably', async () => {
    await reset();
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, source);
    assert.deepEqual(job.Content.PeerExtensions, ['async-commit', 'bucket-crc32', 'dedupe', 'receiver-progress', 'resume']);
    // One probe per job, answered with B's capabilities.
    const probes = pair.toB.records({ method: 'GET', path: '/transfers/capabilities' });
    assert.ok(probes.length <= 1, 'at most one probe (the answer is cached a short while)');
    // Every PUT carried the CRC-32 of its uncompressed payload, as the bucket of the create body says.
    const created0 = body(pair.toB.records({ method: 'POST', path: isCreate })[0]!, 'request') as {
      Buckets: { ID: string; Offset: string; Size: string }[][];
    };
    for (const r of pair.toB.records({ method: 'PUT' })) {
      const bucket = created0.Buckets[putIndex(r)] as { ID: string; Offset: string; Size: string }[];
      assert.equal(r.headers['x-dicom-xfer-crc32'], await payloadCrc(bucket), `checksum of PUT ${putIndex(r)}`);
    }
    const commits = pair.toB.records({ method: 'POST', path: /\/commit$/ });
    assert.equal(commits.length, 1);
    assert.equal(commits[0]!.headers['x-dicom-xfer-async-commit'], '1');
    assert.deepEqual(body(commits[0]!, 'response'), { State: 'Committing' });
    const states = pair.toB.records({ method: 'GET', path: /\/state\?wait=\d+$/ });
    assert.equal(states.length, 1, 'the commit was followed with one long poll');
    assert.deepEqual(body(states.at(-1)!, 'response'), { State: 'Success' });
    // The outcome stays known to the receiver, across a crash too.
    const statePath = commits[0]!.path.replace(/^\/+/, '/').replace(/\/commit$/, '/state');
    await pair.crash('b');
    await pair.up('b');
    const after = await call(pair.b.url, 'GET', statePath);
    assert.equal(after.status, 200, after.body.toString());
    assert.deepEqual(json(after), { State: 'Success' });
    // The classic commit route still answers 404 for a transaction that is gone, as Orthanc does.
    assert.equal((await call(pair.b.url, 'POST', statePath.replace(/\/state$/, '/commit'))).status, 404);
  });

  test('the same study sent twice: the second push moves no instance and makes no transaction', async () => {
    await reset(false);
    assert.equal((await getJson<string[]>(pair.b.url, '/instances')).length, 44, 'B holds the study');
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal(pair.toB.records({ method: 'PUT' }).length, 0, 'no PUT');
    assert.equal(pair.toB.records({ method: 'POST', path: isCreate }).length, 0, 'no transaction');
    const have = pair.toB.records({ method: 'POST', path: /\/transfers\/have$/ });
    assert.equal(have.length, 1);
    assert.equal((body(have[0]!, 'request') as unknown[]).length, 44);
    assert.equal(job.Content.SkippedInstances, 44);
    assert.equal(job.Content.SkippedBytes, totalBytes);
    assert.equal(job.Content.SkippedSizeMB, toMegabytes(totalBytes));
    assert.equal(job.Content.TotalInstances, 44);
    assert.equal(job.Progress, 100);
  });

  test('the same study pulled twice: the second pull fetches no chunk', async () => {
    await reset(false);
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'gzip', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal(pair.toA.records({ method: 'POST', path: '/transfers/lookup' }).length, 1);
    assert.equal(pair.toA.records({ method: 'GET', path: '/transfers/chunks/' }).length, 0, 'no chunk GET');
    assert.equal(job.Content.SkippedInstances, 44);
    assert.equal(job.Content.SkippedBytes, totalBytes);
    await assertStaging(pair.b.dataDir, 'pull');
  });

  test('only the instances the receiver lacks are sent', async () => {
    await reset(false);
    const series = await getJson<string[]>(pair.b.url, '/series');
    assert.equal(series.length, 2);
    const goneIds = (await getJson<{ ID: string }[]>(pair.b.url, `/series/${series[0]}/instances`)).map((i) => i.ID).sort();
    assert.equal((await call(pair.b.url, 'DELETE', `/series/${series[0]}`)).status, 200);
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const creates = pair.toB.records({ method: 'POST', path: isCreate });
    assert.equal(creates.length, 1);
    const created = body(creates[0]!, 'request') as { Instances: { ID: string }[] };
    assert.deepEqual(created.Instances.map((i) => i.ID).sort(), goneIds, 'the transaction carries exactly the missing instances');
    assert.equal(job.Content.SkippedInstances, 44 - goneIds.length);
    assert.equal(pair.toB.records({ method: 'PUT' }).length, goneIds.length);
    await assertSameInstances(pair.b.url, source);
  });

  for (const compression of ['none', 'gzip'] as const) {
    test(`a push bucket corrupted in flight (${compression}) is refused by its checksum and sent again; the commit succeeds`, async () => {
      await reset();
      const k = 17;
      pair.toB.corruptRequest({ method: 'PUT', path: new RegExp(`/transfers/push/[0-9a-f-]+/${k}$`), times: 1 });
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: compression, Peer: 'b' });
      const job = await waitJob(pair.a.url, h.ID as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      const kth = pair.toB.records({ method: 'PUT' }).filter((r) => putIndex(r) === k);
      assert.deepEqual(
        kth.map((r) => r.status),
        [422, 200],
        'refused, then accepted',
      );
      assert.ok(kth[0]!.actions.includes('corrupt-request'));
      assert.notEqual(kth[0]!.requestMd5, kth[1]!.requestMd5, 'the refused body was the corrupted one');
      assert.equal(kth[0]!.headers['x-dicom-xfer-crc32'], kth[1]!.headers['x-dicom-xfer-crc32']);
      assert.match(String(kth[1]!.headers['x-dicom-xfer-crc32']), /^[0-9a-f]{8}$/);
      assert.equal(pair.toB.records({ method: 'PUT' }).filter((r) => r.status === 200).length, 44);
      assert.ok((job.Content.Retries as number) >= 1);
      assert.match(String(job.Content.LastRetryCause), new RegExp(`bucket ${k}`));
      await assertSameInstances(pair.b.url, source);
      await assertStaging(pair.b.dataDir, 'push');
    });

    test(`a pulled chunk corrupted in flight (${compression}) is fetched again; the bytes are right`, async () => {
      await reset();
      const victim = [...source.keys()].sort()[20] as string;
      pair.toA.corruptResponse({ method: 'GET', path: `/transfers/chunks/${victim}?`, times: 1 });
      const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: compression, Peer: 'a' });
      const job = await waitJob(pair.b.url, h.ID as string);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      const gets = pair.toA.records({ method: 'GET', path: `/transfers/chunks/${victim}?` });
      assert.equal(gets.length, 2, 'fetched twice');
      assert.ok(gets[0]!.actions.includes('corrupt-response'));
      assert.ok(gets.every((r) => r.headers['x-dicom-xfer-want-crc32'] === '2'));
      // A gzip answer is checked by its own trailer, a plain one by the CRC-32 read ahead.
      for (const g of gets) {
        if (compression === 'gzip') assert.equal(g.responseHeaders?.['x-dicom-xfer-crc32'], 'member');
        else assert.match(String(g.responseHeaders?.['x-dicom-xfer-crc32']), /^[0-9a-f]{8}$/);
      }
      assert.equal(gets[0]!.path, gets[1]!.path);
      const others = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' }).filter((r) => chunkId(r) !== victim);
      assert.equal(others.length, 43, 'every other bucket fetched once');
      await assertSameInstances(pair.b.url, source);
      await assertStaging(pair.b.dataDir, 'pull');
    });
  }

  test('a chunk answer names its checksum as the puller asked: the CRC-32 for version 1, member for gzip in version 2', async () => {
    const id = [...source.keys()].sort()[3] as string;
    const file = Buffer.from(await (await fetch(`${pair.a.url}/instances/${id}/file`)).arrayBuffer());
    const hex = (crc32(file) >>> 0).toString(16).padStart(8, '0');
    const path = (compression: string) => `/transfers/chunks/${id}?offset=0&size=${file.length}&compression=${compression}`;
    const ask = async (compression: string, want?: string) =>
      (await call(pair.a.url, 'GET', path(compression), undefined, want ? { 'x-dicom-xfer-want-crc32': want } : {})).headers[
        'x-dicom-xfer-crc32'
      ];
    assert.equal(await ask('gzip', '1'), hex);
    assert.equal(await ask('gzip', '2'), 'member');
    assert.equal(await ask('none', '1'), hex);
    assert.equal(await ask('none', '2'), hex);
    assert.equal(await ask('gzip'), undefined);
    assert.equal(await ask('gzip', '3'), undefined);
  });

  test('a chunk answer without compression and with its CRC-32, across instances from an offset: bytes, length, CRC-32', async () => {
    const ids = [...source.keys()].sort().slice(5, 9);
    const fileOf = async (id: string) => Buffer.from(await (await fetch(`${pair.a.url}/instances/${id}/file`)).arrayBuffer());
    const whole = Buffer.concat(await Promise.all(ids.map(fileOf)));
    // From inside the first instance to inside the last: the answer reads four ranges of four files.
    const offset = 1000;
    const size = whole.length - offset - 500;
    const expected = whole.subarray(offset, offset + size);
    const hex = (crc32(expected) >>> 0).toString(16).padStart(8, '0');
    for (const want of ['1', '2']) {
      const a = await call(
        pair.a.url,
        'GET',
        `/transfers/chunks/${ids.join('.')}?offset=${offset}&size=${size}&compression=none`,
        undefined,
        {
          'x-dicom-xfer-want-crc32': want,
        },
      );
      assert.equal(a.status, 200);
      assert.equal(a.headers['x-dicom-xfer-crc32'], hex);
      assert.equal(a.headers['content-length'], String(size));
      assert.equal(a.headers['content-type'], 'application/octet-stream');
      assert.ok(a.body.equals(expected), `want ${want}: the bytes of the four instances from the offset`);
    }
    // Answers one after the other: each holds its own bytes, none of the one before.
    for (const first of [9, 13, 17]) {
      const others = [...source.keys()].sort().slice(first, first + 3);
      const bytes = Buffer.concat(await Promise.all(others.map(fileOf)));
      const a = await call(
        pair.a.url,
        'GET',
        `/transfers/chunks/${others.join('.')}?offset=0&size=${bytes.length}&compression=none`,
        undefined,
        {
          'x-dicom-xfer-want-crc32': '2',
        },
      );
      assert.ok(a.body.equals(bytes), `instances ${first} to ${first + 2}`);
      assert.equal(a.headers['x-dicom-xfer-crc32'], (crc32(bytes) >>> 0).toString(16).padStart(8, '0'));
    }
    // An instance the store lacks is refused before any byte, as without the checksum.
    const absent = Array.from({ length: 5 }, () => '0'.repeat(8)).join('-');
    const missing = await call(
      pair.a.url,
      'GET',
      `/transfers/chunks/${ids[0]}.${absent}?offset=0&size=${whole.length}&compression=none`,
      undefined,
      {
        'x-dicom-xfer-want-crc32': '2',
      },
    );
    assert.equal(missing.status, 404);
  });

  test('a commit whose answer is lost is recognised when retried: not done twice', async () => {
    await reset();
    // B commits the first POST, but the sender never hears of it.
    pair.toB.drop({ method: 'POST', path: /\/commit$/, phase: 'after', times: 1 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const commits = pair.toB.records({ method: 'POST', path: /\/commit$/ });
    assert.equal(commits.length, 2);
    assert.equal(commits[0]!.outcome, 'dropped');
    assert.equal(commits[1]!.status, 200);
    const second = body(commits[1]!, 'response') as { State: string };
    assert.ok(['Committing', 'Success'].includes(second.State), `the retried commit joins the first: ${JSON.stringify(second)}`);
    // The sender did not have to check the instances one by one: the receiver knew the outcome.
    assert.equal(
      pair.toB.records({ method: 'POST', path: /\/transfers\/have$/ }).length,
      1,
      'only the dedupe question before the transfer',
    );
    assert.equal(pair.toB.records({ method: 'POST', path: isCreate }).length, 1);
    await assertSameInstances(pair.b.url, source);
  });

  test('a transaction the receiver lost is replaced by a new one and the push completes', async () => {
    await reset();
    const gate = pair.toB.hold({ method: 'PUT', skip: 8 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
    await gate.waitHeld(4);
    const first = pair.toB.records({ method: 'POST', path: isCreate });
    assert.equal(first.length, 1);
    const path = (body(first[0]!, 'response') as { Path: string }).Path;
    // Someone discards the transaction on B behind the sender's back.
    assert.equal((await call(pair.b.url, 'DELETE', path)).status, 200);
    gate.release();
    pair.toB.clearRules();
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal(pair.toB.records({ method: 'POST', path: isCreate }).length, 2, 'a second transaction');
    assert.ok(
      pair.toB.records({ method: 'PUT' }).some((r) => r.status === 404),
      'PUTs into the lost transaction were refused',
    );
    await assertSameInstances(pair.b.url, source);
    await assertStaging(pair.b.dataDir, 'push');
  });
});
