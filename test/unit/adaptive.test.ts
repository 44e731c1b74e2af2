// The adaptive number of buckets in flight, driven by a simulated bottleneck link: it climbs while more
// parallel requests raise the throughput and settles near the level that fills the link.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdaptiveConcurrency } from '../../src/transfer/adaptive/controller.ts';
import { runWithLimit } from '../../src/transfer/adaptive/pool.ts';

interface Link {
  /** Bytes/s of the bottleneck. */
  capacity: number;
  /** Bytes/s one connection gets at most (loss-limited congestion window). */
  perConnection: number;
  rttMs: number;
}

/**
 * Simulates `seconds` of a transfer of `bucket`-byte buckets in 20 ms steps: every request in flight
 * moves its share of the link (at most the per-connection rate) and reports it; a finished request
 * waits one RTT for its answer, and its slot takes the next bucket. Answers the goodput of the last third.
 */
function simulate(link: Link, bucket: number, seconds: number, ctl: AdaptiveConcurrency) {
  const step = 20;
  const inFlight: { left: number; answerAt: number }[] = [];
  let bytesLate = 0;
  const end = seconds * 1000;
  const lateFrom = (end * 2) / 3;
  for (let now = 0; now < end; now += step) {
    while (inFlight.length < ctl.limit) inFlight.push({ left: bucket, answerAt: Infinity });
    const sending = inFlight.filter((r) => r.left > 0);
    const share = Math.min(link.perConnection, link.capacity / Math.max(1, sending.length));
    for (const r of sending) {
      const n = Math.min(r.left, (share * step) / 1000);
      r.left -= n;
      if (r.left <= 0) r.answerAt = now + link.rttMs;
      ctl.progress(n, now);
      if (now >= lateFrom) bytesLate += n;
    }
    for (let i = inFlight.length - 1; i >= 0; i--) if ((inFlight[i] as { answerAt: number }).answerAt <= now) inFlight.splice(i, 1);
  }
  return { goodput: (bytesLate * 1000) / (end - lateFrom) };
}

const MB = 1e6;

test('on a lossy link it opens enough requests to fill it', () => {
  // 100 Mbit/s shared, 4.5 Mbit/s per connection (CUBIC at 0.5% loss), 40 ms RTT.
  const link = { capacity: 12.5 * MB, perConnection: 0.56 * MB, rttMs: 40 };
  const ctl = new AdaptiveConcurrency({ initial: 4, min: 1, max: 64 }, 0);
  const { goodput } = simulate(link, 4 * MB, 600, ctl);
  assert.ok(goodput >= 0.85 * link.capacity, `goodput ${(goodput / MB).toFixed(2)} MB/s, limit ${ctl.limit}`);
  assert.ok(ctl.limit >= 20 && ctl.limit <= 64, `limit ${ctl.limit}`);
});

test('on a very lossy long link it goes further, up to the ceiling', () => {
  // 20 Mbit/s, about 0.9 Mbit/s per connection (150 ms RTT, 1% loss).
  const link = { capacity: 2.5 * MB, perConnection: 0.115 * MB, rttMs: 150 };
  const ctl = new AdaptiveConcurrency({ initial: 4, min: 1, max: 48 }, 0);
  const { goodput } = simulate(link, 2 * MB, 1800, ctl);
  assert.ok(goodput >= 0.85 * link.capacity, `goodput ${(goodput / MB).toFixed(2)} MB/s, limit ${ctl.limit}`);
});

test('when one connection fills the link it stays low', () => {
  const link = { capacity: 12.5 * MB, perConnection: 12.5 * MB, rttMs: 40 };
  const ctl = new AdaptiveConcurrency({ initial: 4, min: 1, max: 64 }, 0);
  simulate(link, 4 * MB, 300, ctl);
  assert.ok(ctl.limit <= 9, `limit ${ctl.limit}`);
});

