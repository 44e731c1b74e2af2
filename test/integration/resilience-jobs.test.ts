// Jobs and transactions that a demanding user can rely on: after a kill -9 of the node, a running job
// resumes, a pending one stays pending, a paused one stays paused and a finished one keeps its history; a
// job whose retries outlast RetryBudget fails saying what failed last and why, its retries shown in its
// Content; a receiver never evicts an active transaction to make room (503 until there is room), and
// evicts an idle one only after IdleBeforeEviction, its sender then making a new one.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  REAL_DICOM,
  assertSameInstances,
  call,
  getJson,
  importFiles,
  listFiles,
  stagingEntries,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { describe, generatedDicom, needs } from '../helpers/data.ts';

/**
 * Without the real files, series of the generated tiny set stand in for them, each with at least the
 * buckets its test holds or fails (the running job's: more than seven of 128 KB; bucket 5 of 64 KB).
 */
const STAND_IN: Record<string, string> = {
  'Knee/T1': 'ct/study01/series02',
  'Brainix/Flair': 'multiframe',
  'Knee/T2': 'ct/study01/series03',
  'Brainix/Epi': 'mr/DX000010004/study1/series01',
};

async function folderOf(f: string): Promise<string> {
  return needs(REAL_DICOM) ? join(await generatedDicom(), STAND_IN[f] as string) : join(REAL_DICOM, f);
}

/** Series of the test data, imported into A, one resource per job. */
async function seriesOf(pair: Pair, folders: string[]): Promise<Map<string, { ID: string; Level: string }[]>> {
  const out = new Map<string, { ID: string; Level: string }[]>();
  for (const f of folders) {
    const before = new Set(await getJson<string[]>(pair.a.url, '/series'));
    await importFiles(pair.a.url, await listFiles(await folderOf(f)));
    const added = (await getJson<string[]>(pair.a.url, '/series')).filter((s) => !before.has(s));
    assert.equal(added.length, 1, `one series in ${f}`);
    out.set(
      f,
      added.map((ID) => ({ Level: 'Series', ID })),
    );
  }
  return out;
}

const job = (pair: Pair, id: string) => getJson<JobJson>(pair.a.url, `/jobs/${id}`);

describe('job states across a kill -9 of the node', { timeout: 120_000 }, () => {
  let pair: Pair;
  let series: Map<string, { ID: string; Level: string }[]>;

  before(async () => {
    pair = await startPair({
      common: { HttpTimeout: 30, Transfers: { BucketSize: 128, Threads: 4, RetryBudget: 60 } },
      a: { ConcurrentJobs: 1 },
    });
    series = await seriesOf(pair, ['Knee/T1', 'Brainix/Flair', 'Knee/T2', 'Brainix/Epi']);
  });
  after(async () => {
    await pair?.stop();
  });

  test('running resumes, pending stays pending, paused stays paused, finished keeps its history', async () => {
    const send = (f: string) =>
      startTransfer(pair.a.url, 'send', { Resources: series.get(f), Compression: 'gzip', Peer: 'b' }).then((h) => h.ID as string);
    const finished = await send('Knee/T1');
    const done = await waitJob(pair.a.url, finished);
    assert.equal(done.State, 'Success');
    // The next push is held mid-transfer; with ConcurrentJobs 1 the others wait behind it.
    const gate = pair.toB.hold({ method: 'PUT', skip: 3 });
    const running = await send('Brainix/Flair');
    await gate.waitHeld(4);
    const pending = await send('Knee/T2');
    const paused = await send('Brainix/Epi');
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${paused}/pause`, '')).status, 200);
    assert.deepEqual(
      [(await job(pair, running)).State, (await job(pair, pending)).State, (await job(pair, paused)).State],
      ['Running', 'Pending', 'Paused'],
    );

    await pair.crash('a');
    await pair.up('a');
    // The gate still holds the resumed job's PUTs: the states can be read while it runs.
    await gate.waitHeld(1);
    assert.equal((await job(pair, running)).State, 'Running', 'the running job runs again');
    assert.equal((await job(pair, pending)).State, 'Pending', 'the pending job is still pending');
    assert.equal((await job(pair, paused)).State, 'Paused', 'the paused job is still paused');
    const history = await job(pair, finished);
    assert.equal(history.State, 'Success', 'the finished job keeps its history');
    assert.deepEqual(history.Content, done.Content);

    gate.release();
    pair.toB.clearRules();
    assert.equal((await waitJob(pair.a.url, running)).State, 'Success');
    assert.equal((await waitJob(pair.a.url, pending)).State, 'Success');
    assert.equal((await job(pair, paused)).State, 'Paused', 'a paused job waits for resume');
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${paused}/resume`, '')).status, 200);
    assert.equal((await waitJob(pair.a.url, paused)).State, 'Success');
    // One transaction for the job that ran across the kill: it went on where it was.
    const creates = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
    assert.equal(creates.length, 4, 'one transaction per job');
    await assertSameInstances(pair.b.url, await storedMd5s(pair.a.url));
  });
});

