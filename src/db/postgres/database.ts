// Opening the node's PostgreSQL database: the pool (with the retries of the `PostgreSQL` key), the node's
// lock when `Lock` is true, then the migrations; and the stores built on it, closed with it.
import type pg from 'pg';
import type { PostgresConfig } from '../../config/types.ts';
import { PgInstanceIndex } from './instance-index.ts';
import { PgJobStore } from './job-store.ts';
import { PgLinkProfiles } from './link-profiles.ts';
import { migrate } from './migrations.ts';
import { connectPool, type PgLog, takeNodeLock } from './pool.ts';
import { PgPushState } from './push-state.ts';

export interface PgDatabase {
  readonly pool: pg.Pool;
  /** The embedded store's index (its files stay under StorageDirectory). */
  readonly index: PgInstanceIndex;
  readonly jobs: PgJobStore;
  readonly linkProfiles: PgLinkProfiles;
  /** The push transactions being received (their staged bytes stay under StorageDirectory). */
  readonly pushState: PgPushState;
  /** Ends the pool and gives the node's lock back. */
  close(): Promise<void>;
}

export async function openPgDatabase(config: PostgresConfig, log: PgLog): Promise<PgDatabase> {
  const pool = await connectPool(config, log);
  let lock: { release(): Promise<void> } | undefined;
  try {
    if (config.lock) lock = await takeNodeLock(config, log);
    await migrate(pool);
  } catch (e) {
    await lock?.release();
    await pool.end().catch(() => undefined);
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    pool,
    index: new PgInstanceIndex(pool),
    jobs: new PgJobStore(pool),
    linkProfiles: new PgLinkProfiles(pool, log),
    pushState: new PgPushState(pool),
    close() {
      closing ??= (async () => {
        await pool.end().catch(() => undefined);
        await lock?.release();
      })();
      return closing;
    },
  };
}