test('it climbs fast: on a lossy link, 32 requests in flight within 10 s', () => {
  const link = { capacity: 12.5 * MB, perConnection: 0.56 * MB, rttMs: 40 };
  const ctl = new AdaptiveConcurrency({ initial: 4, min: 1, max: 64 }, 0);
  simulate(link, 1 * MB, 10, ctl);
  assert.ok(ctl.limit >= 32, `limit ${ctl.limit} after 10 s: ${JSON.stringify(ctl.history.map((d) => d.limit))}`);
});

test(
  'the first climb keeps a step that measures no worse; a probe that does not pay goes back; a clearly better level is ' + 'returned to',
  () => {
    const ctl = new AdaptiveConcurrency({ initial: 8, min: 1, max: 64, settleMs: 0, windowMs: 1000 }, 0);
    let t = 0;
    /** Feeds `bytesPerSecond` until the controller decides (at most `seconds`); answers its new limit. */
    const until = (seconds: number, bytesPerSecond: number): number => {
      const decisions = ctl.history.length;
      for (const end = t + seconds * 1000; t < end && ctl.history.length === decisions; t += 100) ctl.progress(bytesPerSecond / 10, t);
      return ctl.limit;
    };
    assert.equal(until(3, 4 * MB), 16); // 8: 4 MB/s, climb
    assert.equal(until(3, 8 * MB), 32); // 16: 8 MB/s, climb
    assert.equal(until(3, 8.2 * MB), 32); // 32: no clear gain but no worse: the climb stops here
    // Holding at 32, then a probe 25% higher that measures the same: back to 32.
    let probed = 32;
    for (let k = 0; k < 10 && probed === 32; k++) probed = until(3, 8.2 * MB);
    assert.equal(probed, 40);
    // A probe is judged on two windows: after one that measures the same it stays, after the second it goes back.
    assert.equal(until(3, 8.2 * MB), 40);
    assert.equal(until(3, 8.2 * MB), 32);
    // 32 now measures far worse than 40 did a moment ago, two windows in a row: there.
    assert.equal(until(3, 5 * MB), 32);
    assert.equal(until(3, 5 * MB), 40);
    for (let k = 0; k < 3; k++) assert.equal(until(3, 8.2 * MB), 40);
  },
);

test('a step of the first climb that measures worse goes back', () => {
  const ctl = new AdaptiveConcurrency({ initial: 8, min: 1, max: 64, settleMs: 0, windowMs: 1000 }, 0);
  for (let t = 0; t < 3000 && ctl.limit === 8; t += 100) ctl.progress((4 * MB) / 10, t);
  assert.equal(ctl.limit, 16);
  for (let t = 3000; t < 6000 && ctl.limit === 16; t += 100) ctl.progress((3 * MB) / 10, t);
  assert.equal(ctl.limit, 8);
});

test("with the receiver's clock the rate is what arrived, whatever this node's own count says", () => {
  const ctl = new AdaptiveConcurrency({ initial: 8, min: 1, max: 64, settleMs: 0, windowMs: 1000, clock: 'receiver' }, 0);
  // Bytes handed to the kernel run far ahead of the link: ignored.
  for (let t = 0; t < 3000; t += 100) ctl.progress(10 * MB, t);
  assert.equal(ctl.history.length, 0);
  assert.equal(ctl.rate, undefined);
  // The receiver counts 1 MB every 250 ms of its clock (offset from this node's), answers arriving late.
  let total = 0;
  for (let k = 0; k < 12; k++) {
    total += MB;
    ctl.delivered(total, 500_000 + k * 250, 3000 + k * 250 + 40);
  }
  assert.ok(ctl.history.length >= 1);
  const first = ctl.history[0] as { bytesPerSecond: number; limit: number };
  assert.ok(Math.abs(first.bytesPerSecond - 4 * MB) < 0.01 * MB, `rate ${first.bytesPerSecond}`);
  assert.equal(first.limit, 16); // the first measurement: climb
  // The receiver restarted: its count and clock begin again; no rate is made across the restart.
  const before = ctl.history.length;
  ctl.delivered(MB, 10, 6500);
  ctl.delivered(1.5 * MB, 20, 6510);
  assert.equal(ctl.history.length, before);
  for (const r of ctl.history) assert.ok(r.bytesPerSecond > 0);
});

