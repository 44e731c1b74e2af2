// The embedded store's index in SQLite (index.sqlite, schema in db.ts). Each method is one statement or
// one transaction; large adoptions run in a worker thread on a second connection (index-writer.ts), the
// rest synchronously; rows read back are checked by schemas before use (index-rows.ts).
import type { Level, MainTags } from '../../dicom/types.ts';
import type Database from 'better-sqlite3';
import type { Db } from './db.ts';
import { IndexWriter } from './index-writer.ts';
import { CountRow, checked, FileRow, IdRow, LEVEL_NUM, ParentRow, SeqRow, toInstance, toResource } from './index-rows.ts';
import type {
  AdoptResult,
  IndexCounts,
  IndexEntry,
  IndexedInstance,
  IndexedResource,
  InstanceIndex,
  ReplacePolicy,
} from './instance-index.ts';

const RESOURCE = 'SELECT r.*, p.id AS parent_id FROM resources r LEFT JOIN resources p ON p.seq = r.parent';
const INSTANCE =
  'SELECT r.id AS id, i.file AS file, i.size AS size, i.md5 AS md5, i.index_in_series AS index_in_series FROM resources r JOIN instances ' +
  'i ON i.seq = r.seq';
const SUBTREE = 'WITH RECURSIVE sub(seq) AS (SELECT ? UNION ALL SELECT r.seq FROM resources r JOIN sub ON r.parent = sub.seq)';

/** Adoptions of at least this many entries run in the worker (below, the thread's round trip costs more than it spares). */
const WORKER_MIN = 64;

export interface SqliteIndexOptions {
  /**
   * Adoptions of at least this many entries run in a worker thread on its own connection (default 64;
   * infinite: none). Only for a database file: an in-memory one has no second connection.
   */
  workerMin?: number;
}

export class SqliteInstanceIndex implements InstanceIndex {
  readonly #db: Db;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #workerMin: number;
  readonly #writer: IndexWriter | undefined;
  /**
   * Every write, in order. A write on this connection while the worker holds the database's write lock
   * would wait in SQLite's busy handler, the event loop frozen: writes queue here instead, and a read,
   * which WAL never blocks, sees the state before a running adoption until it commits.
   */
  #writes: Promise<unknown> = Promise.resolve();

  constructor(db: Db, options: SqliteIndexOptions = {}) {
    this.#db = db;
    this.#workerMin = options.workerMin ?? WORKER_MIN;
    this.#writer = Number.isFinite(this.#workerMin) && !db.memory && db.name !== '' ? new IndexWriter(db.name) : undefined;
  }

