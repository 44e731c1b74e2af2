// The embedded store: DICOM files on local disk plus a SQLite index, with the resource queries that
// Orthanc's REST API needs. Files are adopted atomically (temporary file, fsync, rename, one index
// transaction) and a journal of files being adopted or removed makes a crash leave nothing behind.
import { randomUUID } from 'node:crypto';
import { createReadStream, renameSync, unlinkSync } from 'node:fs';
import { mkdir, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isDicomTruncated, parseDicomHeader, readDicomHeaderFromFile, simplifiedTags } from '../../dicom/parse.ts';
import { orthancIds } from '../../dicom/ids.ts';
import type { DicomHeader, Level, MainTags, OrthancIds } from '../../dicom/types.ts';
import { XferError, isXferError } from '../../errors.ts';
import { fsyncDir, fsyncFile, md5File } from '../../util/fs.ts';
import { lockDirectory, type DirLock } from '../../util/dir-lock.ts';
import { mapLimit } from '../../util/concurrency.ts';
import { mainTagMatch, type FindRequest } from '../find.ts';
import type { CommitResult, IngestHints, IngestResult, InstanceInfo, StagedInstance, Store } from '../types.ts';
import type Database from 'better-sqlite3';
import { openDb, type Db } from './db.ts';

/** File-system calls in flight at once during a commit (they mostly wait on the disk). */
const IO_PARALLELISM = 16;

/** Most file names held with their directory made ahead of a commit (prepareFiles). */
const MAX_READY_FILES = 100_000;

const LEVEL_NUM: Record<Level, number> = { Patient: 0, Study: 1, Series: 2, Instance: 3 };
const NUM_LEVEL: readonly Level[] = ['Patient', 'Study', 'Series', 'Instance'];
const CHILD_KEY: Record<Level, string | undefined> = {
  Patient: 'Studies',
  Study: 'Series',
  Series: 'Instances',
  Instance: undefined,
};
const PARENT_KEY: Record<Level, string | undefined> = {
  Patient: undefined,
  Study: 'ParentPatient',
  Series: 'ParentStudy',
  Instance: 'ParentSeries',
};
export const LEVEL_PATH: Record<Level, string> = {
  Patient: 'patients',
  Study: 'studies',
  Series: 'series',
  Instance: 'instances',
};

export interface EmbeddedStoreOptions {
  /** Replace an instance that is stored again (Orthanc's OverwriteInstances). */
  overwriteInstances?: boolean;
  /** Seconds without a new instance after which a resource is stable (Orthanc's StableAge). */
  stableAgeSeconds?: number;
  /** Parallel MD5 checks and header parses during a commit (Transfers.CommitThreadsCount). */
  commitThreads?: number;
}

interface ResourceRow {
  seq: number;
  id: string;
  level: number;
  parent: number | null;
  main_tags: string;
  patient_tags: string | null;
  last_update: number;
}

interface InstanceRow {
  seq: number;
  file: string;
  size: number;
  md5: string;
  index_in_series: number | null;
}

/** One instance ready to become visible: its parsed header and file already in place. */
interface Adoption {
  header: DicomHeader;
  ids: OrthancIds;
  file: string;
  size: number;
  md5: string;
}

export type OrthancResource = Record<string, unknown>;

/** Orthanc's ISO "basic" timestamp without fraction, in UTC (LastUpdate). */
function isoBasic(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
}

export class EmbeddedStore implements Store {
  readonly kind = 'embedded' as const;
  readonly features = { resourceApi: true } as const;
  readonly dir: string;
  readonly #db: Db;
  readonly #opts: Required<EmbeddedStoreOptions>;
  readonly #lock: DirLock;
  #closed = false;

  private constructor(dir: string, db: Db, opts: Required<EmbeddedStoreOptions>, lock: DirLock) {
    this.dir = dir;
    this.#db = db;
    this.#opts = opts;
    this.#lock = lock;
  }

