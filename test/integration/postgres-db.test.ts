// The node's PostgreSQL database on a real server: migrations started by three nodes at once end in one
// schema without an error, four nodes claiming jobs at once never take one twice, a newer schema is refused,
// the node's lock keeps a second node away, a restarted server is met again, and a
// server that cannot be reached gives an error naming it (never its password) after the configured retries.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type pg from 'pg';
import { openPgDatabase } from '../../src/db/postgres/database.ts';
import { PgJobStore } from '../../src/db/postgres/job-store.ts';
import { MIGRATIONS, migrate } from '../../src/db/postgres/migrations.ts';
import { connectPool } from '../../src/db/postgres/pool.ts';
import { describe } from '../helpers/data.ts';
import { freePort } from '../helpers/ports.ts';
import { pgPool, pgSkip, POSTGRES_CONFIG, startPostgres, type PgServer } from '../helpers/postgres.ts';

describe('the node database on PostgreSQL', { skip: pgSkip() }, () => {
  let server: PgServer;
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  test('three nodes migrating one database at once: each version applied once, one schema, no error', async () => {
    const uri = await server.database('migrate');
    const pools = await Promise.all([0, 1, 2].map(() => pgPool(uri)));
    try {
      const applied = await Promise.all(pools.map((p) => migrate(p)));
      const all = MIGRATIONS.map((m) => m.version);
      assert.deepEqual(applied.flat().sort(), all, `applied once in all: ${JSON.stringify(applied)}`);
      const versions = await pools[0]?.query<{ version: number }>('SELECT version FROM dicom_xfer.schema_versions ORDER BY version');
      assert.deepEqual(
        versions?.rows.map((r) => r.version),
        all,
      );
      const tables = await pools[0]?.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'dicom_xfer' AND table_name = 'jobs'",
      );
      assert.equal(tables?.rows[0]?.n, 1);
      // A later start finds nothing to do.
      assert.deepEqual(await migrate(pools[1] as NonNullable<(typeof pools)[1]>), []);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  test('four nodes claiming from one job table at once: every job claimed exactly once', async () => {
    const uri = await server.database('claims');
    const pools = await Promise.all([0, 1, 2, 3].map(() => pgPool(uri)));
    try {
      await migrate(pools[0] as pg.Pool);
      const stores = pools.map((p) => new PgJobStore(p));
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        const j = await stores[0]?.add({
          id: `c${i}`,
          type: 'PushTransfer',
          priority: i % 3,
          query: '{}',
          content: '{}',
          creation_time: i,
        });
        if (j) ids.push(j.id);
      }
      const claimedBy = await Promise.all(
        stores.map(async (store) => {
          const mine: string[] = [];
          for (let i = 0; i < 100; i++) {
            const j = await store.claimNext(['PushTransfer']);
            if (!j) break;
            mine.push(j.id);
          }
          return mine;
        }),
      );
      const all = claimedBy.flat();
      assert.equal(all.length, ids.length, 'no job claimed twice');
      assert.deepEqual([...all].sort(), [...ids].sort());
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  test('a database migrated by a newer dicom-xfer is refused', async () => {
    const uri = await server.database('newer');
    const pool = await pgPool(uri);
    try {
      await migrate(pool);
      await pool.query("INSERT INTO dicom_xfer.schema_versions (version, description) VALUES (999, 'from the future')");
      await assert.rejects(migrate(pool), /written by a newer dicom-xfer \(version 999/);
      const versions = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM dicom_xfer.schema_versions');
      assert.equal(versions.rows[0]?.n, MIGRATIONS.length + 1);
    } finally {
      await pool.end();
    }
  });

  test('with Lock, a second node on the same database stops at its start; without, both open', async () => {
    const uri = await server.database('lock');
    const log = { warn: () => undefined };
    const first = await openPgDatabase({ ...POSTGRES_CONFIG, connectionUri: uri, lock: true }, log);
    try {
      await assert.rejects(
        openPgDatabase({ ...POSTGRES_CONFIG, connectionUri: uri, lock: true }, log),
        /another dicom-xfer node holds the lock/,
      );
      const shared = await openPgDatabase({ ...POSTGRES_CONFIG, connectionUri: uri, lock: false }, log);
      await shared.close();
    } finally {
      await first.close();
    }
    // The lock is given back with the first node.
    const again = await openPgDatabase({ ...POSTGRES_CONFIG, connectionUri: uri, lock: true }, log);
    await again.close();
  });

  test('the server restarted: the stores answer again on the same pool, nothing lost, the process alive', {
    skip: process.env.DICOM_XFER_TEST_PG ? 'a given server is not restarted' : false,
  }, async () => {
    const uri = await server.database('restart');
    const warnings: string[] = [];
    const db = await openPgDatabase({ ...POSTGRES_CONFIG, connectionUri: uri, lock: true }, { warn: (_o, m) => void warnings.push(m) });
    try {
      const job = { id: 'j1', type: 'PushTransfer', priority: 0, query: '{}', content: '{}', creation_time: 1 } as const;
      await db.jobs.add(job);
      // Every connection of the pool is open and idle when the server goes.
      await Promise.all([1, 2, 3].map(() => db.pool.query('SELECT pg_sleep(0.01)')));
      await server.restart();
      // The connections cut while idle have left the pool (with a warning each); the next query opens a new one.
      const claimed = await db.jobs.claimNext(['PushTransfer']);
      assert.equal(claimed?.id, 'j1');
      assert.ok(warnings.includes('PostgreSQL connection lost'), warnings.join());
      assert.ok(warnings.includes("the node's PostgreSQL lock was lost with its connection"), warnings.join());
    } finally {
      await db.close();
    }
  });

  test('an unreachable server: retried as configured, then an error naming it without the password', async () => {
    const port = await freePort(); // nothing listens there
    const warnings: string[] = [];
    const slept: number[] = [];
    const config = {
      ...POSTGRES_CONFIG,
      host: '127.0.0.1',
      port,
      database: 'dx',
      username: 'dx',
      password: 'very-secret',
      maximumConnectionRetries: 2,
      connectionRetryInterval: 3,
    };
    await assert.rejects(
      connectPool(config, { warn: (o) => void warnings.push(JSON.stringify(o)) }, async (ms) => void slept.push(ms)),
      (e: Error) => {
        assert.match(e.message, new RegExp(`cannot connect to PostgreSQL at postgres://dx@127\\.0\\.0\\.1:${port}/dx after 3 attempts`));
        assert.doesNotMatch(e.message, /very-secret/);
        return true;
      },
    );
    assert.deepEqual(slept, [3000, 3000]);
    assert.equal(warnings.length, 2);
    assert.ok(warnings.every((w) => !w.includes('very-secret')));
  });
});
