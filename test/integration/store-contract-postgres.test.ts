// The store contract run against the embedded store on a PostgreSQL index (files in a temporary directory,
// the index in a database of its own on the test helper's server).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PgInstanceIndex } from '../../src/db/postgres/instance-index.ts';
import { migrate } from '../../src/db/postgres/migrations.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { pgPool, pgSkip, startPostgres, type PgServer } from '../helpers/postgres.ts';
import { runStoreContract } from './store-contract.ts';

let server: Promise<PgServer> | undefined;
after(async () => {
  await (await server)?.stop();
});

if (pgSkip()) {
  test('store contract: embedded on PostgreSQL', { skip: pgSkip() || undefined }, () => {});
} else {
  runStoreContract('embedded on PostgreSQL', async () => {
    server ??= startPostgres();
    const pool = await pgPool(await (await server).database('store'));
    await migrate(pool);
    const dir = await mkdtemp(join(tmpdir(), 'dx-contract-pg-'));
    const store = await EmbeddedStore.open(dir, { commitThreads: 2, index: new PgInstanceIndex(pool) });
    return {
      store,
      async close() {
        await store.close();
        await pool.end();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}