/**
 * Feeds `ctl` receiver samples every `stepMs` of simulated time from `t0` until `until` (or `end`) says
 * stop: the receiver counts `rateOf(limit)` bytes/s at the level in force. Answers the time reached.
 */
function feedReceiver(
  ctl: AdaptiveConcurrency,
  rateOf: (limit: number, t: number) => number,
  from: { t: number; total: number },
  end: number,
  until: () => boolean = () => false,
  stepMs = 50,
): { t: number; total: number } {
  let { t, total } = from;
  while (t < end && !until()) {
    t += stepMs;
    total += (rateOf(ctl.limit, t) * stepMs) / 1000;
    ctl.delivered(total, t, t);
  }
  return { t, total };
}

test("slow start: with the receiver's samples it doubles every short window while the rate follows", () => {
  // 100 Mbit/s, 0.56 MB/s per connection (CUBIC at 0.5% loss, 40 ms RTT): 23 requests fill the link.
  const link = (limit: number) => Math.min(12.5 * MB, limit * 0.56 * MB);
  const ctl = new AdaptiveConcurrency({ initial: 4, min: 1, max: 64, clock: 'receiver' }, 0);
  const at = feedReceiver(ctl, link, { t: 0, total: 0 }, 5000, () => ctl.phase !== 'climb');
  // 4, 8, 16, 32: three doublings that paid, then one that did not (64 moves no more than 32, and no
  // less: the slow start keeps it).
  assert.deepEqual(
    ctl.history.map((d) => d.limit),
    [8, 16, 32, 64, 64],
  );
  // Simulated time, from the samples' clock: each round is a settle time and a short window.
  assert.ok(at.t <= 3000, `the slow start ended after ${at.t} ms of samples`);
  assert.equal(ctl.limit, 64);
  assert.equal(ctl.phase, 'hold');
});

test("slow start: its windows last a few of the link's round trips when that is longer than the fixed fifth", () => {
  // Each level moves 1 MB/s per request (a link far from full): every window measures a gain and doubles.
  const decisions = (rttMs: number | undefined): number[] => {
    const ctl = new AdaptiveConcurrency({ initial: 2, min: 1, max: 64, ...(rttMs === undefined ? {} : { rttMs }) }, 0);
    for (let t = 10; t <= 20_000 && ctl.history.length < 3; t += 10) ctl.progress((ctl.limit * MB * 10) / 1000, t);
    return ctl.history.map((d) => d.at);
  };
  // Simulated times (the clock is the test's): the first window opens after settleMs (700), the next ones
  // after the slow start's settle time. Without an RTT: windows of 300 ms, settles of 175 ms.
  const fixed = [1000, 1480, 1960];
  assert.deepEqual(decisions(undefined), fixed);
  // A LAN (0.3 ms), goodloss (40 ms), and goodloss as a push's first calls measure it (with a connection's
  // set-up, 92 ms): 3 round trips are shorter than 300 ms, which stays (the settle grows to 2 round trips).
  assert.deepEqual(decisions(0.3), fixed);
  assert.deepEqual(decisions(40), fixed);
  assert.deepEqual(decisions(92), [1000, 1490, 1980]);
  // 150 ms: windows of 450 ms, settles of 2 round trips (300 ms).
  assert.deepEqual(decisions(150), [1150, 1900, 2650]);
  // 600 ms (a satellite link): windows of windowMs (1500), settles of at most settleMs (700).
  assert.deepEqual(decisions(600), [2200, 4400, 6600]);
});

