// Priority that preempts, end to end: two real dicom-xfer nodes, real DICOM files, and a recording relay between
// them that holds the bulk push's bucket PUTs so that it surely runs when a push of higher Priority starts. The
// bulk job gives way (Pending, Content.Waiting naming the other job) and starts no request while the other
// runs, then resumes in its own transaction: every bucket confirmed once, every instance identical at the
// destination. Equal priorities do not preempt; a preempted job can be paused, resumed and canceled.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  PER_BUCKET,
  REAL_DICOM,
  assertEachOnce,
  assertSameInstances,
  assertStaging,
  call,
  emptyNode,
  getJson,
  importFiles,
  listFiles,
  putIndex,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import type { ProxyRecord } from '../helpers/proxy.ts';
import { describe, generatedDicom, needs } from '../helpers/data.ts';

/** Without the real files, series of the generated tiny set stand in for them (the bulk: more than 8 buckets). */
const STAND_IN: Record<string, string> = {
  'Brainix/Flair': 'multiframe',
  'Knee/T1': 'ct/study01/series02',
  'Knee/T2': 'ct/study01/series03',
};

async function folderOf(f: string): Promise<string> {
  return needs(REAL_DICOM) ? join(await generatedDicom(), STAND_IN[f] as string) : join(REAL_DICOM, f);
}

const BULK = 'Brainix/Flair';
const HIGH = 'Knee/T1';
const OTHER = 'Knee/T2';
/** Imported into B only, for a pull. */
const PULLED = 'Knix/Loc';
/** One 1.8 MB ultrasound instance: many buckets of 128 KiB, as the real series gives. */
const PULLED_STAND_IN = 'us';

const sender = (r: ProxyRecord): unknown => r.headers['sender-transfer-id'];
/** The arrival number of the last request seen (the relay keeps counting across clearRecords). */
const lastSeq = (rs: readonly ProxyRecord[]): number => rs.reduce((m, r) => Math.max(m, r.seq), 0);

