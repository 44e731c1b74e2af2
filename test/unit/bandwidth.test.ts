// The bandwidth policy's parts on a clock the test moves by hand: the keys and their checks, the schedule's
// choice of limit, the token bucket's grants, fairness and abort, and the policy joining node and peer.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/load.ts';
import type { RateScheduleEntry } from '../../src/config/types.ts';
import { isXferError } from '../../src/errors.ts';
import { peerToLongForm, parsePeerInput } from '../../src/peers/registry.ts';
import { BandwidthPolicy, BYTES_PER_MBIT } from '../../src/transfer/bandwidth/policy.ts';
import { LevelCap } from '../../src/transfer/bandwidth/level-cap.ts';
import { scheduledLimit } from '../../src/transfer/bandwidth/schedule.ts';
import { type BucketTimers, TokenBucket } from '../../src/transfer/bandwidth/token-bucket.ts';

function parse(text: string) {
  return parseConfigText(text, '/cfg/test.json', { env: {}, baseDir: '/cfg' });
}

function configError(text: string): string {
  try {
    parse(text);
  } catch (e) {
    assert.ok(isXferError(e), `expected an XferError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected a configuration error');
}

const schedule = (entries: unknown[]) => parse(JSON.stringify({ Transfers: { RateSchedule: entries } })).config.Transfers.RateSchedule;

describe('bandwidth keys', () => {
  test('defaults: no node limit, no schedule', () => {
    const { config } = parse('{}');
    assert.equal(config.Transfers.RateLimit, 0);
    assert.deepEqual(config.Transfers.RateSchedule, []);
  });

  test('Transfers.RateLimit takes a number of Mbit/s, fractions included, and refuses a negative one', () => {
    assert.equal(parse('{ "Transfers": { "RateLimit": 12.5 } }').config.Transfers.RateLimit, 12.5);
    assert.match(configError('{ "Transfers": { "RateLimit": -1 } }'), /Transfers\.RateLimit: expected a number of at least 0/);
    assert.match(configError('{ "Transfers": { "RateLimit": "20" } }'), /Transfers\.RateLimit: expected a number/);
  });

  test('RateSchedule: day ranges, lists, single days, 24:00, and an entry past midnight', () => {
    const s = schedule([
      { Days: 'Mon-Fri', From: '08:00', To: '18:00', RateLimit: 20 },
      { Days: 'Sat,Sun', From: '00:00', To: '24:00', RateLimit: 0 },
      { Days: 'fri-mon', From: '22:30', To: '06:15', RateLimit: 100 },
    ]);
    assert.deepEqual(s, [
      { days: [1, 2, 3, 4, 5], from: 480, to: 1080, rateLimit: 20 },
      { days: [0, 6], from: 0, to: 1440, rateLimit: 0 },
      { days: [0, 1, 5, 6], from: 1350, to: 375, rateLimit: 100 },
    ]);
  });

  test('RateSchedule: an unknown day, a bad time, a negative rate, an unknown key are clear errors', () => {
    const bad = (e: unknown) => configError(JSON.stringify({ Transfers: { RateSchedule: [e] } }));
    assert.match(bad({ Days: 'Mon-Fry', From: '08:00', To: '18:00', RateLimit: 1 }), /RateSchedule\[0\]\.Days: unknown day "Fry"/);
    assert.match(
      bad({ Days: 'Mon', From: '8:00', To: '18:00', RateLimit: 1 }),
      /RateSchedule\[0\]\.From: "8:00" is not a time of day "HH:MM"/,
    );
    assert.match(bad({ Days: 'Mon', From: '08:00', To: '24:01', RateLimit: 1 }), /RateSchedule\[0\]\.To: "24:01" is not a time/);
    assert.match(bad({ Days: 'Mon', From: '08:00', To: '08:00', RateLimit: 1 }), /RateSchedule\[0\]\.To: From and To are the same time/);
    assert.match(
      bad({ Days: 'Mon', From: '08:00', To: '09:00', RateLimit: -5 }),
      /RateSchedule\[0\]\.RateLimit: expected a number of at least 0/,
    );
    assert.match(bad({ Days: 'Mon', From: '08:00', To: '09:00', RateLimit: 1, Rate: 2 }), /RateSchedule\[0\]/);
    assert.match(bad({ Days: 'Mon-Tue-Wed', From: '08:00', To: '09:00', RateLimit: 1 }), /not a day or a range of days/);
    assert.match(configError('{ "Transfers": { "RateSchedule": {} } }'), /Transfers\.RateSchedule: expected a list/);
  });

  test("a peer's RateLimit is a setting of the peer (not a user property), kept in peers.json, and checked", () => {
    const { config, warnings } = parse('{ "OrthancPeers": { "b": { "Url": "http://b:8042", "RateLimit": 20, "Site": "x" } } }');
    const b = config.OrthancPeers['b'];
    assert.equal(b?.rateLimit, 20);
    assert.deepEqual(b?.userProperties, { Site: 'x' });
    assert.deepEqual(warnings, []);
    assert.equal(parsePeerInput('b', peerToLongForm(b ?? assert.fail('no peer'))).rateLimit, 20);
    // PUT /peers/{name} reads a peer the same way: a bad RateLimit is a 400 naming the key.
    assert.throws(
      () => parsePeerInput('b', { Url: 'http://b:8042', RateLimit: -1 }),
      /RateLimit: expected a number above 0 \(Mbit\/s\), got -1/,
    );
    assert.equal(parse('{ "OrthancPeers": { "b": ["http://b:8042"] } }').config.OrthancPeers['b']?.rateLimit, undefined);
    for (const v of [0, -3, '"20"']) {
      const msg = configError(`{ "OrthancPeers": { "b": { "Url": "http://b:8042", "RateLimit": ${v} } } }`);
      assert.match(msg, /OrthancPeers\.b\.RateLimit: expected a number above 0 \(Mbit\/s\)/);
    }
  });
});

/** A local date-time: the schedule reads the wall clock of the process's time zone. */
const at = (day: string, hhmm: string): Date => {
  // 2026-12-06 is a Sunday.
  const d = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'].indexOf(day);
  const [h, m] = hhmm.split(':').map(Number);
  return new Date(2026, 11, 6 + d, h, m);
};

describe('scheduledLimit', () => {
  const s: RateScheduleEntry[] = [
    { days: [1, 2, 3, 4, 5], from: 480, to: 1080, rateLimit: 20 },
    { days: [1], from: 0, to: 1440, rateLimit: 5 },
    { days: [5], from: 1320, to: 360, rateLimit: 100 },
  ];

  test('weekday hours, the boundaries (From inclusive, To exclusive), outside every entry the base', () => {
    assert.equal(scheduledLimit(s, 50, at('Tue', '08:00')), 20);
    assert.equal(scheduledLimit(s, 50, at('Tue', '07:59')), 50);
    assert.equal(scheduledLimit(s, 50, at('Tue', '17:59')), 20);
    assert.equal(scheduledLimit(s, 50, at('Tue', '18:00')), 50);
    assert.equal(scheduledLimit(s, 0, at('Sun', '12:00')), 0);
  });

  test('the first entry that matches wins', () => {
    assert.equal(scheduledLimit(s, 50, at('Mon', '09:00')), 20, 'Mon-Fri comes before Mon');
    assert.equal(scheduledLimit(s, 50, at('Mon', '19:00')), 5);
  });

  test('an entry past midnight runs from its day into the next', () => {
    assert.equal(scheduledLimit(s, 50, at('Fri', '21:59')), 50);
    assert.equal(scheduledLimit(s, 50, at('Fri', '22:00')), 100);
    assert.equal(scheduledLimit(s, 50, at('Sat', '05:59')), 100);
    assert.equal(scheduledLimit(s, 50, at('Sat', '06:00')), 50);
    assert.equal(scheduledLimit(s, 50, at('Fri', '03:00')), 50, 'Thursday night is not in it');
  });
});

/** Timers the test fires by hand, on a clock it moves. */
class ManualClock implements BucketTimers {
  t = 1_000_000;
  #due: { fn: () => void; at: number; id: number }[] = [];
  #ids = 0;
  now = (): number => this.t;
  set(fn: () => void, ms: number): unknown {
    const id = ++this.#ids;
    this.#due.push({ fn, at: this.t + ms, id });
    return id;
  }
  clear(handle: unknown): void {
    this.#due = this.#due.filter((d) => d.id !== handle);
  }
  get pending(): number {
    return this.#due.length;
  }
  /** Moves the clock by `ms`, firing what falls due, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; guard < 100_000; guard++) {
      this.#due.sort((a, b) => a.at - b.at);
      const next = this.#due[0];
      if (!next || next.at > end) break;
      this.#due.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}

/** Lets promise callbacks run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Moves `clock` by `ms` in steps of 5 ms, letting the waiters granted at each step ask again. */
async function run(clock: ManualClock, ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 5) {
    clock.advance(Math.min(5, left));
    await settle();
  }
}

describe('TokenBucket', () => {
  test('grants at the rate after a burst of 100 ms; no limit grants everything at once', async () => {
    const clock = new ManualClock();
    let rate: number | undefined = 100_000; // bytes per second
    const b = new TokenBucket({ rate: () => rate, now: clock.now, timers: clock });
    let granted = 0;
    const pieces = 50;
    const all = (async () => {
      for (let i = 0; i < pieces; i++) {
        const wait = b.take(10_000);
        if (wait) await wait;
        granted += 10_000;
      }
    })();
    await settle();
    // The first piece takes the whole burst (10,000 of 10,000 bytes), then every piece waits 100 ms.
    for (let s = 1; s <= 3; s++) {
      await run(clock, 1000);
      assert.ok(Math.abs(granted - (10_000 + s * 100_000)) <= 10_000, `after ${s} s: ${granted} bytes granted`);
    }
    rate = undefined;
    clock.advance(1);
    await settle();
    await all;
    assert.equal(granted, pieces * 10_000);
    assert.equal(b.take(1 << 30), undefined, 'without a limit nothing waits');
    assert.equal(b.counts.bytes, pieces * 10_000 + (1 << 30));
  });

  test('a change of rate applies within one period even when the old rate owed a long wait', async () => {
    const clock = new ManualClock();
    let rate = 1000;
    const b = new TokenBucket({ rate: () => rate, now: clock.now, timers: clock });
    assert.equal(b.take(100), undefined);
    // A piece larger than the balance goes as soon as the balance is positive and leaves a debt...
    const large = b.take(50_000);
    await run(clock, 5);
    await large;
    // ...that the next waiter pays: at 1000 B/s, about 50 s; the limit goes away after 150 ms.
    let done = false;
    b.take(10)?.then(() => (done = true));
    await run(clock, 150);
    assert.equal(done, false);
    rate = 0;
    await run(clock, 100);
    assert.equal(done, true);
  });

  test('two waiters share: first come, first served, piece by piece', async () => {
    const clock = new ManualClock();
    const b = new TokenBucket({ rate: () => 10_000, now: clock.now, timers: clock });
    const got = { a: 0, b: 0 };
    const send = async (who: 'a' | 'b') => {
      for (let i = 0; i < 20; i++) {
        const w = b.take(1000);
        if (w) await w;
        got[who] += 1000;
      }
    };
    const both = Promise.all([send('a'), send('b')]);
    for (let i = 0; i < 10; i++) {
      await run(clock, 100);
      assert.ok(Math.abs(got.a - got.b) <= 2000, `a ${got.a}, b ${got.b}`);
    }
    await run(clock, 10_000);
    await both;
    assert.deepEqual(got, { a: 20_000, b: 20_000 });
  });

  test('an aborted waiter leaves at once with its reason, and the others go on', async () => {
    const clock = new ManualClock();
    const b = new TokenBucket({ rate: () => 1000, now: clock.now, timers: clock });
    assert.equal(b.take(1000), undefined);
    const ac = new AbortController();
    const first = b.take(500, ac.signal);
    let second = false;
    b.take(500)?.then(() => (second = true));
    assert.equal(b.waiting, 2);
    ac.abort(new Error('paused'));
    await assert.rejects(first ?? Promise.resolve(), /paused/);
    assert.equal(b.waiting, 1);
    assert.rejects(b.take(1, ac.signal) ?? Promise.resolve(), /paused/, 'an aborted signal does not queue');
    clock.advance(1000);
    await settle();
    assert.equal(second, true);
    assert.equal(b.waiting, 0);
    assert.equal(clock.pending, 0, 'no timer left behind');
  });
});

describe('BandwidthPolicy', () => {
  test("a peer's bytes take from its own bucket and the node's; the lower limit is shown; the schedule switches on the clock", async () => {
    const clock = new ManualClock();
    // Monday 07:59:59 local time; from 08:00 the schedule allows 8 Mbit/s, before it the node has 80.
    clock.t = new Date(2026, 11, 7, 7, 59, 59).getTime();
    const Transfers = { RateLimit: 80, RateSchedule: [{ days: [1], from: 480, to: 1080, rateLimit: 8 }] };
    const limits: Record<string, number | undefined> = { slow: 16, free: undefined };
    const p = new BandwidthPolicy({
      config: { Transfers } as never,
      peerLimit: (n) => limits[n],
      now: clock.now,
      timers: clock,
    });
    assert.equal(p.nodeLimitMbps(), 80);
    assert.equal(p.gate('slow').limitMbps(), 16);
    assert.equal(p.gate('free').limitMbps(), 80);
    clock.advance(1000);
    assert.equal(p.nodeLimitMbps(), 8);
    assert.equal(p.gate('slow').limitMbps(), 8, 'the node limit is lower now');
    // Through the node's bucket at 8 Mbit/s: one second grants about a million bytes, whichever peer asks.
    let moved = 0;
    const stop = new AbortController();
    const pump = async (peer: string) => {
      for (let i = 0; i < 1000 && !stop.signal.aborted; i++) {
        const w = p.gate(peer).take('out', 64 * 1024, stop.signal);
        if (w) await w.catch(() => undefined);
        if (!stop.signal.aborted) moved += 64 * 1024;
      }
    };
    const both = Promise.all([pump('slow'), pump('free')]);
    await settle();
    const before = moved;
    await run(clock, 1000);
    const second = moved - before;
    assert.ok(Math.abs(second - 8 * BYTES_PER_MBIT) <= 2 * 64 * 1024, `${second} bytes in a second at 8 Mbit/s`);
    stop.abort(new Error('done'));
    clock.advance(200);
    await settle();
    await both;
    p.close(new Error('closed'));
  });
});

describe('LevelCap', () => {
  test('stops the requests in flight at the level that reached the limit, until the limit changes', () => {
    let ceiling: number | undefined = 1_000_000;
    const cap = new LevelCap(() => ceiling);
    assert.equal(cap.of(16), 16, 'nothing learnt yet');
    cap.observe(4, 500_000);
    assert.equal(cap.of(8), 8, 'half the limit: the link, not the limit, holds it');
    cap.observe(8, 950_000);
    assert.equal(cap.of(16), 8);
    assert.equal(cap.of(4), 4, 'a lower level stays lower');
    cap.observe(16, 990_000);
    assert.equal(cap.of(32), 8, 'the lowest level that reached it');
    ceiling = 4_000_000;
    assert.equal(cap.of(32), 32, 'a new limit starts over');
    ceiling = undefined;
    cap.observe(4, 1e12);
    assert.equal(cap.of(64), 64, 'no limit, no cap');
  });
});
