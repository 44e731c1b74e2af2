// The link profiles on PostgreSQL: one row per peer, URL and direction, the profile as checked JSON text (a
// damaged row is reported and ignored, never used), as in the SQLite store.
import type pg from 'pg';
import {
  LINK_PROFILE_MAX_AGE_MS,
  LinkProfileSchema,
  profileFits,
  type LinkKey,
  type LinkProfile,
  type LinkProfileStore,
} from '../../transfer/adaptive/link-profile.ts';
import type { WarnLog } from '../../transfer/adaptive/link-profile-sqlite.ts';
import { readStored } from '../../util/stored-json.ts';
import { inTransaction } from './pool.ts';

export class PgLinkProfiles implements LinkProfileStore {
  readonly #pool: pg.Pool;
  readonly #log: WarnLog;

  constructor(pool: pg.Pool, log: WarnLog) {
    this.#pool = pool;
    this.#log = log;
  }

  async get(key: LinkKey, now: number = Date.now()): Promise<LinkProfile | undefined> {
    const r = await this.#pool.query<{ profile: unknown }>(
      'SELECT profile FROM link_profiles WHERE peer = $1 AND url = $2 AND direction = $3',
      [key.peer, key.url, key.direction],
    );
    const row = r.rows[0];
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
    const text = JSON.stringify(LinkProfileSchema.parse(p));
    await inTransaction(this.#pool, async (c) => {
      await c.query(
        `INSERT INTO link_profiles (peer, url, direction, profile, measured_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (peer, url, direction) DO UPDATE SET profile = excluded.profile, measured_at = excluded.measured_at`,
        [p.peer, p.url, p.direction, text, p.measuredAt],
      );
      // Profiles too old to be used are dropped as new ones come (peers renamed or pointed elsewhere).
      await c.query('DELETE FROM link_profiles WHERE measured_at < $1', [p.measuredAt - LINK_PROFILE_MAX_AGE_MS]);
    });
  }
}
