// The node's connection pool to PostgreSQL (the `PostgreSQL` key): connection settings from the plugin's
// keys or a URI, the retries at start, the node's advisory lock (`Lock`), and one helper for transactions.
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import type { PostgresConfig } from '../../config/types.ts';

/** The schema that holds every table of dicom-xfer, apart from those of an Orthanc sharing the database. */
export const SCHEMA = 'dicom_xfer';

/** A key of pg_advisory_lock for "one node on this database" (`Lock`), apart from the migrations' key. */
const NODE_LOCK_KEY = 0x6478_0001;

export interface PgLog {
  warn(fields: object, message: string): void;
}

/** Where the node connects, for messages: never the password. */
export function describeTarget(c: PostgresConfig): string {
  if (c.connectionUri !== undefined) {
    const u = new URL(c.connectionUri);
    u.password = '';
    return u.toString();
  }
  return `postgres://${c.username ? `${c.username}@` : ''}${c.host}:${c.port}/${c.database}`;
}

/** BIGINT (seqs, times in ms) as numbers: every value this node stores fits well within 2^53. */
const INT8_OID = 20;
function typeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
  if (oid === INT8_OID && format !== 'binary') return (v: string) => Number(v);
  // biome-ignore lint/suspicious/noExplicitAny: pg's own parsers are typed per format; this passes them on as they are
  return pg.types.getTypeParser(oid, format as any);
}

async function poolConfig(c: PostgresConfig): Promise<pg.PoolConfig> {
  const base: pg.PoolConfig =
    c.connectionUri !== undefined ? { connectionString: c.connectionUri } : { host: c.host, port: c.port, database: c.database };
  if (c.connectionUri === undefined) {
    if (c.username !== undefined) base.user = c.username;
    if (c.password !== undefined) base.password = c.password;
  }
  if (c.enableSsl) {
    base.ssl = c.sslRootCertificate
      ? { rejectUnauthorized: true, ca: await readFile(c.sslRootCertificate, 'utf8') }
      : { rejectUnauthorized: true };
  }
  // Every statement names its tables in SCHEMA; the search path makes the session see them first.
  base.options = `-c search_path=${SCHEMA},public`;
  base.types = { getTypeParser: typeParser };
  base.max = 10;
  base.connectionTimeoutMillis = 10_000;
  base.idleTimeoutMillis = 30_000;
  return base;
}

/** A pool whose first connection succeeded, after up to `maximumConnectionRetries` retries. */
export async function connectPool(
  c: PostgresConfig,
  log: PgLog,
  sleep = (ms: number) => new Promise((r) => setTimeout(r, ms)),
): Promise<pg.Pool> {
  const pool = new pg.Pool(await poolConfig(c));
  // An idle connection cut by the server (a restart) must not end the process; the next query reconnects.
  pool.on('error', (e) => log.warn({ err: e.message }, 'PostgreSQL connection lost'));
  let last: unknown;
  for (let attempt = 0; attempt <= c.maximumConnectionRetries; attempt++) {
    try {
      const client = await pool.connect();
      client.release();
      return pool;
    } catch (e) {
      last = e;
      if (attempt < c.maximumConnectionRetries) {
        log.warn(
          { target: describeTarget(c), err: e instanceof Error ? e.message : String(e), attempt: attempt + 1 },
          'PostgreSQL not reachable, retrying',
        );
        await sleep(c.connectionRetryInterval * 1000);
      }
    }
  }
  await pool.end().catch(() => undefined);
  const why = last instanceof Error ? last.message : String(last);
  const attempts = c.maximumConnectionRetries + 1;
  const tried = `${attempts} attempt${attempts === 1 ? '' : 's'}`;
  throw new Error(`cannot connect to PostgreSQL at ${describeTarget(c)} after ${tried}: ${why}`, { cause: last });
}

/** Runs `fn` in one transaction on one connection: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/**
 * Takes the node's lock on the database (`Lock`): a session advisory lock on a connection of its own, held
 * until `release`. Throws when another node holds it.
 */
export async function takeNodeLock(c: PostgresConfig, log: PgLog): Promise<{ release(): Promise<void> }> {
  const client = new pg.Client(await poolConfig(c));
  let released = false;
  // The lock lives with its session: a server restart ends both, and nothing takes it again yet.
  client.on('error', (e) => {
    if (!released) log.warn({ target: describeTarget(c), err: e.message }, "the node's PostgreSQL lock was lost with its connection");
  });
  await client.connect();
  try {
    const r = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [NODE_LOCK_KEY]);
    if (r.rows[0]?.locked !== true) {
      throw new Error(
        `another dicom-xfer node holds the lock of ${describeTarget(c)} ` +
          '(PostgreSQL.Lock is true; set it to false on every node that shares the database)',
      );
    }
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
  return {
    release: () => {
      released = true;
      return client.end().catch(() => undefined);
    },
  };
}
