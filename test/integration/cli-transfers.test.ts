// The transfer commands (send, pull, jobs, peers) run as the real `dicom-xfer` child process against
// real nodes on loopback: pushes with and without gzip, a pull, a send through a RemoteSelf peer, a
// peer that is down, an unknown peer, Ctrl-C while following, the job controls and the peers table.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startCli, type CliRun, type CliRunning } from '../helpers/cli.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

const BRAINIX = join(REAL_DICOM, 'Brainix');
const BEAUFIX = join(REAL_DICOM, 'Beaufix');
const PHENIX = join(REAL_DICOM, 'Phenix');

type Run = CliRun;

/** Starts `dicom-xfer ARGS` (killed after 60 s). */
function start(args: string[]): CliRunning {
  return startCli(args);
}

function cli(...args: string[]): Promise<Run> {
  return start(args).done;
}

interface Stored {
  ID: string;
  ParentSeries: string;
  ParentStudy: string;
  ParentPatient: string;
}

async function importFolder(node: XferNode, dir: string): Promise<Stored[]> {
  const out: Stored[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const res = await fetch(`${node.url}/instances`, { method: 'POST', body: await readFile(join(dir, name)) });
    assert.equal(res.status, 200, `import of ${name}`);
    out.push((await res.json()) as Stored);
  }
  return out;
}

async function md5Of(node: XferNode, id: string): Promise<string | undefined> {
  const res = await fetch(`${node.url}/instances/${id}/attachments/dicom/md5`);
  const text = await res.text();
  return res.status === 200 ? text.trim() : undefined;
}

/** Every instance is on `to` with the MD5 it has on `from`. */
async function assertSameBytes(from: XferNode, to: XferNode, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    const want = await md5Of(from, id);
    assert.ok(want, `instance ${id} is on the source`);
    assert.equal(await md5Of(to, id), want, `instance ${id} on the destination, same MD5`);
  }
}

async function getJson<T>(url: string, auth?: string): Promise<T> {
  const res = await fetch(url, auth ? { headers: { authorization: `Basic ${Buffer.from(auth).toString('base64')}` } } : {});
  assert.equal(res.status, 200, `GET ${url}`);
  return (await res.json()) as T;
}

