// The store contract run against the Orthanc store, backed by a real Orthanc 1.10.1 started for the suite.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OrthancStore } from '../../src/store/orthanc/store.ts';
import { orthancInstalled, startOrthanc } from '../helpers/orthanc.ts';
import { runStoreContract } from '../integration/store-contract.ts';

runStoreContract(
  'orthanc',
  async () => {
    const orthanc = await startOrthanc({ name: 'contract' });
    const dir = await mkdtemp(join(tmpdir(), 'dx-contract-orthanc-'));
    const store = await OrthancStore.open({ url: orthanc.url, storageDirectory: dir, commitThreads: 2, timeoutSeconds: 30 });
    return {
      store,
      async close() {
        await store.close();
        await orthanc.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { skip: !orthancInstalled() && 'Orthanc is not installed' },
);
