// A DICOM modality through the Destination interface (src/dimse/modality-destination.ts), from a real embedded
// store to dcmtk's storescp: it sends every instance, reports its figures, and resumes after a stop without
// sending a confirmed instance again; the directory lists the modalities with their status.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/types.ts';
import type { SendTask } from '../../src/destinations/types.ts';
import { ModalityDirectory, type ModalityState } from '../../src/dimse/modality-destination.ts';
import { isXferError } from '../../src/errors.ts';
import type { InstanceInfo } from '../../src/protocol/wire.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { expandLocal } from '../../src/transfer/jobs.ts';
import { REAL_DICOM, describe, listFiles, needs } from '../helpers/data.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { md5 } from '../helpers/transfer-nodes.ts';
import { startStoreScp, type StoreScp } from './dimse-scu-common.ts';

/** A task kept in memory, as a job's run context keeps it in the jobs database. */
class MemoryTask implements SendTask<ModalityState> {
  readonly log = pino({ level: 'silent' });
  readonly done = new Set<number>();
  figures: Record<string, unknown> = {};
  progress = 0;
  state: ModalityState | undefined;
  #ac = new AbortController();

  get signal(): AbortSignal {
    return this.#ac.signal;
  }
  stop(): void {
    this.#ac.abort('pause');
  }
  rearm(): void {
    this.#ac = new AbortController();
  }
  loadPrivate(): ModalityState | undefined {
    return this.state === undefined ? undefined : structuredClone(this.state);
  }
  async savePrivate(s: ModalityState): Promise<void> {
    this.state = structuredClone(s);
  }
  bucketsDone(): Set<number> {
    return new Set(this.done);
  }
  async markBucketDone(i: number): Promise<void> {
    this.done.add(i);
  }
  async clearBucketsDone(): Promise<void> {
    this.done.clear();
  }
  content(): Readonly<Record<string, unknown>> {
    return this.figures;
  }
  setContent(partial: Record<string, unknown>): void {
    const next = { ...this.figures };
    for (const [k, v] of Object.entries(partial)) {
      if (v === undefined) delete next[k];
      else next[k] = v;
    }
    this.figures = next;
  }
  setProgress(p: number): void {
    this.progress = p;
  }
}

describe('a DICOM modality through the Destination interface', { skip: needs(REAL_DICOM), timeout: 120_000 }, () => {
  let scp: StoreScp;
  let dir: string;
  let store: EmbeddedStore;
  let config: Config;
  let instances: InstanceInfo[];

  before(async () => {
    scp = await startStoreScp({ slowSeconds: 0.2 });
    dir = await mkdtemp(join(tmpdir(), 'dx-modality-dest-'));
    store = await EmbeddedStore.open(join(dir, 'store'), { commitThreads: 1 });
    const ids: string[] = [];
    // ingestFile adopts the file it is given: each file goes in as a copy.
    for (const [n, f] of (await listFiles(join(REAL_DICOM, 'Brainix'))).slice(0, 10).entries()) {
      const copy = join(dir, `in-${n}.dcm`);
      await copyFile(f, copy);
      const r = await store.ingestFile(copy, (await stat(copy)).size, md5(await readFile(copy)));
      ids.push(r.ids.instance);
    }
    instances = await expandLocal(
      store,
      ids.map((ID) => ({ Level: 'Instance' as const, ID })),
    );
    const closed = await freePort();
    ({ config } = await loadConfig({
      overrides: {
        StorageDirectory: dir,
        DicomModalities: {
          scp: { AET: scp.aet, Host: '127.0.0.1', Port: scp.port, MaximumAssociations: 1 },
          closed: ['NOBODY', '127.0.0.1', closed],
        },
      },
    }));
  });

  after(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    await scp?.stop();
  });

  test('sends every instance; stopped and run again, it sends only what was not confirmed', async () => {
    const directory = new ModalityDirectory({ config, store });
    assert.deepEqual(directory.names(), ['closed', 'scp']);
    const destination = directory.get('scp');
    assert.match(destination.description, /^modality "scp" \(STORESCP@127\.0\.0\.1:\d+\)$/);
    const task = new MemoryTask();
    const request = { instances, compression: 'none' as const, transferId: 'dest-test' };
    const first = destination.send(request, task);
    await waitFor('three instances confirmed', async () => task.done.size >= 3, 60_000);
    task.stop();
    await assert.rejects(first);
    const atStop = task.done.size;
    assert.ok(atStop < instances.length, 'stopped before the end');
    task.rearm();
    await destination.send(request, task);
    assert.equal(task.done.size, instances.length);
    assert.equal(task.figures.StoredInstancesCount, instances.length);
    assert.equal(task.progress, 1);
    assert.equal((await scp.files()).length, instances.length, 'each instance received once');
  });

  test('the status of each modality: reachable by C-ECHO or not; an unknown name is UnknownResource', async () => {
    const directory = new ModalityDirectory({ config, store });
    const status = await directory.statusAll();
    const byName = new Map(status.map((s) => [s.Name, s]));
    assert.equal(byName.get('scp')?.Reachable, true);
    assert.equal(byName.get('scp')?.Kind, 'dicom-modality');
    assert.equal(byName.get('closed')?.Reachable, false);
    assert.throws(
      () => directory.get('nope'),
      (e: unknown) => isXferError(e, 'UnknownResource'),
    );
  });
});