// Independent tests run at the same time (each command is a process that takes a while to start).
describe('dicom-xfer send, pull, jobs and peers against real nodes', { skip: needs(REAL_DICOM), concurrency: true }, () => {
  let A: XferNode;
  let B: XferNode;
  let C: XferNode;
  let stall: Server;
  const stallSockets = new Set<Socket>();
  let flair: Stored[] = [];
  let epi: Stored[] = [];
  let beaufix: Stored[] = [];
  let phenix: Stored[] = [];
  const jobIds: string[] = [];

  before(async () => {
    const [pa, pb, pc, pDown] = [await freePort(), await freePort(), await freePort(), await freePort()];
    // A peer that accepts connections and never answers: a job to it runs until canceled.
    stall = createServer((s) => {
      stallSockets.add(s);
      s.on('close', () => stallSockets.delete(s));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
    const stallPort = (stall.address() as { port: number }).port;
    [A, B, C] = await Promise.all([
      startXferNode({
        port: pa,
        config: {
          // small buckets give several per series; no retries so that a peer that is down fails at once
          Transfers: { BucketSize: 512, RetryBudget: 0, MaxHttpRetries: 0 },
          ConcurrentJobs: 4,
          OrthancPeers: {
            b: [`http://127.0.0.1:${pb}/`],
            bself: { Url: `http://127.0.0.1:${pb}/`, RemoteSelf: 'a' },
            cself: { Url: `http://127.0.0.1:${pc}/`, Username: 'carol', Password: 'secret-c', RemoteSelf: 'a' },
            down: [`http://127.0.0.1:${pDown}/`],
            stall: [`http://127.0.0.1:${stallPort}/`],
          },
        },
      }),
      startXferNode({ port: pb, config: { OrthancPeers: { a: [`http://127.0.0.1:${pa}/`] } } }),
      startXferNode({
        port: pc,
        config: { AuthenticationEnabled: true, RegisteredUsers: { carol: 'secret-c' }, OrthancPeers: { a: [`http://127.0.0.1:${pa}/`] } },
        auth: { username: 'carol', password: 'secret-c' },
      }),
    ]);
    flair = await importFolder(A, join(BRAINIX, 'Flair'));
    epi = await importFolder(A, join(BRAINIX, 'Epi'));
    beaufix = await importFolder(A, BEAUFIX);
    phenix = await importFolder(A, PHENIX);
  });

  after(async () => {
    for (const s of stallSockets) s.destroy();
    await new Promise<void>((r) => stall.close(() => r()));
    await Promise.all([A?.stop(), B?.stop(), C?.stop()]);
  });

  // The jobs on A of this chain are listed and controlled at its end, so its tests run in order.
  describe('push, push, pull, a failure, then jobs', { concurrency: 1 }, () => {
    test('send pushes a series with gzip: exit 0, the peer holds the same bytes', async () => {
      const series = flair[0]?.ParentSeries ?? '';
      const r = await cli('send', '--url', A.url, '--peer', 'b', '--series', series, '--compression', 'gzip');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Sent 22 instances .* to peer "b".*gzip/);
      jobIds.push(/job ([0-9a-f-]{36})/.exec(r.stdout)?.[1] ?? '');
      await assertSameBytes(
        A,
        B,
        flair.map((s) => s.ID),
      );
    });

    test('send with several levels and IDs, no compression, --json: the final job JSON', async () => {
      const [e1, e2] = epi;
      assert.ok(e1 && e2);
      const r = await cli(
        'send',
        '--url',
        A.url,
        '--peer',
        'b',
        '--compression',
        'none',
        '--json',
        '--instance',
        e1.ID,
        e2.ID,
        '--series',
        flair[0]?.ParentSeries ?? '',
      );
      assert.equal(r.code, 0, r.stderr);
      const job = JSON.parse(r.stdout) as {
        ID: string;
        Type: string;
        State: string;
        Content: { Compression: string; TotalInstances: number; Peer: string };
      };
      assert.equal(job.State, 'Success');
      assert.equal(job.Type, 'PushTransfer');
      assert.equal(job.Content.Compression, 'none');
      assert.equal(job.Content.Peer, 'b');
      assert.equal(job.Content.TotalInstances, 24);
      jobIds.push(job.ID);
      await assertSameBytes(A, B, [e1.ID, e2.ID]);
      assert.equal(await md5Of(B, epi[2]?.ID ?? ''), undefined, 'only the instances asked for were sent');
    });

    test('pull from the receiving side brings the rest of the study', async () => {
      const study = flair[0]?.ParentStudy ?? '';
      const r = await cli('pull', '--url', B.url, '--peer', 'a', '--study', study);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Pulled 44 instances .* from peer "a"/);
      await assertSameBytes(
        A,
        B,
        [...flair, ...epi].map((s) => s.ID),
      );
    });

    test('send --no-follow, then jobs --follow ID to the end', async () => {
      const r = await cli('send', '--url', A.url, '--peer', 'b', '--no-follow', '--json', '--series', epi[0]?.ParentSeries ?? '');
      assert.equal(r.code, 0, r.stderr);
      const handle = JSON.parse(r.stdout) as { ID: string; Path: string };
      assert.equal(handle.Path, `/jobs/${handle.ID}`);
      const f = await cli('jobs', '--url', A.url, '--follow', handle.ID.slice(0, 8));
      assert.equal(f.code, 0, f.stderr);
      assert.match(f.stdout, new RegExp(`^${handle.ID.slice(0, 8)}\\s+push\\s+Success\\s+100%\\s+b\\s`, 'm'));
    });

    test('a peer that is down: the job fails, exit 1 with the cause', async () => {
      const r = await cli('send', '--url', A.url, '--peer', 'down', '--instance', flair[0]?.ID ?? '');
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /job [0-9a-f-]{36} failed: Error in the network protocol: .*peer "down"/);
      assert.match(r.stderr, /ECONNREFUSED|refused/);
      assert.match(r.stderr, /jobs resubmit/);
      jobIds.push(/job ([0-9a-f-]{36}) failed/.exec(r.stderr)?.[1] ?? '');
    });

    test('jobs lists the jobs; --json parses', async () => {
      const [r, j] = await Promise.all([cli('jobs', '--url', A.url), cli('jobs', '--url', A.url, '--json')]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^ID\s+TYPE\s+STATE\s+PROGRESS\s+PEER\s+SIZE\s+RATE\s+AGE/);
      for (const id of jobIds) assert.match(r.stdout, new RegExp(`^${id.slice(0, 8)}\\s+push\\s+(Success|Failure)`, 'm'));
      assert.match(r.stdout, /Error in the network protocol/, 'the cause of the failed job is listed');
      assert.equal(j.code, 0, j.stderr);
      const list = JSON.parse(j.stdout) as { ID: string; State: string }[];
      for (const id of jobIds)
        assert.ok(
          list.some((x) => x.ID === id),
          `job ${id} listed`,
        );
    });

    test('jobs cancel of a finished job: a clear error', async () => {
      const done = jobIds[0] ?? '';
      const [r, unknown] = await Promise.all([
        cli('jobs', 'cancel', done, '--url', A.url),
        cli('jobs', 'cancel', 'abcdef12', '--url', A.url),
      ]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /cannot be canceled: it has already ended \(Success\)/);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /no job .* has an ID starting with "abcdef12"/);
    });
  });

  test('peers: each peer with its URL and transfers status', async () => {
    const [r, j] = await Promise.all([cli('peers', '--url', A.url), cli('peers', '--url', A.url, '--json')]);
    assert.equal(r.code, 0, r.stderr);
    const line = (name: string) => r.stdout.split('\n').find((l) => l.startsWith(`${name} `)) ?? '';
    assert.match(line('b'), /http:\/\/127\.0\.0\.1:\d+\/\s+installed/);
    assert.match(line('bself'), /bidirectional/);
    assert.match(line('down'), /disabled/);
    assert.equal(j.code, 0, j.stderr);
    const peers = JSON.parse(j.stdout) as Record<string, { Url: string; Transfers: string }>;
    assert.equal(peers.b?.Transfers, 'installed');
    assert.equal(peers.bself?.Transfers, 'bidirectional');
    assert.equal(peers.down?.Transfers, 'disabled');
    assert.equal(peers.b?.Url, `${B.url}/`);
  });

  test('send through a RemoteSelf peer follows the job on the peer to Success', async () => {
    const patient = beaufix[0]?.ParentPatient ?? '';
    assert.equal(await md5Of(B, beaufix[0]?.ID ?? ''), undefined);
    const r = await cli('send', '--url', A.url, '--peer', 'bself', '--patient', patient, '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /runs on the peer at http:\/\/127\.0\.0\.1:\d+/);
    assert.match(r.stderr, /The node follows it as job [0-9a-f-]{36}\./);
    const job = JSON.parse(r.stdout) as { ID: string; Type: string; State: string };
    assert.equal(job.Type, 'PullTransfer');
    assert.equal(job.State, 'Success');
    const onB = await getJson<{ State: string }>(`${B.url}/jobs/${job.ID}`);
    assert.equal(onB.State, 'Success', "the job that was followed is the peer's");
    await assertSameBytes(
      A,
      B,
      beaufix.map((s) => s.ID),
    );
  });

  test('a RemoteSelf peer that needs credentials: the job runs there, the command says so and where', async () => {
    const id = phenix[0]?.ID ?? '';
    const r = await cli('send', '--url', A.url, '--peer', 'cself', '--instance', id);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /runs on peer "cself" as job [0-9a-f-]{36}/);
    assert.match(r.stderr, /HTTP 401/);
    assert.match(r.stderr, /--peer-username/);
    assert.match(r.stderr, new RegExp(`${C.url.replace(/[.]/g, '\\.')}//jobs/`));
    assert.match(r.stderr, /Or follow it on the node, which watches it: dicom-xfer jobs --follow [0-9a-f]{8} --url /);
    // with the peer's credentials the same send is followed to its end
    const ok = await cli(
      'send',
      '--url',
      A.url,
      '--peer',
      'cself',
      '--instance',
      id,
      '--peer-username',
      'carol',
      '--peer-password',
      'secret-c',
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /Peer "cself" pulled 1 instance/);
  });

  test('an unknown peer: exit 2, names the peers the node has', async () => {
    const r = await cli('send', '--url', A.url, '--peer', 'nope', '--instance', flair[0]?.ID ?? '');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no peer named "nope"; its peers are: b, bself, cself, down, stall/);
  });

  test('usage errors: no resource, a malformed ID, a bad compression', async () => {
    const [none, bad, comp] = await Promise.all([
      cli('send', '--url', A.url, '--peer', 'b'),
      cli('send', '--url', A.url, '--peer', 'b', '--study', '1.2.840.113619'),
      cli('send', '--url', A.url, '--peer', 'b', '--study', flair[0]?.ParentStudy ?? '', '--compression', 'zip'),
    ]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--patient, --study, --series or --instance/);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /not an Orthanc ID/);
    assert.equal(comp.code, 2);
    assert.match(comp.stderr, /compression/);
  });

  test('Ctrl-C stops following (send, jobs --follow), leaves the jobs running and says how to cancel; jobs cancel does', async () => {
    const child = start(['send', '--url', A.url, '--peer', 'stall', '--instance', flair[0]?.ID ?? '']);
    await waitFor('the first progress line', async () => /job [0-9a-f-]{36}\.\n[\s\S]*send: /.test(child.stderr()), 45_000);
    const id = /job ([0-9a-f-]{36})\./.exec(child.stderr())?.[1] ?? '';
    process.kill(child.pid, 'SIGINT');
    const r = await child.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /stopped following; job [0-9a-f-]{36} goes on/);
    assert.match(r.stderr, new RegExp(`jobs cancel ${id} --url ${A.url.replace(/[.]/g, '\\.')}`));
    const job = await getJson<{ State: string }>(`${A.url}/jobs/${id}`);
    assert.ok(job.State === 'Running' || job.State === 'Pending', `the job goes on (${job.State})`);

    // a second job that never ends, then `jobs --follow` of every active job, stopped the same way
    const second = await cli('send', '--url', A.url, '--peer', 'stall', '--no-follow', '--instance', flair[1]?.ID ?? '');
    assert.equal(second.code, 0, second.stderr);
    const id2 = second.stdout.trim();
    assert.match(id2, /^[0-9a-f-]{36}$/);
    const watcher = start(['jobs', '--url', A.url, '--follow']);
    const shown = (short: string) => new RegExp(`push ${short}: `).test(watcher.stderr());
    await waitFor('both jobs followed', async () => shown(id.slice(0, 8)) && shown(id2.slice(0, 8)), 45_000);
    process.kill(watcher.pid, 'SIGINT');
    const w = await watcher.done;
    assert.equal(w.code, 130, w.stderr);
    assert.match(w.stderr, /stopped following; the jobs go on/);
    assert.match(w.stdout, new RegExp(`^${id2.slice(0, 8)}\\s+push\\s+(Running|Pending)`, 'm'));

    const [c, c2] = await Promise.all([cli('jobs', 'cancel', id, '--url', A.url), cli('jobs', 'cancel', id2.slice(0, 8), '--url', A.url)]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /canceled: it is now Failure/);
    assert.equal(c2.code, 0, c2.stderr);
    for (const j of [id, id2]) {
      const after = await getJson<{ State: string; ErrorCode: number }>(`${A.url}/jobs/${j}`);
      assert.equal(after.State, 'Failure');
      assert.equal(after.ErrorCode, 37, 'ended as canceled');
    }
  });
});