test('a slow-start step that measures a little lower (noise) is kept; one clearly lower goes back', () => {
  // As seen on goodloss: 8 at 10 MB/s, 16 at 12.3 (a high window), 32 at 12.0: 32 stays.
  const rates = new Map([
    [8, 10 * MB],
    [16, 12.3 * MB],
    [32, 12 * MB],
  ]);
  const ctl = new AdaptiveConcurrency({ initial: 8, min: 1, max: 64, clock: 'receiver' }, 0);
  feedReceiver(
    ctl,
    (l) => rates.get(l) ?? 0,
    { t: 0, total: 0 },
    10_000,
    () => ctl.phase !== 'climb',
  );
  assert.deepEqual(
    ctl.history.map((d) => d.limit),
    [16, 32, 32],
  );
  const worse = new AdaptiveConcurrency({ initial: 8, min: 1, max: 64, clock: 'receiver' }, 0);
  rates.set(32, 9 * MB);
  feedReceiver(
    worse,
    (l) => rates.get(l) ?? 0,
    { t: 0, total: 0 },
    10_000,
    () => worse.phase !== 'climb',
  );
  assert.equal(worse.limit, 16);
});

test('holding, a lower level is gone back to only when it measured better by twice the margin', () => {
  // The slow start of goodloss: 16 measured one high window (12.3 MB/s), 32 measures 12.0 and is kept.
  const rates = new Map([
    [8, 10 * MB],
    [16, 12.3 * MB],
    [32, 12 * MB],
  ]);
  const ctl = new AdaptiveConcurrency({ initial: 8, min: 1, max: 64, clock: 'receiver' }, 0);
  let at = feedReceiver(
    ctl,
    (l) => rates.get(l) ?? 0,
    { t: 0, total: 0 },
    10_000,
    () => ctl.phase !== 'climb',
  );
  assert.equal(ctl.limit, 32);
  // 32 then moves 11 MB/s, window after window: 16's 12.3 is within twice the margin, so 32 stays.
  const decisions = ctl.history.length;
  at = feedReceiver(
    ctl,
    () => 11 * MB,
    at,
    at.t + 20_000,
    () => ctl.history.length >= decisions + 4,
  );
  assert.equal(ctl.limit, 32);
  // At 9 MB/s, two windows in a row, 16 measured clearly better: there.
  feedReceiver(
    ctl,
    (l) => (l === 32 ? 9 * MB : 12 * MB),
    at,
    at.t + 20_000,
    () => ctl.limit !== 32,
  );
  assert.equal(ctl.limit, 16);
});

test('holding, one noisy window does not move it: two windows that agree do', () => {
  const ctl = new AdaptiveConcurrency({ initial: 16, min: 1, max: 64, clock: 'receiver' }, 0);
  // Climb: 16 at 8 MB/s, 32 at 12 MB/s, 64 no better: holds at 32 (the level it came from measured worse).
  const rates = new Map([
    [16, 8 * MB],
    [32, 12 * MB],
    [64, 12.1 * MB],
  ]);
  let at = feedReceiver(
    ctl,
    (l) => rates.get(l) ?? 0,
    { t: 0, total: 0 },
    10_000,
    () => ctl.phase === 'hold',
  );
  assert.equal(ctl.limit, 64);
  at = feedReceiver(
    ctl,
    (l) => rates.get(l) ?? 0,
    at,
    at.t + 10_000,
    () => ctl.limit !== 64,
  );
  assert.equal(ctl.limit, 64, 'within the noise of 32: the climb keeps 64');
  // One window at a third of the rate (a burst of loss): 64 stays.
  const decisions = ctl.history.length;
  at = feedReceiver(
    ctl,
    () => 4 * MB,
    at,
    at.t + 5000,
    () => ctl.history.length > decisions,
  );
  assert.equal(ctl.limit, 64);
  // Back to normal: nothing moves.
  at = feedReceiver(
    ctl,
    (l) => rates.get(l) ?? 0,
    at,
    at.t + 3000,
    () => ctl.history.length > decisions + 1,
  );
  assert.equal(ctl.limit, 64);
  // Two low windows in a row: 64 now measures clearly worse than 32 did, so there.
  const now = ctl.history.length;
  at = feedReceiver(
    ctl,
    () => 3 * MB,
    at,
    at.t + 8000,
    () => ctl.history.length >= now + 2,
  );
  assert.equal(ctl.limit, 32);
});

