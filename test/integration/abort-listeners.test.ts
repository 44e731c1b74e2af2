// A job's signal is watched by every request it has in flight and by every retry that waits: through one
// shared listener (src/util/abort.ts), not one each. With one each, a push with more than ten requests in
// flight made Node warn "MaxListenersExceededWarning: Possible EventTarget memory leak detected".
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { PeerClient } from '../../src/peers/client.ts';
import { parsePeerInput } from '../../src/peers/registry.ts';
import { realClock } from '../../src/util/retry.ts';
import { importFiles, listFiles, startPair, startTransfer, waitJob } from '../helpers/transfer-nodes.ts';
import { someDicom } from '../helpers/data.ts';

/** More than Node's default of 10 listeners per signal. */
const CONCURRENT = 24;

/** Collects the process warnings emitted while `fn` runs. */
async function warningsDuring(fn: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const onWarning = (w: Error) => seen.push(w);
  process.on('warning', onWarning);
  try {
    await fn();
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', onWarning);
  }
  return seen;
}

describe('abort listeners on a shared signal', { timeout: 120_000 }, () => {
  test(`${CONCURRENT} requests in flight on one signal add one listener to it, and its abort stops them all`, async () => {
    const held: ServerResponse[] = [];
    let arrived!: () => void;
    const allArrived = new Promise<void>((r) => (arrived = r));
    const server = createServer((_req, res) => {
      held.push(res);
      if (held.length === CONCURRENT) arrived();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    const client = new PeerClient(parsePeerInput('p', { Url: `http://127.0.0.1:${port}/` }), { httpTimeout: 30, verifyPeers: true });
    const job = new AbortController();
    try {
      const warnings = await warningsDuring(async () => {
        const calls = Array.from({ length: CONCURRENT }, (_, i) =>
          client.buffer({ method: 'GET', path: `/held/${i}`, signal: job.signal }).then(
            () => 'answered',
            () => 'aborted',
          ),
        );
        await allArrived;
        assert.equal(getEventListeners(job.signal, 'abort').length, 1, 'one listener for all the requests in flight');
        job.abort(new Error('job cancelled'));
        assert.deepEqual(new Set(await Promise.all(calls)), new Set(['aborted']));
      });
      assert.deepEqual(
        warnings.map((w) => w.name),
        [],
      );
      assert.equal(getEventListeners(job.signal, 'abort').length, 0);
    } finally {
      for (const res of held) res.destroy();
      await client.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('requests that end leave no listener behind', async () => {
    const server = createServer((_req, res) => res.end('{}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    const client = new PeerClient(parsePeerInput('p', { Url: `http://127.0.0.1:${port}/` }), { httpTimeout: 30, verifyPeers: true });
    const job = new AbortController();
    try {
      const warnings = await warningsDuring(async () => {
        await Promise.all(Array.from({ length: CONCURRENT }, () => client.json({ method: 'GET', path: '/x', signal: job.signal })));
      });
      assert.deepEqual(
        warnings.map((w) => w.name),
        [],
      );
      assert.equal(getEventListeners(job.signal, 'abort').length, 0);
    } finally {
      await client.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test(`${CONCURRENT} retries waiting on one signal add one listener to it, and its abort ends every wait`, async () => {
    const job = new AbortController();
    const warnings = await warningsDuring(async () => {
      const waits = Array.from({ length: CONCURRENT }, () =>
        realClock.sleep(60_000, job.signal).then(
          () => 'slept',
          () => 'aborted',
        ),
      );
      assert.equal(getEventListeners(job.signal, 'abort').length, 1);
      job.abort(new Error('job cancelled'));
      assert.deepEqual(new Set(await Promise.all(waits)), new Set(['aborted']));
    });
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
    // A wait that ends on its own lets go of the signal too.
    const other = new AbortController();
    await Promise.all(Array.from({ length: CONCURRENT }, () => realClock.sleep(1, other.signal)));
    assert.equal(getEventListeners(other.signal, 'abort').length, 0);
  });

  test('a push of DICOM files with many requests in flight raises no listener warning', async () => {
    // Threads 16 and buckets of 512 KB: the push starts with more than ten requests in flight at once, on
    // the real files or, without them, on the generated ones (about 8 MB).
    const pair = await startPair({ common: { Transfers: { Threads: 16, MaxThreads: 32, BucketSize: 512 } } });
    try {
      const imported = await importFiles(pair.a.url, await listFiles(await someDicom()));
      const resources = [...imported.md5.keys()].map((ID) => ({ Level: 'Instance', ID }));
      for (const Compression of ['gzip', 'none']) {
        if (Compression === 'none')
          for (const id of imported.md5.keys())
            assert.equal((await fetch(`${pair.b.url}/instances/${id}`, { method: 'DELETE' })).status, 200);
        const { ID } = await startTransfer(pair.a.url, 'send', { Peer: 'b', Resources: resources, Compression });
        const job = await waitJob(pair.a.url, ID as string, 120_000);
        assert.equal(job.State, 'Success', JSON.stringify(job));
      }
      assert.doesNotMatch(pair.a.log(), /MaxListenersExceededWarning/);
      assert.doesNotMatch(pair.b.log(), /MaxListenersExceededWarning/);
    } finally {
      await pair.stop();
    }
  });
});