  /**
   * Opens (creating if needed) the store in `dir`. Refuses a directory that another live dicom-xfer
   * process holds. Cleans what a crash left: temporary files, and files adopted or removed halfway.
   */
  static async open(dir: string, options: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
    await mkdir(join(dir, 'files'), { recursive: true });
    await mkdir(join(dir, 'tmp'), { recursive: true });
    await mkdir(join(dir, 'staging'), { recursive: true });
    const lock = lockDirectory(dir);
    let db: Db;
    try {
      db = openDb(join(dir, 'index.sqlite'));
    } catch (e) {
      lock.release();
      throw e;
    }
    const store = new EmbeddedStore(
      dir,
      db,
      {
        overwriteInstances: options.overwriteInstances ?? false,
        stableAgeSeconds: options.stableAgeSeconds ?? 60,
        commitThreads: Math.max(1, options.commitThreads ?? 2),
      },
      lock,
    );
    await store.#recover();
    return store;
  }

  async #recover(): Promise<void> {
    const pending = this.#stmt('SELECT file FROM pending_files').all() as { file: string }[];
    const referenced = this.#stmt('SELECT 1 FROM instances WHERE file = ?');
    for (const { file } of pending) {
      if (!referenced.get(file)) await unlink(this.#filePath(file)).catch(() => undefined);
    }
    this.#stmt('DELETE FROM pending_files').run();
    // Temporary files of interrupted uploads belong to nobody.
    for (const name of await readdir(join(this.dir, 'tmp'))) {
      await rm(join(this.dir, 'tmp', name), { recursive: true, force: true });
    }
  }

  readonly #statements = new Map<string, Database.Statement>();

  /** A prepared statement, prepared once per SQL text. */
  #stmt(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  readonly #madeDirs = new Set<string>();
  /** Names of new files whose directory is made already (prepareFiles), taken by the next adoptions. */
  readonly #readyFiles: string[] = [];
  #preparing: Promise<void> = Promise.resolve();

  /**
   * Makes, ahead of a commit of `count` new instances (a transfer that has just begun), the directories
   * their files will go to, one at a time behind the transfer's own file work, so that the commit does
   * not wait on thousands of them (files/xx/yy/: nearly one new directory per instance). Best effort: a
   * directory that cannot be made is left to the commit. Calls queue one behind the other.
   */
  prepareFiles(count: number): Promise<void> {
    const run = async (): Promise<void> => {
      const want = Math.min(count, MAX_READY_FILES - this.#readyFiles.length);
      for (let i = 0; i < want && !this.#closed; i++) {
        const file = randomUUID();
        try {
          await this.#mkdirFor(file);
          this.#readyFiles.push(file);
        } catch {
          return;
        }
      }
    };
    this.#preparing = this.#preparing.then(run);
    return this.#preparing;
  }

  /** The name of a new file: one whose directory is made already when there is one. */
  #newFile(): string {
    return this.#readyFiles.pop() ?? randomUUID();
  }

  /** Creates the directory of a new file (once per directory for the life of the process). */
  async #mkdirFor(file: string): Promise<void> {
    const dir = join(this.#filePath(file), '..');
    if (this.#madeDirs.has(dir)) return;
    await mkdir(dir, { recursive: true });
    this.#madeDirs.add(dir);
  }

  #filePath(file: string): string {
    return join(this.dir, 'files', file.slice(0, 2), file.slice(2, 4), file);
  }

  /** Directory for temporary upload files (same file system as the store). */
  tmpDir(): string {
    return join(this.dir, 'tmp');
  }

  stagingRoot(): string {
    return join(this.dir, 'staging');
  }

  // ---- the store interface used by the transfer engine ----

  async listInstances(level: Level, id: string): Promise<string[]> {
    const row = this.#resource(level, id);
    if (!row) throw new XferError('UnknownResource', `${level} ${id}`);
    return this.#instanceRowsUnder(row).map((r) => r.id).sort();
  }

  async instanceInfo(id: string): Promise<InstanceInfo> {
    const row = this.#instanceRow(id);
    if (!row) throw new XferError('UnknownResource', `Instance ${id}`);
    return { id, size: row.size, md5: row.md5 };
  }

