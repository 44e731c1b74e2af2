// The push-transaction state contract run against PostgreSQL (src/db/postgres/push-state.ts), on a database
// of its own on the test helper's server.
import { after, test } from 'node:test';
import { PgPushState } from '../../src/db/postgres/push-state.ts';
import { migrate } from '../../src/db/postgres/migrations.ts';
import { pgPool, pgSkip, startPostgres, type PgServer } from '../helpers/postgres.ts';
import { runPushStateContract } from './push-state-contract.ts';

let server: Promise<PgServer> | undefined;
after(async () => {
  await (await server)?.stop();
});

if (pgSkip()) {
  test('push-transaction state contract: PostgreSQL', { skip: pgSkip() || undefined }, () => {});
} else {
  runPushStateContract('PostgreSQL', async () => {
    server ??= startPostgres();
    const uri = await (await server).database('push');
    return {
      async open() {
        const pool = await pgPool(uri);
        await migrate(pool);
        // Each opening has its own pool, ended with the state (the node's outlives it).
        return Object.assign(new PgPushState(pool), { close: () => pool.end() });
      },
      async damage(id) {
        // A size written as a number where the manifest keeps the wire's decimal string.
        const pool = await pgPool(uri);
        try {
          const sql = 'SELECT manifest FROM dicom_xfer.push_transactions WHERE id = $1';
          const [row] = (await pool.query<{ manifest: string }>(sql, [id])).rows;
          const m = JSON.parse(row?.manifest ?? '{}') as { Create: { Instances: { Size: unknown }[] } };
          (m.Create.Instances[0] as { Size: unknown }).Size = 10;
          await pool.query('UPDATE dicom_xfer.push_transactions SET manifest = $1 WHERE id = $2', [JSON.stringify(m), id]);
        } finally {
          await pool.end();
        }
      },
      remove: async () => {},
    };
  });
}
