// The node's MoveSender (what its DICOM server's C-MOVE calls): instances of a real store sent to the modality
// found by its AET (dcmtk's storescp), the counts reported as they go; an AET that no modality has is refused.
// Beside it, a synchronous C-STORE on a node that keeps no finished job.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { createModalitySender } from '../../src/dimse/move-sender.ts';
import type { MoveProgress } from '../../src/dimse/services.ts';
import { isXferError } from '../../src/errors.ts';
import { buildNode, type NodeApp } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { REAL_DICOM, describe, needs } from '../helpers/data.ts';
import { datasetOf, onePerSyntax, startStoreScp, upload, type StoreScp } from './dimse-scu-common.ts';

describe('MoveSender: C-MOVE sub-operations to a modality', { skip: needs(REAL_DICOM), timeout: 120_000 }, () => {
  let scp: StoreScp;
  let dir: string;
  let store: EmbeddedStore;
  let app: NodeApp;
  let url: string;
  let ids: string[];

  before(async () => {
    scp = await startStoreScp({ aet: 'MOVEDEST' });
    dir = await mkdtemp(join(tmpdir(), 'dx-move-'));
    const { config } = await loadConfig({
      // No finished job kept: a synchronous store must still answer its job's outcome.
      overrides: { StorageDirectory: dir, HttpPort: 0, JobsHistorySize: 0, DicomModalities: { dest: ['MOVEDEST', '127.0.0.1', scp.port] } },
    });
    store = await EmbeddedStore.open(dir, { commitThreads: 1 });
    app = await buildNode({ config, store, logger: pino({ level: 'silent' }) });
    await app.fastify.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.fastify.server.address();
    url = `http://127.0.0.1:${addr && typeof addr === 'object' ? addr.port : 0}`;
    ids = await upload(
      url,
      (await onePerSyntax(6)).map((f) => f.path),
    );
  });

  after(async () => {
    await app?.close();
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    await scp?.stop();
  });

  test('sends every instance to the modality of that AET, reporting each, and resolves with the counts', async () => {
    const { config } = await loadConfig({ overrides: { DicomModalities: { dest: ['MOVEDEST', '127.0.0.1', scp.port] } } });
    const sender = createModalitySender({ config, store });
    const seen: MoveProgress[] = [];
    const final = await sender.sendTo('MOVEDEST', ids, (p) => seen.push(p), new AbortController().signal);
    assert.deepEqual(final, { remaining: 0, completed: ids.length, failed: 0, warning: 0 });
    assert.equal(seen[0]?.remaining, ids.length);
    assert.deepEqual(
      seen.map((p) => p.remaining),
      Array.from({ length: ids.length + 1 }, (_, k) => ids.length - k),
    );
    const files = await scp.files();
    assert.equal(files.length, ids.length);
    const received = new Set<string>();
    for (const f of files) received.add((await datasetOf(f)).subarray(0, 4096).toString('base64'));
    assert.equal(received.size, ids.length, 'distinct instances received');
  });

  test('a synchronous store answers its outcome even when no finished job is kept (JobsHistorySize 0)', async () => {
    const r = await fetch(`${url}/modalities/dest/store`, { method: 'POST', body: JSON.stringify(ids.slice(0, 2)) });
    assert.equal(r.status, 200);
    const answer = (await r.json()) as Record<string, unknown>;
    assert.equal(answer.InstancesCount, 2);
    assert.equal(answer.FailedInstancesCount, 0);
  });

  test('an AET that no modality has: UnknownResource, nothing sent', async () => {
    const { config } = await loadConfig({ overrides: { DicomModalities: { dest: ['MOVEDEST', '127.0.0.1', scp.port] } } });
    const before = (await scp.files()).length;
    await assert.rejects(
      createModalitySender({ config, store }).sendTo('NOBODY', ids, () => {}, new AbortController().signal),
      (e: unknown) => isXferError(e, 'UnknownResource'),
    );
    assert.equal((await scp.files()).length, before);
  });
});
