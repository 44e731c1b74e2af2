// The embedded store: DICOM files on local disk plus an index (InstanceIndex, SQLite by default), with
// the resource queries that Orthanc's REST API needs. Files are adopted atomically (temporary file, fsync,
// rename, one index transaction) and a journal of files being adopted or removed makes a crash leave
// nothing behind.
import { randomUUID } from 'node:crypto';
import { createReadStream, renameSync, unlinkSync } from 'node:fs';
import { link, mkdir, open, readdir, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { isDicomTruncated, parseDicomHeader, readDicomHeaderFromFile } from '../../dicom/parse.ts';
import { orthancIds } from '../../dicom/ids.ts';
import type { DicomHeader, Level, MainTags, OrthancIds } from '../../dicom/types.ts';
import { XferError, isXferError } from '../../errors.ts';
import { fsyncDir, fsyncFile, md5File } from '../../util/fs.ts';
import { lockDirectory, type DirLock } from '../../util/dir-lock.ts';
import { mapLimit } from '../../util/concurrency.ts';
import type { FindRequest } from '../find.ts';
import type { CommitResult, IngestHints, IngestResult, InstanceInfo, InstanceTags, PreparedFile, StagedInstance, Store } from '../types.ts';
import { openDb } from './db.ts';
import type { AdoptResult, IndexedResource, IndexEntry, InstanceIndex, ReplacePolicy } from './instance-index.ts';
import { LEVEL_PATH, ResourceViews, type OrthancResource } from './resources.ts';
import { SqliteInstanceIndex } from './sqlite-index.ts';

export { LEVEL_PATH, type OrthancResource };

/** File-system calls in flight at once during a commit (they mostly wait on the disk). */
const IO_PARALLELISM = 16;

/** Most file names held with their directory made ahead of a commit (prepareFiles). */
const MAX_READY_FILES = 100_000;

export interface EmbeddedStoreOptions {
  /** Replace an instance that is stored again (Orthanc's OverwriteInstances). */
  overwriteInstances?: boolean;
  /** Seconds without a new instance after which a resource is stable (Orthanc's StableAge). */
  stableAgeSeconds?: number;
  /** Parallel MD5 checks and header parses during a commit (Transfers.CommitThreadsCount). */
  commitThreads?: number;
  /** The index to use instead of index.sqlite in the store's directory; the store closes it. */
  index?: InstanceIndex;
}

/** A staged instance whose file passed the checks of a commit. */
interface Checked {
  s: StagedInstance;
  header: DicomHeader;
  ids: OrthancIds;
}

const NOTHING_ADOPTED: AdoptResult = { adopted: [], kept: [], replaced: [] };

export class EmbeddedStore implements Store {
  readonly kind = 'embedded' as const;
  readonly features = { resourceApi: true } as const;
  readonly dir: string;
  readonly #index: InstanceIndex;
  readonly #views: ResourceViews;
  readonly #opts: Required<Omit<EmbeddedStoreOptions, 'index'>>;
  readonly #lock: DirLock;
  #closed = false;

  private constructor(dir: string, index: InstanceIndex, opts: Required<Omit<EmbeddedStoreOptions, 'index'>>, lock: DirLock) {
    this.dir = dir;
    this.#index = index;
    this.#opts = opts;
    this.#lock = lock;
    this.#views = new ResourceViews(index, (file) => this.#filePath(file), opts.stableAgeSeconds);
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
    let index: InstanceIndex;
    try {
      index = options.index ?? new SqliteInstanceIndex(openDb(join(dir, 'index.sqlite')));
    } catch (e) {
      lock.release();
      throw e;
    }
    const store = new EmbeddedStore(
      dir,
      index,
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
    for (const file of await this.#index.takeOrphans()) await unlink(this.#filePath(file)).catch(() => undefined);
    // Temporary files of interrupted uploads belong to nobody.
    for (const name of await readdir(join(this.dir, 'tmp'))) {
      await rm(join(this.dir, 'tmp', name), { recursive: true, force: true });
    }
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

  /** Files placed by prepareStaged and neither adopted nor released yet, with their instance's IDs. */
  readonly #placed = new Map<string, OrthancIds>();

  /**
   * Store.prepareStaged: a second link to each staged file at its place among the store's files, journalled
   * first (a crash leaves no file behind, see #recover), the batch in one directory flushed once, so that
   * the commit only writes the index. A link shares the staged file's data, so nothing is copied, and no
   * reader finds it before the index names it. Nothing for an instance the store holds already (unless it
   * overwrites).
   */
  async prepareStaged(batch: readonly StagedInstance[]): Promise<(PreparedFile | undefined)[]> {
    const out: (PreparedFile | undefined)[] = batch.map(() => undefined);
    if (this.#closed) return out;
    const files: string[] = [];
    try {
      const fit = batch.flatMap((s) => {
        const ids = s.verified && s.header ? orthancIds(s.header) : undefined;
        return ids?.instance === s.id ? [{ s, ids }] : [];
      });
      const stored = this.#opts.overwriteInstances ? new Map() : await this.#index.instances(fit.map((f) => f.s.id));
      const todo = fit.filter((f) => !stored.has(f.s.id));
      if (todo.length === 0) return out;
      // One directory for the batch (names that share their first four characters): one flush for all.
      const first = this.#newFile();
      for (let k = 0; k < todo.length; k++) files.push(k === 0 ? first : `${first.slice(0, 4)}${randomUUID().slice(4)}`);
      await this.#mkdirFor(first);
      await this.#index.journal(files, Date.now());
      for (const [k, f] of todo.entries()) this.#placed.set(files[k] as string, f.ids);
      const linked = await mapLimit(todo, IO_PARALLELISM, (f, k) =>
        link(f.s.path, this.#filePath(files[k] as string)).then(
          () => true,
          () => false,
        ),
      );
      await fsyncDir(dirname(this.#filePath(first)));
      const at = new Map(batch.map((s, i) => [s, i]));
      const failed: PreparedFile[] = [];
      todo.forEach((f, k) => {
        const file = { file: files[k] as string };
        if (linked[k]) out[at.get(f.s) as number] = file;
        else failed.push(file);
      });
      await this.releasePrepared(failed);
      return out;
    } catch {
      await this.releasePrepared(files.map((file) => ({ file })));
      return batch.map(() => undefined);
    }
  }

  /** Store.releasePrepared: removes the placed files (those of this store still placed) and their journal entries. */
  async releasePrepared(files: readonly PreparedFile[]): Promise<void> {
    const mine = files.map((f) => f.file).filter((f) => this.#placed.delete(f));
    if (mine.length === 0) return;
    for (const f of mine) await unlink(this.#filePath(f)).catch(() => undefined);
    await this.#index.unjournal(mine).catch(() => undefined);
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
    const ids = await this.#index.instanceIdsUnder(level, id);
    if (!ids) throw new XferError('UnknownResource', `${level} ${id}`);
    return ids.sort();
  }

  async instanceInfo(id: string): Promise<InstanceInfo> {
    const row = await this.#index.instance(id);
    if (!row) throw new XferError('UnknownResource', `Instance ${id}`);
    return { id, size: row.size, md5: row.md5 };
  }

  async findInstances(ids: readonly string[]): Promise<Map<string, InstanceInfo>> {
    const out = new Map<string, InstanceInfo>();
    for (const [id, row] of await this.#index.instances(ids)) out.set(id, { id, size: row.size, md5: row.md5 });
    return out;
  }

  async readRange(id: string, start: number, end: number): Promise<Readable> {
    const row = await this.#index.instance(id);
    if (!row) throw new XferError('UnknownResource', `Instance ${id}`);
    if (start < 0 || end < start || end > row.size) {
      throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id} (${row.size} bytes)`);
    }
    if (end === start) return Readable.from([]);
    return createReadStream(this.#filePath(row.file), { start, end: end - 1, highWaterMark: 256 * 1024 });
  }

  async readRangeInto(id: string, start: number, target: Uint8Array): Promise<void> {
    const row = await this.#index.instance(id);
    if (!row) throw new XferError('UnknownResource', `Instance ${id}`);
    const end = start + target.byteLength;
    if (start < 0 || end > row.size) {
      throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id} (${row.size} bytes)`);
    }
    if (end === start) return;
    const fh = await open(this.#filePath(row.file), 'r');
    try {
      let done = 0;
      // A regular file gives the whole range in one read; the loop only guards against short reads.
      for (let guard = 0; done < target.byteLength && guard < 1_000_000; guard++) {
        const { bytesRead } = await fh.read(target, done, target.byteLength - done, start + done);
        if (bytesRead === 0) throw new XferError('CorruptedFile', `the file of instance ${id} ends at ${start + done}, before ${end}`);
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }

  async ingestFile(path: string, size: number, md5: string, hints: IngestHints = {}): Promise<IngestResult> {
    const header = await headerOf(path, size, hints.head);
    const ids = orthancIds(header);
    const existing = await this.#index.instance(ids.instance);
    if (existing && !this.#opts.overwriteInstances) {
      await unlink(path).catch(() => undefined);
      return { ids, status: 'AlreadyStored' };
    }
    if (!hints.synced) await fsyncFile(path);
    const file = this.#newFile();
    await this.#mkdirFor(file);
    // The file's data is on disk (fsync before the rename); the directory entry is not flushed on its
    // own, as the index itself commits with synchronous=NORMAL: a power loss may lose the newest
    // instances entirely, never keep half of one. Two uploads of one instance at once: the index keeps
    // the first (its adoption is atomic), the second answers AlreadyStored.
    const entry = indexEntry(header, ids, file, size, md5);
    const r = await this.#adopt([entry], [path], this.#opts.overwriteInstances ? 'always' : 'never');
    await this.#removeFiles(r.replaced);
    return { ids, status: r.adopted.length > 0 ? 'Success' : 'AlreadyStored' };
  }

  async commitStaged(staged: readonly StagedInstance[]): Promise<CommitResult> {
    const checked = await this.#checkStaged(staged);
    const stored = await this.#index.instances(checked.map((c) => c.ids.instance));
    const fresh: IndexEntry[] = [];
    // The staged path of each fresh instance to move in, undefined for a file prepareStaged placed already.
    const freshPaths: (string | undefined)[] = [];
    const alreadyStored: string[] = [];
    const unneeded: PreparedFile[] = [];
    const toSync: string[] = [];
    for (const c of checked) {
      const placed = c.s.verified && c.s.prepared && this.#placed.has(c.s.prepared.file) ? c.s.prepared : undefined;
      const existing = stored.get(c.ids.instance);
      if (existing && (!this.#opts.overwriteInstances || existing.md5 === c.s.md5)) {
        alreadyStored.push(c.s.id);
        if (placed) unneeded.push(placed);
        continue;
      }
      fresh.push(indexEntry(c.header, c.ids, placed?.file ?? this.#newFile(), c.s.size, c.s.md5));
      freshPaths.push(placed ? undefined : c.s.path);
      if (!c.s.synced) toSync.push(c.s.path);
    }
    await this.releasePrepared(unneeded);
    const toMove = fresh.filter((_, i) => freshPaths[i] !== undefined);
    // Directories made and data flushed many at a time: one by one, a thousand instances wait on the disk
    // a thousand times.
    await mapLimit(toMove, IO_PARALLELISM, (a) => this.#mkdirFor(a.file));
    await mapLimit(toSync, IO_PARALLELISM, (p) => fsyncFile(p));
    // The index decides again, in its transaction, for instances stored meanwhile by someone else.
    const policy: ReplacePolicy = this.#opts.overwriteInstances ? 'if-different' : 'never';
    const r = fresh.length > 0 ? await this.#adopt(fresh, freshPaths, policy) : NOTHING_ADOPTED;
    alreadyStored.push(...r.kept.map((k) => k.id));
    const adopted = new Set(r.adopted);
    // The directories of placed files were flushed when they were placed.
    const dirs = new Set(toMove.filter((a) => adopted.has(a.ids.instance)).map((a) => dirname(this.#filePath(a.file))));
    await mapLimit([...dirs], IO_PARALLELISM, (d) => fsyncDir(d));
    await this.#removeFiles(r.replaced);
    const already = new Set(alreadyStored);
    await mapLimit(
      staged.filter((s) => already.has(s.id)),
      IO_PARALLELISM,
      (s) => unlink(s.path).catch(() => undefined),
    );
    return { stored: [...r.adopted].sort(), alreadyStored: alreadyStored.sort() };
  }

  /** Checks every staged file (size, MD5 unless verified, header, instance ID); CorruptedFile naming all that fail. */
  async #checkStaged(staged: readonly StagedInstance[]): Promise<Checked[]> {
    const problems: string[] = [];
    // The checks wait mostly on file opens and reads: many at a time, or a thousand small files wait on
    // the disk a thousand times in a row (CommitThreadsCount raises it further for MD5-heavy commits).
    const checked = await mapLimit(staged, Math.max(this.#opts.commitThreads, IO_PARALLELISM), async (s): Promise<Checked | undefined> => {
      // Placed by prepareStaged: checked then (verified, its header the very bytes hashed, its IDs taken).
      const placed = s.verified && s.header && s.prepared ? this.#placed.get(s.prepared.file) : undefined;
      if (s.header && placed?.instance === s.id) return { s, header: s.header, ids: placed };
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
    return checked.filter((c): c is Checked => c !== undefined);
  }

  /**
   * Moves the files into place and indexes them in one index transaction; all or nothing. The files enter
   * the journal before they move, so that a crash in between leaves none behind. A source left undefined
   * is a file placed already (prepareStaged), journalled then and left to its owner's release on failure.
   * The new files of instances the index kept are removed here; those of replaced instances are the
   * caller's to remove.
   */
  async #adopt(entries: readonly IndexEntry[], sources: readonly (string | undefined)[], policy: ReplacePolicy): Promise<AdoptResult> {
    const now = Date.now();
    const files = entries.map((e) => e.file);
    const moving = files.filter((_, i) => sources[i] !== undefined);
    await this.#index.journal(moving, now);
    const moved: { file: string; source: string }[] = [];
    let result: AdoptResult;
    try {
      entries.forEach((e, i) => {
        const source = sources[i];
        if (source === undefined) return;
        renameSync(source, this.#filePath(e.file));
        moved.push({ file: e.file, source });
      });
      result = await this.#index.adopt(entries, policy, now);
    } catch (e) {
      // Put the staged files back where they came from, so that nothing half-adopted stays.
      for (const { file, source } of moved) {
        try {
          renameSync(this.#filePath(file), source);
        } catch {
          try {
            unlinkSync(this.#filePath(file));
          } catch {
            // already gone
          }
        }
      }
      await this.#index.unjournal(moving).catch(() => undefined);
      throw new XferError('Database', 'cannot index the instances', { cause: e });
    }
    for (const f of files) this.#placed.delete(f);
    await this.#removeFiles(result.kept.map((k) => k.file));
    return result;
  }

  /** Removes files whose index rows are gone; they were journalled. */
  async #removeFiles(files: readonly string[]): Promise<void> {
    if (files.length === 0) return;
    for (const f of files) await unlink(this.#filePath(f)).catch(() => undefined);
    await this.#index.unjournal(files);
  }

  // ---- Orthanc's resource REST API ----

  /** IDs of every resource of a level, in the order they were stored; `since` skips, `limit` caps. */
  async listResources(level: Level, since = 0, limit = 0): Promise<string[]> {
    return this.#index.list(level, since, limit);
  }

  /** A resource in Orthanc's object shape, or undefined when absent. */
  async getResource(level: Level, id: string): Promise<OrthancResource | undefined> {
    const row = await this.#index.resource(id, level);
    return row ? this.#views.format(row) : undefined;
  }

  /** The instances under a resource, each in Orthanc's instance shape; undefined when absent. */
  async instancesOf(level: Level, id: string): Promise<OrthancResource[] | undefined> {
    const rows = await this.#index.instancesUnder(level, id);
    if (!rows) return undefined;
    const out: OrthancResource[] = [];
    for (const r of rows) out.push(await this.#views.format(r));
    return out;
  }

  /** The resources of a level that are direct children of a resource; undefined when absent. */
  async childrenOf(level: Level, id: string): Promise<OrthancResource[] | undefined> {
    const rows = await this.#index.children(level, id);
    if (!rows) return undefined;
    const out: OrthancResource[] = [];
    for (const r of rows) out.push(await this.#views.format(r));
    return out;
  }

  /** Where an instance's file is and how big it is, for serving it. */
  async instanceFile(id: string): Promise<{ path: string; size: number; md5: string } | undefined> {
    const row = await this.#index.instance(id);
    return row ? { path: this.#filePath(row.file), size: row.size, md5: row.md5 } : undefined;
  }

  /**
   * Deletes a resource, its descendants and their files, and parents left empty. Answers Orthanc's
   * `RemainingAncestor`, or undefined when the resource is absent.
   */
  async deleteResource(level: Level, id: string): Promise<{ RemainingAncestor: OrthancResource | null } | undefined> {
    const removed = await this.#index.remove(level, id, Date.now());
    if (!removed) return undefined;
    await this.#removeFiles(removed.files);
    const rem = removed.remaining;
    if (!rem) return { RemainingAncestor: null };
    return { RemainingAncestor: { ID: rem.id, Path: `/${LEVEL_PATH[rem.level]}/${rem.id}`, Type: rem.level } };
  }

  /** Store.mainTags: from the index, the instance and its ancestors (the study's copy of its patient's tags first). */
  async mainTags(instanceId: string): Promise<InstanceTags | undefined> {
    const chain: IndexedResource[] = [];
    for (let r = await this.#index.resource(instanceId, 'Instance'); r && chain.length < 4; ) {
      chain.push(r);
      r = r.parent === undefined ? undefined : await this.#index.resource(r.parent);
    }
    const [instance, series, study, patient] = chain;
    if (!instance || !series || !study || !patient) return undefined;
    const tags: Record<string, string> = {};
    for (const t of [patient.mainTags, study.patientTags ?? {}, study.mainTags, series.mainTags, instance.mainTags]) Object.assign(tags, t);
    return { ids: { patient: patient.id, study: study.id, series: series.id, instance: instance.id }, tags };
  }

  /** Store.deleteInstances: each instance as DELETE /instances/{id} does it. */
  async deleteInstances(ids: readonly string[]): Promise<string[]> {
    const left: string[] = [];
    for (const id of ids) {
      try {
        await this.deleteResource('Instance', id);
      } catch {
        left.push(id);
      }
    }
    return left;
  }

  /** Orthanc's `/tools/find` over the index (see ResourceViews.find). */
  async find(req: FindRequest): Promise<string[] | OrthancResource[]> {
    return this.#views.find(req);
  }

  /** Orthanc's /statistics. */
  async statistics(): Promise<Record<string, unknown>> {
    return this.#views.statistics();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A directory being made ahead ends first (the loop stops at the next one).
    await this.#preparing.catch(() => undefined);
    await this.#index.close();
    this.#lock.release();
  }
}

/** What the index records of one instance. */
function indexEntry(header: DicomHeader, ids: OrthancIds, file: string, size: number, md5: string): IndexEntry {
  return {
    ids,
    tags: header.mainTags,
    file,
    size,
    md5,
    transferSyntax: header.transferSyntaxUid,
    sopClass: header.sopClassUid ?? null,
    indexInSeries: indexInSeriesOf(header.mainTags.Instance),
  };
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
