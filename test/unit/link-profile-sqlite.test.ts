// The link-profile contract on the SQLite store of a node (link-profiles.sqlite), on a real file, and the
// rows of earlier versions of the profile's form: read with what they lack at its default.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteLinkProfiles } from '../../src/transfer/adaptive/link-profile-sqlite.ts';
import { LINK_PROFILE_VERSION } from '../../src/transfer/adaptive/link-profile.ts';
import { describe } from '../helpers/data.ts';
import { runLinkProfileContract } from './link-profile-contract.ts';

runLinkProfileContract('SQLite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dx-links-'));
  const path = join(dir, 'link-profiles.sqlite');
  return {
    open: async (warnings) => SqliteLinkProfiles.open(path, { warn: (o, msg) => void warnings.push(`${msg}: ${JSON.stringify(o)}`) }),
    damage: async (peer) => {
      const db = new Database(path);
      try {
        const row = db.prepare('SELECT profile FROM link_profiles WHERE peer = ?').get(peer) as { profile: string };
        db.prepare('UPDATE link_profiles SET profile = ? WHERE peer = ?').run(
          JSON.stringify({ ...JSON.parse(row.profile), requestsInFlight: -3 }),
          peer,
        );
      } finally {
        db.close();
      }
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('link profiles of earlier versions in SQLite', () => {
  const T0 = Date.UTC(2026, 11, 1);
  /** A profile as version 1 wrote it: no version field, no rttMs. */
  const v1 = {
    peer: 'b',
    url: 'http://127.0.0.1:8042/',
    direction: 'push',
    requestsInFlight: 16,
    bytesPerSecond: 9e6,
    windows: 4,
    spanBytes: 1 << 20,
    compression: { codec: 'gzip', level: 1 },
    measuredAt: T0,
  };
  const key = { peer: 'b', url: v1.url, direction: 'push' } as const;

  /** Opens a store on a fresh file, writes `profile` as its row by hand, and reads it back through the store. */
  async function readBack(profile: object): Promise<{ got: unknown; warnings: string[]; written?: unknown }> {
    const dir = await mkdtemp(join(tmpdir(), 'dx-links-v1-'));
    const path = join(dir, 'link-profiles.sqlite');
    const warnings: string[] = [];
    try {
      const store = SqliteLinkProfiles.open(path, { warn: (o, msg) => void warnings.push(`${msg}: ${JSON.stringify(o)}`) });
      store.close();
      const db = new Database(path);
      db.prepare('INSERT INTO link_profiles (peer, url, direction, profile, measured_at) VALUES (?, ?, ?, ?, ?)').run(
        key.peer,
        key.url,
        key.direction,
        JSON.stringify(profile),
        T0,
      );
      db.close();
      const again = SqliteLinkProfiles.open(path, { warn: (o, msg) => void warnings.push(`${msg}: ${JSON.stringify(o)}`) });
      try {
        const got = await again.get(key, T0 + 1000);
        if (got) await again.put({ ...got, measuredAt: T0 + 2000 });
        const row = new Database(path, { readonly: true });
        const written = JSON.parse((row.prepare('SELECT profile FROM link_profiles').get() as { profile: string }).profile) as unknown;
        row.close();
        return { got, warnings, written };
      } finally {
        again.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  test('a row of version 1 (no rttMs) still loads, with no round-trip time; written again, it is of the current version', async () => {
    const { got, warnings, written } = await readBack(v1);
    assert.deepEqual(got, { ...v1, version: 1, rttMs: null });
    assert.deepEqual(warnings, []);
    assert.equal((written as { version: number }).version, LINK_PROFILE_VERSION);
  });

  test('a row of a version this node does not know is ignored with a warning', async () => {
    const { got, warnings } = await readBack({ ...v1, version: LINK_PROFILE_VERSION + 1, rttMs: 12 });
    assert.equal(got, undefined);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /link profile ignored.*version/);
  });
});
