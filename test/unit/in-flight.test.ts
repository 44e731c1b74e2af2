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
  const b = InFlight.fromConfig({ MaxRequestsInFlight: 0, MaxInFlightSize: 0, MaxThreads: 64 });
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
  assert.deepEqual(InFlight.fromConfig({ MaxRequestsInFlight: 8, MaxInFlightSize: 64, MaxThreads: 64 }).limits, {
    maxRequests: 8,
    maxBytes: 64 * MB,
  });
});

/** Starts `n` requests of `owner`, each noting its name in `order` when admitted, and answers their releases. */
function queue(b: InFlight, owner: string, n: number, order: string[], bytes = 1): Promise<() => void>[] {
  return Array.from({ length: n }, (_, i) =>
    b.acquire(bytes, undefined, undefined, owner).then((release) => {
      order.push(`${owner}${i}`);
      return release;
    }),
  );
}

test('jobs waiting for the request cap are admitted in turn, not in the order their requests came', async () => {
  const b = new InFlight({ maxRequests: 3 });
  const order: string[] = [];
  // Job A takes every slot and queues many more; B and C come later with fewer.
  const a = queue(b, 'A', 8, order);
  await settle();
  const bReqs = queue(b, 'B', 3, order);
  const cReqs = queue(b, 'C', 3, order);
  await settle();
  assert.deepEqual(order, ['A0', 'A1', 'A2']);
  assert.equal(b.counters.waiting, 11);
  // Release A's three: the slots go to B and C (holding none) before A's fourth.
  for (const r of await Promise.all(a.slice(0, 3))) r();
  await settle();
  assert.deepEqual(order.slice(3), ['B0', 'C0', 'A3']);
  // From here, each release goes to the owner holding fewest (ties: the oldest waiter).
  const held = new Map<string, () => void>();
  const all = [...a, ...bReqs, ...cReqs];
  const names = [...Array.from({ length: 8 }, (_, i) => `A${i}`), 'B0', 'B1', 'B2', 'C0', 'C1', 'C2'];
  for (let i = 0; i < all.length; i++) {
    const name = names[i] as string;
    if (order.includes(name) && !['A0', 'A1', 'A2'].includes(name)) held.set(name, await (all[i] as Promise<() => void>));
  }
  (held.get('A3') as () => void)();
  await settle();
  // A now holds none, B and C one each: A's next goes first.
  assert.deepEqual(order.slice(6), ['A4']);
  (held.get('B0') as () => void)();
  await settle();
  assert.deepEqual(order.slice(7), ['B1']);
  (held.get('C0') as () => void)();
  await settle();
  assert.deepEqual(order.slice(8), ['C1']);
  assert.equal(b.counters.requests, 3);
  assert.equal(b.counters.waiting, 5);
});

test('a byte budget: a small job goes before a large one holding more, and no request passes the one whose turn it is', async () => {
  const b = new InFlight({ maxBytes: 4 * MB });
  const order: string[] = [];
  const big = queue(b, 'Big', 4, order, 2 * MB);
  await settle();
  const small = queue(b, 'Small', 2, order, MB);
  await settle();
  assert.deepEqual(order, ['Big0', 'Big1']);
  const release = async (p: Promise<() => void> | undefined): Promise<void> => {
    (await (p as Promise<() => void>))();
    await settle();
  };
  // 2 MB free: Small (holding none) goes first. Then Big and Small hold one each: the turn is Big2's (the
  // older), which needs 2 MB where 1 MB is free, and Small1 does not pass it.
  await release(big[0]);
  assert.deepEqual(order.slice(2), ['Small0']);
  await release(big[1]);
  assert.deepEqual(order.slice(3), ['Big2'], 'Big holds none now: its 2 MB go in');
  await release(small[0]);
  assert.deepEqual(order.slice(4), ['Small1']);
  await release(big[2]);
  assert.deepEqual(order.slice(5), ['Big3']);
  await release(small[1]);
  await release(big[3]);
  assert.deepEqual(b.counters, { requests: 0, bytes: 0, peakRequests: 2, peakBytes: 4 * MB, waiting: 0, waited: 4 });
});

