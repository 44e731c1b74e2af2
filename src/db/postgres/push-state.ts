// The push transactions' state on PostgreSQL (tables of migration 3): each transaction's manifest (the
// create body in its wire form, checked by the same codec as the files' one), the buckets received, and the
// commits' outcomes, so that any node sharing the database can answer for a transaction.
import type pg from 'pg';
import { z } from 'zod';
import { isXferError, XferError } from '../../errors.ts';
import { manifestCodec, type Manifest } from '../../transfer/push-state/files.ts';
import {
  commitOutcomeCodec,
  OUTCOME_RETENTION_MS,
  type CommitOutcome,
  type NewPushTransaction,
  type PushTransactionState,
  type ReloadedPushTransaction,
  type StoredPushTransaction,
} from '../../transfer/push-state/types.ts';
import { inTransaction } from './pool.ts';

/** Most outcomes kept (the oldest go first beyond this), as with the files. */
const MAX_OUTCOMES = 10_000;

const TxRow = z.object({ id: z.string(), manifest: z.string(), last_activity: z.number().int(), buckets: z.array(z.number().int()) });
const OutcomeRow = z.object({ outcome: z.string() });

export class PgPushState implements PushTransactionState {
  readonly #pool: pg.Pool;
  readonly #retentionMs: number;
  readonly #maxOutcomes: number;

  constructor(pool: pg.Pool, opts: { retentionMs?: number; maxOutcomes?: number } = {}) {
    this.#pool = pool;
    this.#retentionMs = opts.retentionMs ?? OUTCOME_RETENTION_MS;
    this.#maxOutcomes = Math.max(1, opts.maxOutcomes ?? MAX_OUTCOMES);
  }

  async create(tx: NewPushTransaction): Promise<void> {
    const manifest: Manifest = { Version: 1, ID: tx.id, CreatedAt: tx.createdAt, LastActivity: tx.createdAt, Create: tx.create };
    await this.#pool.query('INSERT INTO push_transactions (id, manifest, last_activity) VALUES ($1, $2, $3)', [
      tx.id,
      manifestCodec.toJSON(manifest),
      tx.createdAt,
    ]);
  }

  async recordBuckets(id: string, indexes: readonly number[], at: number): Promise<void> {
    await inTransaction(this.#pool, async (c) => {
      // A refused transaction (its manifest unreadable) is never resumed: its buckets are not recorded.
      const tx = await c.query(
        'UPDATE push_transactions SET last_activity = GREATEST(last_activity, $2) WHERE id = $1 AND NOT refused RETURNING id',
        [id, at],
      );
      if (tx.rowCount === 0) throw new XferError('UnknownResource', `no push transaction ${id}`);
      if (indexes.length > 0) {
        await c.query('INSERT INTO push_buckets (tx, idx) SELECT $1, unnest($2::int[]) ON CONFLICT DO NOTHING', [id, indexes]);
      }
    });
  }

  async list(): Promise<ReloadedPushTransaction[]> {
    const r = await this.#pool.query(
      `SELECT t.id, t.manifest, t.last_activity,
              COALESCE(array_agg(b.idx ORDER BY b.idx) FILTER (WHERE b.idx IS NOT NULL), '{}') AS buckets
       FROM push_transactions t LEFT JOIN push_buckets b ON b.tx = t.id
       WHERE NOT EXISTS (SELECT 1 FROM push_outcomes o WHERE o.id = t.id)
       GROUP BY t.id ORDER BY t.last_activity, t.id`,
    );
    const found: ReloadedPushTransaction[] = [];
    const refused: ReloadedPushTransaction[] = [];
    for (const raw of r.rows) {
      const id = String((raw as { id: unknown }).id);
      try {
        found.push({ ok: true, tx: readTx(raw) });
      } catch (e) {
        await this.#pool.query('UPDATE push_transactions SET refused = true WHERE id = $1', [id]);
        refused.push({ ok: false, id, reason: isXferError(e) ? (e.details ?? e.message) : String(e) });
      }
    }
    return [...found, ...refused];
  }

  async delete(id: string): Promise<void> {
    await this.#pool.query('DELETE FROM push_transactions WHERE id = $1', [id]);
  }

  async finishCommit(o: CommitOutcome): Promise<void> {
    const text = commitOutcomeCodec.toJSON(o);
    await inTransaction(this.#pool, async (c) => {
      await c.query(
        `INSERT INTO push_outcomes (id, outcome, at) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, at = excluded.at`,
        [o.ID, text, o.At],
      );
      await c.query('DELETE FROM push_transactions WHERE id = $1', [o.ID]);
    });
  }

  async outcome(id: string): Promise<CommitOutcome | undefined> {
    const [raw] = (await this.#pool.query('SELECT outcome FROM push_outcomes WHERE id = $1', [id])).rows;
    if (raw === undefined) return undefined;
    try {
      return commitOutcomeCodec.fromJSON(OutcomeRow.parse(raw).outcome);
    } catch {
      // An unreadable outcome is as none: the sender's commit then meets an unknown transaction.
      return undefined;
    }
  }

  async pruneOutcomes(now: number): Promise<void> {
    await this.#pool.query('DELETE FROM push_outcomes WHERE at < $1', [now - this.#retentionMs]);
    await this.#pool.query('DELETE FROM push_outcomes WHERE id IN (SELECT id FROM push_outcomes ORDER BY at DESC, id OFFSET $1)', [
      this.#maxOutcomes,
    ]);
  }

  async close(): Promise<void> {
    // The pool belongs to the node's database (src/db/postgres/database.ts), closed with it.
  }
}

/** A stored transaction read back through the manifest's codec; BadFileFormat naming the field when damaged. */
function readTx(raw: unknown): StoredPushTransaction {
  const row = TxRow.safeParse(raw);
  if (!row.success) throw new XferError('BadFileFormat', `push transaction row: ${row.error.issues[0]?.message ?? 'invalid'}`);
  const manifest = manifestCodec.fromJSON(row.data.manifest);
  if (manifest.ID !== row.data.id) throw new XferError('BadFileFormat', `manifest of another transaction (${manifest.ID})`);
  const count = manifest.Create.Buckets.length;
  return {
    id: row.data.id,
    createdAt: manifest.CreatedAt,
    lastActivity: Math.max(manifest.LastActivity, row.data.last_activity),
    create: manifest.Create,
    buckets: row.data.buckets.filter((b) => b < count),
  };
}
