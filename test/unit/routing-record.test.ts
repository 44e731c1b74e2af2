// Recording arrivals on real databases and a real embedded store: each instance matched once per rule,
// a repeat not matched again, a new copy after its send matched anew, and an arrival whose main tags the
// store could not give (the store closed under it) kept and matched at the next pass.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { routesSchema } from '../../src/config/routes-schema.ts';
import { openRoutesDb, type RoutesDb } from '../../src/routing/db.ts';
import { ArrivalRecorder } from '../../src/routing/record.ts';
import { RuleSet } from '../../src/routing/rules.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { describe, someDicom } from '../helpers/data.ts';
import { listFiles, md5 } from '../helpers/transfer-nodes.ts';

const log = pino({ level: 'silent' });
const rules = routesSchema.parse([
  { Name: 'all', When: 'Instance', Send: ['x'] },
  { Name: 'none', When: 'Instance', Send: ['x'], Match: { PatientName: 'NOBODY-HAS-THIS-NAME' } },
]);

describe('recording arrivals', () => {
  let dir: string;
  let db: RoutesDb;
  let store: EmbeddedStore;
  let id: string;
  const rest = { kind: 'rest', remoteIp: '127.0.0.1' } as const;
  const matches = () => db.prepare('SELECT rule, instance, state FROM matches ORDER BY rule').all() as { rule: string; state: string }[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-routing-record-'));
    db = openRoutesDb(join(dir, 'routes.sqlite'));
    store = await EmbeddedStore.open(join(dir, 'store'));
    const file = (await listFiles(await someDicom()))[0] as string;
    const copy = join(dir, 'in.dcm');
    await copyFile(file, copy);
    id = (await store.ingestFile(copy, (await stat(copy)).size, md5(await readFile(copy)))).ids.instance;
  });
  after(async () => {
    await store?.close();
    db?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('an instance is matched once per rule; a repeat is not matched again; a new copy after its send is', async () => {
    const counted: string[] = [];
    const r = new ArrivalRecorder(db, new RuleSet(db, rules), store, log, (rule, n) => counted.push(`${rule}:${n}`));
    assert.deepEqual([...(await r.record([{ instanceId: id, origin: rest, alreadyStored: false }]))], ['all']);
    assert.deepEqual(matches(), [{ rule: 'all', instance: id, state: 'waiting' }]);
    await r.record([{ instanceId: id, origin: rest, alreadyStored: true }]);
    assert.deepEqual(counted, ['all:1'], 'a repeat is not matched again');
    db.prepare("UPDATE matches SET state = 'sent'").run();
    await r.record([{ instanceId: id, origin: rest, alreadyStored: true }]);
    assert.equal(matches()[0]?.state, 'sent', 'a repeat of what was sent stays sent');
    await r.record([{ instanceId: id, origin: rest, alreadyStored: false }]);
    assert.equal(matches()[0]?.state, 'waiting', 'a new copy of what was sent (deleted, then stored again) is sent again');
    assert.deepEqual(counted, ['all:1', 'all:1']);
  });

  test('an arrival whose tags cannot be read now is kept and matched at the next pass', async () => {
    db.prepare('DELETE FROM matches').run();
    const closed = await EmbeddedStore.open(join(dir, 'store-b'));
    await closed.close();
    const failing = new ArrivalRecorder(db, new RuleSet(db, rules), closed, log, () => undefined);
    assert.deepEqual([...(await failing.record([{ instanceId: id, origin: rest, alreadyStored: false }]))], []);
    assert.deepEqual(matches(), []);
    assert.deepEqual(db.prepare('SELECT pending_match FROM arrivals WHERE instance = ?').get(id), { pending_match: 0 });
    // Still unreadable: still pending.
    assert.deepEqual([...(await failing.retryPending())], []);
    assert.deepEqual(db.prepare('SELECT pending_match FROM arrivals WHERE instance = ?').get(id), { pending_match: 0 });
    const working = new ArrivalRecorder(db, new RuleSet(db, rules), store, log, () => undefined);
    assert.deepEqual([...(await working.retryPending())], ['all']);
    assert.deepEqual(matches(), [{ rule: 'all', instance: id, state: 'waiting' }]);
    assert.deepEqual(db.prepare('SELECT pending_match FROM arrivals WHERE instance = ?').get(id), { pending_match: null });
  });
});
