// The bandwidth policy between two real nodes on real DICOM: a push and a pull with a peer's RateLimit
// arrive whole, the job shows the limit in force, every byte that crossed (heads included) is counted as
// the recording proxy saw it, and a node put on a chosen day and hour (its test clock) applies the
// RateSchedule entry of that hour. No assertion on time: the limits' accuracy is the benchmark's.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { after, before, test } from 'node:test';
import { TEST_CLOCK_ENV } from '../../src/transfer/bandwidth/policy.ts';
import { describe, needs } from '../helpers/data.ts';
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
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';

/** Bytes of real DICOM moved by each transfer: a few seconds at the limits below. */
const DATA_BYTES = 6 * 1024 * 1024;

/** The node's metric samples, by name with labels. */
async function metrics(base: string): Promise<Map<string, number>> {
  const a = await call(base, 'GET', '/tools/metrics-prometheus');
  assert.equal(a.status, 200);
  const out = new Map<string, number>();
  for (const line of a.body.toString('utf8').split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

const metric = (m: Map<string, number>, key: string): number => {
  const v = m.get(key);
  assert.ok(v !== undefined, `metric ${key} is published`);
  return v;
};

/** Bytes of an HTTP head as written on the wire: start line, each header line, the blank line. */
function headBytes(start: string, headers: IncomingHttpHeaders | undefined): number {
  let n = start.length + 2 + 2;
  for (const [k, v] of Object.entries(headers ?? {})) {
    for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) n += k.length + 2 + Buffer.byteLength(one) + 2;
  }
  return n;
}

/** What the proxy saw cross, each way: bodies and heads of every exchange. */
function seen(records: readonly ProxyRecord[]): { out: number; in: number; outBodies: number; inBodies: number } {
  const s = { out: 0, in: 0, outBodies: 0, inBodies: 0 };
  for (const r of records) {
    s.out += headBytes(`${r.method} ${r.path} HTTP/1.1`, r.headers) + r.requestBytes;
    s.in += headBytes(`HTTP/1.1 ${r.status} OK`, r.responseHeaders) + r.responseBytes;
    s.outBodies += r.requestBytes;
    s.inBodies += r.responseBytes;
  }
  return s;
}

/** Polls job `id` (every 50 ms, at most a minute) until `done` says so; answers the job. */
async function waitFor(base: string, id: string, done: (j: JobJson) => boolean): Promise<JobJson> {
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    const j = await getJson<JobJson>(base, `/jobs/${id}`);
    if (done(j)) return j;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id}: the awaited state did not come within a minute`);
}

/** The first real files (by name) that add up to `bytes`. */
async function someRealFiles(bytes: number): Promise<string[]> {
  const out: string[] = [];
  let total = 0;
  for (const f of (await listFiles(REAL_DICOM)).sort()) {
    if (total >= bytes) break;
    out.push(f);
    total += (await stat(f)).size;
  }
  return out;
}

describe('transfers under a bandwidth limit', { skip: needs(REAL_DICOM), timeout: 240_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let resources: { Level: string; ID: string }[];

  before(async () => {
    // A limits what it sends to B, B what it pulls from A; both well above what a test would notice.
    pair = await startPair({ peerB: { RateLimit: 40 }, peerA: { RateLimit: 30 } });
    const imported = await importFiles(pair.a.url, await someRealFiles(DATA_BYTES));
    assert.ok(imported.md5.size > 0);
    source = await storedMd5s(pair.a.url);
    resources = [...source.keys()].map((ID) => ({ Level: 'Instance', ID }));
  });
  after(async () => {
    await pair?.stop();
  });

  for (const compression of ['none', 'gzip'] as const) {
    test(`push (${compression}) with the peer's RateLimit: whole, the limit shown, every byte counted`, async (t) => {
      await emptyNode(pair.b.url);
      pair.toB.clearRecords();
      const before = await metrics(pair.a.url);
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: compression, Peer: 'b' });
      const job = await waitJob(pair.a.url, h.ID as string, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Content.RateLimit, 40);
      await assertSameInstances(pair.b.url, source);
      const m = await metrics(pair.a.url);
      const counted = {
        out:
          metric(m, 'dicom_xfer_transfers_wire_bytes_total{direction="out"}') -
          metric(before, 'dicom_xfer_transfers_wire_bytes_total{direction="out"}'),
        in:
          metric(m, 'dicom_xfer_transfers_wire_bytes_total{direction="in"}') -
          metric(before, 'dicom_xfer_transfers_wire_bytes_total{direction="in"}'),
      };
      const wire = seen(pair.toB.records());
      t.diagnostic(`counted ${JSON.stringify(counted)}, crossed ${JSON.stringify(wire)}`);
      // Every body byte and every head is counted: within 1% of what crossed, heads estimated from what was sent.
      assert.ok(counted.out >= wire.outBodies, `${counted.out} counted, ${wire.outBodies} body bytes sent`);
      assert.ok(Math.abs(counted.out - wire.out) <= wire.out * 0.01, `out: ${counted.out} counted, ${wire.out} crossed`);
      assert.ok(Math.abs(counted.in - wire.in) <= Math.max(2048, wire.in * 0.05), `in: ${counted.in} counted, ${wire.in} crossed`);
      // The bucket bodies waited for their turn.
      const throttled = 'dicom_xfer_transfers_throttled_bytes_total{direction="out"}';
      assert.ok(metric(m, throttled) > metric(before, throttled));
      assert.equal(metric(m, 'dicom_xfer_transfers_rate_limit_mbps'), 0, 'no node limit, only the peer has one');
    });
  }

  test("pull with the peer's RateLimit: whole, the limit shown, the answers' bytes counted as they are read", async (t) => {
    await emptyNode(pair.b.url);
    pair.toA.clearRecords();
    const before = await metrics(pair.b.url);
    const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'none', Peer: 'a' });
    const job = await waitJob(pair.b.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal(job.Content.RateLimit, 30);
    await assertSameInstances(pair.b.url, source);
    const m = await metrics(pair.b.url);
    const key = 'dicom_xfer_transfers_wire_bytes_total{direction="in"}';
    const wire = seen(pair.toA.records());
    const counted = metric(m, key) - metric(before, key);
    t.diagnostic(`counted ${counted}, crossed ${JSON.stringify(wire)}`);
    assert.ok(counted >= wire.inBodies, `${counted} counted, ${wire.inBodies} body bytes received`);
    assert.ok(Math.abs(counted - wire.in) <= wire.in * 0.01, `in: ${counted} counted, ${wire.in} crossed`);
    const throttled = 'dicom_xfer_transfers_throttled_bytes_total{direction="in"}';
    assert.ok(metric(m, throttled) > metric(before, throttled));
  });

  test('a push paused while its pieces wait for a tight limit stops waiting at once, then resumes with nothing lost', async () => {
    await emptyNode(pair.b.url);
    // 2 Mbit/s: the transfer of a few MB would take many seconds; the pause comes as soon as bytes moved.
    const put = await call(pair.a.url, 'PUT', '/peers/b', JSON.stringify({ Url: `${pair.toB.url}/`, RateLimit: 2 }));
    assert.equal(put.status, 200, put.body.toString());
    try {
      const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'none', Peer: 'b' });
      const id = h.ID as string;
      const moving = await waitFor(pair.a.url, id, (j) => Number(j.Content.WireBytes ?? 0) > 0 || j.State !== 'Running');
      assert.equal(moving.State, 'Running', JSON.stringify(moving));
      assert.equal(moving.Content.RateLimit, 2);
      assert.equal((await call(pair.a.url, 'POST', `/jobs/${id}/pause`, '{}')).status, 200);
      await waitJob(pair.a.url, id, 60_000, ['Paused']);
      // Every piece that was waiting for its turn left the queue with the pause, none waits to be granted.
      assert.equal(metric(await metrics(pair.a.url), 'dicom_xfer_transfers_rate_waiting'), 0);
      await call(pair.a.url, 'PUT', '/peers/b', JSON.stringify({ Url: `${pair.toB.url}/`, RateLimit: 40 }));
      assert.equal((await call(pair.a.url, 'POST', `/jobs/${id}/resume`, '{}')).status, 200);
      const job = await waitJob(pair.a.url, id, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertSameInstances(pair.b.url, source);
    } finally {
      await call(pair.a.url, 'PUT', '/peers/b', JSON.stringify({ Url: `${pair.toB.url}/`, RateLimit: 40 }));
    }
  });

  test("a data source's Transfers.RateLimit paces the chunk answers it serves to a puller without a limit", async () => {
    const s = await startPair({ a: { Transfers: { RateLimit: 30 } } });
    try {
      const files = await someRealFiles(2 * 1024 * 1024);
      const imported = await importFiles(s.a.url, files);
      const ids = [...imported.md5.keys()];
      const before = await metrics(s.a.url);
      const h = await startTransfer(s.b.url, 'pull', {
        Resources: ids.map((ID) => ({ Level: 'Instance', ID })),
        Peer: 'a',
        Compression: 'none',
      });
      const job = await waitJob(s.b.url, h.ID as string, 60_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(job.Content.RateLimit, undefined, 'the puller has no limit of its own');
      assert.deepEqual(await storedMd5s(s.b.url), await storedMd5s(s.a.url));
      const m = await metrics(s.a.url);
      const key = 'dicom_xfer_transfers_throttled_bytes_total{direction="out"}';
      assert.ok(metric(m, key) > metric(before, key), "the answers waited for the source's limit");
      assert.equal(metric(m, 'dicom_xfer_transfers_rate_limit_mbps'), 30);
    } finally {
      await s.stop();
    }
  });

  test("the RateSchedule entry of the node's hour is in force, and Transfers.RateLimit outside it", async () => {
    const schedule = { Transfers: { RateLimit: 200, RateSchedule: [{ Days: 'Mon-Fri', From: '08:00', To: '18:00', RateLimit: 25 }] } };
    const run = async (clock: string): Promise<{ limit: unknown; metric: number }> => {
      const s = await startPair({ common: schedule });
      try {
        return await pushOnce(s, clock);
      } finally {
        await s.stop();
      }
    };
    // Monday 10:00 and Saturday 10:00 of the node's local time (2026-12-07 is a Monday).
    const inHours = await run('2026-12-07T10:00:00');
    assert.deepEqual(inHours, { limit: 25, metric: 25 });
    const weekend = await run('2026-12-12T10:00:00');
    assert.deepEqual(weekend, { limit: 200, metric: 200 });
  });

  /** Starts `s`'s node A again on `clock`, pushes a few instances to B, answers the limit A showed. */
  async function pushOnce(s: Pair, clock: string): Promise<{ limit: unknown; metric: number }> {
    await s.down('a');
    process.env[TEST_CLOCK_ENV] = clock;
    try {
      await s.up('a');
    } finally {
      delete process.env[TEST_CLOCK_ENV];
    }
    const files = (await someRealFiles(512 * 1024)).slice(0, 3);
    const imported = await importFiles(s.a.url, files);
    const ids = [...imported.md5.keys()];
    const h = await startTransfer(s.a.url, 'send', {
      Resources: ids.map((ID) => ({ Level: 'Instance', ID })),
      Peer: 'b',
      Compression: 'none',
    });
    const job = await waitJob(s.a.url, h.ID as string, 60_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.deepEqual([...(await storedMd5s(s.b.url)).keys()].sort(), ids.sort());
    const m = await metrics(s.a.url);
    return { limit: job.Content.RateLimit, metric: metric(m, 'dicom_xfer_transfers_rate_limit_mbps') };
  }
});
