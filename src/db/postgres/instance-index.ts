// The embedded store's index on PostgreSQL (tables of migration 2): the same resources, instances and journal
// of files as the SQLite index, each method one statement or one transaction, rows checked before use.
import type pg from 'pg';
import { z } from 'zod';
import type { Level, MainTags } from '../../dicom/types.ts';
import type {
  AdoptResult,
  IndexCounts,
  IndexEntry,
  IndexedInstance,
  IndexedResource,
  InstanceIndex,
  ReplacePolicy,
} from '../../store/embedded/instance-index.ts';
import { inTransaction } from './pool.ts';
import {
  CountRow,
  checked,
  FileRow,
  IdRow,
  LEVEL_NUM,
  ParentRow,
  SeqRow,
  toInstance,
  toResource,
} from '../../store/embedded/index-rows.ts';

const RESOURCE = 'SELECT r.*, p.id AS parent_id FROM resources r LEFT JOIN resources p ON p.seq = r.parent';
const INSTANCE =
  'SELECT r.id AS id, i.file AS file, i.size AS size, i.md5 AS md5, i.index_in_series AS index_in_series FROM resources r ' +
  'JOIN instances i ON i.seq = r.seq';
const SUBTREE = 'WITH RECURSIVE sub(seq) AS (SELECT $1::bigint UNION ALL SELECT r.seq FROM resources r JOIN sub ON r.parent = sub.seq)';

/** Anything that runs a query: the pool, or the one connection of a transaction. */
type Queryable = pg.Pool | pg.PoolClient;

async function rows(q: Queryable, sql: string, params: unknown[] = []): Promise<unknown[]> {
  return (await q.query(sql, params)).rows;
}

async function seqOf(q: Queryable, id: string, level?: Level): Promise<number | undefined> {
  const [raw] =
    level === undefined
      ? await rows(q, 'SELECT seq FROM resources WHERE id = $1', [id])
      : await rows(q, 'SELECT seq FROM resources WHERE id = $1 AND level = $2', [id, LEVEL_NUM[level]]);
  return raw === undefined ? undefined : checked(SeqRow, raw, id).seq;
}

