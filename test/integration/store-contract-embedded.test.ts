// The store contract run against the embedded store (files plus SQLite) in a temporary directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { runStoreContract } from './store-contract.ts';

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