describe('retry budget and transactions held by a busy receiver', { timeout: 120_000 }, () => {
  let pair: Pair;
  let series: Map<string, { ID: string; Level: string }[]>;
  const BUDGET_S = 8;

  before(async () => {
    pair = await startPair({
      common: { HttpTimeout: 30, Transfers: { BucketSize: 64, Threads: 4 } },
      a: { ConcurrentJobs: 2, Transfers: { RetryBudget: BUDGET_S } },
      // PushAdmissionWait 0: a create finding no room is answered 503 at once (the sender's retries are what is tested).
      b: { Transfers: { MaxPushTransactions: 1, IdleBeforeEviction: 3, PushAdmissionWait: 0 } },
      keepBodies: [{ method: 'POST', path: /^\/+transfers\/push$/ }],
    });
    series = await seriesOf(pair, ['Knee/T1', 'Knee/T2']);
  });
  after(async () => {
    await pair?.stop();
  });

  const reset = async () => {
    for (const s of await getJson<string[]>(pair.b.url, '/patients')) await call(pair.b.url, 'DELETE', `/patients/${s}`);
    pair.toB.clearRules();
    pair.toB.clearRecords();
  };
  const send = (f: string) =>
    startTransfer(pair.a.url, 'send', { Resources: series.get(f), Compression: 'none', Peer: 'b' }).then((h) => h.ID as string);

  test('a bucket that keeps failing fails the job once RetryBudget is spent, saying what failed last and why', async (t) => {
    await reset();
    pair.toB.failWith(500, { method: 'PUT', path: /\/5$/ });
    const started = Date.now();
    const id = await send('Knee/T1');
    const failed = await waitJob(pair.a.url, id, 60_000);
    const took = Date.now() - started;
    assert.equal(failed.State, 'Failure', JSON.stringify(failed));
    t.diagnostic(`ErrorDetails: ${failed.ErrorDetails}`);
    assert.ok(took >= BUDGET_S * 1000, `retried for the whole budget (${took} ms)`);
    assert.match(failed.ErrorDetails, /bucket 5 of \d+ on peer "b" failed \(retried for \d+ s\)/, failed.ErrorDetails);
    assert.match(failed.ErrorDetails, /HTTP 500 instead of 200: injected by the test proxy/, failed.ErrorDetails);
    const tries = pair.toB.records({ method: 'PUT', path: /\/5$/ }).length;
    assert.ok(tries >= 3, `bucket 5 was tried ${tries} times`);
    assert.equal(failed.Content.Retries, tries - 1, 'each retry is counted');
    assert.match(String(failed.Content.LastRetryCause), /^bucket 5: .*HTTP 500/);
    assert.match(String(failed.Content.LastRetryTime), /^\d{8}T\d{6}/);
    // As the plugin does after a bucket failure: the transaction is discarded.
    await pair.toB.waitFor('the DELETE of the transaction', (rs) => rs.some((r) => r.method === 'DELETE' && r.status === 200));
  });

  test('an active transaction is never evicted: the next create waits (503) until there is room', async () => {
    await reset();
    const gate = pair.toB.hold({ method: 'PUT', skip: 1 });
    const first = await send('Knee/T1');
    await gate.waitHeld(1);
    const second = await send('Knee/T2');
    await pair.toB.waitFor('a create refused with 503', (rs) => rs.some((r) => r.method === 'POST' && r.status === 503));
    assert.equal((await stagingEntries(pair.b.dataDir, 'push')).length, 1, 'the first transaction is still held');
    gate.release();
    pair.toB.clearRules();
    assert.equal((await waitJob(pair.a.url, first)).State, 'Success');
    const j2 = await waitJob(pair.a.url, second);
    assert.equal(j2.State, 'Success', JSON.stringify(j2));
    assert.ok((j2.Content.Retries as number) >= 1);
    assert.equal(pair.toB.records({ method: 'PUT' }).filter((r) => r.status === 404).length, 0, 'no PUT met an evicted transaction');
    const creates = pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
    assert.equal(creates.filter((r) => r.status === 200).length, 2, 'one transaction per job');
    await assertSameInstances(pair.b.url, await storedMd5s(pair.a.url));
  });

  test('a transaction idle for IdleBeforeEviction makes room; its sender then makes a new one', async () => {
    await reset();
    const gate = pair.toB.hold({ method: 'PUT', skip: 2 });
    const first = await send('Knee/T1');
    await gate.waitHeld(1);
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${first}/pause`, '')).status, 200);
    await waitJob(pair.a.url, first, 20_000, ['Paused']);
    gate.release();
    pair.toB.clearRules();
    const creates = () => pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ });
    const senderOf = (r: { headers: Record<string, unknown> }) => r.headers['sender-transfer-id'];
    const firstSender = senderOf(creates()[0]!);
    // The paused job's transaction sits idle: the second job's create is refused (503) while it has not been
    // idle for IdleBeforeEviction, then the idle transaction goes to make room and the create is taken.
    const second = await send('Knee/T2');
    const j2 = await waitJob(pair.a.url, second);
    assert.equal(j2.State, 'Success', JSON.stringify(j2));
    const secondCreates = creates().filter((r) => senderOf(r) !== firstSender);
    assert.ok(
      secondCreates.some((r) => r.status === 503),
      'the idle transaction was not evicted at once',
    );
    assert.equal(secondCreates.at(-1)?.status, 200, 'the create was taken once the transaction had been idle long enough');
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${first}/resume`, '')).status, 200);
    const j1 = await waitJob(pair.a.url, first);
    assert.equal(j1.State, 'Success', JSON.stringify(j1));
    assert.equal(
      creates().filter((r) => senderOf(r) === firstSender && r.status === 200).length,
      2,
      'the evicted transaction was replaced',
    );
    assert.ok(
      pair.toB.records({ method: 'GET', path: /\/buckets$/ }).some((r) => r.status === 404),
      'the resumed job found its transaction gone',
    );
    await assertSameInstances(pair.b.url, await storedMd5s(pair.a.url));
  });
});
