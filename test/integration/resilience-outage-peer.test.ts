// A push whose receiver goes away for 60 s in the middle (killed, then started again on the same port and
// storage): the sender's retries, with backoff within the job's RetryBudget (default 120 s), carry the
// transfer over the outage without anyone acting, into the same transaction; the retries show in the
// job's Content.
import assert from 'node:assert/strict';
import { putIndex } from '../helpers/transfer-nodes.ts';
import { outageSuite } from './resilience-outage-common.ts';

outageSuite<number[]>({
  suite: 'a 60 s outage of the receiver',
  test: 'a push rides over its receiver being down for 60 s and completes into the same transaction',
  what: 'the receiver',
  route: 'send',
  compression: 'gzip',
  hold: (pair) => pair.toB.hold({ method: 'PUT', skip: 10 }),
  async cut(pair, gate) {
    const doneBefore = pair.toB
      .records({ method: 'PUT' })
      .filter((r) => r.status === 200)
      .map(putIndex);
    assert.equal(doneBefore.length, 10);
    await pair.crash('b');
    // The held PUTs now meet no receiver: cut connections, retried with backoff.
    gate.release();
    pair.toB.clearRules();
    return doneBefore;
  },
  async restore(pair, _doneBefore, during) {
    assert.ok((during.Content.Retries as number) > 0, 'retries are counted while the receiver is down');
    assert.match(String(during.Content.LastRetryCause), /bucket \d+/);
    assert.match(String(during.Content.LastRetryTime), /^\d{8}T\d{6}/);
    await pair.up('b');
  },
  async check(pair, doneBefore) {
    assert.equal(pair.toB.records({ method: 'POST', path: /^\/+transfers\/push$/ }).length, 1, 'the same transaction after the outage');
    // Buckets finished before the outage were not sent again.
    const puts = pair.toB.records({ method: 'PUT' });
    for (const i of doneBefore) assert.equal(puts.filter((r) => putIndex(r) === i).length, 1, `bucket ${i} sent once`);
    for (let i = 0; i < 44; i++)
      assert.equal(puts.filter((r) => putIndex(r) === i && r.status === 200).length, 1, `bucket ${i} accepted once`);
  },
});
