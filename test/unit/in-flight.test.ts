// The node's in-flight budget (InFlight): the request and byte caps, what a waiting request is told, an
// abort that takes nothing, and 0 meaning no cap at all.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InFlight } from '../../src/transfer/in-flight.ts';

const settle = () => new Promise<void>((r) => setImmediate(r));
const MB = 1024 * 1024;

test('the byte cap holds requests back until enough is released, in order, and tells them why', async () => {
  const b = new InFlight({ maxBytes: 3 * MB });
  const first = await b.acquire(2 * MB);
  const told: (string | undefined)[] = [];
  let admitted = false;
  const second = b
    .acquire(2 * MB, undefined, (why) => told.push(why))
    .then((r) => {
      admitted = true;
      return r;
    });
  await settle();
  assert.equal(admitted, false);
  assert.deepEqual(told, ["waits for room in this node's transfers in flight: 2 of 3 MB (Transfers.MaxInFlightSize)"]);
  assert.deepEqual(b.counters, { requests: 1, bytes: 2 * MB, peakRequests: 1, peakBytes: 2 * MB, waiting: 1, waited: 1 });
  first();
  const release = await second;
  assert.deepEqual(told.at(-1), undefined, 'told undefined once it goes on');
  assert.equal(b.counters.bytes, 2 * MB);
  assert.equal(b.counters.waiting, 0);
  release();
  // Larger than the cap: runs alone, counted as the cap, so the count never passes it.
  const huge = await b.acquire(50 * MB);
  assert.equal(b.counters.bytes, 3 * MB);
  huge();
  assert.equal(b.counters.peakBytes, 3 * MB);
  assert.equal(b.counters.bytes, 0);
});

test('the request cap counts requests whatever their size', async () => {
  const b = new InFlight({ maxRequests: 2 });
  const r1 = await b.acquire(0);
  const r2 = await b.acquire(10 * MB);
  const told: (string | undefined)[] = [];
  const third = b.acquire(1, undefined, (why) => told.push(why));
  await settle();
  assert.equal(b.counters.waiting, 1);
  assert.match(told[0] ?? '', /2 of 2 requests \(Transfers\.MaxRequestsInFlight\)/);
  r2();
  (await third)();
  r1();
  assert.deepEqual(b.counters, { requests: 0, bytes: 0, peakRequests: 2, peakBytes: 10 * MB, waiting: 0, waited: 1 });
});

test('a request aborted while it waits holds nothing, and run() releases after a failure', async () => {
  const b = new InFlight({ maxRequests: 1, maxBytes: MB });
  const held = await b.acquire(MB);
  const abort = new AbortController();
  const told: (string | undefined)[] = [];
  const waiting = b.acquire(10, abort.signal, (why) => told.push(why));
  await settle();
  abort.abort(new Error('job paused'));
  await assert.rejects(waiting, /job paused/);
  assert.deepEqual(b.counters, { requests: 1, bytes: MB, peakRequests: 1, peakBytes: MB, waiting: 0, waited: 1 });
  assert.equal(told.at(-1), undefined, 'the reason is withdrawn');
  held();
  // Waiting for bytes while holding a request slot, then aborted: the slot is given back too.
  const both = new InFlight({ maxRequests: 2, maxBytes: MB });
  const big = await both.acquire(MB);
  const stop = new AbortController();
  const blocked = both.acquire(1, stop.signal);
  await settle();
  stop.abort(new Error('gone'));
  await assert.rejects(blocked, /gone/);
  assert.equal(both.counters.requests, 1);
  big();
  await assert.rejects(
    both.run(100, undefined, async () => {
      assert.equal(both.counters.bytes, 100);
      throw new Error('bucket failed');
    }),
    /bucket failed/,
  );
  assert.deepEqual([both.counters.requests, both.counters.bytes], [0, 0]);
  assert.equal(await both.run(5, undefined, async () => 'done'), 'done');
});

test('caps of 0 hold nothing back: every request goes on at once and is still counted', async () => {
  const b = InFlight.fromConfig({ MaxRequestsInFlight: 0, MaxInFlightSize: 0 });
  assert.deepEqual(b.limits, { maxRequests: 0, maxBytes: 0 });
  const told: (string | undefined)[] = [];
  const releases = await Promise.all(Array.from({ length: 500 }, () => b.acquire(64 * MB, undefined, (why) => told.push(why))));
  assert.equal(b.counters.requests, 500);
  assert.equal(b.counters.bytes, 500 * 64 * MB);
  assert.equal(b.counters.waited, 0);
  assert.deepEqual(told, []);
  for (const r of releases) r();
  assert.equal(b.counters.requests, 0);
  // The configuration's MB become bytes.
  assert.deepEqual(InFlight.fromConfig({ MaxRequestsInFlight: 8, MaxInFlightSize: 64 }).limits, { maxRequests: 8, maxBytes: 64 * MB });
});
