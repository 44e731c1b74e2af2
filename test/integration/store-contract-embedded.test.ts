// The store contract run against the embedded store (files plus SQLite) in a temporary directory, and the
// directories it makes ahead of a commit.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { orthancIds } from '../../src/dicom/ids.ts';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import type { StagedInstance } from '../../src/store/types.ts';

const BRAINIX = join(REAL_DICOM, 'Brainix/Flair');
import { runStoreContract } from './store-contract.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

runStoreContract('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dx-contract-embedded-'));
  const store = await EmbeddedStore.open(dir, { commitThreads: 2 });
  return {
    store,
    async close() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

// Directories made ahead of a commit: the commit's files land in them, and closing stops the making.
describe('embedded store: directories made ahead of a commit', { skip: needs(REAL_DICOM) }, () => {
  /** Leaf directories files/xx/yy of a store, and the files in them. */
  async function tree(dir: string): Promise<{ dirs: Set<string>; files: string[] }> {
    const dirs = new Set<string>();
    const files: string[] = [];
    const root = join(dir, 'files');
    for (const a of await readdir(root)) {
      for (const b of await readdir(join(root, a))) {
        const leaf = join(root, a, b);
        dirs.add(leaf);
        for (const f of await readdir(leaf)) files.push(join(leaf, f));
      }
    }
    return { dirs, files };
  }

  test('a commit puts its files into directories made beforehand, and makes none itself', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-prepare-'));
    const store = await EmbeddedStore.open(join(dir, 'data'), { commitThreads: 2 });
    try {
      const names = (await readdir(BRAINIX)).filter((n) => n.endsWith('.dcm')).sort();
      assert.ok(names.length >= 20);
      await store.prepareFiles(names.length);
      const before = await tree(join(dir, 'data'));
      assert.equal(before.files.length, 0);
      // Random names: two of them may share a directory, rarely.
      assert.ok(before.dirs.size >= names.length - 2, `${before.dirs.size} directories for ${names.length} names`);
      const staging = join(store.stagingRoot(), 't');
      await mkdir(staging, { recursive: true });
      const staged: StagedInstance[] = [];
      for (const n of names) {
        const bytes = await readFile(join(BRAINIX, n));
        const id = orthancIds(await readDicomHeaderFromFile(join(BRAINIX, n))).instance;
        const path = join(staging, `${id}.dcm`);
        await writeFile(path, bytes);
        staged.push({ id, path, size: bytes.length, md5: createHash('md5').update(bytes).digest('hex') });
      }
      const result = await store.commitStaged(staged);
      assert.equal(result.stored.length, names.length);
      const after = await tree(join(dir, 'data'));
      assert.equal(after.files.length, names.length);
      assert.deepEqual([...after.dirs].sort(), [...before.dirs].sort(), 'no directory made by the commit');
      for (const f of after.files) assert.ok(before.dirs.has(join(f, '..')), f);
      // The stored bytes are the staged ones.
      for (const s of staged) assert.equal((await store.instanceInfo(s.id)).md5, s.md5);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('closing the store stops the making of directories at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-prepare-'));
    const store = await EmbeddedStore.open(join(dir, 'data'), { commitThreads: 2 });
    try {
      const making = store.prepareFiles(50_000);
      await store.close();
      const made = (await tree(join(dir, 'data'))).dirs.size;
      assert.ok(made < 50_000, `${made} directories`);
      // Nothing more is made once close() has returned.
      await making;
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await tree(join(dir, 'data'))).dirs.size, made);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
