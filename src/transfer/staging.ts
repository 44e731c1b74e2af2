// The staging area of one incoming transfer: a directory with one pre-sized (sparse) file per declared
// instance, filled positionally by bucket payloads as they stream in, then handed to the store's atomic
// commit. Used by the push receiver; a pull download can use it the same way.
import { mkdir, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { XferError } from '../errors.ts';
import { sortUniqueInstances, type Bucket, type InstanceInfo } from '../protocol/wire.ts';
import type { StagedInstance } from '../store/types.ts';
import { mapLimit } from '../util/concurrency.ts';
import { BucketWriter, fileError, writeFully, type BucketTarget, type WriteBucketOptions } from './bucket-writer.ts';
import { InstanceChecks } from './staging-checks.ts';
import { CommitPreparation, type CommitPreparer } from './staging-prepare.ts';

export { decoding, fileError, type WriteBucketOptions } from './bucket-writer.ts';

/** Name of an instance's file inside a staging directory (IDs are lowercase hex and dashes only). */
export function stagedFileName(id: string): string {
  return `${id}.dcm`;
}

export class StagingArea {
  /** The directory holding the instance files. */
  readonly dir: string;
  readonly #instances: Map<string, InstanceInfo>;
  readonly #total: number;
  /** What is known of each instance's bytes as they land (MD5 verified while written, header). */
  readonly #checks: InstanceChecks;
  /** What the bucket writers get of this area. */
  readonly #target: BucketTarget;
  /** Creation of each file made or being made. */
  readonly #made = new Map<string, Promise<void>>();
  #removed = false;
  /** The commit's work done as instances are verified, when the store does it (staging-prepare.ts). */
  readonly #prep: CommitPreparation | undefined;

  private constructor(dir: string, instances: readonly InstanceInfo[], preparer?: CommitPreparer) {
    this.dir = dir;
    this.#instances = new Map(sortUniqueInstances(instances).map((i) => [i.ID, i]));
    let total = 0;
    for (const i of this.#instances.values()) total += i.Size;
    this.#total = total;
    this.#prep = preparer?.prepareStaged ? new CommitPreparation(preparer, (id) => this.#verifiedInstance(id)) : undefined;
    this.#checks = new InstanceChecks(
      (id) => this.#instances.get(id),
      (id) => this.pathOf(id),
      (id) => this.#prep?.ready(id),
    );
    this.#target = {
      instance: (id) => this.#instances.get(id),
      openForWrite: (id, whole) => this.#openForWrite(id, whole),
      checks: this.#checks,
    };
  }

  /**
   * Creates `dir` (and its parents) for one file per instance, each extended to its declared size without
   * writing data (sparse). Duplicated IDs collapse, the last declaration winning. The first files are made
   * before this resolves (so that a directory that cannot be written fails here, with the directory
   * removed and FullStorage / CannotWriteFile thrown); the others are made as the buckets write into them,
   * and the rest (instances no bucket writes: empty ones) by staged(), so that a transaction of 100,000
   * instances answers its create at once and makes no file ahead of its data. With a `preparer`, each
   * instance verified as it lands is handed to it (a few at a time, in the background), so that the commit
   * finds its work done.
   */
  static async create(dir: string, instances: readonly InstanceInfo[], preparer?: CommitPreparer): Promise<StagingArea> {
    const area = new StagingArea(dir, instances, preparer);
    try {
      await mkdir(dir, { recursive: true });
      const ids: string[] = [];
      for (const id of area.#instances.keys()) {
        if (ids.length >= FILE_PARALLELISM) break;
        ids.push(id);
      }
      await mapLimit(ids, FILE_PARALLELISM, (id) => area.#make(id));
    } catch (e) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw fileError(e, 'cannot create the staging files');
    }
    return area;
  }

  /**
   * The file of instance `id`, made (once) with its declared size; a creation that failed (a full disk)
   * is tried again by the next caller. Refused once the area is removed: no file outlives it.
   */
  async #make(id: string): Promise<void> {
    if (this.#removed) throw new XferError('UnknownResource', 'the staging area was removed');
    const made = this.#made.get(id);
    if (made) return made;
    await (await this.#create(id)).close();
  }

  /**
   * The file of instance `id` opened for positional writes. The bucket that makes the file writes through
   * the handle that made it (one open and close per instance, not two); the others open it once it is made.
   * A bucket that writes the `whole` instance does not size a file it makes: its writes do. Should it stop
   * short, the file keeps a wrong size, which nothing takes for data: a bucket is recorded only once all of
   * it is written and flushed, open() sizes again a file no recorded bucket wrote, and the commit checks the
   * size of every file it did not see verified.
   */
  async #openForWrite(id: string, whole = false): Promise<FileHandle> {
    if (this.#removed) throw new XferError('UnknownResource', 'the staging area was removed');
    const made = this.#made.get(id);
    if (!made) return this.#create(id, whole);
    await made;
    return open(this.pathOf(id), 'r+');
  }

  /**
   * Makes the file of `id` with its declared size (a fresh file left empty when `unsized`), recorded as made
   * once it is, and returns its open handle.
   */
  #create(id: string, unsized = false): Promise<FileHandle> {
    if (this.#removed) return Promise.reject(new XferError('UnknownResource', 'the staging area was removed'));
    const size = this.#instances.get(id)?.Size ?? 0;
    const creating = (async () => {
      // Never truncating a file that is there: another area on the same directory (the run before a
      // pause, whose last writes may still be running) may have made it and written into it.
      let fresh = true;
      const fh = await open(this.pathOf(id), 'wx').catch(async (e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        fresh = false;
        return open(this.pathOf(id), 'r+');
      });
      try {
        if (fresh ? !unsized : (await fh.stat()).size !== size) await fh.truncate(size);
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
      return fh;
    })();
    const mine = creating.then(() => undefined);
    mine.catch(() => {
      if (this.#made.get(id) === mine) this.#made.delete(id);
    });
    this.#made.set(id, mine);
    return creating;
  }

  /** Settles once every file is made; throws what their creation threw. */
  async #allMade(): Promise<void> {
    try {
      await mapLimit([...this.#instances.keys()], FILE_PARALLELISM, (id) => this.#make(id));
    } catch (e) {
      throw fileError(e, 'cannot create the staging files');
    }
  }

  /**
   * Reopens a staging area created earlier (after a pause or a restart). `written` names the instances
   * that a recorded bucket wrote into: their files must be there with their declared size, else
   * InexistentFile (e.g. a commit adopted them before a crash). The file of any other instance may not
   * have been made yet (files are made as buckets write into them): it is made as by create(), by the
   * bucket that writes into it or by staged(). With a `preparer`, the instances verified from now on are
   * handed to it as by create(); those written before are left to the commit.
   */
  static async open(
    dir: string,
    instances: readonly InstanceInfo[],
    written: ReadonlySet<string>,
    preparer?: CommitPreparer,
  ): Promise<StagingArea> {
    const area = new StagingArea(dir, instances, preparer);
    await mapLimit([...area.#instances.values()], FILE_PARALLELISM, async (i) => {
      const st = await stat(area.pathOf(i.ID)).catch(() => undefined);
      if (st?.isFile() && st.size === i.Size) {
        area.#made.set(i.ID, Promise.resolve());
      } else if (written.has(i.ID)) {
        throw new XferError('InexistentFile', `staged file of instance ${i.ID} is missing or has the wrong size`);
      }
    });
    return area;
  }

  /** Sum of the declared sizes of the (distinct) instances. */
  get totalSize(): number {
    return this.#total;
  }

  /** The declared instances, sorted by ID. */
  get instances(): InstanceInfo[] {
    return [...this.#instances.values()];
  }

  has(id: string): boolean {
    return this.#instances.has(id);
  }

  pathOf(id: string): string {
    return join(this.dir, stagedFileName(id));
  }

  /**
   * Checks that a bucket fits the declared instances, before any byte of it is read: UnknownResource
   * (404) for an undeclared instance, ParameterOutOfRange (400) for a chunk that runs past its
   * instance's declared size.
   */
  checkBucket(bucket: Bucket): void {
    for (const c of bucket) {
      const inst = this.#instances.get(c.ID);
      if (!inst) throw new XferError('UnknownResource', `instance ${c.ID} is not part of this transfer`);
      if (c.Offset + c.Size > inst.Size) {
        throw new XferError(
          'ParameterOutOfRange',
          `chunk [${c.Offset}, ${c.Offset + c.Size}) is outside instance ${c.ID} (${inst.Size} bytes)`,
        );
      }
    }
  }

  /**
   * Streams one bucket payload into the instance files: each piece is written at its place as it
   * arrives (nothing holds the whole bucket), the payload length must equal the bucket total
   * (NetworkProtocol "WriteUncompressedBucket: got != expected" otherwise, as soon as it runs over),
   * and the touched files are flushed to disk before this resolves. A payload cut short leaves its
   * bytes written, which is harmless: the bucket is simply not complete and will be sent again.
   * Resolves with the number of payload bytes written.
   */
  async writeBucket(bucket: Bucket, payload: AsyncIterable<Buffer> | Readable, opts: WriteBucketOptions = {}): Promise<number> {
    this.checkBucket(bucket);
    return new BucketWriter(this.#target, bucket, opts).write(payload);
  }

  /** Writes `data` at `offset` of an instance's file (ParameterOutOfRange past its declared size). */
  async writeAt(id: string, offset: number, data: Uint8Array): Promise<void> {
    this.checkBucket([{ ID: id, Offset: offset, Size: data.byteLength }]);
    await this.#make(id);
    const fh = await open(this.pathOf(id), 'r+');
    try {
      await writeFully(fh, data, offset);
    } catch (e) {
      throw fileError(e, `cannot write into the staged file of ${id}`);
    } finally {
      await fh.close();
    }
  }

  /**
   * The instances as the store's commitStaged wants them (once every file is made and hashed), with what
   * was prepared of them; a preparation that no longer holds (the file was written again since) is
   * released. Preparations not begun yet are left to the commit, and none begins after.
   */
  async staged(): Promise<StagedInstance[]> {
    await this.#allMade();
    await this.#checks.settled();
    // From the commit on, what was not prepared is the commit's (a commit retried later included).
    const prep = this.#prep;
    await prep?.stop();
    const stale: string[] = [];
    const out = this.instances.map((i): StagedInstance => {
      const verdict = this.#checks.verdict(i.ID);
      const s: StagedInstance = { id: i.ID, path: this.pathOf(i.ID), size: i.Size, md5: i.MD5, synced: true, ...verdict };
      const prepared = prep?.placed(i.ID);
      if (prepared && !verdict.verified) stale.push(i.ID);
      return prepared && verdict.verified ? { ...s, prepared } : s;
    });
    await prep?.release(stale);
    return out;
  }

  /** Instance `id` as the store wants it while it is verified with its header, else undefined. */
  #verifiedInstance(id: string): StagedInstance | undefined {
    const inst = this.#instances.get(id);
    const verdict = this.#checks.verdict(id);
    if (!inst || this.#removed || !verdict.verified || !verdict.header) return undefined;
    return { id, path: this.pathOf(id), size: inst.Size, md5: inst.MD5, synced: true, ...verdict };
  }

  /**
   * Undoes what was prepared and keeps the staged files (a pull paused or stopped: its next run reopens the
   * area and the commit takes those instances as they are). The area prepares nothing more.
   */
  async releasePrepared(): Promise<void> {
    await this.#prep?.stop();
    await this.#prep?.release();
  }

  /** Deletes the directory and everything in it (what a commit did not adopt). Never throws. */
  async remove(): Promise<void> {
    // Files still being made would land in a directory already gone, or make it again.
    this.#removed = true;
    await Promise.allSettled(this.#made.values());
    // What was prepared and not adopted by a commit leaves the store too (the store ignores adopted ones).
    await this.#prep?.stop();
    await this.#prep?.release();
    await StagingArea.discard(this.dir);
  }

  /** Removes the staging area in `dir`, if any, without opening it (a cancelled transfer's). */
  static async discard(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true, maxRetries: 2 }).catch(() => undefined);
  }
}

/** Staging files created (or checked) at once. */
const FILE_PARALLELISM = 16;

/** The instances that the buckets `done` (indexes into `buckets`) wrote into. */
export function writtenBy(buckets: readonly Bucket[], done: Iterable<number>): Set<string> {
  const ids = new Set<string>();
  for (const i of done) for (const c of buckets[i] ?? []) if (c.Size > 0) ids.add(c.ID);
  return ids;
}
