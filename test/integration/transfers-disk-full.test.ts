// A receiver whose disk fills up during a commit, for real: its storage is a small tmpfs mounted here
// (root only), filled to the last byte while the proxy holds the commit. The commit answers 507
// (FullStorage, not "corrupted file"), nothing is stored, the push transaction stays, and once space is
// freed the same transaction commits; the sending job says in plain words that the receiver's disk is full.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { startProxy, type FaultProxy } from '../helpers/proxy.ts';
import { describe, generatedDicom, needs } from '../helpers/data.ts';
import {
  FAST_FAILURE,
  REAL_DICOM,
  assertSameInstances,
  call,
  getJson,
  importFiles,
  listFiles,
  stagingEntries,
  startTransfer,
  waitJob,
  type Imported,
} from '../helpers/transfer-nodes.ts';

const ROOT = process.getuid?.() === 0;
/** Room for the data, the index and the staging reserve of the receiver (64 MiB kept free at create). */
const TMPFS_SIZE = '96m';
const COMMIT = { method: 'POST', path: /\/transfers\/push\/[^/]+\/commit$/ };

interface Setup {
  a: XferNode;
  b: XferNode;
  toB: FaultProxy;
  mnt: string;
  imported: Imported;
  stop(): Promise<void>;
}

/** Fills the file system of `dir` to its last byte with one file; answers its path. */
async function fill(dir: string): Promise<string> {
  const path = join(dir, 'filler');
  const fh = await open(path, 'w');
  const block = Buffer.alloc(1024 * 1024, 1);
  try {
    for (let i = 0; i < 4096; i++) {
      try {
        await fh.write(block);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
        // The last pages, byte by byte in smaller writes.
        for (let size = 512 * 1024; size >= 1; size = Math.floor(size / 2)) {
          for (let j = 0; j < 4; j++) {
            try {
              await fh.write(block.subarray(0, size));
            } catch {
              break;
            }
          }
        }
        return path;
      }
    }
  } finally {
    await fh.close();
  }
  throw new Error(`could not fill ${dir}`);
}

/** A on local disk, B with its storage on a fresh tmpfs, A's peer "b" through a proxy. */
async function setup(extensions: boolean, retryBudget: number): Promise<Setup> {
  const mnt = await mkdtemp(join(tmpdir(), 'dx-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE}`, 'tmpfs', mnt]);
  const started: XferNode[] = [];
  let toB: FaultProxy | undefined;
  const stop = async () => {
    for (const n of started) await n.stop();
    await toB?.stop();
    execFileSync('umount', [mnt]);
    await rmdir(mnt);
  };
  try {
    const transfers = { ...FAST_FAILURE.Transfers, Extensions: extensions, RetryBudget: retryBudget };
    const pb = await freePort();
    toB = await startProxy({ target: pb, keepBodies: [COMMIT] });
    const b = await startXferNode({ port: pb, dir: mnt, config: { ...FAST_FAILURE, Name: 'b', Transfers: transfers } });
    started.push(b);
    const a = await startXferNode({
      config: { ...FAST_FAILURE, Name: 'a', Transfers: transfers, OrthancPeers: { b: { Url: `${toB.url}/` } } },
    });
    started.push(a);
    // Brainix (6.5 MB), or without the real files the generated tiny set (about 8 MB).
    const data = needs(REAL_DICOM) ? await generatedDicom() : join(REAL_DICOM, 'Brainix');
    const imported = await importFiles(a.url, await listFiles(data));
    return { a, b, toB, mnt, imported, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

for (const extensions of [false, true]) {
  describe(`a full disk during a commit (Extensions ${extensions})`, {
    skip: ROOT ? false : 'needs root, to mount a tmpfs',
    timeout: 180_000,
  }, () => {
    test('the commit answers 507, the transaction is kept, and commits once there is room; the job says the disk is full', async () => {
      const s = await setup(extensions, 0);
      try {
        const gate = s.toB.hold(COMMIT);
        const resources = [...s.imported.md5.keys()].map((ID) => ({ Level: 'Instance', ID }));
        const { ID } = await startTransfer(s.a.url, 'send', { Peer: 'b', Resources: resources, Compression: 'gzip' });
        await gate.waitHeld(1, 60_000);
        const filler = await fill(s.mnt);
        gate.release();
        const job = await waitJob(s.a.url, ID as string, 60_000);
        assert.equal(job.State, 'Failure', JSON.stringify(job));
        assert.equal(job.ErrorCode, 19, JSON.stringify(job));
        assert.equal(job.ErrorDescription, 'The file storage is full');
        assert.match(job.ErrorDetails, /the receiver's disk is full/);
        const commits = s.toB.records(COMMIT);
        assert.ok(commits.length >= 1);
        if (!extensions) {
          assert.equal(commits[0]?.status, 507);
          const answer = JSON.parse(commits[0]?.responseBody?.toString() ?? '{}') as Record<string, unknown>;
          assert.equal(answer.OrthancError, 'The file storage is full');
          assert.equal(answer.OrthancStatus, 19);
          assert.equal(answer.HttpStatus, 507);
        }
        // Nothing stored, the transaction kept with its files.
        assert.deepEqual(await getJson<string[]>(s.b.url, '/instances'), []);
        const held = await stagingEntries(s.b.dataDir, 'push');
        assert.equal(held.length, 1, `push transactions held: ${held.join(', ')}`);
        // Room again: the very same transaction commits (as the sender's next attempt would).
        await rm(filler);
        const again = await call(s.b.url, 'POST', `/transfers/push/${held[0]}/commit`, '');
        assert.equal(again.status, 200, again.body.toString());
        await assertSameInstances(s.b.url, s.imported.md5);
        assert.deepEqual(await stagingEntries(s.b.dataDir, 'push'), []);
        // The node still serves.
        assert.equal((await call(s.b.url, 'GET', '/system')).status, 200);
      } finally {
        await s.stop();
      }
    });

    test('a sender with a retry budget commits again by itself once space is freed', async () => {
      const s = await setup(extensions, 60);
      try {
        const gate = s.toB.hold(COMMIT);
        const resources = [...s.imported.md5.keys()].map((ID) => ({ Level: 'Instance', ID }));
        const { ID } = await startTransfer(s.a.url, 'send', { Peer: 'b', Resources: resources, Compression: 'none' });
        await gate.waitHeld(1, 60_000);
        const filler = await fill(s.mnt);
        gate.release();
        // The job waits, saying why.
        let cause = '';
        for (let i = 0; i < 600 && !/disk is full|file storage is full/.test(cause); i++) {
          const j = await getJson<{ State: string; Content: Record<string, unknown> }>(s.a.url, `/jobs/${ID}`);
          assert.equal(j.State, 'Running', JSON.stringify(j));
          cause = String(j.Content.LastRetryCause ?? '');
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.match(cause, /disk is full|file storage is full/);
        await rm(filler);
        const job = await waitJob(s.a.url, ID as string, 120_000);
        assert.equal(job.State, 'Success', JSON.stringify(job));
        await assertSameInstances(s.b.url, s.imported.md5);
        assert.deepEqual(await stagingEntries(s.b.dataDir, 'push'), []);
      } finally {
        await s.stop();
      }
    });
  });
}
