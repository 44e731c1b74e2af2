// The link-profile contract on the SQLite store of a node (link-profiles.sqlite), on a real file.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteLinkProfiles } from '../../src/transfer/adaptive/link-profile-sqlite.ts';
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
