// The link-profile contract on PostgreSQL (src/db/postgres/link-profiles.ts): a throwaway server of the test
// helper, a database of its own for each test.
import { after } from 'node:test';
import { PgLinkProfiles } from '../../src/db/postgres/link-profiles.ts';
import { migrate } from '../../src/db/postgres/migrations.ts';
import { pgPool, pgSkip, startPostgres, type PgServer } from '../helpers/postgres.ts';
import { runLinkProfileContract } from './link-profile-contract.ts';

let server: Promise<PgServer> | undefined;
after(async () => {
  await (await server)?.stop();
});

if (pgSkip()) {
  const { test } = await import('node:test');
  test('link-profile store contract: PostgreSQL', { skip: pgSkip() || undefined }, () => {});
} else {
  runLinkProfileContract('PostgreSQL', async () => {
    server ??= startPostgres();
    const uri = await (await server).database('links');
    return {
      open: async (warnings) => {
        const pool = await pgPool(uri);
        await migrate(pool);
        const store = new PgLinkProfiles(pool, { warn: (o, msg) => void warnings.push(`${msg}: ${JSON.stringify(o)}`) });
        // The contract closes synchronously; the pool ends in the background (a reopen makes a new one).
        return Object.assign(store, { close: () => void pool.end() });
      },
      damage: async (peer) => {
        const pool = await pgPool(uri);
        try {
          const row = (await pool.query<{ profile: string }>('SELECT profile FROM link_profiles WHERE peer = $1', [peer])).rows[0];
          await pool.query('UPDATE link_profiles SET profile = $1 WHERE peer = $2', [
            JSON.stringify({ ...JSON.parse(row?.profile ?? '{}'), requestsInFlight: -3 }),
            peer,
          ]);
        } finally {
          await pool.end();
        }
      },
      remove: async () => {},
    };
  });
}
