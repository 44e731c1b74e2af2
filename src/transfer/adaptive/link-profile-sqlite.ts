// The link profiles of a node in <StorageDirectory>/link-profiles.sqlite: one row per peer, URL and
// direction, the profile as checked JSON (a damaged row is reported and ignored, never used), written in the
// current version of its form; a row of an earlier version reads with what it lacks at its default.
import { openSqlite, type Sqlite } from '../../util/sqlite.ts';
import { readStored } from '../../util/stored-json.ts';
import {
  LINK_PROFILE_MAX_AGE_MS,
  LINK_PROFILE_VERSION,
  LinkProfileSchema,
  profileFits,
  type LinkKey,
  type LinkProfile,
  type LinkProfileStore,
} from './link-profile.ts';

/** Where a damaged row is reported (the node's logger). */
export interface WarnLog {
  warn(fields: object, message: string): void;
}

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE link_profiles (
    peer TEXT NOT NULL,
    url TEXT NOT NULL,
    direction TEXT NOT NULL,
    profile TEXT NOT NULL,
    measured_at INTEGER NOT NULL,
    PRIMARY KEY (peer, url, direction)
  ) WITHOUT ROWID;
  `,
];

export class SqliteLinkProfiles implements LinkProfileStore {
  readonly #db: Sqlite;
  readonly #log: WarnLog;

  private constructor(db: Sqlite, log: WarnLog) {
    this.#db = db;
    this.#log = log;
  }

  static open(path: string, log: WarnLog): SqliteLinkProfiles {
    return new SqliteLinkProfiles(openSqlite(path, MIGRATIONS), log);
  }

  async get(key: LinkKey, now: number = Date.now()): Promise<LinkProfile | undefined> {
    const row = this.#db
      .prepare('SELECT profile FROM link_profiles WHERE peer = ? AND url = ? AND direction = ?')
      .get(key.peer, key.url, key.direction) as { profile: unknown } | undefined;
    if (!row) return undefined;
    let p: LinkProfile;
    try {
      p = readStored(LinkProfileSchema, String(row.profile), `the link profile of peer "${key.peer}" (${key.direction})`);
    } catch (e) {
      // A damaged profile costs the transfer its head start, nothing more.
      this.#log.warn({ peer: key.peer, direction: key.direction, err: e instanceof Error ? e.message : String(e) }, 'link profile ignored');
      return undefined;
    }
    return profileFits(p, key, now) ? p : undefined;
  }

  async put(p: LinkProfile): Promise<void> {
    const text = JSON.stringify(LinkProfileSchema.parse({ ...p, version: LINK_PROFILE_VERSION }));
    this.#db.transaction(() => {
      this.#db
        .prepare(
          `INSERT INTO link_profiles (peer, url, direction, profile, measured_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (peer, url, direction) DO UPDATE SET profile = excluded.profile, measured_at = excluded.measured_at`,
        )
        .run(p.peer, p.url, p.direction, text, p.measuredAt);
      // Profiles too old to be used are dropped as new ones come (peers renamed or pointed elsewhere).
      this.#db.prepare('DELETE FROM link_profiles WHERE measured_at < ?').run(p.measuredAt - LINK_PROFILE_MAX_AGE_MS);
    })();
  }

  close(): void {
    this.#db.close();
  }
}