describe('priority that preempts between two nodes', { timeout: 240_000 }, () => {
  let pair: Pair;
  const series = new Map<string, string>();

  before(async () => {
    pair = await startPair({
      // The plugin's bucket layout (one PUT per bucket) and a fixed 4 requests in flight, so that the held
      // PUTs are every request the bulk job has in flight.
      common: { HttpTimeout: 30, Transfers: { ...PER_BUCKET, BucketSize: 128, RetryBudget: 60 } },
      a: { ConcurrentJobs: 2 },
    });
    for (const f of [BULK, HIGH, OTHER]) {
      const before = new Set(await getJson<string[]>(pair.a.url, '/series'));
      await importFiles(pair.a.url, await listFiles(await folderOf(f)));
      const added = (await getJson<string[]>(pair.a.url, '/series')).filter((s) => !before.has(s));
      assert.equal(added.length, 1, `one series in ${f}`);
      series.set(f, added[0] as string);
    }
  });
  after(async () => {
    await pair?.stop();
  });

  const job = (id: string) => getJson<JobJson>(pair.a.url, `/jobs/${id}`);
  const send = async (f: string, priority: number) =>
    (
      await startTransfer(pair.a.url, 'send', {
        Resources: [{ Level: 'Series', ID: series.get(f) }],
        Peer: 'b',
        Compression: 'none',
        Priority: priority,
      })
    ).ID as string;
  /** The sender-transfer-id of a job's requests (from its query, as the job sends it). */
  const senderOf = async (id: string) => {
    await pair.toB.waitFor(`a request of job ${id}`, (rs) => rs.some((r) => sender(r) !== undefined && !seen.has(sender(r))));
    const fresh = pair.toB.records().find((r) => sender(r) !== undefined && !seen.has(sender(r)));
    seen.add(sender(fresh as ProxyRecord));
    return sender(fresh as ProxyRecord);
  };
  const seen = new Set<unknown>();
  /** Instance ID -> MD5 on A of the instances of these series (what B must hold after sending them). */
  const expectFor = async (fs: string[]) => {
    const ids = new Set<string>();
    for (const f of fs)
      for (const id of (await getJson<{ Instances: string[] }>(pair.a.url, `/series/${series.get(f)}`)).Instances) ids.add(id);
    return new Map([...(await storedMd5s(pair.a.url))].filter(([id]) => ids.has(id)));
  };

  async function reset(): Promise<void> {
    pair.toB.clearRules();
    await emptyNode(pair.b.url);
    pair.toB.clearRules();
    pair.toB.clearRecords();
    seen.clear();
  }

  /**
   * The bulk push runs with its 4 requests held at the relay; then a push of Priority 10 starts: the bulk
   * job must give way. Answers both jobs, their senders, the held requests and the relay's count at the moment
   * the bulk job was seen preempted.
   */
  async function preemptBulk() {
    await reset();
    const gate = pair.toB.hold({ method: 'PUT', skip: 3 });
    const bulk = await send(BULK, 0);
    const bulkSender = await senderOf(bulk);
    await gate.waitHeld(4, 30_000);
    assert.equal((await job(bulk)).State, 'Running');
    const high = await send(HIGH, 10);
    const preempted = await waitJob(pair.a.url, bulk, 20_000, ['Pending']);
    const boundary = lastSeq(pair.toB.records());
    gate.release();
    pair.toB.clearRules();
    return { bulk, high, bulkSender, preempted, held: gate.records.filter((r) => sender(r) === bulkSender), boundary };
  }

  test('a push of higher Priority takes the link; the bulk push resumes after it, nothing sent twice', async () => {
    const { bulk, high, bulkSender, preempted, held, boundary } = await preemptBulk();
    assert.equal(preempted.Content['Waiting'], `preempted by job ${high} (priority 10); resumes where it stopped when that job ends`);
    assert.equal(preempted.ErrorCode, 0);
    const h = await waitJob(pair.a.url, high);
    assert.equal(h.State, 'Success', JSON.stringify(h));
    const highSender = sender(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).find((r) => sender(r) !== bulkSender)!);
    const highLast = Math.max(
      ...pair.toB
        .records()
        .filter((r) => sender(r) === highSender)
        .map((r) => r.seq),
    );
    const during = pair.toB.records().filter((r) => r.seq > boundary && r.seq < highLast && sender(r) === bulkSender);
    assert.deepEqual(
      during.map((r) => `${r.method} ${r.path}`),
      [],
      'the preempted job started no request while the higher one ran',
    );
    assert.ok(
      pair.toB.records({ method: 'PUT' }).some((r) => sender(r) === highSender && r.status === 200),
      'the higher job moved its buckets',
    );

    const b = await waitJob(pair.a.url, bulk);
    assert.equal(b.State, 'Success', JSON.stringify(b));
    assert.equal(b.Content['Waiting'], undefined);
    assert.ok(!b.Content['Retries'], `a preemption is not a retry: ${String(b.Content['Retries'])}`);
    const bulkRecords = pair.toB.records().filter((r) => sender(r) === bulkSender);
    const creates = bulkRecords.filter((r) => r.method === 'POST' && /^\/+transfers\/push$/.test(r.path));
    assert.deepEqual(
      creates.map((r) => r.status),
      [200],
      'the bulk job kept its transaction',
    );
    assertEachOnce(
      bulkRecords.filter((r) => r.method === 'PUT'),
      putIndex,
      Number(b.Content['TotalBuckets']),
      held,
    );
    assert.ok(held.length > 0 && held.every((r) => r.outcome === 'aborted'), 'the requests in flight were aborted');
    await assertSameInstances(pair.b.url, await expectFor([BULK, HIGH]));
    await assertStaging(pair.b.dir, 'push');
  });

  test('equal priorities do not preempt each other', async () => {
    await reset();
    const gate = pair.toB.hold({ method: 'PUT' });
    const first = await send(BULK, 3);
    const firstSender = await senderOf(first);
    const second = await send(HIGH, 3);
    const secondSender = await senderOf(second);
    await pair.toB.waitFor('both jobs with a PUT held', () =>
      [firstSender, secondSender].every((s) => gate.records.some((r) => sender(r) === s && r.outcome === undefined)),
    );
    const states = [(await job(first)).State, (await job(second)).State];
    assert.deepEqual(states, ['Running', 'Running'], 'both run side by side');
    gate.release();
    pair.toB.clearRules();
    for (const id of [first, second]) {
      const j = await waitJob(pair.a.url, id);
      assert.equal(j.State, 'Success', JSON.stringify(j));
      assert.equal(j.Content['Waiting'], undefined);
    }
    await assertSameInstances(pair.b.url, await expectFor([BULK, HIGH]));
  });

  test('a preempted job pauses, resumes and is canceled as any other', async () => {
    const { bulk, high, bulkSender } = await preemptBulk();
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${bulk}/pause`, '')).status, 200);
    const paused = await job(bulk);
    assert.equal(paused.State, 'Paused');
    assert.equal(paused.Content['Waiting'], undefined);
    assert.equal((await waitJob(pair.a.url, high)).State, 'Success');
    assert.equal((await job(bulk)).State, 'Paused', 'a paused job waits for resume, preempted or not');
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${bulk}/resume`, '')).status, 200);
    const done = await waitJob(pair.a.url, bulk);
    assert.equal(done.State, 'Success', JSON.stringify(done));
    const creates = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).filter((r) => sender(r) === bulkSender);
    assert.equal(creates.length, 1, 'paused and resumed in its own transaction');

    const again = await preemptBulk();
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${again.bulk}/cancel`, '')).status, 200);
    const canceled = await job(again.bulk);
    assert.equal(canceled.State, 'Failure');
    assert.equal(canceled.ErrorDescription, 'This job was canceled');
    await pair.toB.waitFor('the transaction discarded', (rs) => rs.some((r) => r.method === 'DELETE' && sender(r) === again.bulkSender));
    assert.equal((await waitJob(pair.a.url, again.high)).State, 'Success');
    await assertStaging(pair.b.dir, 'push');
    await assertSameInstances(pair.b.url, await expectFor([HIGH]));
  });

  test('a pull gives way to a push of higher Priority and resumes with its staged buckets', async () => {
    await reset();
    const folder = needs(REAL_DICOM) ? join(await generatedDicom(), PULLED_STAND_IN) : join(REAL_DICOM, PULLED);
    const imported = await importFiles(pair.b.url, await listFiles(folder));
    const seriesOnB = await getJson<string[]>(pair.b.url, '/series');
    assert.equal(seriesOnB.length, 1);
    const chunks = { method: 'GET', path: '/transfers/chunks/' };
    const gate = pair.toB.hold({ ...chunks, skip: 3 });
    const query = { Resources: [{ Level: 'Series', ID: seriesOnB[0] }], Peer: 'b', Compression: 'none', Priority: 0 };
    const pull = (await startTransfer(pair.a.url, 'pull', query)).ID as string;
    await gate.waitHeld(4, 30_000);
    const high = await send(HIGH, 10);
    const preempted = await waitJob(pair.a.url, pull, 20_000, ['Pending']);
    assert.equal(preempted.Content['Waiting'], `preempted by job ${high} (priority 10); resumes where it stopped when that job ends`);
    const boundary = lastSeq(pair.toB.records());
    const held = gate.records.slice();
    gate.release();
    pair.toB.clearRules();
    assert.equal((await waitJob(pair.a.url, high)).State, 'Success');
    const highLast = Math.max(...pair.toB.records({ method: 'PUT' }).map((r) => r.seq));
    const during = pair.toB.records(chunks).filter((r) => r.seq > boundary && r.seq < highLast);
    assert.deepEqual(
      during.map((r) => r.path),
      [],
      'the preempted pull fetched nothing while the push ran',
    );
    const j = await waitJob(pair.a.url, pull);
    assert.equal(j.State, 'Success', JSON.stringify(j));
    // Each chunk fetched once with success; the others are the ones held when the pull gave way, aborted.
    const ok = new Map<string, number>();
    for (const r of pair.toB.records(chunks)) {
      if (r.status === 200 && r.outcome === 'completed') ok.set(r.path, (ok.get(r.path) ?? 0) + 1);
      else assert.ok(held.includes(r) && r.outcome === 'aborted', `only a held fetch failed: ${r.path} ${r.outcome}`);
    }
    assert.equal(ok.size, Number(j.Content['TotalBuckets']));
    for (const [path, n] of ok) assert.equal(n, 1, `${path} fetched once`);
    const got = await storedMd5s(pair.a.url);
    for (const [id, m] of imported.md5) assert.equal(got.get(id), m, `MD5 of ${id} on A`);
    await assertStaging(pair.a.dir, 'pull');
  });
});

describe('the transaction of a preempted push is kept alive', { timeout: 180_000 }, () => {
  let pair: Pair;
  const series = new Map<string, string>();

  before(async () => {
    pair = await startPair({
      common: { HttpTimeout: 60, Transfers: { ...PER_BUCKET, BucketSize: 128, RetryBudget: 60 } },
      // B drops a transaction idle for 6 s; A, preempted, asks B about its transaction every second (half
      // of the shorter idle limit it has itself, peers being configured alike).
      a: { ConcurrentJobs: 2, Transfers: { IdleBeforeEviction: 2 } },
      b: { Transfers: { IdleTransactionTimeout: 6 } },
    });
    for (const f of [BULK, HIGH]) {
      const before = new Set(await getJson<string[]>(pair.a.url, '/series'));
      await importFiles(pair.a.url, await listFiles(await folderOf(f)));
      const added = (await getJson<string[]>(pair.a.url, '/series')).filter((s) => !before.has(s));
      series.set(f, added[0] as string);
    }
  });
  after(async () => {
    await pair?.stop();
  });

  const send = async (f: string, priority: number) =>
    (
      await startTransfer(pair.a.url, 'send', {
        Resources: [{ Level: 'Series', ID: series.get(f) }],
        Peer: 'b',
        Compression: 'none',
        Priority: priority,
      })
    ).ID as string;

  /** B's count of push transactions ended without a commit (expired ones among them). */
  async function abortedOnB(): Promise<number> {
    const text = (await call(pair.b.url, 'GET', '/tools/metrics-prometheus')).body.toString();
    const m = /^orthanc_transfers_aborted_push_count (\d+)/m.exec(text);
    return Number(m?.[1] ?? Number.NaN);
  }

  test('while the higher push is held longer than the receiver keeps an idle transaction, the bulk one survives', async () => {
    const gate = pair.toB.hold({ method: 'PUT', skip: 3 });
    const bulk = await send(BULK, 0);
    await gate.waitHeld(4, 30_000);
    const bulkSender = sender(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ })[0] as ProxyRecord);
    const high = await send(HIGH, 10);
    await waitJob(pair.a.url, bulk, 20_000, ['Pending']);
    // The higher push's own transaction sees no request (its PUTs are held): B expires it after 6 s idle,
    // which shows the bulk one was idle as long on B but for the keep-alives.
    for (let i = 0; i < 600 && (await abortedOnB()) < 1; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await abortedOnB(), 1, 'the idle transaction of the held push expired on B');
    const keepAlives = pair.toB.records({ method: 'GET', path: /\/buckets$/ }).filter((r) => sender(r) === bulkSender);
    assert.ok(keepAlives.length >= 2, `the preempted push kept its transaction alive (${keepAlives.length} calls)`);
    assert.ok(
      keepAlives.every((r) => r.status === 200),
      'B still held the transaction at every keep-alive',
    );
    gate.release();
    pair.toB.clearRules();
    assert.equal((await waitJob(pair.a.url, high)).State, 'Success');
    const b = await waitJob(pair.a.url, bulk);
    assert.equal(b.State, 'Success', JSON.stringify(b));
    const creates = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).filter((r) => sender(r) === bulkSender);
    assert.deepEqual(
      creates.map((r) => r.status),
      [200],
      'the bulk push resumed in its own transaction',
    );
    assert.equal(await abortedOnB(), 1, 'only the held push lost its transaction');
    await assertSameInstances(pair.b.url, await storedMd5s(pair.a.url));
  });
});
