// What routing asks of a store, on both stores: mainTags (the instance's IDs and the main tags of its
// patient, study, series and itself, flat) and deleteInstances (DeleteAfterSend), on the embedded store and
// on a real Orthanc (Debian's) behind the Orthanc store, with the same real DICOM files.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { OrthancStore } from '../../src/store/orthanc/store.ts';
import type { Store } from '../../src/store/types.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { md5 } from '../helpers/transfer-nodes.ts';
import { readFile, stat } from 'node:fs/promises';

/** Stores each file through ingestFile (a copy: the store takes the file); answers the instance IDs. */
async function ingest(store: Store, work: string, files: readonly string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, f] of files.entries()) {
    const copy = join(work, `in-${i}-${Date.now()}.dcm`);
    await copyFile(f, copy);
    const r = await store.ingestFile(copy, (await stat(copy)).size, md5(await readFile(copy)));
    ids.push(r.ids.instance);
  }
  return ids;
}

function storeTests(kind: string, open: () => Promise<{ store: Store; work: string; close(): Promise<void> }>) {
  describe(`routing's store methods on the ${kind} store`, { skip: needs(REAL_DICOM), timeout: 120_000 }, () => {
    let s: { store: Store; work: string; close(): Promise<void> };
    before(async () => {
      s = await open();
    });
    after(async () => {
      await s?.close();
    });

    test('mainTags: the IDs and the flat main tags of every level; undefined for an absent instance', async () => {
      const files = (await listFiles(join(REAL_DICOM, 'Comunix'))).sort();
      const ids = await ingest(s.store, s.work, files);
      const t = await s.store.mainTags?.(ids[0] as string);
      assert.ok(t, 'tags of a stored instance');
      assert.equal(t.ids.instance, ids[0]);
      assert.equal(t.tags['PatientName'], 'COMUNIX');
      assert.equal(t.tags['StudyInstanceUID'], '1.2.840.113745.101000.1008000.38048.4626.5933732');
      assert.match(t.tags['Modality'] ?? '', /^(CT|PT)$/);
      assert.match(t.tags['SOPInstanceUID'] ?? '', /^[0-9.]+$/);
      // Every instance of the study has the same study and patient, each its own series by modality.
      const all = await Promise.all(ids.map((id) => s.store.mainTags?.(id)));
      assert.equal(new Set(all.map((x) => x?.ids.study)).size, 1);
      assert.equal(new Set(all.map((x) => x?.ids.patient)).size, 1);
      assert.deepEqual([...new Set(all.map((x) => x?.tags['Modality']))].sort(), ['CT', 'PT']);
      assert.equal(await s.store.mainTags?.('0123abcd-0123abcd-0123abcd-0123abcd-0123abcd'), undefined);
    });

    test('deleteInstances: the instances go, the others stay, an absent one counts as deleted', async () => {
      const ids = await ingest(s.store, s.work, await listFiles(join(REAL_DICOM, 'Beaufix')));
      const keep = ids[1] as string;
      const left = await s.store.deleteInstances?.([ids[0] as string, '0123abcd-0123abcd-0123abcd-0123abcd-0123abcd']);
      assert.deepEqual(left, []);
      assert.equal((await s.store.findInstances([ids[0] as string])).size, 0);
      assert.equal(await s.store.mainTags?.(ids[0] as string), undefined);
      assert.equal((await s.store.findInstances([keep])).size, 1);
    });
  });
}

storeTests('embedded', async () => {
  const work = await mkdtemp(join(tmpdir(), 'dx-routing-store-'));
  const store = await EmbeddedStore.open(join(work, 'store'));
  return {
    store,
    work,
    async close() {
      await store.close();
      await rm(work, { recursive: true, force: true });
    },
  };
});

if (orthancInstalled()) {
  storeTests('Orthanc', async () => {
    const orthanc: OrthancServer = await startOrthanc();
    const work = await mkdtemp(join(tmpdir(), 'dx-routing-ostore-'));
    const store = await OrthancStore.open({ url: orthanc.url, storageDirectory: join(work, 'dir'), timeoutSeconds: 20 });
    return {
      store,
      work,
      async close() {
        await store.close();
        await orthanc.stop();
        await rm(work, { recursive: true, force: true });
      },
    };
  });
}
