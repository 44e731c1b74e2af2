// The node's one concurrency primitive (Limiter) and what is built on it (drain, mapLimit): FIFO order,
// limits that change while callers wait, aborts that take nothing, and failures that stop new work.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { drain, Limiter, mapLimit } from '../../src/util/concurrency.ts';

/** Lets every pending promise callback run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Starts `acquire` calls and records the order in which they are admitted. */
function queue(l: Limiter, weights: number[], order: number[], signals: (AbortSignal | undefined)[] = []) {
  return weights.map((w, i) =>
    l.acquire(w, signals[i]).then((release) => {
      order.push(i);
      return release;
    }),
  );
}

test('callers are admitted in FIFO order, and a light caller does not pass a heavy one at the head', async () => {
  const l = new Limiter(4);
  const first = await l.acquire(3);
  const order: number[] = [];
  // 0 needs 2 (does not fit beside 3), 1 needs 1 (would fit) but waits behind 0.
  const waiting = queue(l, [2, 1, 1], order);
  await settle();
  assert.deepEqual(order, []);
  assert.equal(l.queued, 3);
  assert.equal(l.wouldWait(1), true, 'a newcomer queues behind the waiters even though it fits');
  first();
  await settle();
  assert.deepEqual(order, [0, 1, 2]);
  assert.equal(l.inUse, 4);
  assert.equal(l.running, 3);
  for (const r of await Promise.all(waiting)) r();
  assert.equal(l.inUse, 0);
  assert.equal(l.running, 0);
});

test('a release is idempotent, and a weight above the limit runs alone instead of stalling', async () => {
  const l = new Limiter(2);
  const big = await l.acquire(5);
  assert.equal(l.inUse, 5);
  const order: number[] = [];
  const waiting = queue(l, [1], order);
  await settle();
  assert.deepEqual(order, [], 'nothing beside the oversized one');
  big();
  big();
  await settle();
  assert.deepEqual(order, [0]);
  assert.equal(l.inUse, 1, 'a second release of the same hold changes nothing');
  (await waiting[0])?.();
  // A limit of 0 still lets one caller at a time through.
  const zero = new Limiter(0);
  const one = await zero.acquire();
  assert.equal(zero.wouldWait(), true);
  one();
  assert.equal(zero.wouldWait(), false);
});

test('a raised limit admits waiters at once; a lowered one holds new callers until enough is released', async () => {
  const l = new Limiter(1);
  const held = await l.acquire();
  const order: number[] = [];
  const waiting = queue(l, [1, 1, 1], order);
  await settle();
  l.setLimit(3);
  await settle();
  assert.deepEqual(order, [0, 1], 'two more fit under 3 beside the one held');
  // A function limit, read at each admission; wake() re-reads it without any release.
  let limit = 3;
  l.setLimit(() => limit);
  limit = 4;
  l.wake();
  await settle();
  assert.deepEqual(order, [0, 1, 2]);
  // Lowered below what is held: nobody is taken back, newcomers wait until the total is under it.
  limit = 2;
  const late = l.acquire().then((release) => {
    order.push(3);
    return release;
  });
  const [r0, r1, r2] = await Promise.all(waiting);
  held();
  r0?.();
  await settle();
  assert.deepEqual(order, [0, 1, 2], 'two still held: the newcomer waits');
  r1?.();
  await settle();
  assert.deepEqual(order, [0, 1, 2, 3]);
  r2?.();
  (await late)();
  assert.equal(l.inUse, 0);
});

test('a caller that aborts while waiting takes nothing and lets the callers behind it through', async () => {
  const l = new Limiter(3);
  const held = await l.acquire(2);
  const abort = new AbortController();
  const order: number[] = [];
  const [heavy, light] = queue(l, [2, 1], order, [abort.signal]);
  await settle();
  assert.deepEqual(order, []);
  abort.abort(new Error('gone'));
  await assert.rejects(heavy as Promise<unknown>, /gone/);
  await settle();
  assert.deepEqual(order, [1], 'the light caller behind the aborted head fits and is admitted');
  assert.equal(l.inUse, 3);
  assert.equal(l.queued, 0);
  (await light)?.();
  held();
  assert.equal(l.inUse, 0);
  assert.equal(l.running, 0);
  // Already aborted: rejected at once, nothing taken; a bad weight is refused.
  await assert.rejects(l.acquire(1, AbortSignal.abort(new Error('before'))), /before/);
  await assert.rejects(l.acquire(-1), RangeError);
  await assert.rejects(l.acquire(Number.NaN), RangeError);
  assert.equal(l.inUse, 0);
  assert.equal(l.running, 0);
});

test('mapLimit keeps input order and never has more than the limit in flight', async () => {
  let active = 0;
  let peak = 0;
  const out = await mapLimit([5, 1, 4, 2, 3, 0], 2, async (n, i) => {
    active++;
    peak = Math.max(peak, active);
    await new Promise((r) => setTimeout(r, n));
    active--;
    return `${i}:${n}`;
  });
  assert.deepEqual(out, ['0:5', '1:1', '2:4', '3:2', '4:3', '5:0']);
  assert.equal(peak, 2);
  assert.deepEqual(await mapLimit([], 4, async () => 1), []);
});

test('the first failure stops new work, lets started work finish, then is thrown (also when thrown synchronously)', async () => {
  const started: number[] = [];
  const finished: number[] = [];
  await assert.rejects(
    mapLimit([0, 1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      started.push(n);
      await new Promise((r) => setTimeout(r, 2 + n));
      if (n === 1) throw new Error('boom');
      finished.push(n);
    }),
    /boom/,
  );
  // 0, 1, 2 start; 0 ends and 3 starts; 1 fails: nothing more starts; 2 and 3 finish before the rejection.
  assert.deepEqual(started, [0, 1, 2, 3]);
  assert.deepEqual(finished.sort(), [0, 2, 3]);
  const slots = new Limiter(2);
  let n = 0;
  await assert.rejects(
    drain(
      () => (n < 5 ? n++ : undefined),
      slots,
      (i) => {
        if (i === 0) throw new Error('sync');
        return Promise.resolve();
      },
    ),
    /sync/,
  );
  assert.equal(slots.running, 0, 'every slot is released after a failure');
  assert.ok(n <= 2, `took ${n} items`);
});

test('drain stops taking items once stop() answers true, and ends when those in flight are done', async () => {
  let stopped = false;
  let n = 0;
  const done: number[] = [];
  const slots = new Limiter(2);
  await drain(
    () => (n < 100 ? n++ : undefined),
    slots,
    async (i) => {
      await settle();
      if (i === 3) stopped = true;
      done.push(i);
    },
    () => stopped,
  );
  assert.ok(done.includes(3));
  assert.ok(n <= 5, `took ${n} items after a stop at item 3`);
  assert.equal(done.length, n, 'every item taken was finished');
  assert.equal(slots.running, 0);
});
