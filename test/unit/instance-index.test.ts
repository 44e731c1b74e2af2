// The InstanceIndex contract, run against the SQLite index on a real database file: adoption all or
// none with its three replace policies, the four levels and their order, the journal and its orphans
// after a reopen, removal with the ancestors left empty, and a damaged row refused. A second index
// (PostgreSQL) runs the same function. Then the embedded store on such an index: one given by its caller,
// and uploads of one instance at once.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { isXferError } from '../../src/errors.ts';
import { openDb } from '../../src/store/embedded/db.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { md5File } from '../../src/util/fs.ts';
import { listFiles, someSeries } from '../helpers/data.ts';
import type { IndexEntry, InstanceIndex } from '../../src/store/embedded/instance-index.ts';
import { SqliteInstanceIndex } from '../../src/store/embedded/sqlite-index.ts';
import { PgInstanceIndex } from '../../src/db/postgres/instance-index.ts';
import { migrate } from '../../src/db/postgres/migrations.ts';
import { describe as describeOrSkip } from '../helpers/data.ts';
import { pgPlaces, pgSkip } from '../helpers/postgres.ts';

interface Harness {
  open(place: string): Promise<InstanceIndex>;
  /** Writes text that is not JSON into the main tags of a resource, as another program would. */
  damage(place: string, id: string): Promise<void>;
}

/** An instance of patient p, study s, series e, number i (IDs shaped as the test likes: the index does not check them). */
function entry(p: number, s: number, e: number, i: number, file: string, md5 = 'a'.repeat(32)): IndexEntry {
  const ids = { patient: `P${p}`, study: `S${p}.${s}`, series: `E${p}.${s}.${e}`, instance: `I${p}.${s}.${e}.${i}` };
  return {
    ids,
    tags: {
      Patient: { PatientID: `pid-${p}`, PatientName: `NAME^${p}` },
      Study: { StudyInstanceUID: `1.${p}.${s}`, StudyDescription: `study ${s}` },
      Series: { SeriesInstanceUID: `1.${p}.${s}.${e}`, Modality: 'CT' },
      Instance: { SOPInstanceUID: `1.${p}.${s}.${e}.${i}`, InstanceNumber: String(i) },
    },
    file,
    size: 1000 + i,
    md5,
    transferSyntax: '1.2.840.10008.1.2.1',
    sopClass: '1.2.840.10008.5.1.4.1.1.2',
    indexInSeries: i,
  };
}

