// A throwaway PostgreSQL server for the tests: Debian's initdb in a temporary folder, run by an unprivileged
// user (postgres refuses root), on 127.0.0.1 and a free port; or the server of DICOM_XFER_TEST_PG.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import type { PostgresConfig } from '../../src/config/types.ts';
import { connectPool } from '../../src/db/postgres/pool.ts';
import { freePort, waitFor } from './ports.ts';

const run = promisify(execFile);

/** Debian's programs of the newest installed major version (never PATH: a stray initdb may sit there). */
function pgBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

/** The user the server runs as when the tests run as root: Debian's `postgres`, else `nobody`. */
async function serverUser(): Promise<{ name: string; uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    const r = await run('id', ['-u', name]).catch(() => undefined);
    const g = await run('id', ['-g', name]).catch(() => undefined);
    if (r && g) return { name, uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  }
  return undefined;
}

/** The skip reason when no server can be had here, else false. */
export function pgSkip(): string | false {
  if (process.env.DICOM_XFER_TEST_PG) return false;
  if (!pgBin()) return 'needs PostgreSQL (Debian package postgresql, /usr/lib/postgresql/*/bin) or DICOM_XFER_TEST_PG=postgres://...';
  return false;
}

export interface PgServer {
  /** URI of the server's maintenance database. */
  readonly uri: string;
  /** Creates an empty database of its own; answers its URI. */
  database(prefix?: string): Promise<string>;
  /** Stops the server (fast shutdown, connections cut) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Stops the server it started (by the pid pg_ctl wrote) and removes its folder; drops nothing on a given one. */
  stop(): Promise<void>;
}

let made = 0;

async function createDatabase(adminUri: string, prefix: string): Promise<string> {
  const name = `${prefix}_${process.pid}_${++made}_${Date.now().toString(36)}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const client = new pg.Client({ connectionString: adminUri });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUri);
  u.pathname = `/${name}`;
  return u.toString();
}

/** TLS for the server: PEM files of its certificate and key (copied into its folder, readable by it only). */
export interface PgTls {
  cert: string;
  key: string;
}

/** Starts a server of its own (or wraps DICOM_XFER_TEST_PG); call pgSkip() first. */
export async function startPostgres(opts: { tls?: PgTls } = {}): Promise<PgServer> {
  const given = process.env.DICOM_XFER_TEST_PG;
  if (given) {
    if (opts.tls) throw new Error('TLS needs a server of the helper (DICOM_XFER_TEST_PG is set)');
    return { uri: given, database: (p = 'dx') => createDatabase(given, p), restart: async () => {}, stop: async () => {} };
  }
  const bin = pgBin();
  if (!bin) throw new Error('PostgreSQL is not installed');
  const user = await serverUser();
  const dir = await mkdtemp(join(tmpdir(), 'dx-pg-'));
  if (user) await chown(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const port = await freePort();
  const asUser = (prog: string, args: string[]) =>
    user ? run('runuser', ['-u', user.name, '--', join(bin, prog), ...args]) : run(join(bin, prog), args);
  const superuser = 'dx';
  let serverOpts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  if (opts.tls) {
    for (const [from, to] of [
      [opts.tls.cert, 'server.crt'],
      [opts.tls.key, 'server.key'],
    ] as const) {
      await copyFile(from, join(dir, to));
      await chmod(join(dir, to), 0o600);
      if (user) await chown(join(dir, to), user.uid, user.gid);
    }
    serverOpts += ` -c ssl=on -c ssl_cert_file=${join(dir, 'server.crt')} -c ssl_key_file=${join(dir, 'server.key')}`;
  }
  const start = () => asUser('pg_ctl', ['-D', data, '-o', serverOpts, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const uri = `postgres://${superuser}@127.0.0.1:${port}/postgres`;
  const ready = () =>
    waitFor(
      'PostgreSQL to accept connections',
      async () => {
        const c = new pg.Client({ connectionString: uri });
        await c.connect();
        await c.end();
        return true;
      },
      30_000,
      100,
    );
  try {
    await asUser('initdb', ['-D', data, '-U', superuser, '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
    await start();
    await ready();
  } catch (e) {
    const log = await readFile(join(dir, 'server.log'), 'utf8').catch(() => '');
    await asUser('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']).catch(() => {});
    await rm(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start as ${user?.name ?? userInfo().username}: ${e instanceof Error ? e.message : e}\n${log}`);
  }
  const stopServer = () => asUser('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
  return {
    uri,
    database: (p = 'dx') => createDatabase(uri, p),
    async restart() {
      await stopServer();
      await start();
      await ready();
    },
    async stop() {
      await stopServer().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A pool on `uri` as the node makes it (schema dicom_xfer first on the search path), for the contract tests. */
export function pgPool(uri: string): Promise<pg.Pool> {
  return connectPool({ ...POSTGRES_CONFIG, connectionUri: uri, maximumConnectionRetries: 0 }, { warn: () => undefined });
}

/**
 * For a store contract run inside one describe block: a PostgreSQL server started before its tests and
 * stopped after, and one database per place of the contract, made at its first use. `pool(place)` opens a
 * new pool on that place's database (the caller ends it).
 */
export function pgPlaces(prefix: string): { pool(place: string): Promise<pg.Pool> } {
  let server: PgServer | undefined;
  const databases = new Map<string, string>();
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });
  return {
    async pool(place) {
      if (!server) throw new Error('the PostgreSQL server of the suite is not running');
      let uri = databases.get(place);
      if (uri === undefined) {
        uri = await server.database(prefix);
        databases.set(place, uri);
      }
      return pgPool(uri);
    },
  };
}

/** The loaded `PostgreSQL` key with its defaults, for tests that build one. */
export const POSTGRES_CONFIG: PostgresConfig = {
  enableIndex: true,
  host: 'localhost',
  port: 5432,
  database: 'orthanc',
  enableSsl: false,
  maximumConnectionRetries: 0,
  connectionRetryInterval: 0,
  lock: false,
};