export class PgInstanceIndex implements InstanceIndex {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async resource(id: string, level?: Level): Promise<IndexedResource | undefined> {
    const [raw] =
      level === undefined
        ? await rows(this.#pool, `${RESOURCE} WHERE r.id = $1`, [id])
        : await rows(this.#pool, `${RESOURCE} WHERE r.id = $1 AND r.level = $2`, [id, LEVEL_NUM[level]]);
    return raw === undefined ? undefined : toResource(raw);
  }

  async instance(id: string): Promise<IndexedInstance | undefined> {
    const [raw] = await rows(this.#pool, `${INSTANCE} WHERE r.id = $1`, [id]);
    return raw === undefined ? undefined : toInstance(raw);
  }

  async instances(ids: readonly string[]): Promise<Map<string, IndexedInstance>> {
    const out = new Map<string, IndexedInstance>();
    if (ids.length === 0) return out;
    const found = new Map<string, IndexedInstance>();
    for (const raw of await rows(this.#pool, `${INSTANCE} WHERE r.id = ANY($1::text[])`, [ids])) {
      const inst = toInstance(raw);
      found.set(inst.id, inst);
    }
    // In the order asked, as the SQLite index answers.
    for (const id of ids) {
      const inst = found.get(id);
      if (inst) out.set(id, inst);
    }
    return out;
  }

  async instancesUnder(level: Level, id: string): Promise<IndexedResource[] | undefined> {
    const seq = await seqOf(this.#pool, id, level);
    if (seq === undefined) return undefined;
    const found = await rows(
      this.#pool,
      `${SUBTREE} SELECT r.*, p.id AS parent_id FROM sub JOIN resources r ON r.seq = sub.seq
       LEFT JOIN resources p ON p.seq = r.parent WHERE r.level = 3 ORDER BY r.seq`,
      [seq],
    );
    return found.map(toResource);
  }

  async instanceIdsUnder(level: Level, id: string): Promise<string[] | undefined> {
    const seq = await seqOf(this.#pool, id, level);
    if (seq === undefined) return undefined;
    const found = await rows(
      this.#pool,
      `${SUBTREE} SELECT r.id FROM sub JOIN resources r ON r.seq = sub.seq WHERE r.level = 3 ORDER BY r.seq`,
      [seq],
    );
    return found.map((r) => checked(IdRow, r, 'a resource').id);
  }

  async children(level: Level, id: string): Promise<IndexedResource[] | undefined> {
    const seq = await seqOf(this.#pool, id, level);
    if (seq === undefined) return undefined;
    return (await rows(this.#pool, `${RESOURCE} WHERE r.parent = $1 ORDER BY r.seq`, [seq])).map(toResource);
  }

  async list(level: Level, since: number, limit: number): Promise<string[]> {
    const found = await rows(this.#pool, 'SELECT id FROM resources WHERE level = $1 ORDER BY seq LIMIT $2 OFFSET $3', [
      LEVEL_NUM[level],
      limit > 0 ? limit : null,
      since,
    ]);
    return found.map((r) => checked(IdRow, r, 'a resource').id);
  }

  async all(level: Level, order: 'stored' | 'id'): Promise<IndexedResource[]> {
    // COLLATE "C": IDs sorted by their bytes, as SQLite sorts them.
    const by = order === 'id' ? 'r.id COLLATE "C"' : 'r.seq';
    return (await rows(this.#pool, `${RESOURCE} WHERE r.level = $1 ORDER BY ${by}`, [LEVEL_NUM[level]])).map(toResource);
  }

  async counts(): Promise<IndexCounts> {
    const [raw] = await rows(
      this.#pool,
      `SELECT
         (SELECT COUNT(*) FROM resources WHERE level = 0) AS patients,
         (SELECT COUNT(*) FROM resources WHERE level = 1) AS studies,
         (SELECT COUNT(*) FROM resources WHERE level = 2) AS series,
         (SELECT COUNT(*) FROM resources WHERE level = 3) AS instances,
         (SELECT COALESCE(SUM(size), 0)::bigint FROM instances) AS bytes`,
    );
    const n = z.number().int().nonnegative();
    return checked(z.object({ patients: n, studies: n, series: n, instances: n, bytes: n }), raw, 'counts');
  }

  async journal(files: readonly string[], now: number): Promise<void> {
    if (files.length === 0) return;
    await this.#pool.query('INSERT INTO pending_files (file, since) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING', [files, now]);
  }

  async unjournal(files: readonly string[]): Promise<void> {
    if (files.length === 0) return;
    await this.#pool.query('DELETE FROM pending_files WHERE file = ANY($1::text[])', [files]);
  }

  async takeOrphans(): Promise<string[]> {
    return inTransaction(this.#pool, async (c) => {
      const taken = await rows(c, 'DELETE FROM pending_files RETURNING file');
      const pending = taken.map((r) => checked(FileRow, r, 'the journal').file);
      if (pending.length === 0) return [];
      const referenced = new Set(
        (await rows(c, 'SELECT file FROM instances WHERE file = ANY($1::text[])', [pending])).map(
          (r) => checked(FileRow, r, 'an instance').file,
        ),
      );
      return pending.filter((f) => !referenced.has(f));
    });
  }

  async adopt(entries: readonly IndexEntry[], replace: ReplacePolicy, now: number): Promise<AdoptResult> {
    return inTransaction(this.#pool, async (c) => {
      const out: AdoptResult = { adopted: [], kept: [], replaced: [] };
      for (const e of entries) {
        const [existing] = await rows(c, `${INSTANCE} WHERE r.id = $1`, [e.ids.instance]);
        const old = existing === undefined ? undefined : toInstance(existing);
        if (old && (replace === 'never' || (replace === 'if-different' && old.md5 === e.md5))) {
          out.kept.push({ id: e.ids.instance, file: e.file });
          continue;
        }
        await indexInstance(c, e, now);
        await c.query('DELETE FROM pending_files WHERE file = $1', [e.file]);
        out.adopted.push(e.ids.instance);
        if (old) {
          out.replaced.push(old.file);
          await c.query('INSERT INTO pending_files (file, since) VALUES ($1, $2) ON CONFLICT DO NOTHING', [old.file, now]);
        }
      }
      return out;
    });
  }

  async remove(level: Level, id: string, now: number): Promise<{ files: string[]; remaining: IndexedResource | undefined } | undefined> {
    return inTransaction(this.#pool, async (c) => {
      const [raw] = await rows(c, 'SELECT seq, parent FROM resources WHERE id = $1 AND level = $2 FOR UPDATE', [id, LEVEL_NUM[level]]);
      if (raw === undefined) return undefined;
      const row = checked(ParentRow, raw, id);
      const under = (await rows(c, `${SUBTREE} SELECT seq FROM sub`, [row.seq])).map((r) => checked(SeqRow, r, id).seq);
      const files = (await rows(c, 'SELECT file FROM instances WHERE seq = ANY($1::bigint[]) ORDER BY seq', [under])).map(
        (r) => checked(FileRow, r, id).file,
      );
      if (files.length > 0) {
        await c.query('INSERT INTO pending_files (file, since) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING', [files, now]);
      }
      await c.query('DELETE FROM instances WHERE seq = ANY($1::bigint[])', [under]);
      // Children first (foreign keys point upwards): deepest levels first.
      await c.query('DELETE FROM resources WHERE seq = ANY($1::bigint[]) AND level = 3', [under]);
      for (const lv of [2, 1, 0]) await c.query('DELETE FROM resources WHERE seq = ANY($1::bigint[]) AND level = $2', [under, lv]);
      return { files, remaining: await pruneAncestors(c, row.parent) };
    });
  }

  async close(): Promise<void> {
    // The pool belongs to the node's database (src/db/postgres/database.ts), closed with it.
  }
}

/** The four levels of one instance: inserted, or refreshed when there (the instance's row replaced). */
async function indexInstance(c: pg.PoolClient, e: IndexEntry, now: number): Promise<void> {
  const upsert = async (level: Level, id: string, parent: number | null, tags: MainTags, patientTags?: MainTags): Promise<number> => {
    const seq = await seqOf(c, id);
    if (seq !== undefined) {
      await c.query('UPDATE resources SET last_update = $1 WHERE seq = $2', [now, seq]);
      return seq;
    }
    const [r] = await rows(
      c,
      'INSERT INTO resources (id, level, parent, main_tags, patient_tags, last_update) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq',
      [id, LEVEL_NUM[level], parent, JSON.stringify(tags), patientTags ? JSON.stringify(patientTags) : null, now],
    );
    return checked(SeqRow, r, id).seq;
  };
  const p = await upsert('Patient', e.ids.patient, null, e.tags.Patient);
  const st = await upsert('Study', e.ids.study, p, e.tags.Study, e.tags.Patient);
  const se = await upsert('Series', e.ids.series, st, e.tags.Series);
  const existing = await seqOf(c, e.ids.instance, 'Instance');
  if (existing !== undefined) {
    await c.query(
      'UPDATE instances SET file = $1, size = $2, md5 = $3, transfer_syntax = $4, sop_class = $5, index_in_series = $6, received = $7 ' +
        'WHERE seq = $8',
      [e.file, e.size, e.md5, e.transferSyntax, e.sopClass, e.indexInSeries, now, existing],
    );
    await c.query('UPDATE resources SET main_tags = $1, last_update = $2 WHERE seq = $3', [JSON.stringify(e.tags.Instance), now, existing]);
    return;
  }
  const inst = await upsert('Instance', e.ids.instance, se, e.tags.Instance);
  await c.query(
    'INSERT INTO instances (seq, file, size, md5, transfer_syntax, sop_class, index_in_series, received) ' +
      'VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
    [inst, e.file, e.size, e.md5, e.transferSyntax, e.sopClass, e.indexInSeries, now],
  );
}

/** Removes the ancestors left without children, from `parentSeq` up; answers the first one kept. */
async function pruneAncestors(c: pg.PoolClient, parentSeq: number | null): Promise<IndexedResource | undefined> {
  for (let s = parentSeq, i = 0; s !== null && i < 4; i++) {
    const [raw] = await rows(c, 'SELECT seq, parent FROM resources WHERE seq = $1', [s]);
    if (raw === undefined) return undefined;
    const row = checked(ParentRow, raw, 'a parent');
    const [left] = await rows(c, 'SELECT COUNT(*)::int AS n FROM resources WHERE parent = $1', [row.seq]);
    if (checked(CountRow, left, 'a parent').n > 0) return toResource((await rows(c, `${RESOURCE} WHERE r.seq = $1`, [row.seq]))[0]);
    await c.query('DELETE FROM resources WHERE seq = $1', [row.seq]);
    s = row.parent;
  }
  return undefined;
}
