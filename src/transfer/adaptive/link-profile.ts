// What a node learnt of the link to a peer on its last transfer there (requests in flight, rate, span size,
// compression, round-trip time), so that the next transfer to that peer starts where the link settled instead of at
// Threads. The state sits behind LinkProfileStore (SQLite in link-profile-sqlite.ts; PostgreSQL later).
import { z } from 'zod';

/** Which way the bytes went: a push and a pull between the same nodes cross different paths and senders. */
export type LinkDirection = 'push' | 'pull';

/** A profile is for one peer by its name AND its URL: a peer pointed elsewhere inherits nothing. */
export interface LinkKey {
  peer: string;
  url: string;
  direction: LinkDirection;
}

/**
 * The version of a profile as stored. 1: no round-trip time (a row of version 1 reads with rttMs null); 2:
 * rttMs measured on the transfer's small calls. A row of a later version is ignored like a damaged one.
 */
export const LINK_PROFILE_VERSION = 2;

export const LinkProfileSchema = z.object({
  version: z.union([z.literal(1), z.literal(2)]).default(1),
  peer: z.string().min(1),
  url: z.string().min(1),
  direction: z.enum(['push', 'pull']),
  /** Requests in flight the transfer settled on. */
  requestsInFlight: z.number().int().min(1).max(1_000_000),
  /** Bytes per second measured at that level (on the wire: compressed bytes when compressed). */
  bytesPerSecond: z.number().finite().positive(),
  /**
   * Measurement windows behind that rate (this transfer's and those of the profiles it started from). 0: the
   * transfer was too short for one, its rate is its average; the next one then climbs from that level
   * rather than holding it.
   */
  windows: z.number().int().nonnegative().max(1_000_000),
  /** Largest span (bytes of payload in one request) the transfer used. */
  spanBytes: z.number().int().nonnegative(),
  /** The codec of the bodies and the level chosen for them (none for a pull: the peer chooses). */
  compression: z.object({ codec: z.string().min(1).max(32), level: z.number().int().min(-100).max(100).optional() }),
  /**
   * Round-trip time in ms, when the transfer measured one: the shortest of its small calls (lookup, create,
   * chunk requests) from the request to the answer's headers, the link's delay with the least server time.
   */
  rttMs: z.number().finite().nonnegative().max(600_000).nullable().default(null),
  /** When it was measured (ms since the epoch). */
  measuredAt: z.number().int().nonnegative(),
});
export type LinkProfile = z.output<typeof LinkProfileSchema>;

/**
 * How long a profile is trusted: a week. Links change (a new line, another route, a peer moved), and a
 * transfer that starts from a stale level only loses its first seconds to measuring again, so a profile
 * is worth keeping for the repeated transfers of one working week and not much longer.
 */
export const LINK_PROFILE_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** The profiles of the links to the peers: read at a transfer's start, written at its end. */
export interface LinkProfileStore {
  /**
   * The profile of `key` if one is stored, valid, of the same URL and younger than LINK_PROFILE_MAX_AGE_MS;
   * a damaged one is reported (through the store's logger) and answers undefined, never throws.
   */
  get(key: LinkKey, now?: number): Promise<LinkProfile | undefined>;
  /** Records `profile` for its key, in place of the one before. */
  put(profile: LinkProfile): Promise<void>;
}

/** Whether `p` may start a transfer of `key` at `now`. */
export function profileFits(p: LinkProfile, key: LinkKey, now: number): boolean {
  return (
    p.peer === key.peer &&
    p.url === key.url &&
    p.direction === key.direction &&
    now - p.measuredAt <= LINK_PROFILE_MAX_AGE_MS &&
    p.measuredAt <= now + 60_000
  );
}
