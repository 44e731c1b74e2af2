// The route engine: the ArrivalSink of every ingest path. Each arrival is recorded with its origin and
// matched against the rules once per rule and instance, in one SQLite transaction before the ingest path
// answers its client; a timer gathers the matches of a group (study, series) once it is stable into a
// batch, sends the batch as one job per destination through the jobs engine, follows each job to its end,
// falls back to the rule's Alternate once, and deletes what was sent when the rule says so.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { RouteRuleConfig } from '../config/types.ts';
import type { JobsEngine } from '../jobs/engine.ts';
import type { Store } from '../store/types.ts';
import type { Arrival, ArrivalSink } from './arrivals.ts';
import type { RoutesDb } from './db.ts';
import { ArrivalRecorder } from './record.ts';
import { arrivalMetadata, routeFigures, type RouteFigures } from './figures.ts';
import { destinationKind, isDestinationKind, ruleProblem, type RouteTargets, type RuleSet } from './rules.ts';
import { findJobByKey, submitSend, type SendPlan } from './submit.ts';

/** What the route engine counts, for the metrics (per rule and destination). */
export interface RouteObserver {
  matched(rule: string, count: number): void;
  sent(rule: string, destination: string, instances: number): void;
  failed(rule: string, destination: string, instances: number): void;
}

export interface RouteEngineOptions {
  db: RoutesDb;
  rules: RuleSet;
  store: Store;
  targets: RouteTargets;
  /** Seconds without a new instance after which a study or series is sent (StableAge). */
  stableAgeSeconds: number;
  logger: Logger;
  observer?: RouteObserver;
}

const SendRow = z.object({
  batch: z.number().int(),
  destination: z.string(),
  alternate: z.number().int(),
  state: z.string(),
  job: z.string().nullable(),
});
type Send = z.output<typeof SendRow>;
const BatchRow = z.object({ id: z.number().int(), rule: z.string(), alternate: z.number().int(), state: z.string() });
const GroupRow = z.object({ rule: z.string(), group_key: z.string(), last: z.number() });
const InstanceRow = z.object({ instance: z.string() });

/** The key a job carries (Content.RouteBatch) to be found again after a crash: batch and destination. */
export const sendKey = (batch: number, destination: string): string => `${batch}/${destination}`;

export class RouteEngine implements ArrivalSink {
  readonly #o: RouteEngineOptions;
  readonly #db: RoutesDb;
  readonly #recorder: ArrivalRecorder;
  #jobs: JobsEngine | undefined;
  /** Job ID → the send it carries. */
  readonly #following = new Map<string, { batch: number; destination: string }>();
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #closed = false;

  constructor(opts: RouteEngineOptions) {
    this.#o = opts;
    this.#db = opts.db;
    this.#recorder = new ArrivalRecorder(opts.db, opts.rules, opts.store, opts.logger, (rule, n) => opts.observer?.matched(rule, n));
  }

  get rules(): RuleSet {
    return this.#o.rules;
  }

