// PostgreSQL.EnableSsl on a real server with TLS (certificates of a throwaway CA): the node's pool connects
// over TLS when SslRootCertificate names the CA, and refuses a server whose certificate it cannot check.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { connectPool } from '../../src/db/postgres/pool.ts';
import { describe } from '../helpers/data.ts';
import { makePki, type Pki } from '../helpers/pki.ts';
import { pgSkip, POSTGRES_CONFIG, startPostgres, type PgServer } from '../helpers/postgres.ts';

const skip = pgSkip() || (process.env.DICOM_XFER_TEST_PG ? 'TLS needs a server of the helper' : false);

describe('PostgreSQL over TLS', { skip }, () => {
  let pki: Pki;
  let server: PgServer;
  let port: number;
  before(async () => {
    pki = await makePki();
    server = await startPostgres({ tls: { cert: pki.serverCert, key: pki.serverKey } });
    port = Number(new URL(server.uri).port);
  });
  after(async () => {
    await server?.stop();
    if (pki) await rm(pki.dir, { recursive: true, force: true });
  });

  const keys = () => ({ ...POSTGRES_CONFIG, host: '127.0.0.1', port, database: 'postgres', username: 'dx', enableSsl: true });

  test('EnableSsl with the CA of the server: the session is encrypted', async () => {
    const pool = await connectPool({ ...keys(), sslRootCertificate: pki.caFile }, { warn: () => undefined });
    try {
      const r = await pool.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.deepEqual(r.rows, [{ ssl: true }]);
    } finally {
      await pool.end();
    }
  });

  test('EnableSsl without that CA: the certificate is refused, the error names the server', async () => {
    await assert.rejects(connectPool(keys(), { warn: () => undefined }), (e: Error) => {
      assert.match(
        e.message,
        new RegExp(`cannot connect to PostgreSQL at postgres://dx@127\\.0\\.0\\.1:${port}/postgres after 1 attempt: .*certificate`),
      );
      return true;
    });
  });
});
