// Saved state damaged between two starts of a real node (its SQLite jobs database written by another
// program, a push transaction's manifest edited on disk): the node starts, reports the damaged jobs as
// failed with the field at fault, discards the damaged transaction with a log line, and keeps serving.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { makePatient, makeSeries, makeStudy, writeCtSlice } from '../../src/generate/index.ts';
import {
  call,
  getJson,
  importFiles,
  postJson,
  startPair,
  startTransfer,
  waitJob,
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';

/** The files named `name` under `dir`, at any depth (bounded). */
async function findFiles(dir: string, name: string, depth = 6): Promise<string[]> {
  if (depth < 0) return [];
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await findFiles(p, name, depth - 1)));
    else if (e.name === name) out.push(p);
  }
  return out;
}

describe('a node whose saved state was damaged while it was stopped', { timeout: 120_000 }, () => {
  let pair: Pair;
  let tmp: string;
  let study: string;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'dx-damaged-'));
    pair = await startPair();
    const patient = makePatient(14, 0);
    const s = makeStudy(14, patient, 0, 'DAMAGED STATE');
    const series = makeSeries(s, 1, 'AX');
    const files: string[] = [];
    for (let i = 0; i < 2; i++)
      files.push((await writeCtSlice(join(tmp, `ct${i}.dcm`), { seed: 14, index: i, slices: 2, patient, study: s, series })).path);
    const imported = await importFiles(pair.a.url, files);
    study = (await getJson<string[]>(pair.a.url, '/studies'))[0] as string;
    assert.equal(imported.size.size, 2);
  });
  after(async () => {
    await pair?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test('the jobs with damaged rows fail with a readable reason, the others are intact, the node serves', async () => {
    const push = async () => {
      const h = await startTransfer(pair.a.url, 'send', { Resources: [{ Level: 'Study', ID: study }], Peer: 'b', Compression: 'gzip' });
      const j = await waitJob(pair.a.url, h.ID as string);
      assert.equal(j.State, 'Success', JSON.stringify(j));
      return j;
    };
    const fine = await push();
    const badContent = await push();
    const badQuery = await push();
    const badColumn = await push();
    const torn = await push();

    await pair.down('a');
    const [dbPath] = await findFiles(pair.a.dir, 'jobs.sqlite');
    assert.ok(dbPath, 'the jobs database of A');
    const db = new Database(dbPath);
    try {
      const set = (sql: string, id: string) => assert.equal(db.prepare(sql).run(id).changes, 1, sql);
      set(`UPDATE jobs SET content = json_set(content, '$.TotalInstances', 'two') WHERE id = ?`, badContent.ID);
      set(`UPDATE jobs SET query = json_set(query, '$.Peer', 42) WHERE id = ?`, badQuery.ID);
      set(`UPDATE jobs SET progress = 'most' WHERE id = ?`, badColumn.ID);
      set(`UPDATE jobs SET content = '{"Peer":' WHERE id = ?`, torn.ID);
    } finally {
      db.close();
    }
    await pair.up('a');

    const job = (id: string) => getJson<JobJson>(pair.a.url, `/jobs/${id}`);
    assert.deepEqual(
      (await getJson<string[]>(pair.a.url, '/jobs')).sort(),
      [fine.ID, badContent.ID, badQuery.ID, badColumn.ID, torn.ID].sort(),
    );
    const expectFailed = async (id: string, field: RegExp) => {
      const j = await job(id);
      assert.equal(j.State, 'Failure', JSON.stringify(j));
      assert.equal(j.ErrorCode, 15);
      assert.equal(j.ErrorDescription, 'Bad file format');
      assert.match(j.ErrorDetails, /saved state of this job is unusable \(damaged, or written by an incompatible version\)/);
      assert.match(j.ErrorDetails, field);
      return j;
    };
    await expectFailed(badContent.ID, /Content: TotalInstances: .*expected number/);
    const q = await expectFailed(badQuery.ID, /query: Peer: .*expected string/);
    assert.equal(q.Type, 'PushTransfer');
    await expectFailed(badColumn.ID, /column progress/);
    await expectFailed(torn.ID, /Content is not JSON/);
    const intact = await job(fine.ID);
    assert.equal(intact.State, 'Success');
    assert.deepEqual(intact.Content, fine.Content);
    assert.match(pair.a.log(), /job with damaged saved state marked failed/);

    // A job whose query is unusable is not run again; a new transfer works.
    const r = await postJson(pair.a.url, `/jobs/${badQuery.ID}/resubmit`, {});
    assert.equal(r.status, 400, r.body.toString());
    assert.match(r.body.toString(), /cannot run again: its saved query is unusable/);
    await push();
  });

  test('a push transaction whose manifest was damaged is discarded with a log line; the receiver serves', async () => {
    const body = {
      Instances: [{ ID: '0123456789abcdef', Size: '10', MD5: '0123456789abcdef0123456789abcdef' }],
      Buckets: [[{ ID: '0123456789abcdef', Offset: '0', Size: '10' }]],
      Compression: 'none',
    };
    const created = await postJson(pair.b.url, '/transfers/push', body);
    assert.equal(created.status, 200, created.body.toString());
    const tx = JSON.parse(created.body.toString()) as { ID: string; Path: string };
    const kept = await postJson(pair.b.url, '/transfers/push', body);
    const keptTx = JSON.parse(kept.body.toString()) as { ID: string; Path: string };

    await pair.down('b');
    const manifests = await findFiles(pair.b.dir, 'manifest.json');
    const damaged = manifests.find((p) => p.includes(tx.ID));
    assert.ok(damaged, `the manifest of ${tx.ID} among ${manifests.join(', ')}`);
    const m = JSON.parse(await readFile(damaged, 'utf8')) as { Create: { Instances: { Size: unknown }[] } };
    (m.Create.Instances[0] as { Size: unknown }).Size = 10;
    await writeFile(damaged, JSON.stringify(m));
    await pair.up('b');

    assert.equal((await call(pair.b.url, 'GET', `${tx.Path}/state`)).status, 404);
    assert.equal((await call(pair.b.url, 'GET', `${keptTx.Path}/state`)).status, 200);
    assert.match(pair.b.log(), /removing an unusable push transaction/);
    assert.match(pair.b.log(), /manifest: Create\.Instances\[0\]\.Size/);
    assert.equal((await call(pair.b.url, 'GET', '/system')).status, 200);
  });
});