  /** Runs a write after those queued before it, whatever became of them. */
  #write<T>(run: () => T | Promise<T>): Promise<T> {
    const done = this.#writes.then(run, run);
    this.#writes = done.catch(() => undefined);
    return done;
  }

  /** A prepared statement, prepared once per SQL text. */
  #stmt(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  #seq(id: string, level?: Level): number | undefined {
    const raw =
      level === undefined
        ? this.#stmt('SELECT seq FROM resources WHERE id = ?').get(id)
        : this.#stmt('SELECT seq FROM resources WHERE id = ? AND level = ?').get(id, LEVEL_NUM[level]);
    return raw === undefined ? undefined : checked(SeqRow, raw, id).seq;
  }

  async resource(id: string, level?: Level): Promise<IndexedResource | undefined> {
    const raw =
      level === undefined
        ? this.#stmt(`${RESOURCE} WHERE r.id = ?`).get(id)
        : this.#stmt(`${RESOURCE} WHERE r.id = ? AND r.level = ?`).get(id, LEVEL_NUM[level]);
    return raw === undefined ? undefined : toResource(raw);
  }

  async instance(id: string): Promise<IndexedInstance | undefined> {
    const raw = this.#stmt(`${INSTANCE} WHERE r.id = ?`).get(id);
    return raw === undefined ? undefined : toInstance(raw);
  }

  async instances(ids: readonly string[]): Promise<Map<string, IndexedInstance>> {
    const out = new Map<string, IndexedInstance>();
    const stmt = this.#stmt(`${INSTANCE} WHERE r.id = ?`);
    for (const id of ids) {
      const raw = stmt.get(id);
      if (raw !== undefined) out.set(id, toInstance(raw));
    }
    return out;
  }

  async instancesUnder(level: Level, id: string): Promise<IndexedResource[] | undefined> {
    const seq = this.#seq(id, level);
    if (seq === undefined) return undefined;
    const rows = this.#stmt(
      `${SUBTREE} SELECT r.*, p.id AS parent_id FROM sub CROSS JOIN resources r ON r.seq = sub.seq
       LEFT JOIN resources p ON p.seq = r.parent WHERE r.level = 3 ORDER BY r.seq`,
    ).all(seq);
    return rows.map(toResource);
  }

  async instanceIdsUnder(level: Level, id: string): Promise<string[] | undefined> {
    const seq = this.#seq(id, level);
    if (seq === undefined) return undefined;
    const rows = this.#stmt(
      `${SUBTREE} SELECT r.id FROM sub CROSS JOIN resources r ON r.seq = sub.seq WHERE r.level = 3 ORDER BY r.seq`,
    ).all(seq);
    return rows.map((r) => checked(IdRow, r, 'a resource').id);
  }

  async children(level: Level, id: string): Promise<IndexedResource[] | undefined> {
    const seq = this.#seq(id, level);
    if (seq === undefined) return undefined;
    return this.#stmt(`${RESOURCE} WHERE r.parent = ? ORDER BY r.seq`).all(seq).map(toResource);
  }

  async list(level: Level, since: number, limit: number): Promise<string[]> {
    const rows = this.#stmt('SELECT id FROM resources WHERE level = ? ORDER BY seq LIMIT ? OFFSET ?').all(
      LEVEL_NUM[level],
      limit > 0 ? limit : -1,
      since,
    );
    return rows.map((r) => checked(IdRow, r, 'a resource').id);
  }

  async all(level: Level, order: 'stored' | 'id'): Promise<IndexedResource[]> {
    const by = order === 'id' ? 'r.id' : 'r.seq';
    return this.#stmt(`${RESOURCE} WHERE r.level = ? ORDER BY ${by}`).all(LEVEL_NUM[level]).map(toResource);
  }

  async counts(): Promise<IndexCounts> {
    const count = (level: Level) =>
      checked(CountRow, this.#stmt('SELECT COUNT(*) AS n FROM resources WHERE level = ?').get(LEVEL_NUM[level]), 'counts').n;
    const bytes = checked(CountRow, this.#stmt('SELECT COALESCE(SUM(size), 0) AS n FROM instances').get(), 'counts').n;
    return { patients: count('Patient'), studies: count('Study'), series: count('Series'), instances: count('Instance'), bytes };
  }

  journal(files: readonly string[], now: number): Promise<void> {
    return this.#write(() => {
      const add = this.#stmt('INSERT OR IGNORE INTO pending_files (file, since) VALUES (?, ?)');
      this.#db.transaction(() => {
        for (const f of files) add.run(f, now);
      })();
    });
  }

  unjournal(files: readonly string[]): Promise<void> {
    return this.#write(() => {
      const drop = this.#stmt('DELETE FROM pending_files WHERE file = ?');
      this.#db.transaction(() => {
        for (const f of files) drop.run(f);
      })();
    });
  }

  takeOrphans(): Promise<string[]> {
    return this.#write(() => this.#takeOrphans());
  }

  #takeOrphans(): string[] {
    return this.#db.transaction(() => {
      const pending = this.#stmt('SELECT file FROM pending_files')
        .all()
        .map((r) => checked(FileRow, r, 'the journal').file);
      const referenced = this.#stmt('SELECT 1 FROM instances WHERE file = ?');
      const orphans = pending.filter((f) => referenced.get(f) === undefined);
      this.#stmt('DELETE FROM pending_files').run();
      return orphans;
    })();
  }

  adopt(entries: readonly IndexEntry[], replace: ReplacePolicy, now: number): Promise<AdoptResult> {
    const writer = this.#writer;
    if (writer && entries.length >= this.#workerMin) return this.#write(() => writer.adopt(entries, replace, now));
    return this.#write(() => this.#adopt(entries, replace, now));
  }

  #adopt(entries: readonly IndexEntry[], replace: ReplacePolicy, now: number): AdoptResult {
    const out: AdoptResult = { adopted: [], kept: [], replaced: [] };
    const add = this.#stmt('INSERT OR IGNORE INTO pending_files (file, since) VALUES (?, ?)');
    const drop = this.#stmt('DELETE FROM pending_files WHERE file = ?');
    // The patient, study and series of a commit's instances are mostly the same few: each is looked up and
    // touched once per transaction, not once per instance (thousands of statements fewer on a big study).
    const parents = new Map<string, number>();
    this.#db.transaction(() => {
      for (const e of entries) {
        const existing = this.#stmt(`${INSTANCE} WHERE r.id = ?`).get(e.ids.instance);
        const old = existing === undefined ? undefined : toInstance(existing);
        if (old && (replace === 'never' || (replace === 'if-different' && old.md5 === e.md5))) {
          out.kept.push({ id: e.ids.instance, file: e.file });
          continue;
        }
        this.#indexInstance(e, now, parents);
        drop.run(e.file);
        out.adopted.push(e.ids.instance);
        if (old) {
          out.replaced.push(old.file);
          add.run(old.file, now);
        }
      }
    })();
    return out;
  }

  /**
   * The four levels of one instance: inserted, or refreshed when there (the instance's row replaced).
   * `parents` holds the patients, studies and series upserted already in this transaction, with their seq.
   */
  #indexInstance(e: IndexEntry, now: number, parents: Map<string, number> = new Map()): void {
    const upsert = (level: Level, id: string, parent: number | null, tags: MainTags, patientTags?: MainTags): number => {
      const known = level === 'Instance' ? undefined : parents.get(id);
      if (known !== undefined) return known;
      const seq = upsertOnce(level, id, parent, tags, patientTags);
      if (level !== 'Instance') parents.set(id, seq);
      return seq;
    };
    const upsertOnce = (level: Level, id: string, parent: number | null, tags: MainTags, patientTags?: MainTags): number => {
      const seq = this.#seq(id);
      if (seq !== undefined) {
        this.#stmt('UPDATE resources SET last_update = ? WHERE seq = ?').run(now, seq);
        return seq;
      }
      const info = this.#stmt(
        'INSERT INTO resources (id, level, parent, main_tags, patient_tags, last_update) VALUES (?, ?, ?, ?, ?, ?)',
      ).run(id, LEVEL_NUM[level], parent, JSON.stringify(tags), patientTags ? JSON.stringify(patientTags) : null, now);
      return Number(info.lastInsertRowid);
    };
    const p = upsert('Patient', e.ids.patient, null, e.tags.Patient);
    const st = upsert('Study', e.ids.study, p, e.tags.Study, e.tags.Patient);
    const se = upsert('Series', e.ids.series, st, e.tags.Series);
    const existing = this.#seq(e.ids.instance, 'Instance');
    if (existing !== undefined) {
      this.#stmt(
        'UPDATE instances SET file = ?, size = ?, md5 = ?, transfer_syntax = ?, sop_class = ?, index_in_series = ?, received = ? ' +
          'WHERE seq = ?',
      ).run(e.file, e.size, e.md5, e.transferSyntax, e.sopClass, e.indexInSeries, now, existing);
      this.#stmt('UPDATE resources SET main_tags = ?, last_update = ? WHERE seq = ?').run(JSON.stringify(e.tags.Instance), now, existing);
      return;
    }
    const inst = upsert('Instance', e.ids.instance, se, e.tags.Instance);
    this.#stmt(
      'INSERT INTO instances (seq, file, size, md5, transfer_syntax, sop_class, index_in_series, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(inst, e.file, e.size, e.md5, e.transferSyntax, e.sopClass, e.indexInSeries, now);
  }

  remove(level: Level, id: string, now: number): Promise<{ files: string[]; remaining: IndexedResource | undefined } | undefined> {
    return this.#write(() => this.#remove(level, id, now));
  }

  #remove(level: Level, id: string, now: number): { files: string[]; remaining: IndexedResource | undefined } | undefined {
    return this.#db.transaction(() => {
      const raw = this.#stmt('SELECT seq, parent FROM resources WHERE id = ? AND level = ?').get(id, LEVEL_NUM[level]);
      if (raw === undefined) return undefined;
      const row = checked(ParentRow, raw, id);
      const under = this.#stmt(`${SUBTREE} SELECT seq FROM sub`)
        .all(row.seq)
        .map((r) => checked(SeqRow, r, id).seq);
      const fileOf = this.#stmt('SELECT file FROM instances WHERE seq = ?');
      const add = this.#stmt('INSERT OR IGNORE INTO pending_files (file, since) VALUES (?, ?)');
      const files: string[] = [];
      for (const s of under) {
        const f = fileOf.get(s);
        if (f === undefined) continue;
        files.push(checked(FileRow, f, id).file);
        add.run(files.at(-1), now);
      }
      // Children first (foreign keys point upwards).
      const delInst = this.#stmt('DELETE FROM instances WHERE seq = ?');
      const delRes = this.#stmt('DELETE FROM resources WHERE seq = ?');
      for (const s of [...under].reverse()) {
        delInst.run(s);
        delRes.run(s);
      }
      return { files, remaining: this.#pruneAncestors(row.parent) };
    })();
  }

  /** Removes the ancestors left without children, from `parentSeq` up; answers the first one kept. */
  #pruneAncestors(parentSeq: number | null): IndexedResource | undefined {
    for (let s = parentSeq, i = 0; s !== null && i < 4; i++) {
      const raw = this.#stmt('SELECT seq, parent FROM resources WHERE seq = ?').get(s);
      if (raw === undefined) return undefined;
      const row = checked(ParentRow, raw, 'a parent');
      const left = checked(CountRow, this.#stmt('SELECT COUNT(*) AS n FROM resources WHERE parent = ?').get(row.seq), 'a parent').n;
      if (left > 0) return toResource(this.#stmt(`${RESOURCE} WHERE r.seq = ?`).get(row.seq));
      this.#stmt('DELETE FROM resources WHERE seq = ?').run(row.seq);
      s = row.parent;
    }
    return undefined;
  }

  async close(): Promise<void> {
    // The writes under way end first (an adoption in the worker commits or fails, never cut off).
    await this.#writes;
    await this.#writer?.close();
    this.#db.close();
  }
}
