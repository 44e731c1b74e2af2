// The retry primitive: attempts, budget, fixed and jittered backoff, what is retryable, abort and callbacks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { XferError } from '../../src/errors.ts';
import {
  backoffDelay,
  isRetryable,
  isRetryableStatus,
  retry,
  retryOptionsFromConfig,
  type Clock,
  type RetryInfo,
} from '../../src/util/retry.ts';
import { freePort } from '../helpers/ports.ts';

/** A clock whose sleeps return at once and move time forward; it records every wait. */
function fakeClock(start = 1_000_000): Clock & { waits: number[]; advance(ms: number): void } {
  let now = start;
  const waits: number[] = [];
  return {
    waits,
    now: () => now,
    advance(ms) {
      now += ms;
    },
    async sleep(ms, signal) {
      if (signal?.aborted) throw signal.reason;
      waits.push(ms);
      now += ms;
    },
  };
}

/** An error as a peer call gives it: a remote HTTP status. */
function httpError(status: number): Error & { status: number } {
  return Object.assign(new Error(`HTTP ${status}`), { status });
}

/** A real ECONNREFUSED from the kernel, by connecting to a port nobody listens on. */
async function realRefusal(): Promise<Error> {
  const port = await freePort();
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('error', (e) => resolve(e));
    s.on('connect', () => {
      s.destroy();
      resolve(new Error('unexpectedly connected'));
    });
  });
}

