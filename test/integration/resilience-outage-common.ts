// The 60 s outage tests (resilience-outage-*.test.ts) share one course: a transfer of the Brainix study held
// after ten buckets, an outage while four requests are held, the job still Running all through it, then
// Success with the same instances on B. What is cut, and what is checked after, is each file's.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import type { Gate } from '../helpers/proxy.ts';
import { assertSameInstances, getJson, startTransfer, waitJob, type JobJson, type Pair } from '../helpers/transfer-nodes.ts';
import { setupBrainix, sleep } from './resilience-common.ts';

/** BucketSize 128 KB: each Brainix file (131-170 KB) travels alone in its bucket. */
const BUCKET_KB = 128;
const OUTAGE_MS = 60_000;

/** One outage; `S` is what the outage keeps from its start for the checks after it. */
export interface Outage<S> {
  suite: string;
  test: string;
  /** What goes away, for the messages: "the receiver", "the link". */
  what: string;
  /** A pushes to B ('send'), or B pulls from A ('pull'). */
  route: 'send' | 'pull';
  compression: 'gzip' | 'none';
  /** Holds the transfer's requests once ten went through. */
  hold(pair: Pair): Gate;
  /** Starts the outage, once four requests are held, and lets them go. */
  cut(pair: Pair, gate: Gate): Promise<S>;
  /** Ends the outage; `job` is the job as it stands at the end of it. */
  restore(pair: Pair, state: S, job: JobJson): Promise<void>;
  /** Checks after the job succeeded and B holds the same instances as A (`source`: ID -> MD5 on A). */
  check(pair: Pair, state: S, job: JobJson, source: Map<string, string>): Promise<void>;
}

/** The suite of one outage of 60 s. */
export function outageSuite<S>(o: Outage<S>): void {
  describe(o.suite, { skip: needs(REAL_DICOM), timeout: 150_000 }, () => {
    let pair: Pair;
    let source: Map<string, string>;
    let resources: { Level: string; ID: string }[];

    before(async () => {
      ({ pair, source, resources } = await setupBrainix(BUCKET_KB));
    });
    after(async () => {
      await pair?.stop();
    });

    test(o.test, async (t) => {
      const [runner, peer] = o.route === 'send' ? [pair.a.url, 'b'] : [pair.b.url, 'a'];
      const gate = o.hold(pair);
      const h = await startTransfer(runner, o.route, { Resources: resources, Compression: o.compression, Peer: peer });
      const id = h.ID as string;
      await gate.waitHeld(4);
      const state = await o.cut(pair, gate);
      const cutFrom = Date.now();
      // Bounded wait, checking all along that the job keeps going.
      for (let i = 0; i < 1000 && Date.now() - cutFrom < OUTAGE_MS; i++) {
        await sleep(Math.min(5_000, OUTAGE_MS - (Date.now() - cutFrom)));
        const j = await getJson<JobJson>(runner, `/jobs/${id}`);
        assert.equal(j.State, 'Running', `the job waits for ${o.what}: ${JSON.stringify(j)}`);
      }
      await o.restore(pair, state, await getJson<JobJson>(runner, `/jobs/${id}`));
      const job = await waitJob(runner, id, 60_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      t.diagnostic(
        `${o.what} out for ${Math.round(OUTAGE_MS / 1000)} s; job done ${Math.round((Date.now() - cutFrom) / 1000)} s after the cut, ` +
          `${String(job.Content.Retries)} retries`,
      );
      await assertSameInstances(pair.b.url, source);
      await o.check(pair, state, job, source);
    });
  });
}
