// What a user sees of jobs, on real nodes and with the real CLI: a send in pull mode followed on the
// sending node by a job mirroring the peer's (its outcome, and a cancel passed on to the peer); a send to
// a peer that is down saying why it waits, in the job JSON and the CLI, then succeeding once the peer is
// up; an unknown study refused at submission (400), with no job made.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startCli, type CliRunning } from '../helpers/cli.ts';
import { describe, someSeries } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { call, getJson, json, postJson, startPair, waitJob, type JobJson, type Pair } from '../helpers/transfer-nodes.ts';

/** `dicom-xfer ARGS` as a child process; `stderr()` reads what it wrote so far. Killed after 90 s. */
function start(args: string[]): CliRunning {
  return startCli(args, { timeoutMs: 90_000 });
}

/** Stores the first `count` files (or all, if fewer) of a folder of DICOM on `base`; answers the study's ID and the instances. */
async function importSome(base: string, dir: string, count: number): Promise<{ study: string; instances: string[] }> {
  const names = (await readdir(dir)).sort().slice(0, count);
  const instances: string[] = [];
  let study = '';
  for (const n of names) {
    const a = await call(base, 'POST', '/instances', await readFile(join(dir, n)));
    assert.equal(a.status, 200, `import of ${n}`);
    const o = json<{ ID: string; ParentStudy: string }>(a);
    instances.push(o.ID);
    study = o.ParentStudy;
  }
  return { study, instances };
}

