// A pull whose link to the data source is cut for 60 s in the middle (the proxy between the nodes cuts
// every connection it is given): the puller's retries, with backoff within the job's RetryBudget (default
// 120 s), carry the transfer over the outage without anyone acting, fetching no finished bucket again.
import assert from 'node:assert/strict';
import { assertStaging, chunkId } from '../helpers/transfer-nodes.ts';
import { outageSuite } from './resilience-outage-common.ts';

outageSuite<undefined>({
  suite: 'a 60 s outage of the link',
  test: 'a pull rides over 60 s without a link to its source and completes',
  what: 'the link',
  route: 'pull',
  compression: 'none',
  hold: (pair) => pair.toA.hold({ method: 'GET', path: '/transfers/chunks/', skip: 10 }),
  async cut(pair, gate) {
    // From now on every request towards A is cut as soon as it arrives; the four held go through.
    pair.toA.drop({});
    gate.release();
    return undefined;
  },
  async restore(pair) {
    assert.ok(
      pair.toA.records().some((r) => r.outcome === 'dropped'),
      'requests were cut during the outage',
    );
    pair.toA.clearRules();
  },
  async check(pair, _state, job, source) {
    const dropped = pair.toA.records().filter((r) => r.outcome === 'dropped').length;
    assert.ok(
      (job.Content.Retries as number) >= dropped,
      `every cut request was retried (${dropped} cut, ${String(job.Content.Retries)} retries)`,
    );
    const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    for (const x of source.keys()) {
      const rs = gets.filter((r) => chunkId(r) === x);
      assert.equal(rs.filter((r) => r.outcome === 'completed').length, 1, `instance ${x} fetched once`);
      assert.ok(
        rs.every((r) => r.outcome === 'completed' || r.outcome === 'dropped'),
        `only cut requests were tried again for ${x}`,
      );
    }
    await assertStaging(pair.b.dataDir, 'pull');
  },
});