test("a start from the link's profile holds the profile's level, whatever its first noisy window says", () => {
  const ctl = new AdaptiveConcurrency({ initial: 24, min: 1, max: 64, clock: 'receiver', knownRate: 11 * MB }, 0);
  assert.equal(ctl.limit, 24);
  assert.equal(ctl.phase, 'hold');
  // The first span size is made from a known rate: the profile's.
  assert.equal(ctl.rate, 11 * MB);
  assert.deepEqual(ctl.settled(0), { limit: 24, rate: 11 * MB });
  // A first window at half the profile's rate: it stays (no climb from a low level, no step down).
  let at = feedReceiver(
    ctl,
    () => 5.5 * MB,
    { t: 0, total: 0 },
    10_000,
    () => ctl.history.length > 0,
  );
  assert.equal(ctl.limit, 24);
  // Then the link as the profile knew it: a profile's level is confirmed by two windows, then probed 25% higher.
  at = feedReceiver(
    ctl,
    () => 11 * MB,
    at,
    60_000,
    () => ctl.limit !== 24,
  );
  assert.equal(ctl.limit, 30);
  assert.equal(ctl.phase, 'probe');
  assert.ok(at.t < 10_000, `the first probe came after ${at.t} ms of samples`);
  // The probe measures less over two windows: back to 24, which the run settled on.
  feedReceiver(
    ctl,
    () => 7 * MB,
    at,
    at.t + 20_000,
    () => ctl.limit !== 30,
  );
  assert.equal(ctl.limit, 24);
  assert.equal(ctl.settled(at.t + 20_000)?.limit, 24);
});

test('a probe that measures one low window stays for a second before it goes back', () => {
  const ctl = new AdaptiveConcurrency({ initial: 10, min: 1, max: 64, settleMs: 0, windowMs: 1000, knownRate: 5 * MB }, 0);
  let t = 0;
  const window = (bytesPerSecond: number): number => {
    const decisions = ctl.history.length;
    for (const end = t + 3000; t < end && ctl.history.length === decisions; t += 100) ctl.progress(bytesPerSecond / 10, t);
    return ctl.limit;
  };
  for (let k = 0; k < 10 && ctl.limit === 10; k++) window(5 * MB);
  assert.equal(ctl.limit, 13);
  assert.equal(window(3 * MB), 13, 'one low window: the probe stays');
  // Its second window pays: the mean of the two (5.5 MB/s) is no clear gain, so back to 10, not further down.
  assert.equal(window(8 * MB), 10);
});

test('one failure steps down but keeps what was measured; failures that persist forget it', () => {
  const ctl = new AdaptiveConcurrency({ initial: 20, min: 2, max: 64, settleMs: 0, windowMs: 1000, knownRate: 10 * MB }, 0);
  ctl.failed(100);
  assert.equal(ctl.limit, 14);
  let t = 200;
  const window = (bytesPerSecond: number): number => {
    const decisions = ctl.history.length;
    for (const end = t + 3000; t < end && ctl.history.length === decisions; t += 100) ctl.progress(bytesPerSecond / 10, t);
    return ctl.limit;
  };
  // 14 moves 6 MB/s, far below what 20 measured before the failure: after two windows, back to 20.
  assert.equal(window(6 * MB), 14);
  assert.equal(window(6 * MB), 20);
  // Failures in two windows in a row: the link changed, the rates measured before are forgotten.
  ctl.failed(t);
  ctl.failed(t + 1500);
  assert.equal(ctl.limit, 9);
  t += 1600;
  for (let k = 0; k < 4; k++) assert.equal(window(3 * MB), 9, 'nothing measured before the failures draws it back up');
});

test('once drained it decides nothing more', () => {
  const ctl = new AdaptiveConcurrency({ initial: 8, min: 1, max: 64, settleMs: 0, windowMs: 1000 }, 0);
  ctl.drained();
  for (let t = 0; t < 10_000; t += 100) ctl.progress(1e5, t);
  assert.equal(ctl.limit, 8);
  assert.equal(ctl.history.length, 0);
});