describe('retry', () => {
  test('returns the first success without waiting', async () => {
    const clock = fakeClock();
    const calls: number[] = [];
    const v = await retry(
      async (attempt) => {
        calls.push(attempt);
        return 'ok';
      },
      { maxAttempts: 5, clock },
    );
    assert.equal(v, 'ok');
    assert.deepEqual(calls, [1]);
    assert.deepEqual(clock.waits, []);
  });

  test('makes one attempt by default, as the plugin with MaxHttpRetries 0', async () => {
    let calls = 0;
    const err = httpError(503);
    await assert.rejects(
      retry(async () => {
        calls++;
        throw err;
      }),
      (e) => e === err,
    );
    assert.equal(calls, 1);
  });

  test('retries a 503 with a fixed delay, then gives the last error unchanged', async () => {
    const clock = fakeClock();
    const seen: RetryInfo[] = [];
    const errors = [httpError(503), httpError(500), httpError(502)];
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          throw errors[calls++];
        },
        { maxAttempts: 3, backoff: { kind: 'fixed', delayMs: 1000 }, clock, onRetry: (i) => seen.push(i) },
      ),
      (e) => e === errors[2],
    );
    assert.equal(calls, 3);
    assert.deepEqual(clock.waits, [1000, 1000]);
    assert.deepEqual(
      seen.map((s) => [s.attempt, s.delayMs, s.error]),
      [
        [1, 1000, errors[0]],
        [2, 1000, errors[1]],
      ],
    );
  });

  test('succeeds on a later attempt with real (short) timers', async () => {
    let calls = 0;
    const v = await retry(
      async (attempt) => {
        calls++;
        if (attempt < 3) throw httpError(503);
        return attempt;
      },
      { maxAttempts: 4, backoff: { kind: 'fixed', delayMs: 15 } },
    );
    assert.equal(v, 3);
    assert.equal(calls, 3);
  });

  test('does not retry a 4xx, nor a 201 or 204', async () => {
    for (const status of [400, 401, 404, 409, 201, 204]) {
      const clock = fakeClock();
      let calls = 0;
      await assert.rejects(
        retry(
          async () => {
            calls++;
            throw httpError(status);
          },
          { maxAttempts: 5, clock },
        ),
      );
      assert.equal(calls, 1, `status ${status}`);
    }
  });

  test('retries 408 and 429 and honours a Retry-After hint longer than the backoff', async () => {
    const clock = fakeClock();
    let calls = 0;
    await retry(
      async () => {
        calls++;
        if (calls === 1) throw httpError(408);
        if (calls === 2) throw Object.assign(httpError(429), { retryAfterMs: 5000 });
        return 'ok';
      },
      { maxAttempts: 3, backoff: { kind: 'fixed', delayMs: 1000 }, clock },
    );
    assert.deepEqual(clock.waits, [1000, 5000]);
  });

  test('exponential backoff uses full jitter below a doubling ceiling and a cap', () => {
    const b = { kind: 'exponential', baseMs: 100, capMs: 1000 } as const;
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(b, n, () => 0.9999)),
      [99, 199, 399, 799, 999, 999],
    );
    assert.deepEqual(
      [1, 2, 3].map((n) => backoffDelay(b, n, () => 0)),
      [0, 0, 0],
    );
    assert.equal(
      backoffDelay(b, 10_000, () => 0.5),
      500,
    );
    assert.equal(backoffDelay({ kind: 'fixed', delayMs: 1000 }, 7), 1000);
  });

  test('a time budget stops retries whose wait would end past it', async () => {
    const clock = fakeClock();
    let calls = 0;
    const err = httpError(500);
    await assert.rejects(
      retry(
        async () => {
          calls++;
          clock.advance(300); // each attempt takes 300 ms
          throw err;
        },
        { budgetMs: 2000, backoff: { kind: 'fixed', delayMs: 400 }, clock },
      ),
      (e) => e === err,
    );
    // 300 | 400 | 300 (t=1000) | 400 | 300 (t=2000): the next wait would end at 2400 > 2000.
    assert.equal(calls, 3);
    assert.deepEqual(clock.waits, [400, 400]);
  });

  test('minAttempts is honoured even when the budget is spent', async () => {
    const clock = fakeClock();
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls++;
          clock.advance(10_000);
          throw httpError(500);
        },
        { budgetMs: 100, minAttempts: 3, backoff: { kind: 'fixed', delayMs: 1000 }, clock },
      ),
    );
    assert.equal(calls, 3);
  });

  test('an infinite attempts limit without a budget is still bounded', async () => {
    const clock = fakeClock();
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw httpError(500);
        },
        { maxAttempts: Infinity, minAttempts: 2, clock },
      ),
    );
    assert.equal(calls, 2);
  });

  test('an abort during the wait rejects at once with the reason and makes no new attempt', async () => {
    const ac = new AbortController();
    const reason = new XferError('CanceledJob', 'paused by the user');
    let calls = 0;
    const started = Date.now();
    const p = retry(
      async () => {
        calls++;
        setTimeout(() => ac.abort(reason), 10);
        throw httpError(503);
      },
      { maxAttempts: 5, backoff: { kind: 'fixed', delayMs: 60_000 }, signal: ac.signal },
    );
    await assert.rejects(p, (e) => e === reason);
    assert.equal(calls, 1);
    // The 60 s wait was cut short (a generous bound: this asserts the wait ended, not a speed).
    assert.ok(Date.now() - started < 30_000);
  });

  test('an aborted signal prevents the first attempt, and is handed to attempts', async () => {
    const ac = new AbortController();
    ac.abort();
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls++;
        },
        { signal: ac.signal },
      ),
      (e: unknown) => (e as Error).name === 'AbortError',
    );
    assert.equal(calls, 0);
    const live = new AbortController();
    let got: AbortSignal | undefined;
    await retry(
      async (_n, s) => {
        got = s;
      },
      { signal: live.signal },
    );
    assert.equal(got, live.signal);
  });

  test('an abort while an attempt fails wins over retrying', async () => {
    const ac = new AbortController();
    const clock = fakeClock();
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls++;
          ac.abort(new XferError('CanceledJob'));
          throw httpError(503);
        },
        { maxAttempts: 5, signal: ac.signal, clock },
      ),
      (e) => e instanceof XferError && e.code === 'CanceledJob',
    );
    assert.equal(calls, 1);
  });

  test('a throwing onRetry callback does not change the outcome', async () => {
    const clock = fakeClock();
    const v = await retry(
      async (n) => {
        if (n === 1) throw httpError(500);
        return n;
      },
      {
        maxAttempts: 2,
        clock,
        onRetry: () => {
          throw new Error('display broke');
        },
      },
    );
    assert.equal(v, 2);
  });
});