export function instanceIndexContract(name: string, places: () => string, h: Harness): void {
  describe(`InstanceIndex contract: ${name}`, () => {
    test('adopt indexes the four levels in storage order; reads answer them', async () => {
      const index = await h.open(places());
      try {
        const r = await index.adopt([entry(1, 1, 1, 2, 'f2'), entry(1, 1, 1, 1, 'f1'), entry(1, 2, 1, 1, 'f3')], 'never', 1000);
        assert.deepEqual(r, { adopted: ['I1.1.1.2', 'I1.1.1.1', 'I1.2.1.1'], kept: [], replaced: [] });
        assert.deepEqual(await index.list('Instance', 0, 0), ['I1.1.1.2', 'I1.1.1.1', 'I1.2.1.1']);
        assert.deepEqual(await index.list('Instance', 1, 1), ['I1.1.1.1']);
        assert.deepEqual(await index.list('Study', 0, 0), ['S1.1', 'S1.2']);
        const study = await index.resource('S1.1', 'Study');
        assert.equal(study?.parent, 'P1');
        assert.deepEqual(study?.patientTags, { PatientID: 'pid-1', PatientName: 'NAME^1' });
        assert.equal(study?.lastUpdate, 1000);
        assert.equal(await index.resource('S1.1', 'Series'), undefined, 'the level must match');
        assert.equal((await index.resource('E1.1.1'))?.level, 'Series');
        assert.deepEqual(
          (await index.instancesUnder('Patient', 'P1'))?.map((x) => x.id),
          ['I1.1.1.2', 'I1.1.1.1', 'I1.2.1.1'],
        );
        assert.deepEqual(await index.instanceIdsUnder('Study', 'S1.1'), ['I1.1.1.2', 'I1.1.1.1']);
        assert.equal(await index.instanceIdsUnder('Study', 'P1'), undefined, 'the level must match');
        assert.deepEqual(
          (await index.children('Patient', 'P1'))?.map((x) => x.id),
          ['S1.1', 'S1.2'],
        );
        assert.equal(await index.children('Patient', 'nobody'), undefined);
        assert.deepEqual(await index.instance('I1.1.1.1'), {
          id: 'I1.1.1.1',
          file: 'f1',
          size: 1001,
          md5: 'a'.repeat(32),
          indexInSeries: 1,
        });
        assert.deepEqual([...(await index.instances(['I1.2.1.1', 'absent'])).keys()], ['I1.2.1.1']);
        assert.deepEqual(await index.counts(), { patients: 1, studies: 2, series: 2, instances: 3, bytes: 1002 + 1001 + 1001 });
        assert.deepEqual(
          (await index.all('Study', 'id')).map((x) => x.id),
          ['S1.1', 'S1.2'],
        );
      } finally {
        await index.close();
      }
    });

    test('the replace policies: never keeps, if-different keeps the same MD5, always replaces', async () => {
      const index = await h.open(places());
      try {
        await index.adopt([entry(2, 1, 1, 1, 'old')], 'never', 1);
        assert.deepEqual(await index.adopt([entry(2, 1, 1, 1, 'new1', 'b'.repeat(32))], 'never', 2), {
          adopted: [],
          kept: [{ id: 'I2.1.1.1', file: 'new1' }],
          replaced: [],
        });
        assert.deepEqual((await index.adopt([entry(2, 1, 1, 1, 'new2')], 'if-different', 3)).kept, [{ id: 'I2.1.1.1', file: 'new2' }]);
        assert.equal((await index.instance('I2.1.1.1'))?.file, 'old');
        const r = await index.adopt([entry(2, 1, 1, 1, 'new3', 'c'.repeat(32))], 'if-different', 4);
        assert.deepEqual(r, { adopted: ['I2.1.1.1'], kept: [], replaced: ['old'] });
        assert.equal((await index.instance('I2.1.1.1'))?.md5, 'c'.repeat(32));
        assert.deepEqual((await index.adopt([entry(2, 1, 1, 1, 'new4', 'c'.repeat(32))], 'always', 5)).replaced, ['new3']);
        assert.equal((await index.counts()).instances, 1);
      } finally {
        await index.close();
      }
    });

    test('the journal: adopted files leave it, replaced and unreferenced ones are orphans at the next open', async () => {
      const place = places();
      let index = await h.open(place);
      await index.journal(['a', 'b', 'lost'], 1);
      await index.adopt([entry(3, 1, 1, 1, 'a')], 'never', 1);
      const r = await index.adopt([entry(3, 1, 1, 1, 'b', 'd'.repeat(32))], 'always', 2);
      assert.deepEqual(r.replaced, ['a']);
      await index.close();
      index = await h.open(place);
      try {
        assert.deepEqual((await index.takeOrphans()).sort(), ['a', 'lost']);
        assert.deepEqual(await index.takeOrphans(), [], 'the journal is emptied');
        await index.journal(['x'], 3);
        await index.unjournal(['x']);
        assert.deepEqual(await index.takeOrphans(), []);
      } finally {
        await index.close();
      }
    });

    test('remove takes the subtree and the ancestors it leaves empty, journals the files', async () => {
      const index = await h.open(places());
      try {
        await index.adopt([entry(4, 1, 1, 1, 'g1'), entry(4, 1, 2, 1, 'g2'), entry(4, 2, 1, 1, 'g3')], 'never', 1);
        const series = await index.remove('Series', 'E4.1.1', 2);
        assert.deepEqual(series?.files, ['g1']);
        assert.equal(series?.remaining?.id, 'S4.1');
        const study = await index.remove('Study', 'S4.1', 3);
        assert.deepEqual(study?.files, ['g2']);
        assert.equal(study?.remaining?.id, 'P4', 'the patient keeps its other study');
        const last = await index.remove('Instance', 'I4.2.1.1', 4);
        assert.deepEqual(last, { files: ['g3'], remaining: undefined });
        assert.deepEqual(await index.counts(), { patients: 0, studies: 0, series: 0, instances: 0, bytes: 0 });
        assert.equal(await index.remove('Patient', 'P4', 5), undefined);
        assert.deepEqual((await index.takeOrphans()).sort(), ['g1', 'g2', 'g3']);
      } finally {
        await index.close();
      }
    });

    test('a damaged row is refused with BadFileFormat, never answered as it is', async () => {
      const place = places();
      let index = await h.open(place);
      await index.adopt([entry(5, 1, 1, 1, 'h1')], 'never', 1);
      await index.close();
      await h.damage(place, 'S5.1');
      index = await h.open(place);
      try {
        await assert.rejects(index.resource('S5.1'), (e) => isXferError(e, 'BadFileFormat') && /main tags of S5\.1/.test(e.details ?? ''));
        assert.equal((await index.resource('E5.1.1'))?.parent, 'S5.1', 'the sound rows still read');
      } finally {
        await index.close();
      }
    });
  });
}