  /** A rule's queue, jobs and last error (GET /routes). */
  figures(rule: string): RouteFigures {
    return routeFigures(this.#db, rule);
  }

  /** The reception metadata of an instance (GET /instances/{id}/metadata), undefined when not recorded. */
  metadata(instance: string): Record<string, string> | undefined {
    return arrivalMetadata(this.#db, instance);
  }

  /** The first problem of a rule's destinations (names that are not a peer or a modality), or undefined. */
  problem(rule: RouteRuleConfig): string | undefined {
    return ruleProblem(rule, this.#o.targets);
  }

  /**
   * Records the arrivals and their matches (record.ts); durable on return. A rule that sends each
   * instance at once gets a pass now.
   */
  async arrived(arrivals: readonly Arrival[]): Promise<void> {
    if (arrivals.length === 0) return;
    this.#afterMatch(await this.#recorder.record(arrivals));
  }

  #afterMatch(rules: ReadonlySet<string>): void {
    if ([...rules].some((name) => this.#o.rules.get(name)?.When === 'Instance')) setImmediate(() => this.#tick());
  }

  /** Starts sending: the jobs of sends an earlier run left are found again or submitted, then the timer runs. */
  start(jobs: JobsEngine): void {
    this.#jobs = jobs;
    jobs.on('change', (id: string) => this.#jobChanged(id));
    this.#recover(jobs);
    const every = Math.min(5000, Math.max(200, Math.floor((this.#o.stableAgeSeconds * 1000) / 4)));
    this.#timer = setInterval(() => this.#tick(), every);
    this.#timer.unref();
    this.#tick();
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /** Sends left by an earlier run: each one's job, found by its ID or its key, or submitted now. */
  #recover(jobs: JobsEngine): void {
    const rows = this.#db.prepare("SELECT * FROM sends WHERE state IN ('submitting', 'running')").all();
    for (const raw of rows) {
      const s = SendRow.parse(raw);
      const job = s.job !== null && jobs.has(s.job) ? s.job : findJobByKey(jobs, sendKey(s.batch, s.destination));
      if (job === undefined) {
        this.#submit(s);
        continue;
      }
      this.#db.prepare("UPDATE sends SET state = 'running', job = ? WHERE batch = ? AND destination = ?").run(job, s.batch, s.destination);
      this.#following.set(job, { batch: s.batch, destination: s.destination });
      this.#jobChanged(job);
    }
  }

  /** Makes batches of the groups that are ready and submits what waits to be submitted. Never overlaps itself. */
  #tick(): void {
    if (this.#ticking || this.#closed || !this.#jobs) return;
    this.#ticking = true;
    // Arrivals whose tags the store could not give when they came are matched again, in the background.
    void this.#recorder.retryPending().then(
      (rules) => this.#afterMatch(rules),
      (e: unknown) => this.#o.logger.error({ err: String(e) }, 'routing: matching the pending arrivals failed'),
    );
    try {
      this.#formBatches(Date.now());
      for (const raw of this.#db.prepare("SELECT * FROM sends WHERE state = 'submitting'").all()) this.#submit(SendRow.parse(raw));
    } catch (e) {
      this.#o.logger.error({ err: String(e) }, 'routing: a pass over the route queue failed');
    } finally {
      this.#ticking = false;
    }
  }

  /** Each stable group (every group of an Instance rule) becomes a batch with one send per destination, in one transaction. */
  #formBatches(now: number): void {
    const ageMs = this.#o.stableAgeSeconds * 1000;
    const groups = this.#db
      .prepare("SELECT rule, group_key, MAX(matched_at) AS last FROM matches WHERE state = 'waiting' GROUP BY rule, group_key")
      .all()
      .map((r) => GroupRow.parse(r));
    const ready = new Map<string, string[]>();
    for (const g of groups) {
      const rule = this.#o.rules.get(g.rule);
      if (!rule) continue;
      if (rule.When !== 'Instance' && g.last > now - ageMs) continue;
      ready.set(g.rule, [...(ready.get(g.rule) ?? []), g.group_key]);
    }
    for (const [name, keys] of ready) {
      const rule = this.#o.rules.get(name) as RouteRuleConfig;
      // An Instance rule sends what is ready in one batch; a stable rule one batch per group.
      const batches = rule.When === 'Instance' ? [keys] : keys.map((k) => [k]);
      for (const members of batches) this.#newBatch(rule, members, now);
    }
  }

  #newBatch(rule: RouteRuleConfig, groups: readonly string[], now: number): void {
    this.#db.transaction(() => {
      const key = groups.length === 1 ? (groups[0] as string) : '*';
      const info = this.#db
        .prepare("INSERT INTO batches (rule, group_key, state, created_at, updated_at) VALUES (?, ?, 'sending', ?, ?)")
        .run(rule.Name, key, now, now);
      const batch = Number(info.lastInsertRowid);
      const take = this.#db.prepare(
        "UPDATE matches SET state = 'batched', batch = ? WHERE rule = ? AND group_key = ? AND state = 'waiting'",
      );
      for (const g of groups) take.run(batch, rule.Name, g);
      const send = this.#db.prepare(
        "INSERT OR IGNORE INTO sends (batch, destination, alternate, state, updated_at) VALUES (?, ?, 0, 'submitting', ?)",
      );
      for (const d of rule.Send) send.run(batch, d, now);
    })();
  }

  /** Submits the job of one send and records its ID (see findJobByKey for a crash in between). */
  #submit(s: Send): void {
    const jobs = this.#jobs;
    if (!jobs || this.#closed) return;
    const batch = BatchRow.parse(this.#db.prepare('SELECT id, rule, alternate, state FROM batches WHERE id = ?').get(s.batch));
    const rule = this.#o.rules.get(batch.rule);
    const instances = this.#db
      .prepare('SELECT instance FROM matches WHERE batch = ? ORDER BY instance')
      .all(s.batch)
      .map((r) => InstanceRow.parse(r).instance);
    const kind = destinationKind(s.destination, this.#o.targets);
    let job: string;
    try {
      if (!rule) throw new Error(`the rule "${batch.rule}" was deleted`);
      if (!isDestinationKind(kind)) throw new Error(kind);
      const plan: SendPlan = { rule, destination: s.destination, kind, instances, key: sendKey(s.batch, s.destination) };
      job = submitSend(jobs, plan, randomUUID());
    } catch (e) {
      this.#sendEnded(s.batch, s.destination, e instanceof Error ? e.message : String(e));
      return;
    }
    this.#db
      .prepare("UPDATE sends SET state = 'running', job = ?, attempts = attempts + 1, updated_at = ? WHERE batch = ? AND destination = ?")
      .run(job, Date.now(), s.batch, s.destination);
    this.#following.set(job, { batch: s.batch, destination: s.destination });
    this.#o.logger.info(
      { rule: batch.rule, batch: s.batch, destination: s.destination, job, instances: instances.length },
      'routing: batch sent as a job',
    );
  }

  #jobChanged(id: string): void {
    const f = this.#following.get(id);
    const jobs = this.#jobs;
    if (!f || !jobs?.has(id)) return;
    const state = jobs.state(id);
    if (state !== 'Success' && state !== 'Failure') return;
    this.#following.delete(id);
    const details = state === 'Failure' ? String(jobs.describe(id)['ErrorDetails'] || jobs.describe(id)['ErrorDescription']) : undefined;
    try {
      this.#sendEnded(f.batch, f.destination, details);
    } catch (e) {
      this.#o.logger.error({ err: String(e), job: id }, 'routing: cannot record the end of a job');
    }
  }

  /** A send ended (error undefined: the destination confirmed). A failed send of Send brings in Alternate, once. */
  #sendEnded(batch: number, destination: string, error: string | undefined): void {
    const now = Date.now();
    const b = BatchRow.parse(this.#db.prepare('SELECT id, rule, alternate, state FROM batches WHERE id = ?').get(batch));
    const rule = this.#o.rules.get(b.rule);
    const count = this.#db.prepare('SELECT COUNT(*) AS n FROM matches WHERE batch = ?').pluck().get(batch) as number;
    let alternates: string[] = [];
    this.#db.transaction(() => {
      this.#db
        .prepare('UPDATE sends SET state = ?, last_error = ?, updated_at = ? WHERE batch = ? AND destination = ?')
        .run(error === undefined ? 'done' : 'failed', error ?? null, now, batch, destination);
      if (error !== undefined) {
        this.#db.prepare('UPDATE batches SET last_error = ?, updated_at = ? WHERE id = ?').run(`${destination}: ${error}`, now, batch);
        if (b.alternate === 0 && rule && rule.Alternate.length > 0) {
          alternates = rule.Alternate;
          this.#db.prepare('UPDATE batches SET alternate = 1 WHERE id = ?').run(batch);
          const add = this.#db.prepare(
            "INSERT OR IGNORE INTO sends (batch, destination, alternate, state, updated_at) VALUES (?, ?, 1, 'submitting', ?)",
          );
          for (const d of alternates) add.run(batch, d, now);
        }
      }
    })();
    if (error === undefined) this.#o.observer?.sent(b.rule, destination, count);
    else {
      this.#o.observer?.failed(b.rule, destination, count);
      this.#o.logger.warn({ rule: b.rule, batch, destination, err: error, alternate: alternates }, 'routing: a send failed');
    }
    if (alternates.length > 0) setImmediate(() => this.#tick());
    else this.#settle(batch, rule);
  }

  /**
   * Ends a batch once no send of it runs: done when every destination of Send confirmed, or, after a
   * failure, every Alternate did; failed otherwise.
   */
  #settle(batch: number, rule: RouteRuleConfig | undefined): void {
    const sends = this.#db
      .prepare('SELECT * FROM sends WHERE batch = ?')
      .all(batch)
      .map((r) => SendRow.parse(r));
    if (sends.some((s) => s.state === 'submitting' || s.state === 'running')) return;
    const primary = sends.filter((s) => s.alternate === 0);
    const alternate = sends.filter((s) => s.alternate === 1);
    const done = primary.every((s) => s.state === 'done') || (alternate.length > 0 && alternate.every((s) => s.state === 'done'));
    const state = done ? 'done' : 'failed';
    this.#db.transaction(() => {
      this.#db.prepare('UPDATE batches SET state = ?, updated_at = ? WHERE id = ?').run(state, Date.now(), batch);
      this.#db.prepare('UPDATE matches SET state = ? WHERE batch = ?').run(done ? 'sent' : 'failed', batch);
    })();
    if (done && rule?.DeleteAfterSend) void this.#deleteSent(batch, rule.Name);
  }

  /** DeleteAfterSend: the batch's instances that no other rule still has to send go from the store. */
  async #deleteSent(batch: number, rule: string): Promise<void> {
    const ids = this.#db
      .prepare(
        `SELECT m.instance FROM matches m WHERE m.batch = ? AND NOT EXISTS (SELECT 1 FROM matches o WHERE o.instance = m.instance
         AND o.rule <> m.rule AND o.state IN ('waiting', 'batched'))`,
      )
      .all(batch)
      .map((r) => InstanceRow.parse(r).instance);
    const del = this.#o.store.deleteInstances?.bind(this.#o.store);
    if (!del || ids.length === 0) return;
    try {
      const left = await del(ids);
      this.#o.logger.info({ rule, batch, deleted: ids.length - left.length, left: left.length }, 'routing: sent instances deleted');
    } catch (e) {
      this.#o.logger.warn({ rule, batch, err: String(e) }, 'routing: cannot delete the sent instances');
    }
  }
}
