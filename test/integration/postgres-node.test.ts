// Real nodes with PostgreSQL.EnableIndex on a real PostgreSQL server: a push of real DICOM between two such
// nodes succeeds, their index, jobs, link profiles and push transactions live in the database (no SQLite file
// of theirs), the receiver started again finds its instances, a node started again elsewhere finds its jobs,
// and a database that cannot be reached stops the start with one clear line (exit 1, no stack, no password).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { BIN, startXferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { pgSkip, startPostgres, type PgServer } from '../helpers/postgres.ts';
import {
  assertSameInstances,
  getJson,
  importFiles,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';

const run = promisify(execFile);

describe('nodes on PostgreSQL', { skip: pgSkip() || needs(REAL_DICOM), timeout: 180_000 }, () => {
  let server: PgServer;
  let pair: Pair | undefined;
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await pair?.stop();
    await server?.stop();
  });

  test('a push between two nodes on PostgreSQL; the receiver restarted finds its instances, the sender its jobs', async () => {
    const dbA = await server.database('node_a');
    const dbB = await server.database('node_b');
    pair = await startPair({
      a: { PostgreSQL: { EnableIndex: true, ConnectionUri: dbA } },
      b: { PostgreSQL: { EnableIndex: true, ConnectionUri: dbB } },
    });
    const files = (await listFiles(REAL_DICOM)).slice(0, 12);
    const imported = await importFiles(pair.a.url, files);
    assert.ok(imported.md5.size > 0, 'some real files accepted');
    const source = await storedMd5s(pair.a.url);
    const resources = [...source.keys()].map((ID) => ({ Level: 'Instance', ID }));
    const h = await startTransfer(pair.a.url, 'send', { Peer: 'b', Resources: resources, Compression: 'gzip' });
    const job = await waitJob(pair.a.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, source);
    // The index, the jobs and the link profile are rows of PostgreSQL, not files of StorageDirectory.
    for (const node of [pair.a, pair.b]) {
      for (const f of ['index.sqlite', 'jobs.sqlite', 'link-profiles.sqlite']) assert.equal(existsSync(join(node.dataDir, f)), false, f);
    }
    const receiver = new pg.Client({ connectionString: dbB });
    await receiver.connect();
    try {
      const rows = await receiver.query<{ id: string }>('SELECT id FROM dicom_xfer.resources WHERE level = 3 ORDER BY id');
      assert.deepEqual(
        rows.rows.map((r) => r.id),
        [...source.keys()].sort(),
      );
      // The push transaction's state too: its commit's outcome recorded, the transaction itself gone.
      const outcomes = await receiver.query<{ state: string }>("SELECT outcome::json->>'State' AS state FROM dicom_xfer.push_outcomes");
      assert.deepEqual(outcomes.rows, [{ state: 'Success' }]);
      const open = await receiver.query('SELECT id FROM dicom_xfer.push_transactions');
      assert.equal(open.rowCount, 0);
    } finally {
      await receiver.end();
    }
    // B started again on its folder finds every instance through its index in PostgreSQL.
    await pair.down('b');
    await pair.up('b');
    await assertSameInstances(pair.b.url, source);
    const client = new pg.Client({ connectionString: dbA });
    await client.connect();
    try {
      const jobs = await client.query<{ id: string; state: string }>('SELECT id, state FROM dicom_xfer.jobs');
      assert.deepEqual(jobs.rows, [{ id: h.ID, state: 'Success' }]);
      const links = await client.query<{ peer: string; direction: string }>('SELECT peer, direction FROM dicom_xfer.link_profiles');
      assert.deepEqual(links.rows, [{ peer: 'b', direction: 'push' }]);
    } finally {
      await client.end();
    }
    // A's process stopped; another node on the same database (a fresh folder) lists the job as it ended.
    await pair.a.stop();
    const again = await startXferNode({ config: { Name: 'a2', PostgreSQL: { EnableIndex: true, ConnectionUri: dbA } } });
    try {
      assert.deepEqual(await getJson<string[]>(again.url, '/jobs'), [h.ID]);
      const back = await getJson<JobJson>(again.url, `/jobs/${h.ID}`);
      assert.equal(back.State, 'Success');
      assert.equal(back.Type, 'PushTransfer');
    } finally {
      await again.stop();
    }
  });

  test('the database unreachable at start: retried as configured, then one line naming it, exit code 1', async () => {
    const port = await freePort(); // nothing listens there
    const config = {
      PostgreSQL: {
        EnableIndex: true,
        Host: '127.0.0.1',
        Port: port,
        Database: 'dx',
        Username: 'dx',
        Password: 'not-to-be-logged',
        MaximumConnectionRetries: 1,
        ConnectionRetryInterval: 0,
      },
    };
    const dir = await mkdtemp(join(tmpdir(), 'dx-pgdown-'));
    try {
      await writeFile(join(dir, 'config.json'), JSON.stringify(config));
      const args = [BIN, 'serve', '--port', String(await freePort()), '--data', join(dir, 'data'), '--config', join(dir, 'config.json')];
      const r = await run(process.execPath, args, { timeout: 60_000 }).then(
        () => assert.fail('the node started'),
        (e: { code?: number; stderr?: string }) => e,
      );
      assert.equal(r.code, 1);
      const lines = (r.stderr ?? '').trim().split('\n');
      assert.match(
        lines.at(-1) ?? '',
        new RegExp(`^dicom-xfer serve: cannot connect to PostgreSQL at postgres://dx@127\\.0\\.0\\.1:${port}/dx after 2 attempts`),
      );
      assert.equal(lines.filter((l) => l.includes('PostgreSQL not reachable, retrying')).length, 1, 'one retry');
      assert.doesNotMatch(r.stderr ?? '', /not-to-be-logged/);
      assert.doesNotMatch(r.stderr ?? '', /^\s+at /m, 'no stack');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