test('failures step the level down', () => {
  const ctl = new AdaptiveConcurrency({ initial: 20, min: 2, max: 64 }, 0);
  ctl.failed(10);
  assert.equal(ctl.limit, 14);
  ctl.failed(11); // same window: one step only
  assert.equal(ctl.limit, 14);
});

test('runWithLimit follows a changing limit and stops at the first failure', async () => {
  let limit = 1;
  let active = 0;
  let peak = 0;
  const seen: number[] = [];
  await runWithLimit(
    Array.from({ length: 30 }, (_, i) => i),
    () => limit,
    async (i) => {
      active++;
      peak = Math.max(peak, active);
      seen.push(i);
      if (i === 5) limit = 6;
      await new Promise((r) => setTimeout(r, 5));
      active--;
    },
  );
  assert.equal(seen.length, 30);
  assert.equal(peak, 6);
  let started = 0;
  await assert.rejects(
    runWithLimit(
      [1, 2, 3, 4, 5, 6, 7, 8],
      () => 2,
      async (i) => {
        started++;
        await new Promise((r) => setTimeout(r, 5));
        if (i === 2) throw new Error('boom');
      },
    ),
    /boom/,
  );
  assert.ok(started <= 4, `started ${started}`);
});

test('runWithLimit starts more work as soon as the limit is raised, and takes items from a function', async () => {
  let limit = 2;
  let wake: (() => void) | undefined;
  const started: number[] = [];
  let n = 0;
  const release: (() => void)[] = [];
  const run = runWithLimit(
    () => (n < 6 ? n++ : undefined),
    () => limit,
    (i) => {
      started.push(i);
      return new Promise<void>((r) => release.push(r));
    },
    () => false,
    (w) => {
      wake = w;
      return () => (wake = undefined);
    },
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1]);
  limit = 5;
  wake?.();
  // Nothing finished, yet three more started (the pool takes each item once its slot is granted).
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  for (let k = 0; k < 20 && release.length > 0; k++) {
    release.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  await run;
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  assert.equal(wake, undefined, 'unsubscribed at the end');
});

test('the gzip level goes down while the CPU is saturated, and up while it has room for the next level', async () => {
  const { GzipLevelChooser } = await import('../../src/transfer/adaptive/gzip-level.ts');
  const g = new GzipLevelChooser({ initial: 6, windowMs: 2000 }, 0);
  // Both cores busy (a CPU-bound sender, or a receiver on the same host): one step down per window.
  const levels: number[] = [];
  for (let t = 1000; t <= 12_000; t += 1000) {
    g.observe({ busy: 0.97, own: 1.2, cores: 2 }, t);
    if (t % 2000 === 0) levels.push(g.level);
  }
  assert.deepEqual(levels, [5, 4, 3, 2, 1, 1]);
  // A slow link: the process uses a tenth of a core, the machine a fifth: up a step per window to 6.
  for (let t = 13_000; t <= 30_000; t += 1000) g.observe({ busy: 0.2, own: 0.1, cores: 2 }, t);
  assert.equal(g.level, 6);
  assert.deepEqual(
    g.history.map((h) => h.level),
    [5, 4, 3, 2, 1, 2, 3, 4, 5, 6],
  );
  // Room on the machine, but not for the next level's cost: at 4 the process uses 1.2 of 2 cores and
  // the machine is 70% busy; level 5 would cost 1.2 x (1.76 / 1.25 - 1) = 0.49 more cores (95%).
  const h = new GzipLevelChooser({ initial: 4 }, 0);
  for (let t = 1000; t <= 20_000; t += 1000) h.observe({ busy: 0.7, own: 1.2, cores: 2 }, t);
  assert.equal(h.level, 4);
  // Between: nothing changes while the machine is busy but not saturated.
  for (let t = 21_000; t <= 40_000; t += 1000) h.observe({ busy: 0.85, own: 0.5, cores: 2 }, t);
  assert.equal(h.level, 4);
});