/** Polls `read` every 100 ms until `ok` holds of its value (at most `ms`); answers the value. */
async function until<T>(what: string, read: () => Promise<T> | T, ok: (v: T) => boolean, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let v: T | undefined;
  for (let i = 0; i < 100_000; i++) {
    v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not reached within ${ms} ms (last: ${JSON.stringify(v).slice(0, 600)})`);
}

const jobsOf = (base: string): Promise<JobJson[]> => getJson<JobJson[]>(base, '/jobs?expand');

describe('a send in pull mode is followed by a job on the sending node', { timeout: 180_000 }, () => {
  let pair: Pair;
  let study: string;
  let instances: string[];

  before(async () => {
    // A's peer "b" pulls from A (RemoteSelf: B names A "a"); "bpush" is B without RemoteSelf.
    pair = await startPair({ peerB: { RemoteSelf: 'a' }, common: { Transfers: { BucketSize: 64, Threads: 1, MaxThreads: 1 } } });
    ({ study, instances } = await importSome(pair.a.url, await someSeries(), 12));
  });
  after(async () => pair?.stop());

  test("the answer stays the plugin's three keys; A lists a job that mirrors the peer's to Success", async () => {
    const a = await postJson(pair.a.url, '/transfers/send', {
      Resources: [{ Level: 'Study', ID: study }],
      Compression: 'gzip',
      Peer: 'b',
      Priority: 42,
    });
    assert.equal(a.status, 200, a.body.toString());
    const handle = json<Record<string, string>>(a);
    assert.deepEqual(Object.keys(handle).sort(), ['Peer', 'RemoteJob', 'URL']);
    assert.equal(handle.Peer, 'b');
    const remote = await waitJob(pair.b.url, handle.RemoteJob as string);
    assert.equal(remote.State, 'Success');
    assert.equal(remote.Type, 'PullTransfer');
    assert.equal(remote.Priority, 0, 'the priority is not forwarded');

    const follower = (await jobsOf(pair.a.url)).find((j) => j.Content.RemoteJob === handle.RemoteJob);
    assert.ok(follower, 'A lists a job for the send');
    assert.equal(follower.Type, 'RemotePullTransfer');
    assert.equal(follower.Priority, 42);
    const done = await waitJob(pair.a.url, follower.ID);
    assert.equal(done.State, 'Success');
    assert.equal(done.Progress, 100);
    assert.equal(done.Content.Peer, 'b');
    assert.equal(done.Content.RemoteState, 'Success');
    assert.equal(done.Content.RemoteJobURL, handle.URL);
    assert.equal(done.Content.TotalInstances, instances.length, "the peer's figures are mirrored");
    assert.equal(done.Content.CompletedHttpQueries, remote.Content.CompletedHttpQueries);
    assert.equal(done.Content.DownloadedSizeMB, remote.Content.DownloadedSizeMB);

    // The CLI lists it as a send pulled by the peer.
    const r = await start(['jobs', '--url', pair.a.url]).done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${follower.ID.slice(0, 8)}\\s+send \\(pull by peer\\)\\s+Success\\s+100%\\s+b`));
  });

  test('pausing the job on A pauses the pull on the peer; resuming it resumes both', async () => {
    const gate = pair.toA.hold({ method: 'GET', path: '/transfers/chunks/' });
    let follower: JobJson | undefined;
    let remote = '';
    try {
      await call(pair.b.url, 'DELETE', `/studies/${study}`);
      const a = await postJson(pair.a.url, '/transfers/send', {
        Resources: [{ Level: 'Study', ID: study }],
        Compression: 'none',
        Peer: 'b',
      });
      assert.equal(a.status, 200, a.body.toString());
      remote = json<Record<string, string>>(a).RemoteJob as string;
      await gate.waitHeld(1, 30_000);
      follower = await until(
        'the job on A runs',
        async () => (await jobsOf(pair.a.url)).find((j) => j.Content.RemoteJob === remote),
        (j) => j?.State === 'Running',
      );
      assert.ok(follower);
      assert.equal((await call(pair.a.url, 'POST', `/jobs/${follower.ID}/pause`, '')).status, 200);
      gate.release();
      assert.equal((await getJson<JobJson>(pair.a.url, `/jobs/${follower.ID}`)).State, 'Paused');
      assert.equal((await waitJob(pair.b.url, remote, 30_000, ['Paused'])).State, 'Paused', "the peer's job is paused too");
    } finally {
      gate.release();
      pair.toA.clearRules();
    }
    assert.equal((await call(pair.a.url, 'POST', `/jobs/${follower.ID}/resume`, '')).status, 200);
    const done = await waitJob(pair.a.url, follower.ID);
    assert.equal(done.State, 'Success', JSON.stringify(done));
    assert.match(String(done.Content.RemoteControl), /^resume: done on peer "b"/);
    assert.equal((await waitJob(pair.b.url, remote)).State, 'Success');
  });

  test('cancelling the job on A cancels the pull on the peer', async () => {
    // B's chunk GETs to A are held: the pull stays running.
    const gate = pair.toA.hold({ method: 'GET', path: '/transfers/chunks/' });
    try {
      // A fresh study on A (the first one is already on B, which would skip it).
      await call(pair.b.url, 'DELETE', `/studies/${study}`);
      const a = await postJson(pair.a.url, '/transfers/send', {
        Resources: [{ Level: 'Study', ID: study }],
        Compression: 'none',
        Peer: 'b',
      });
      assert.equal(a.status, 200, a.body.toString());
      const handle = json<Record<string, string>>(a);
      await gate.waitHeld(1, 30_000);
      const follower = await until(
        'the job on A runs',
        async () => (await jobsOf(pair.a.url)).find((j) => j.Content.RemoteJob === handle.RemoteJob),
        (j) => j?.State === 'Running' && j.Content.RemoteState === 'Running',
      );
      assert.ok(follower);
      // Through the CLI, which says what the peer did.
      const c = await start(['jobs', 'cancel', follower.ID.slice(0, 8), '--url', pair.a.url]).done;
      assert.equal(c.code, 0, c.stderr);
      assert.match(c.stdout, /canceled: it is now Failure\.\nThe peer's job: cancel: done on peer "b"/);
      gate.release();
      const mine = await waitJob(pair.a.url, follower.ID);
      assert.equal(mine.State, 'Failure');
      assert.equal(mine.ErrorCode, 37, 'canceled');
      assert.match(String(mine.Content.RemoteControl), /^cancel: done on peer "b"/);
      const theirs = await waitJob(pair.b.url, handle.RemoteJob as string);
      assert.equal(theirs.State, 'Failure');
      assert.equal(theirs.ErrorCode, 37, "the peer's job was canceled too");
      // Resubmitted on A: the peer's job runs again, and both end in Success.
      const r = await call(pair.a.url, 'POST', `/jobs/${follower.ID}/resubmit`, '');
      assert.equal(r.status, 200, r.body.toString());
      const again = await waitJob(pair.a.url, follower.ID);
      assert.equal(again.State, 'Success', JSON.stringify(again));
      assert.match(String(again.Content.RemoteControl), /^resubmit: done on peer "b"/);
      assert.equal((await waitJob(pair.b.url, handle.RemoteJob as string)).State, 'Success');
    } finally {
      gate.release();
      pair.toA.clearRules();
    }
  });
});