  async findInstances(ids: readonly string[]): Promise<Map<string, InstanceInfo>> {
    const out = new Map<string, InstanceInfo>();
    const stmt = this.#stmt(
      'SELECT r.id AS id, i.size AS size, i.md5 AS md5 FROM resources r JOIN instances i ON i.seq = r.seq WHERE r.id = ?',
    );
    for (const id of ids) {
      const row = stmt.get(id) as InstanceInfo | undefined;
      if (row) out.set(id, { id: row.id, size: row.size, md5: row.md5 });
    }
    return out;
  }

  async readRange(id: string, start: number, end: number): Promise<Readable> {
    const row = this.#instanceRow(id);
    if (!row) throw new XferError('UnknownResource', `Instance ${id}`);
    if (start < 0 || end < start || end > row.size) {
      throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id} (${row.size} bytes)`);
    }
    if (end === start) return Readable.from([]);
    return createReadStream(this.#filePath(row.file), { start, end: end - 1, highWaterMark: 256 * 1024 });
  }

  async ingestFile(path: string, size: number, md5: string, hints: IngestHints = {}): Promise<IngestResult> {
    const header = await headerOf(path, size, hints.head);
    const ids = orthancIds(header);
    const existing = this.#instanceRow(ids.instance);
    if (existing && !this.#opts.overwriteInstances) {
      await unlink(path).catch(() => undefined);
      return { ids, status: 'AlreadyStored' };
    }
    if (!hints.synced) await fsyncFile(path);
    const file = this.#newFile();
    await this.#mkdirFor(file);
    // From here to the end of #adopt everything is synchronous, so no other request interleaves:
    // two concurrent uploads of one instance cannot both insert it.
    const again = this.#instanceRow(ids.instance);
    if (again && !this.#opts.overwriteInstances) {
      await unlink(path).catch(() => undefined);
      return { ids, status: 'AlreadyStored' };
    }
    // The file's data is on disk (fsync before the rename); the directory entry is not flushed on its
    // own, as the index itself commits with synchronous=NORMAL: a power loss may lose the newest
    // instances entirely, never keep half of one.
    const replaced = this.#adopt([{ header, ids, file, size, md5 }], [path]);
    await this.#removeFiles(replaced);
    return { ids, status: 'Success' };
  }

  async commitStaged(staged: readonly StagedInstance[]): Promise<CommitResult> {
    const problems: string[] = [];
    // The checks wait mostly on file opens and reads: many at a time, or a thousand small files wait on
    // the disk a thousand times in a row (CommitThreadsCount raises it further for MD5-heavy commits).
    const checked = await mapLimit(staged, Math.max(this.#opts.commitThreads, IO_PARALLELISM), async (s) => {
      try {
        const st = await stat(s.path);
        if (st.size !== s.size) {
          problems.push(`${s.id}: ${st.size} bytes instead of ${s.size}`);
          return undefined;
        }
        const actual = s.verified ? s.md5 : await md5File(s.path);
        if (actual !== s.md5) {
          problems.push(`${s.id}: bad MD5 (${actual} instead of ${s.md5})`);
          return undefined;
        }
        const header = s.verified && s.header ? s.header : await readDicomHeaderFromFile(s.path);
        const ids = orthancIds(header);
        if (ids.instance !== s.id) {
          problems.push(`${s.id}: the file holds instance ${ids.instance}`);
          return undefined;
        }
        return { s, header, ids };
      } catch (e) {
        const why = isXferError(e) ? (e.details ?? e.message) : e instanceof Error ? e.message : String(e);
        problems.push(`${s.id}: ${why}`);
        return undefined;
      }
    });
    if (problems.length > 0) {
      problems.sort();
      throw new XferError(
        'CorruptedFile',
        `${problems.length} of ${staged.length} instances refused, nothing stored: ${problems.join('; ')}`,
      );
    }
    const fresh: Adoption[] = [];
    const freshPaths: string[] = [];
    const alreadyStored: string[] = [];
    const toSync: string[] = [];
    for (const c of checked) {
      if (!c) continue;
      const existing = this.#instanceRow(c.ids.instance);
      if (existing && (!this.#opts.overwriteInstances || existing.md5 === c.s.md5)) {
        alreadyStored.push(c.s.id);
        continue;
      }
      fresh.push({ header: c.header, ids: c.ids, file: this.#newFile(), size: c.s.size, md5: c.s.md5 });
      freshPaths.push(c.s.path);
      if (!c.s.synced) toSync.push(c.s.path);
    }
    // Directories made and data flushed many at a time: one by one, a thousand instances wait on the disk
    // a thousand times.
    await mapLimit(fresh, IO_PARALLELISM, (a) => this.#mkdirFor(a.file));
    await mapLimit(toSync, IO_PARALLELISM, (p) => fsyncFile(p));
    // Synchronous from the re-check to the commit of the index transaction.
    const stillFresh: Adoption[] = [];
    const stillPaths: string[] = [];
    fresh.forEach((a, i) => {
      const existing = this.#instanceRow(a.ids.instance);
      if (existing && (!this.#opts.overwriteInstances || existing.md5 === a.md5)) alreadyStored.push(a.ids.instance);
      else {
        stillFresh.push(a);
        stillPaths.push(freshPaths[i] as string);
      }
    });
    const replaced = stillFresh.length > 0 ? this.#adopt(stillFresh, stillPaths) : [];
    const dirs = new Set(stillFresh.map((a) => join(this.#filePath(a.file), '..')));
    await mapLimit([...dirs], IO_PARALLELISM, (d) => fsyncDir(d));
    await this.#removeFiles(replaced);
    const already = new Set(alreadyStored);
    await mapLimit(
      staged.filter((s) => already.has(s.id)),
      IO_PARALLELISM,
      (s) => unlink(s.path).catch(() => undefined),
    );
    return { stored: stillFresh.map((a) => a.ids.instance).sort(), alreadyStored: alreadyStored.sort() };
  }

  /**
   * Moves the files into place and indexes them in one transaction; all or nothing. Synchronous on
   * purpose. Returns the files of instances that were overwritten, to be removed by the caller.
   */
  #adopt(items: readonly Adoption[], sources: readonly string[]): string[] {
    const db = this.#db;
    const now = Date.now();
    const addPending = this.#stmt('INSERT INTO pending_files (file, since) VALUES (?, ?)');
    db.transaction(() => {
      for (const a of items) addPending.run(a.file, now);
    })();
    const moved: string[] = [];
    try {
      items.forEach((a, i) => {
        renameSync(sources[i] as string, this.#filePath(a.file));
        moved.push(a.file);
      });
      const replaced: string[] = [];
      db.transaction(() => {
        for (const a of items) {
          const old = this.#indexInstance(a, now);
          if (old) {
            replaced.push(old);
            addPending.run(old, now);
          }
        }
        const drop = this.#stmt('DELETE FROM pending_files WHERE file = ?');
        for (const a of items) drop.run(a.file);
      })();
      return replaced;
    } catch (e) {
      // Put the staged files back where they came from, so that nothing half-adopted stays.
      moved.forEach((file, i) => {
        try {
          renameSync(this.#filePath(file), sources[i] as string);
        } catch {
          try {
            unlinkSync(this.#filePath(file));
          } catch {
            // already gone
          }
        }
      });
      const drop = this.#stmt('DELETE FROM pending_files WHERE file = ?');
      for (const a of items) drop.run(a.file);
      throw new XferError('Database', 'cannot index the instances', { cause: e });
    }
  }

  /** Inserts or refreshes the four levels of one instance. Returns the file it replaced, if any. */
  #indexInstance(a: Adoption, now: number): string | undefined {
    const db = this.#db;
    const upsert = (level: Level, id: string, parent: number | null, tags: MainTags, patientTags?: MainTags) => {
      const row = this.#stmt('SELECT seq FROM resources WHERE id = ?').get(id) as { seq: number } | undefined;
      if (row) {
        this.#stmt('UPDATE resources SET last_update = ? WHERE seq = ?').run(now, row.seq);
        return row.seq;
      }
      const info = this.#stmt(
          'INSERT INTO resources (id, level, parent, main_tags, patient_tags, last_update) VALUES (?, ?, ?, ?, ?, ?)',
        )
        .run(id, LEVEL_NUM[level], parent, JSON.stringify(tags), patientTags ? JSON.stringify(patientTags) : null, now);
      return Number(info.lastInsertRowid);
    };
    const h = a.header;
    const p = upsert('Patient', a.ids.patient, null, h.mainTags.Patient);
    const st = upsert('Study', a.ids.study, p, h.mainTags.Study, h.mainTags.Patient);
    const se = upsert('Series', a.ids.series, st, h.mainTags.Series);
    const existing = this.#stmt('SELECT r.seq AS seq, i.file AS file FROM resources r JOIN instances i ON i.seq = r.seq WHERE r.id = ?')
      .get(a.ids.instance) as { seq: number; file: string } | undefined;
    const indexInSeries = indexInSeriesOf(h.mainTags.Instance);
    if (existing) {
      this.#stmt(
        'UPDATE instances SET file = ?, size = ?, md5 = ?, transfer_syntax = ?, sop_class = ?, index_in_series = ?, received = ? WHERE seq = ?',
      ).run(a.file, a.size, a.md5, h.transferSyntaxUid, h.sopClassUid ?? null, indexInSeries, now, existing.seq);
      this.#stmt('UPDATE resources SET main_tags = ?, last_update = ? WHERE seq = ?').run(
        JSON.stringify(h.mainTags.Instance),
        now,
        existing.seq,
      );
      return existing.file;
    }
    const inst = upsert('Instance', a.ids.instance, se, h.mainTags.Instance);
    this.#stmt(
      'INSERT INTO instances (seq, file, size, md5, transfer_syntax, sop_class, index_in_series, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(inst, a.file, a.size, a.md5, h.transferSyntaxUid, h.sopClassUid ?? null, indexInSeries, now);
    return undefined;
  }

  /** Removes files whose index rows are gone; they were journalled in pending_files. */
  async #removeFiles(files: readonly string[]): Promise<void> {
    if (files.length === 0) return;
    for (const f of files) await unlink(this.#filePath(f)).catch(() => undefined);
    const drop = this.#stmt('DELETE FROM pending_files WHERE file = ?');
    this.#db.transaction(() => {
      for (const f of files) drop.run(f);
    })();
  }

  // ---- Orthanc's resource REST API ----

  #resource(level: Level, id: string): ResourceRow | undefined {
    return this.#stmt('SELECT * FROM resources WHERE id = ? AND level = ?').get(id, LEVEL_NUM[level]) as
      | ResourceRow
      | undefined;
  }

  #instanceRow(id: string): InstanceRow | undefined {
    return this.#stmt(
        'SELECT i.seq AS seq, i.file AS file, i.size AS size, i.md5 AS md5, i.index_in_series AS index_in_series FROM resources r JOIN instances i ON i.seq = r.seq WHERE r.id = ?',
      )
      .get(id) as InstanceRow | undefined;
  }

  #instanceRowsUnder(row: ResourceRow): ResourceRow[] {
    return this.#stmt(
        `WITH RECURSIVE sub(seq) AS (SELECT ? UNION ALL SELECT r.seq FROM resources r JOIN sub ON r.parent = sub.seq)
         SELECT r.* FROM sub CROSS JOIN resources r ON r.seq = sub.seq WHERE r.level = 3 ORDER BY r.seq`,
      )
      .all(row.seq) as ResourceRow[];
  }

  /** IDs of every resource of a level, in the order they were stored; `since` skips, `limit` caps. */
  listResources(level: Level, since = 0, limit = 0): string[] {
    const rows = this.#stmt('SELECT id FROM resources WHERE level = ? ORDER BY seq LIMIT ? OFFSET ?')
      .all(LEVEL_NUM[level], limit > 0 ? limit : -1, since) as { id: string }[];
    return rows.map((r) => r.id);
  }

  /** A resource in Orthanc's object shape, or undefined when absent. */
  getResource(level: Level, id: string): OrthancResource | undefined {
    const row = this.#resource(level, id);
    return row ? this.#format(row) : undefined;
  }

  #format(row: ResourceRow): OrthancResource {
    const level = NUM_LEVEL[row.level] as Level;
    const out: OrthancResource = {};
    const parentKey = PARENT_KEY[level];
    const parent =
      row.parent === null
        ? undefined
        : (this.#stmt('SELECT id FROM resources WHERE seq = ?').get(row.parent) as { id: string } | undefined);
    if (level === 'Instance') {
      const inst = this.#stmt('SELECT * FROM instances WHERE seq = ?').get(row.seq) as InstanceRow;
      out.FileSize = inst.size;
      out.FileUuid = inst.file;
      out.ID = row.id;
      out.IndexInSeries = inst.index_in_series;
      out.MainDicomTags = JSON.parse(row.main_tags) as MainTags;
      out.ParentSeries = parent?.id;
      out.Type = 'Instance';
      return out;
    }
    const childKey = CHILD_KEY[level] as string;
    const children = (
      this.#stmt('SELECT id FROM resources WHERE parent = ? ORDER BY seq').all(row.seq) as { id: string }[]
    ).map((c) => c.id);
    const expected = level === 'Series' ? expectedInstances(JSON.parse(row.main_tags) as MainTags) : undefined;
    if (level === 'Series') out.ExpectedNumberOfInstances = expected ?? null;
    out.ID = row.id;
    if (level === 'Series') out.Instances = children;
    out.IsStable = Date.now() - row.last_update >= this.#opts.stableAgeSeconds * 1000;
    out.LastUpdate = isoBasic(row.last_update);
    out.MainDicomTags = JSON.parse(row.main_tags) as MainTags;
    if (parentKey) out[parentKey] = parent?.id;
    if (level === 'Study') {
      out.PatientMainDicomTags = row.patient_tags ? (JSON.parse(row.patient_tags) as MainTags) : {};
      out.Series = children;
    }
    if (level === 'Patient') out.Studies = children;
    if (level === 'Series') out.Status = this.#seriesStatus(row.seq, expected);
    out.Type = level;
    return out;
  }

  /** Orthanc's series status: Unknown without an expected count, else Complete, Missing or Inconsistent. */
  #seriesStatus(seq: number, expected: number | undefined): string {
    if (expected === undefined) return 'Unknown';
    const rows = this.#stmt('SELECT i.index_in_series AS idx FROM resources r JOIN instances i ON i.seq = r.seq WHERE r.parent = ?')
      .all(seq) as { idx: number | null }[];
    const seen = new Set<number>();
    for (const { idx } of rows) {
      if (idx === null) return 'Unknown';
      if (!(idx > 0 && idx <= expected) || seen.has(idx)) return 'Inconsistent';
      seen.add(idx);
    }
    return seen.size === expected ? 'Complete' : 'Missing';
  }

  /** The instances under a resource, each in Orthanc's instance shape; undefined when absent. */
  instancesOf(level: Level, id: string): OrthancResource[] | undefined {
    const row = this.#resource(level, id);
    if (!row) return undefined;
    return this.#instanceRowsUnder(row).map((r) => this.#format(r));
  }

  /** The resources of a level that are direct children of a resource; undefined when absent. */
  childrenOf(level: Level, id: string): OrthancResource[] | undefined {
    const row = this.#resource(level, id);
    if (!row) return undefined;
    const rows = this.#stmt('SELECT * FROM resources WHERE parent = ? ORDER BY seq').all(row.seq) as ResourceRow[];
    return rows.map((r) => this.#format(r));
  }

  /** Where an instance's file is and how big it is, for serving it. */
  instanceFile(id: string): { path: string; size: number; md5: string } | undefined {
    const row = this.#instanceRow(id);
    return row ? { path: this.#filePath(row.file), size: row.size, md5: row.md5 } : undefined;
  }

  /**
   * Deletes a resource, its descendants and their files, and parents left empty. Answers Orthanc's
   * `RemainingAncestor`, or undefined when the resource is absent.
   */
  async deleteResource(level: Level, id: string): Promise<{ RemainingAncestor: OrthancResource | null } | undefined> {
    const db = this.#db;
    const row = this.#resource(level, id);
    if (!row) return undefined;
    const files: string[] = [];
    let remaining: ResourceRow | undefined;
    const now = Date.now();
    db.transaction(() => {
      const under = this.#stmt(
          `WITH RECURSIVE sub(seq) AS (SELECT ? UNION ALL SELECT r.seq FROM resources r JOIN sub ON r.parent = sub.seq)
           SELECT seq FROM sub`,
        )
        .all(row.seq) as { seq: number }[];
      const fileOf = this.#stmt('SELECT file FROM instances WHERE seq = ?');
      const addPending = this.#stmt('INSERT OR IGNORE INTO pending_files (file, since) VALUES (?, ?)');
      for (const { seq } of under) {
        const f = fileOf.get(seq) as { file: string } | undefined;
        if (f) {
          files.push(f.file);
          addPending.run(f.file, now);
        }
      }
      // Children first (foreign keys point upwards).
      const delInst = this.#stmt('DELETE FROM instances WHERE seq = ?');
      const delRes = this.#stmt('DELETE FROM resources WHERE seq = ?');
      for (const { seq } of [...under].reverse()) {
        delInst.run(seq);
        delRes.run(seq);
      }
      // Remove parents left without children.
      let parentSeq = row.parent;
      while (parentSeq !== null) {
        const parent = this.#stmt('SELECT * FROM resources WHERE seq = ?').get(parentSeq) as ResourceRow | undefined;
        if (!parent) break;
        const left = this.#stmt('SELECT COUNT(*) AS n FROM resources WHERE parent = ?').get(parent.seq) as { n: number };
        if (left.n > 0) {
          remaining = parent;
          break;
        }
        delRes.run(parent.seq);
        parentSeq = parent.parent;
      }
    })();
    await this.#removeFiles(files);
    if (!remaining) return { RemainingAncestor: null };
    const rl = NUM_LEVEL[remaining.level] as Level;
    return { RemainingAncestor: { ID: remaining.id, Path: `/${LEVEL_PATH[rl]}/${remaining.id}`, Type: rl } };
  }

  /**
   * Orthanc's `/tools/find` over the index: the IDs of the matching resources sorted as Orthanc sorts them
   * (by ID), `since` skipped and at most `limit` (0: all); with `expand`, each in its GET shape. Tags that are
   * not main tags are read from the first instance of each candidate, as Orthanc reads them from a file.
   */
  async find(req: FindRequest): Promise<string[] | OrthancResource[]> {
    const constraints = req.constraints;
    if (constraints.some((c) => c.source.kind === 'never')) return [];
    const depth = Math.max(0, ...constraints.map((c) => (c.source.kind === 'main' ? c.source.up : 0)));
    const byFile = constraints.filter((c) => c.source.kind === 'file');
    const byModality = constraints.filter((c) => c.source.kind === 'series-modality');
    const ancestors = new Map<number, ResourceRow | undefined>();
    const ancestor = (seq: number) => {
      if (!ancestors.has(seq)) ancestors.set(seq, this.#stmt('SELECT * FROM resources WHERE seq = ?').get(seq) as ResourceRow | undefined);
      return ancestors.get(seq);
    };
    // Orthanc answers instances in the order they were stored, the other levels sorted by ID (observed).
    const order = req.level === 'Instance' ? 'seq' : 'id';
    const rows = this.#stmt(`SELECT * FROM resources WHERE level = ? ORDER BY ${order}`).all(LEVEL_NUM[req.level]) as ResourceRow[];
    const found: ResourceRow[] = [];
    let skipped = 0;
    for (const row of rows) {
      const up: MainTags[] = [];
      for (let r: ResourceRow | undefined = row; r && up.length <= depth; ) {
        up.push(JSON.parse(r.main_tags) as MainTags);
        // Patient tags are matched on the study's own copy of them, as Orthanc does: patients without a
        // PatientID gather studies of different names.
        if (r.level === LEVEL_NUM.Study) {
          up.push(r.patient_tags ? (JSON.parse(r.patient_tags) as MainTags) : {});
          break;
        }
        r = r.parent === null ? undefined : ancestor(r.parent);
      }
      if (!constraints.every((c) => c.source.kind !== 'main' || mainTagMatch(c, up))) continue;
      if (byModality.length > 0) {
        const series = (this.#stmt('SELECT main_tags FROM resources WHERE parent = ?').all(row.seq) as { main_tags: string }[]).map(
          (s) => (JSON.parse(s.main_tags) as MainTags).Modality,
        );
        if (!byModality.every((c) => series.some((m) => m !== undefined && c.test(m)))) continue;
      }
      if (byFile.length > 0) {
        const tags = await this.#fileTags(row);
        if (!byFile.every((c) => {
          const v = tags?.[c.name];
          return typeof v === 'string' && c.test(v);
        })) continue;
      }
      if (skipped < req.since) {
        skipped++;
        continue;
      }
      found.push(row);
      if (req.limit > 0 && found.length >= req.limit) break;
    }
    if (!req.expand) return found.map((r) => r.id);
    const out: OrthancResource[] = [];
    for (const row of found) {
      const r = this.#format(row);
      if (req.requestedTags.length > 0) r.RequestedTags = await this.#requestedTags(row, req.requestedTags);
      out.push(r);
    }
    return out;
  }

  /** The simplified tags of the first instance under a resource (undefined when its file cannot be read). */
  async #fileTags(row: ResourceRow): Promise<Record<string, unknown> | undefined> {
    const first = row.level === LEVEL_NUM.Instance ? row : this.#instanceRowsUnder(row)[0];
    const file = first ? this.#instanceRow(first.id) : undefined;
    if (!file) return undefined;
    try {
      return simplifiedTags(await readDicomHeaderFromFile(this.#filePath(file.file)), 'simplify') as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /** RequestedTags of one resource: main tags of it and its ancestors first, else read from a file. */
  async #requestedTags(row: ResourceRow, names: readonly string[]): Promise<Record<string, unknown>> {
    const merged: MainTags = {};
    for (let r: ResourceRow | undefined = row; r; ) {
      for (const [k, v] of Object.entries(JSON.parse(r.main_tags) as MainTags)) if (!(k in merged)) merged[k] = v;
      r = r.parent === null ? undefined : (this.#stmt('SELECT * FROM resources WHERE seq = ?').get(r.parent) as ResourceRow | undefined);
    }
    const out: Record<string, unknown> = {};
    let fromFile: Record<string, unknown> | undefined;
    for (const name of names) {
      if (merged[name] !== undefined) {
        out[name] = merged[name];
        continue;
      }
      fromFile ??= (await this.#fileTags(row)) ?? {};
      if (fromFile[name] !== undefined) out[name] = fromFile[name];
    }
    return out;
  }

  /** Orthanc's /statistics. */
  statistics(): Record<string, unknown> {
    const count = (level: Level) =>
      (this.#stmt('SELECT COUNT(*) AS n FROM resources WHERE level = ?').get(LEVEL_NUM[level]) as { n: number }).n;
    const total = (this.#stmt('SELECT COALESCE(SUM(size), 0) AS s FROM instances').get() as { s: number }).s;
    const mb = Math.floor(total / (1024 * 1024));
    return {
      CountInstances: count('Instance'),
      CountPatients: count('Patient'),
      CountSeries: count('Series'),
      CountStudies: count('Study'),
      TotalDiskSize: String(total),
      TotalDiskSizeMB: mb,
      TotalUncompressedSize: String(total),
      TotalUncompressedSizeMB: mb,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A directory being made ahead ends first (the loop stops at the next one).
    await this.#preparing.catch(() => undefined);
    this.#db.close();
    this.#lock.release();
  }
}

/** The header of a file, parsed from its first bytes when the caller has them, else read from disk. */
async function headerOf(path: string, size: number, head: Buffer | undefined): Promise<DicomHeader> {
  if (head && head.length > 0) {
    try {
      return parseDicomHeader(head);
    } catch (e) {
      // A header longer than the bytes at hand is read from the file; anything else is the answer.
      if (!(isDicomTruncated(e) && head.length < size)) throw e;
    }
  }
  return readDicomHeaderFromFile(path);
}

/** Orthanc's IndexInSeries: InstanceNumber, else ImageIndex, when it is an integer. */
function indexInSeriesOf(tags: MainTags): number | null {
  const v = (tags.InstanceNumber ?? tags.ImageIndex)?.trim();
  return v !== undefined && /^[+-]?\d{1,15}$/.test(v) ? Number.parseInt(v, 10) : null;
}

function strictInt(v: string | undefined): number | undefined {
  return v !== undefined && /^[+-]?\d{1,15}$/.test(v) ? Number.parseInt(v, 10) : undefined;
}

/**
 * How many instances a series announces, as Orthanc computes it from the series' main tags:
 * ImagesInAcquisition x NumberOfTemporalPositions, else NumberOfSlices x NumberOfTimeSlices, else
 * CardiacNumberOfImages. Undefined when none applies or the product is not positive.
 */
function expectedInstances(tags: MainTags): number | undefined {
  const pairs: [string, string | undefined][] = [
    ['ImagesInAcquisition', 'NumberOfTemporalPositions'],
    ['NumberOfSlices', 'NumberOfTimeSlices'],
    ['CardiacNumberOfImages', undefined],
  ];
  for (const [a, b] of pairs) {
    if (tags[a] === undefined || (b !== undefined && tags[b] === undefined)) continue;
    const x = strictInt(tags[a]);
    const y = b === undefined ? 1 : strictInt(tags[b]);
    if (x === undefined || y === undefined) return undefined;
    return x * y > 0 ? x * y : undefined;
  }
  return undefined;
}
