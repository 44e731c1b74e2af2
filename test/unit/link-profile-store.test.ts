// The link profiles store on a real SQLite file: a profile is found only under its peer, URL and direction,
// only while it is younger than a week, and a damaged row is reported and ignored.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { LINK_PROFILE_MAX_AGE_MS, type LinkProfile } from '../../src/transfer/adaptive/link-profile.ts';
import { SqliteLinkProfiles } from '../../src/transfer/adaptive/link-profile-sqlite.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function open(): Promise<{ store: SqliteLinkProfiles; path: string; warnings: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-links-'));
  dirs.push(dir);
  const path = join(dir, 'link-profiles.sqlite');
  const warnings: string[] = [];
  const store = SqliteLinkProfiles.open(path, {
    warn: (o: unknown, msg?: string) => void warnings.push(`${msg}: ${JSON.stringify(o)}`),
  } as never);
  return { store, path, warnings };
}

const T0 = Date.UTC(2026, 11, 1);
const profile: LinkProfile = {
  peer: 'b',
  url: 'http://127.0.0.1:8042/',
  direction: 'push',
  requestsInFlight: 24,
  bytesPerSecond: 11.5e6,
  spanBytes: 4 << 20,
  compression: { codec: 'gzip', level: 3 },
  rttMs: null,
  measuredAt: T0,
};

test('a profile is found under its peer, URL and direction only, and only while younger than a week', async () => {
  const { store } = await open();
  await store.put(profile);
  const key = { peer: 'b', url: profile.url, direction: 'push' } as const;
  assert.deepEqual(await store.get(key, T0 + 1000), profile);
  assert.equal(await store.get({ ...key, url: 'http://10.0.0.9:8042/' }, T0), undefined, 'the peer pointed elsewhere');
  assert.equal(await store.get({ ...key, peer: 'c' }, T0), undefined);
  assert.equal(await store.get({ ...key, direction: 'pull' }, T0), undefined);
  assert.equal(await store.get(key, T0 + LINK_PROFILE_MAX_AGE_MS + 1), undefined, 'too old');
  // A newer measurement takes its place.
  await store.put({ ...profile, requestsInFlight: 32, measuredAt: T0 + 5000 });
  assert.equal((await store.get(key, T0 + 6000))?.requestsInFlight, 32);
  store.close();
});

test('a damaged row is ignored with a warning; a bad profile is never written', async () => {
  const { store, path, warnings } = await open();
  await store.put(profile);
  const db = new Database(path);
  db.prepare('UPDATE link_profiles SET profile = ?').run(JSON.stringify({ ...profile, requestsInFlight: -3 }));
  db.close();
  const key = { peer: 'b', url: profile.url, direction: 'push' } as const;
  assert.equal(await store.get(key, T0), undefined);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] as string, /link profile ignored.*requestsInFlight/);
  await assert.rejects(store.put({ ...profile, bytesPerSecond: Number.NaN }));
  store.close();
});