describe('a send in pull mode to the node itself, one job at a time', { timeout: 120_000 }, () => {
  let node: XferNode;
  before(async () => {
    const port = await freePort();
    const closed = await freePort(); // nothing listens there
    // The peer is the node itself (as in the plugin's own tests), and only one job runs at once: the
    // job that follows must not hold the slot that the pull it follows needs.
    node = await startXferNode({
      port,
      config: {
        Name: 'self',
        ConcurrentJobs: 1,
        Transfers: { Extensions: false, RetryBudget: 60 },
        OrthancPeers: { me: { Url: `http://127.0.0.1:${port}/`, RemoteSelf: 'me' }, down: { Url: `http://127.0.0.1:${closed}/` } },
      },
    });
  });
  after(async () => node?.stop());

  test('both the pull and the job that follows it end in Success', async () => {
    const { study } = await importSome(node.url, await someSeries(), 2);
    // The one slot is taken (a push waiting for a peer that is down) while the send is asked for, with
    // a priority above the pull's: the follower comes first in the queue.
    const busy = json<{ ID: string }>(
      await postJson(node.url, '/transfers/send', { Resources: [{ Level: 'Study', ID: study }], Compression: 'gzip', Peer: 'down' }),
    );
    await waitJob(node.url, busy.ID, 30_000, ['Running']);
    const a = await postJson(node.url, '/transfers/send', {
      Resources: [{ Level: 'Study', ID: study }],
      Compression: 'gzip',
      Peer: 'me',
      Priority: 42,
    });
    assert.equal(a.status, 200, a.body.toString());
    const handle = json<Record<string, string>>(a);
    assert.deepEqual(Object.keys(handle).sort(), ['Peer', 'RemoteJob', 'URL']);
    assert.equal((await call(node.url, 'POST', `/jobs/${busy.ID}/cancel`, '')).status, 200);
    const pull = await waitJob(node.url, handle.RemoteJob as string, 60_000);
    assert.equal(pull.State, 'Success');
    const follower = (await jobsOf(node.url)).find((j) => j.Type === 'RemotePullTransfer');
    assert.ok(follower);
    assert.equal((await waitJob(node.url, follower.ID, 60_000)).State, 'Success');
  });
});