describe('the SQLite instance index', () => {
  let dir: string;
  let k = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-index-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const damage = async (place: string, id: string) => {
    const raw = new Database(place);
    try {
      assert.equal(raw.prepare(`UPDATE resources SET main_tags = '{"StudyDescription":' WHERE id = ?`).run(id).changes, 1);
    } finally {
      raw.close();
    }
  };
  instanceIndexContract('SQLite', () => join(dir, `index-${++k}.sqlite`), {
    open: async (place) => new SqliteInstanceIndex(openDb(place), { workerMin: Number.POSITIVE_INFINITY }),
    damage,
  });
  // The same contract with every adoption in the worker thread on its own connection.
  instanceIndexContract('SQLite, adoptions in the worker', () => join(dir, `index-${++k}.sqlite`), {
    open: async (place) => new SqliteInstanceIndex(openDb(place), { workerMin: 1 }),
    damage,
  });
});

describeOrSkip('the PostgreSQL instance index', { skip: pgSkip() }, () => {
  const places = pgPlaces('index');
  let k = 0;
  instanceIndexContract('PostgreSQL', () => `place-${++k}`, {
    async open(place) {
      const pool = await places.pool(place);
      await migrate(pool);
      // The node's pool outlives its index; here each opening has its own, ended with it.
      return Object.assign(new PgInstanceIndex(pool), { close: () => pool.end() });
    },
    async damage(place, id) {
      const pool = await places.pool(place);
      try {
        const r = await pool.query(`UPDATE resources SET main_tags = '{"StudyDescription":' WHERE id = $1`, [id]);
        assert.equal(r.rowCount, 1);
      } finally {
        await pool.end();
      }
    },
  });
});

describe('the embedded store on an index of the caller', () => {
  test('an index passed to EmbeddedStore.open holds what the store ingests; index.sqlite is not made', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-own-index-'));
    try {
      const elsewhere = join(dir, 'elsewhere.sqlite');
      const storeDir = join(dir, 'store');
      const store = await EmbeddedStore.open(storeDir, { index: new SqliteInstanceIndex(openDb(elsewhere)) });
      const [file] = await listFiles(await someSeries());
      assert.ok(file, 'a DICOM file');
      const copy = join(store.tmpDir(), 'one.dcm');
      await copyFile(file, copy);
      const ingested = await store.ingestFile(copy, (await stat(copy)).size, await md5File(copy));
      assert.equal(ingested.status, 'Success');
      assert.deepEqual(await store.listInstances('Study', ingested.ids.study), [ingested.ids.instance]);
      await store.close();
      await assert.rejects(stat(join(storeDir, 'index.sqlite')), /ENOENT/);
      const index = new SqliteInstanceIndex(openDb(elsewhere));
      try {
        assert.equal((await index.instance(ingested.ids.instance))?.size, (await stat(file)).size);
      } finally {
        await index.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('two uploads of one instance at once: one stored, the other AlreadyStored, one file kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-twice-'));
    try {
      const store = await EmbeddedStore.open(dir);
      try {
        const [file] = await listFiles(await someSeries());
        assert.ok(file, 'a DICOM file');
        const size = (await stat(file)).size;
        const md5 = await md5File(file);
        const copies = ['a.dcm', 'b.dcm', 'c.dcm'].map((n) => join(store.tmpDir(), n));
        for (const c of copies) await copyFile(file, c);
        const results = await Promise.all(copies.map((c) => store.ingestFile(c, size, md5, { synced: true })));
        assert.deepEqual(results.map((r) => r.status).sort(), ['AlreadyStored', 'AlreadyStored', 'Success']);
        const files = (await listFiles(join(dir, 'files'))).filter((f) => !f.endsWith('.sqlite'));
        assert.equal(files.length, 1, `one file in the store: ${files.join(', ')}`);
        const id = results[0]?.ids.instance ?? '';
        assert.equal((await store.instanceFile(id))?.path, files[0]);
        assert.equal((await store.statistics()).CountInstances, 1);
      } finally {
        await store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