describe('isRetryable', () => {
  test('statuses: 408, 429 and 5xx yes; 2xx other than 200, 3xx and 4xx no', () => {
    for (const s of [408, 429, 500, 502, 503, 504, 599]) assert.equal(isRetryableStatus(s), true, String(s));
    for (const s of [201, 204, 301, 400, 401, 403, 404, 405, 413]) assert.equal(isRetryableStatus(s), false, String(s));
  });

  test('a real ECONNREFUSED is retryable, bare or wrapped in NetworkProtocol', async () => {
    const refusal = await realRefusal();
    assert.equal((refusal as NodeJS.ErrnoException).code, 'ECONNREFUSED');
    assert.equal(isRetryable(refusal), true);
    assert.equal(isRetryable(new XferError('NetworkProtocol', 'call failed', { cause: refusal })), true);
  });

  test('transport codes: resets and timeouts yes, certificate failures no', () => {
    const wrap = (code: string) => new XferError('NetworkProtocol', code, { cause: Object.assign(new Error(code), { code }) });
    for (const c of ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT']) {
      assert.equal(isRetryable(wrap(c)), true, c);
    }
    for (const c of ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ENOTFOUND']) {
      assert.equal(isRetryable(wrap(c)), false, c);
    }
  });

  test('XferErrors follow the error table; aborts, bad JSON answers and strangers', () => {
    assert.equal(isRetryable(new XferError('Timeout', 'no answer')), true);
    assert.equal(isRetryable(new XferError('NetworkProtocol', 'no cause')), true);
    assert.equal(isRetryable(new XferError('BadFileFormat')), false);
    assert.equal(isRetryable(new XferError('CorruptedFile')), false);
    assert.equal(isRetryable(new XferError('CanceledJob')), false);
    const abort = new AbortController();
    abort.abort();
    assert.equal(isRetryable(abort.signal.reason), false);
    assert.equal(isRetryable(Object.assign(new Error('empty'), { status: 200, badBody: true })), true);
    assert.equal(isRetryable(Object.assign(new Error('too big'), { status: 200 })), false);
    assert.equal(isRetryable(new Error('plain')), false);
    assert.equal(isRetryable('a string'), false);
    assert.equal(isRetryable(undefined), false);
  });
});

describe('retryOptionsFromConfig', () => {
  const transfers = (MaxHttpRetries: number, RetryBudget: number) =>
    ({ Transfers: { MaxHttpRetries, RetryBudget } }) as Parameters<typeof retryOptionsFromConfig>[0];

  test('the plugin: MaxHttpRetries + 1 attempts one second apart', async () => {
    const clock = fakeClock();
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw httpError(500);
        },
        { ...retryOptionsFromConfig(transfers(2, 0)), clock },
      ),
    );
    assert.equal(calls, 3);
    assert.deepEqual(clock.waits, [1000, 1000]);
  });

  test('with RetryBudget: at least MaxHttpRetries + 1 attempts, then jittered backoff within the budget', async () => {
    const clock = fakeClock();
    let calls = 0;
    const opts = { ...retryOptionsFromConfig(transfers(1, 10)), clock, random: () => 0.9999 };
    await assert.rejects(
      retry(async () => {
        calls++;
        throw httpError(503);
      }, opts),
    );
    // Waits 499, 999, 1999, 3999 (sum 7496 ms); the next (7999) would end past 10 s.
    assert.deepEqual(clock.waits, [499, 999, 1999, 3999]);
    assert.equal(calls, 5);
  });
});
