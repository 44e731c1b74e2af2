// The node's log: readable lines on a terminal (a real pseudo-terminal from script(1)), JSON lines
// otherwise, and the line of a finished transfer with its peer, size, instances, duration and rate; that of a
// finished C-STORE job with its modality, instances stored and failed, and storage commitment.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makePatient, makeSeries, makeStudy, writeCtSlice } from '../../src/generate/index.ts';
import { logFormat } from '../../src/server/log.ts';
import { listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { needsDcmtk } from '../helpers/dcmtk.ts';
import { BIN, REPO, startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { importFiles, startPair, startTransfer, waitJob, type Pair } from '../helpers/transfer-nodes.ts';
import { jobEnd, postJson, startStoreScp, upload, type StoreScp } from './dimse-scu-common.ts';

/** The JSON line of the node's log whose job is `id` and whose message starts with `start` (waited for). */
async function jobLine(log: () => string, id: string, start: string): Promise<Record<string, unknown>> {
  let line: Record<string, unknown> | undefined;
  await waitFor(
    `the "${start}" line`,
    async () => {
      for (const text of log().split('\n')) {
        if (!text.startsWith('{')) continue;
        const l = JSON.parse(text) as Record<string, unknown>;
        if (l.job === id && typeof l.msg === 'string' && l.msg.startsWith(start)) line = l;
      }
      return line !== undefined;
    },
    10_000,
  );
  assert.ok(line);
  return line;
}

/** pino-pretty as the node finds it (the pretty format falls back to JSON without it). */
function prettyInstalled(): boolean {
  try {
    createRequire(join(REPO, 'src', 'server', 'log.ts')).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

describe('log format', () => {
  test('JSON unless stderr is a terminal; DICOM_XFER_LOG_FORMAT decides otherwise', () => {
    assert.equal(logFormat(false, {}), 'json');
    assert.equal(logFormat(true, {}), 'pretty');
    assert.equal(logFormat(true, { DICOM_XFER_LOG_FORMAT: 'json' }), 'json');
    assert.equal(logFormat(false, { DICOM_XFER_LOG_FORMAT: 'PRETTY' }), 'pretty');
    assert.equal(logFormat(false, { DICOM_XFER_LOG_FORMAT: 'other' }), 'json');
  });

  const noScript = !existsSync('/usr/bin/script') && 'needs script(1) from util-linux';
  const noPretty = !prettyInstalled() && 'pino-pretty is not installed';
  test('on a terminal the node writes readable lines, not JSON', { skip: noScript || noPretty }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-logs-tty-'));
    const port = await freePort();
    // exec: the node is script's own child, so script's stop reaches it
    const command = `exec ${process.execPath} ${BIN} serve --port ${port} --data ${join(dir, 'data')}`;
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const closed = new Promise<void>((r) => child.on('close', () => r()));
    try {
      await waitFor('the node to answer', async () => (await fetch(`http://127.0.0.1:${port}/system`)).ok, 30_000);
      await waitFor('the listening line', async () => out.includes('dicom-xfer node listening'), 10_000);
    } finally {
      process.kill(child.pid as number, 'SIGTERM');
      await closed;
      await rm(dir, { recursive: true, force: true });
    }
    assert.match(out, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: dicom-xfer node listening \{"url":"http:\/\/127\.0\.0\.1:\d+"/m, out);
    assert.doesNotMatch(out, /\{"level":/, 'no JSON line');
    await waitFor(
      'the port to be free again',
      async () =>
        !(await fetch(`http://127.0.0.1:${port}/system`).then(
          () => true,
          () => false,
        )),
      20_000,
    );
  });
});

describe('the line of a finished transfer', () => {
  let pair: Pair;
  let dir: string;
  before(async () => {
    pair = await startPair();
    dir = await mkdtemp(join(tmpdir(), 'dx-logs-job-'));
  });
  after(async () => {
    await pair?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a push logs peer, size, instances, duration and rate as JSON fields and in its message', async () => {
    const patient = makePatient(11, 0);
    const study = makeStudy(11, patient, 0, 'LOG LINE');
    const series = makeSeries(study, 1, 'AX');
    const files: string[] = [];
    for (let i = 0; i < 3; i++)
      files.push((await writeCtSlice(join(dir, `ct${i}.dcm`), { seed: 11, index: i, slices: 3, patient, study, series })).path);
    const imported = await importFiles(pair.a.url, files);
    const bytes = [...imported.size.values()].reduce((s, n) => s + n, 0);
    const handle = await startTransfer(pair.a.url, 'send', {
      Resources: [...imported.md5.keys()].map((ID) => ({ Level: 'Instance', ID })),
      Compression: 'none',
      Peer: 'b',
    });
    const job = await waitJob(pair.a.url, handle.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    let line: Record<string, unknown> | undefined;
    await waitFor(
      'the finished line',
      async () => {
        for (const text of pair.a.log().split('\n')) {
          if (!text.startsWith('{')) continue;
          const l = JSON.parse(text) as Record<string, unknown>;
          if (l.job === handle.ID && typeof l.msg === 'string' && l.msg.startsWith('push finished')) line = l;
        }
        return line !== undefined;
      },
      10_000,
    );
    assert.ok(line);
    assert.equal(line.level, 30);
    assert.equal(line.peer, 'b');
    assert.equal(line.instances, 3);
    assert.equal(line.bytes, bytes);
    assert.equal(typeof line.seconds, 'number');
    assert.ok((line.seconds as number) >= 0);
    assert.equal(typeof line.bytesPerSecond, 'number');
    assert.match(line.msg as string, /^push finished: 3 instances, [\d.]+ MB to peer "b" in [\d.]+ s, [\d.]+ MB\/s$/);
  });
});

describe('the line of a finished C-STORE job', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  let scp: StoreScp;
  let node: XferNode;
  let ids: string[];
  before(async () => {
    scp = await startStoreScp();
    node = await startXferNode({
      config: {
        DicomModalities: {
          scp: [scp.aet, '127.0.0.1', scp.port],
          nocommit: { AET: scp.aet, Host: '127.0.0.1', Port: scp.port, AllowStorageCommitment: false },
        },
      },
    });
    ids = await upload(node.url, await listFiles(join(REAL_DICOM, 'Comunix')));
  });
  after(async () => {
    await node?.stop();
    await scp?.stop();
  });

  test('names the modality, the instances stored and failed, and the commitment outcome, as fields and in its message', async () => {
    const r = await postJson(`${node.url}/modalities/scp/store`, { Resources: ids, Asynchronous: true });
    const job = await jobEnd(node.url, String(r.json.ID));
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const line = await jobLine(node.log, String(r.json.ID), 'C-STORE finished');
    assert.equal(line.level, 30);
    assert.equal(line.type, 'DicomModalityStore');
    assert.equal(line.modality, 'scp');
    assert.equal(line.remoteAet, scp.aet);
    assert.deepEqual([line.instances, line.stored, line.failed, line.warnings], [ids.length, ids.length, 0, 0]);
    assert.equal(line.commitment, 'NotRequested');
    assert.equal((await scp.files()).length, ids.length);
    const n = ids.length;
    const message = `C-STORE finished: ${n} of ${n} instances stored, 0 failed to modality "scp" (${scp.aet}) in `;
    assert.ok((line.msg as string).startsWith(message), String(line.msg));
    assert.match(line.msg as string, /in [\d.]+ s, storage commitment NotRequested$/);
    assert.doesNotMatch(node.log(), /push finished/);
  });

  test('storage commitment asked of a modality that does not allow it: the line says "Unsupported"', async () => {
    const r = await postJson(`${node.url}/modalities/nocommit/store`, {
      Resources: ids.slice(0, 1),
      StorageCommitment: true,
      Asynchronous: true,
    });
    const job = await jobEnd(node.url, String(r.json.ID));
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const line = await jobLine(node.log, String(r.json.ID), 'C-STORE finished');
    assert.deepEqual([line.modality, line.instances, line.stored, line.commitment], ['nocommit', 1, 1, 'Unsupported']);
    assert.match(
      line.msg as string,
      /^C-STORE finished: 1 of 1 instance stored, 0 failed to modality "nocommit" .* storage commitment Unsupported$/,
    );
  });
});
