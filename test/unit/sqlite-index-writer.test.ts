// The SQLite index's large adoptions in the worker thread, on a real database file: a reader meanwhile sees
// none of a commit until it ends, then all of it; writes asked for meanwhile follow it in order; a commit
// that fails in the worker leaves nothing.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { openDb } from '../../src/store/embedded/db.ts';
import type { IndexEntry } from '../../src/store/embedded/instance-index.ts';
import { SqliteInstanceIndex } from '../../src/store/embedded/sqlite-index.ts';

/** Instance i of a study of 3 series (IDs shaped for the test: the index does not check them). */
function entry(study: string, i: number): IndexEntry {
  const series = `${study}.E${i % 3}`;
  return {
    ids: { patient: `P-${study}`, study, series, instance: `${series}.I${i}` },
    tags: {
      Patient: { PatientID: `pid-${study}` },
      Study: { StudyInstanceUID: `1.${study}` },
      Series: { SeriesInstanceUID: `1.${series}`, Modality: 'CT' },
      Instance: { SOPInstanceUID: `1.${series}.${i}`, InstanceNumber: String(i) },
    },
    file: `file-${study}-${i}`,
    size: 500_000 + i,
    md5: 'b'.repeat(32),
    transferSyntax: '1.2.840.10008.1.2.1',
    sopClass: '1.2.840.10008.5.1.4.1.1.2',
    indexInSeries: i,
  };
}

const BIG = 3003;

describe('the SQLite index: large adoptions in the worker thread', () => {
  let dir: string;
  let k = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-index-writer-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a reader during a 3003-instance commit sees none of it, then all; writes asked meanwhile follow it', async () => {
    const index = new SqliteInstanceIndex(openDb(join(dir, `index-${++k}.sqlite`)));
    try {
      const entries = Array.from({ length: BIG }, (_, i) => entry('S1', i));
      let settled = false;
      const big = index.adopt(entries, 'never', 1000);
      void big.finally(() => {
        settled = true;
      });
      // Asked after the big commit, while it runs: they wait for it, then run in order.
      const journalled = index.journal(['loose-file'], 2000);
      const small = index.adopt([entry('S2', 0)], 'never', 3000);
      const seen: number[] = [];
      const until = Date.now() + 120_000;
      for (let i = 0; i < 1_000_000 && !settled && Date.now() < until; i++) {
        seen.push((await index.counts()).instances);
        await turn();
      }
      const r = await big;
      assert.equal(r.adopted.length, BIG);
      assert.equal(seen[0], 0, 'a read made while the commit is pending sees the index as it was');
      assert.deepEqual(
        seen.filter((n) => n !== 0 && n !== BIG),
        [],
        'every read sees none or all of the commit',
      );
      assert.deepEqual(await small, { adopted: ['S2.E0.I0'], kept: [], replaced: [] });
      await journalled;
      const counts = await index.counts();
      assert.deepEqual(
        { patients: counts.patients, studies: counts.studies, series: counts.series, instances: counts.instances },
        { patients: 2, studies: 2, series: 4, instances: BIG + 1 },
      );
      assert.equal((await index.instanceIdsUnder('Study', 'S1'))?.length, BIG);
      assert.equal((await index.instance('S1.E2.I3002'))?.file, 'file-S1-3002');
      assert.equal((await index.resource('S1', 'Study'))?.lastUpdate, 1000);
      assert.deepEqual(await index.takeOrphans(), ['loose-file'], 'the journal entry written after the commit');
    } finally {
      await index.close();
    }
  });

  test('a commit that fails in the worker leaves nothing, and the index goes on', async () => {
    const place = join(dir, `index-${++k}.sqlite`);
    const index = new SqliteInstanceIndex(openDb(place));
    try {
      const entries = Array.from({ length: BIG }, (_, i) => entry('S3', i));
      // md5 is NOT NULL in the schema: the last instance's row is refused, after 3002 were written.
      const bad = { ...entries[BIG - 1], md5: null } as unknown as IndexEntry;
      entries[BIG - 1] = bad;
      await assert.rejects(index.adopt(entries, 'never', 1000), /NOT NULL/);
      assert.equal((await index.counts()).instances, 0);
      assert.equal(await index.resource('S3'), undefined);
      const r = await index.adopt(entries.slice(0, BIG - 1), 'never', 1000);
      assert.equal(r.adopted.length, BIG - 1);
    } finally {
      await index.close();
    }
    // What the worker committed is on disk for the next opening.
    const again = new SqliteInstanceIndex(openDb(place));
    try {
      assert.equal((await again.counts()).instances, BIG - 1);
    } finally {
      await again.close();
    }
  });
});
