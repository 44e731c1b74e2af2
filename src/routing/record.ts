// The recording half of the route engine: each arrival written with its origin and matched against the
// rules once per rule and instance, in one SQLite transaction, before the ingest path answers its client.
// An arrival whose main tags cannot be read now (an Orthanc store that does not answer) is recorded as
// waiting for its match, and matched again at the next pass: routing loses nothing to a store's hiccup.
import type { Logger } from 'pino';
import { z } from 'zod';
import type { RouteRuleConfig } from '../config/types.ts';
import type { InstanceTags, Store } from '../store/types.ts';
import { mapLimit } from '../util/concurrency.ts';
import type { Arrival, ArrivalOrigin } from './arrivals.ts';
import type { RoutesDb } from './db.ts';
import { ruleMatches } from './match.ts';
import type { RuleSet } from './rules.ts';

/** Reads of the store's main tags at once while recording a batch of arrivals. */
const TAG_READS = 8;
/** Arrivals matched again per pass, at most. */
const RETRY_BATCH = 500;

const MatchRow = z.object({ state: z.string() });
const PendingRow = z.object({
  instance: z.string(),
  origin: z.enum(['dicom', 'rest', 'peer']),
  peer: z.string().nullable(),
  calling_aet: z.string().nullable(),
  called_aet: z.string().nullable(),
  remote_ip: z.string().nullable(),
  http_user: z.string().nullable(),
  pending_match: z.number().int(),
});

/** The origin of a recorded arrival, as it was announced. */
function originOf(r: z.output<typeof PendingRow>): ArrivalOrigin {
  if (r.origin === 'peer') return { kind: 'peer', peer: r.peer ?? '' };
  if (r.origin === 'dicom')
    return { kind: 'dicom', callingAet: r.calling_aet ?? '', calledAet: r.called_aet ?? '', remoteIp: r.remote_ip ?? '' };
  return {
    kind: 'rest',
    ...(r.remote_ip !== null ? { remoteIp: r.remote_ip } : {}),
    ...(r.http_user !== null ? { user: r.http_user } : {}),
  };
}

export class ArrivalRecorder {
  readonly #db: RoutesDb;
  readonly #rules: RuleSet;
  readonly #store: Store;
  readonly #log: Logger;
  readonly #matched: (rule: string, count: number) => void;
  #retrying = false;

  constructor(db: RoutesDb, rules: RuleSet, store: Store, log: Logger, matched: (rule: string, count: number) => void) {
    this.#db = db;
    this.#rules = rules;
    this.#store = store;
    this.#log = log;
    this.#matched = matched;
  }

  /** The main tags of each arrival (outside the transaction); 'later' when the store could not answer. */
  async #tags(arrivals: readonly Arrival[]): Promise<(InstanceTags | undefined | 'later')[]> {
    const read = this.#store.mainTags?.bind(this.#store);
    if (this.#rules.all().length === 0 || !read) return arrivals.map(() => undefined);
    return mapLimit(arrivals, TAG_READS, async (a) => {
      try {
        return await read(a.instanceId);
      } catch (e) {
        this.#log.warn({ instance: a.instanceId, err: String(e) }, 'routing: main tags unreadable now, the instance is matched later');
        return 'later' as const;
      }
    });
  }