test("share(owner).run takes the owner's turn; requests without an owner share one turn, in FIFO order", async () => {
  const b = new InFlight({ maxRequests: 2 });
  const order: string[] = [];
  const x1 = await b.acquire(1);
  const x2 = await b.acquire(1);
  const anon = Array.from({ length: 3 }, (_, i) =>
    b.acquire(1).then((r) => {
      order.push(`n${i}`);
      return r;
    }),
  );
  let done: () => void = () => undefined;
  const jobRun = b.share('job').run(1, undefined, async () => {
    order.push('job');
    await new Promise<void>((r) => {
      done = r;
    });
  });
  await settle();
  // The anonymous requests hold one slot, the job none: the job goes before n0, then n0 in x2's place.
  x1();
  await settle();
  x2();
  await settle();
  assert.deepEqual(order, ['job', 'n0']);
  done();
  await jobRun;
  (await (anon[0] as Promise<() => void>))();
  for (const p of anon.slice(1)) (await p)();
  assert.deepEqual(order, ['job', 'n0', 'n1', 'n2']);
  assert.equal(b.counters.requests, 0);
});

test('seats share the node ceiling of requests in flight: alone up to it, then even parts, a small want leaving its rest', () => {
  const b = new InFlight({ maxLevels: 10 });
  const a = b.seat();
  // Alone, a phase runs its controller's level, up to the ceiling.
  assert.equal(a.level(8), 8);
  assert.equal(a.level(40), 10);
  const c = b.seat();
  // Two phases wanting more than half: half each.
  assert.equal(c.level(40), 5);
  assert.equal(a.level(40), 5);
  // A third: 10 does not divide by 3; equal parts, rounded up (one request over the ceiling, not one phase
  // with a third more than the others).
  const d = b.seat();
  assert.equal(d.level(40), 4);
  assert.deepEqual([a.level(40), c.level(40), d.level(40)], [4, 4, 4]);
  // One wanting 2 leaves the rest to the others: 4 each.
  assert.deepEqual([c.level(2), a.level(40), d.level(40)], [2, 4, 4]);
  // One leaving gives its part away; leave is idempotent.
  c.leave();
  c.leave();
  assert.deepEqual([a.level(40), d.level(40)], [5, 5]);
  // After leaving, a seat no longer counts and answers its own want.
  assert.equal(c.level(7), 7);
});

test('seats: twenty phases under a ceiling of 64 run 4 each; wants below the split are met and their rest shared', () => {
  const b = new InFlight({ maxLevels: 64 });
  const seats = Array.from({ length: 20 }, () => b.seat());
  assert.deepEqual(new Set(seats.map((s) => s.level(8))), new Set([4]));
  // Five want 1: the fifteen others share 59, 4 each (rounded up).
  for (const s of seats.slice(0, 5)) s.level(1);
  assert.deepEqual(
    seats.map((s) => s.level(s === seats[0] || seats.indexOf(s) < 5 ? 1 : 64)),
    [1, 1, 1, 1, 1, ...Array(15).fill(4)],
  );
  // Eighteen leave: the two left share 64 between them, one wanting 1.
  for (const s of seats.slice(1, 19)) s.leave();
  assert.deepEqual([seats[0]?.level(1), seats[19]?.level(64)], [1, 63]);
});

test('seats: every phase runs at least one request, however many share the ceiling; 0 means no ceiling', () => {
  const b = new InFlight({ maxLevels: 4 });
  const seats = Array.from({ length: 6 }, () => b.seat());
  assert.deepEqual(
    seats.map((s) => s.level(16)),
    [1, 1, 1, 1, 1, 1],
  );
  for (const s of seats) s.leave();
  const none = new InFlight({ maxLevels: 0 });
  const x = none.seat();
  const y = none.seat();
  assert.deepEqual([x.level(64), y.level(64)], [64, 64]);
});

test('seats: the others are told when a seat leaves or asks for fewer, not when it asks for more', () => {
  const b = new InFlight({ maxLevels: 8 });
  const a = b.seat();
  const c = b.seat();
  a.level(8);
  c.level(8);
  const told: string[] = [];
  const offA = a.onRaise(() => told.push('a'));
  c.onRaise(() => told.push('c'));
  c.level(16);
  assert.deepEqual(told, []);
  c.level(2);
  assert.deepEqual(told, ['a']);
  assert.equal(a.level(8), 6);
  offA();
  c.leave();
  assert.deepEqual(told, ['a']);
  a.leave();
  assert.deepEqual(told, ['a']);
});

test('the configuration: the ceiling is MaxRequestsInFlight when set, else MaxThreads', () => {
  assert.equal(InFlight.fromConfig({ MaxRequestsInFlight: 0, MaxInFlightSize: 0, MaxThreads: 64 }).levelCeiling, 64);
  assert.equal(InFlight.fromConfig({ MaxRequestsInFlight: 12, MaxInFlightSize: 0, MaxThreads: 64 }).levelCeiling, 12);
});