test('the codec: zstd for a compressed transfer to a peer that lists it, gzip otherwise; its level chosen in its own range', async () => {
  const { GzipLevelChooser, wireCompression } = await import('../../src/transfer/adaptive/gzip-level.ts');
  assert.equal(wireCompression('gzip', true), 'zstd');
  assert.equal(wireCompression('zstd', true), 'zstd');
  assert.equal(wireCompression('gzip', false), 'gzip');
  assert.equal(wireCompression('zstd', false), 'gzip');
  assert.equal(wireCompression('none', true), 'none');
  // A run starts as gzip and learns its codec from the peer: zstd starts again at its level 1.
  const c = new GzipLevelChooser({ initial: 4 }, 0);
  c.useCodec('zstd');
  assert.deepEqual(c.choice(), { codec: 'zstd', level: 1 });
  assert.equal(new GzipLevelChooser().level, 1, 'gzip still starts at 1');
  // A slow link with an idle machine: up a step per window, past gzip's 6, to zstd's 9 and no further.
  for (let t = 1000; t <= 40_000; t += 1000) c.observe({ busy: 0.1, own: 0.05, cores: 2 }, t);
  assert.deepEqual(c.choice(), { codec: 'zstd', level: 9 });
  // Saturated cores (a link faster than them, as loopback): down a step per window, to 1 and no further.
  for (let t = 41_000; t <= 80_000; t += 1000) c.observe({ busy: 0.97, own: 1.5, cores: 2 }, t);
  assert.equal(c.level, 1);
  // A fresh zstd chooser on saturated cores never leaves 1.
  const fast = new GzipLevelChooser({ codec: 'zstd' }, 0);
  for (let t = 1000; t <= 20_000; t += 1000) fast.observe({ busy: 0.99, own: 1.2, cores: 2 }, t);
  assert.deepEqual(fast.choice(), { codec: 'zstd', level: 1 });
  assert.equal(fast.history.length, 0);
  // Each codec's own costs: the same CPU at level 5, where the next level costs zstd more than gzip.
  const z = new GzipLevelChooser({ codec: 'zstd', initial: 5 }, 0);
  for (let t = 1000; t <= 2000; t += 1000) z.observe({ busy: 0.75, own: 1.6, cores: 2 }, t);
  // 1.6 x (3.7 / 3.1 - 1) = 0.31 cores: 75% + 15.5% = 90.5% > 90%: it stays.
  assert.equal(z.level, 5);
  const g = new GzipLevelChooser({ codec: 'gzip', initial: 5 }, 0);
  for (let t = 1000; t <= 2000; t += 1000) g.observe({ busy: 0.75, own: 1.6, cores: 2 }, t);
  // gzip's 1.87 / 1.76: 0.1 cores, 80%: up.
  assert.equal(g.level, 6);
});

test('the CPU meter measures this process burning a core', async () => {
  const { CpuMeter } = await import('../../src/transfer/adaptive/cpu.ts');
  const m = new CpuMeter();
  assert.equal(m.sample(), undefined, 'the first sample has nothing to compare with');
  const t0 = performance.now();
  const u0 = process.cpuUsage();
  let x = 0;
  while (performance.now() - t0 < 300) x += Math.sqrt(x + 1);
  const s = m.sample();
  const u = process.cpuUsage(u0);
  const expected = (u.user + u.system) / 1000 / (performance.now() - t0);
  assert.ok(s, 'a second sample');
  assert.ok(x > 0);
  // In cores: what the process used over the wall time (a spinning thread gets less on a loaded machine).
  assert.ok(s.own > 0 && s.own < 1.3, `own CPU ${s.own} cores while spinning on one thread`);
  assert.ok(Math.abs(s.own - expected) < 0.15, `own CPU ${s.own} cores, measured apart ${expected}`);
  // The machine is at least as busy as this process makes it (clock ticks of 10 ms aside).
  assert.ok(s.busy >= (s.own / s.cores) * 0.8 && s.busy <= 1, `machine busy ${s.busy}, own ${s.own} of ${s.cores} cores`);
});