  /** Records arrivals and their matches; durable on return. Answers the rules that matched something. */
  async record(arrivals: readonly Arrival[]): Promise<Set<string>> {
    const tags = await this.#tags(arrivals);
    const now = Date.now();
    const counts = new Map<string, number>();
    const write = this.#db.prepare(
      `INSERT INTO arrivals (instance, origin, peer, calling_aet, called_aet, remote_ip, http_user, received_at, pending_match)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(instance) DO ${
         'UPDATE SET origin = excluded.origin, peer = excluded.peer, ' +
         'calling_aet = excluded.calling_aet, called_aet = excluded.called_aet, remote_ip = excluded.remote_ip, ' +
         'http_user = excluded.http_user, received_at = excluded.received_at WHERE ?'
       }`,
    );
    const later = this.#db.prepare('UPDATE arrivals SET pending_match = ? WHERE instance = ?');
    this.#db.transaction(() => {
      for (const [i, a] of arrivals.entries()) {
        const o = a.origin;
        write.run(
          a.instanceId,
          o.kind,
          o.kind === 'peer' ? o.peer : null,
          o.kind === 'dicom' ? o.callingAet : null,
          o.kind === 'dicom' ? o.calledAet : null,
          o.kind === 'peer' ? null : (o.remoteIp ?? null),
          o.kind === 'rest' ? (o.user ?? null) : null,
          now,
          a.alreadyStored ? 0 : 1,
        );
        const t = tags[i];
        if (t === 'later') later.run(a.alreadyStored ? 1 : 0, a.instanceId);
        else if (t) this.#match(a, t, now, counts);
      }
    })();
    for (const [rule, n] of counts) this.#matched(rule, n);
    return new Set(counts.keys());
  }

  /**
   * Matches one arrival against every rule (inside the caller's transaction): a new match waits for its
   * group; an instance already matched by a rule is not matched again, unless it arrived anew (not
   * alreadyStored) after its earlier send ended: then it is a new copy to send.
   */
  #match(a: Arrival, t: InstanceTags, now: number, counts: Map<string, number>): void {
    const existing = this.#db.prepare('SELECT state FROM matches WHERE rule = ? AND instance = ?');
    for (const rule of this.#rules.all()) {
      if (!ruleMatches(rule, a.origin, t.tags)) continue;
      const group = groupOf(rule, t);
      const had = existing.get(rule.Name, a.instanceId);
      if (had === undefined) {
        this.#db
          .prepare("INSERT INTO matches (rule, instance, group_key, state, batch, matched_at) VALUES (?, ?, ?, 'waiting', NULL, ?)")
          .run(rule.Name, a.instanceId, group, now);
      } else if (!a.alreadyStored && ['sent', 'failed'].includes(MatchRow.parse(had).state)) {
        this.#db
          .prepare("UPDATE matches SET state = 'waiting', batch = NULL, group_key = ?, matched_at = ? WHERE rule = ? AND instance = ?")
          .run(group, now, rule.Name, a.instanceId);
      } else continue;
      counts.set(rule.Name, (counts.get(rule.Name) ?? 0) + 1);
    }
  }

  /** Matches again the arrivals whose tags could not be read when they came (one pass at a time). */
  async retryPending(): Promise<Set<string>> {
    if (this.#retrying) return new Set();
    this.#retrying = true;
    try {
      const rows = this.#db
        .prepare('SELECT * FROM arrivals WHERE pending_match IS NOT NULL LIMIT ?')
        .all(RETRY_BATCH)
        .map((r) => PendingRow.parse(r));
      if (rows.length === 0) return new Set();
      const arrivals: Arrival[] = rows.map((r) => ({ instanceId: r.instance, origin: originOf(r), alreadyStored: r.pending_match === 1 }));
      const tags = await this.#tags(arrivals);
      const now = Date.now();
      const counts = new Map<string, number>();
      this.#db.transaction(() => {
        for (const [i, a] of arrivals.entries()) {
          const t = tags[i];
          if (t === 'later') continue;
          // Gone from the store meanwhile (undefined): nothing to send.
          if (t) this.#match(a, t, now, counts);
          this.#db.prepare('UPDATE arrivals SET pending_match = NULL WHERE instance = ?').run(a.instanceId);
        }
      })();
      for (const [rule, n] of counts) this.#matched(rule, n);
      return new Set(counts.keys());
    } finally {
      this.#retrying = false;
    }
  }
}

/** The group a rule gathers an instance into: its study, its series, or itself. */
function groupOf(rule: RouteRuleConfig, t: InstanceTags): string {
  return rule.When === 'StableStudy' ? t.ids.study : rule.When === 'StableSeries' ? t.ids.series : t.ids.instance;
}