describe('a send to a peer that is down says why it waits, then succeeds once the peer is up', { timeout: 180_000 }, () => {
  let a: XferNode;
  let c: XferNode | undefined;
  let port: number;
  let study: string;

  before(async () => {
    port = await freePort(); // nothing listens there yet
    a = await startXferNode({
      config: {
        Name: 'a',
        HttpTimeout: 5,
        // Long enough to ride over the time the test takes to start the peer.
        Transfers: { RetryBudget: 120, MaxHttpRetries: 0 },
        OrthancPeers: { c: { Url: `http://127.0.0.1:${port}/` } },
      },
    });
    ({ study } = await importSome(a.url, await someSeries(), 4));
  });
  after(async () => {
    await a?.stop();
    await c?.stop();
  });

  test('the job JSON, `jobs` and `send` say "c does not answer: connection refused; next try in …"', async () => {
    const h = await postJson(a.url, '/transfers/send', { Resources: [{ Level: 'Study', ID: study }], Compression: 'gzip', Peer: 'c' });
    assert.equal(h.status, 200, h.body.toString());
    const id = json<{ ID: string }>(h).ID;
    const waiting = await until(
      'the job says why it waits',
      () => getJson<JobJson>(a.url, `/jobs/${id}`),
      (j) => typeof j.Content.Waiting === 'string',
    );
    assert.equal(waiting.State, 'Running');
    assert.match(String(waiting.Content.Waiting), /^c does not answer: connection refused; next try in (\d+(\.\d)? s|a moment)$/);

    // The CLI's table, and a `send` that follows its own job.
    const table = await start(['jobs', '--url', a.url]).done;
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`${id.slice(0, 8)}: waiting: c does not answer: connection refused; next try in`));
    const send = start(['send', '--url', a.url, '--peer', 'c', '--study', study, '--compression', 'none']);
    await until(
      'send shows the wait',
      () => send.stderr(),
      (s) => /waiting: c does not answer: connection refused; next try in/.test(s),
      45_000,
    );

    // The peer comes up on that port: both jobs finish, and the wait is no longer shown.
    c = await startXferNode({ port, config: { Name: 'c' } });
    const done = await waitJob(a.url, id, 120_000);
    assert.equal(done.State, 'Success', JSON.stringify(done));
    assert.equal(done.Content.Waiting, undefined);
    const r = await send.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Sent 4 instances/);
    assert.deepEqual(((await getJson<string[]>(c.url, '/instances')) ?? []).length, 4);
  });
});

describe('an unknown study is refused when the send is asked for', { timeout: 120_000 }, () => {
  let pair: Pair;
  let study: string;
  const unknown = '0123abcd-0123abcd-0123abcd-0123abcd-0123abcd';

  before(async () => {
    pair = await startPair({ aliasesOfB: { bpull: { RemoteSelf: 'a' } } });
    ({ study } = await importSome(pair.a.url, await someSeries(), 1));
  });
  after(async () => pair?.stop());

  test("/transfers/send and the dashboard's send answer 400 in Orthanc's shape and make no job", async () => {
    const before = await getJson<string[]>(pair.a.url, '/jobs');
    for (const [path, peer] of [
      ['/transfers/send', 'b'],
      ['/transfers/send', 'bpull'],
      ['/ui/api/send', 'b'],
    ] as const) {
      const a = await postJson(pair.a.url, path, {
        Resources: [
          { Level: 'Study', ID: study },
          { Level: 'Study', ID: unknown },
        ],
        Compression: 'gzip',
        Peer: peer,
      });
      assert.equal(a.status, 400, `${path} to ${peer}: ${a.body.toString()}`);
      const e = json(a);
      assert.equal(e.HttpStatus, 400);
      assert.equal(e.OrthancError, 'Unknown resource');
      assert.equal(e.OrthancStatus, 17);
      assert.equal(e.Method, 'POST');
      assert.equal(e.Uri, path);
      assert.match(String(e.Details), new RegExp(`Study ${unknown} is not stored on this node`));
    }
    assert.deepEqual(await getJson<string[]>(pair.a.url, '/jobs'), before, 'no job was made');
    assert.deepEqual(await getJson<string[]>(pair.b.url, '/jobs'), [], 'the peer was not asked to pull');
  });

  test('the CLI says the node does not hold it, exit 2', async () => {
    const r = await start(['send', '--url', pair.a.url, '--peer', 'b', '--study', unknown]).done;
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`does not hold what was asked for: Study ${unknown} is not stored on this node`));
    assert.deepEqual(await getJson<string[]>(pair.a.url, '/jobs'), []);
  });
});
