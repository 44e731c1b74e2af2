// The Orthanc store: dicom-xfer runs beside a real Orthanc (1.5 or later) and keeps the DICOM there,
// reached through Orthanc's REST API. Sizes and MD5s come from Orthanc's attachment information, ranges
// are streamed from /instances/{id}/file, and a commit stores instance by instance, removing what it
// added when one store fails, so the destination ends as it was. The node's own storage directory
// still holds staging, jobs and peers.
import { createReadStream } from 'node:fs';
import { mkdir, stat, unlink } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { isOrthancId, orthancIds } from '../../dicom/ids.ts';
import { readDicomHeaderFromFile } from '../../dicom/parse.ts';
import type { Level, OrthancIds } from '../../dicom/types.ts';
import { orthancMainTags } from './main-tags.ts';
import { XferError, isXferError } from '../../errors.ts';
import { mapLimit } from '../../util/concurrency.ts';
import { md5File } from '../../util/fs.ts';
import type { CommitResult, IngestHints, IngestResult, IngestStatus, InstanceInfo, InstanceTags, StagedInstance, Store } from '../types.ts';
import { OrthancClient, type OrthancResponse } from './client.ts';
import { lockDirectory, type DirLock } from '../../util/dir-lock.ts';
import { RangeCache } from './range-cache.ts';

export interface OrthancStoreOptions {
  /** Base URL of Orthanc's REST API. */
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  /** The node's storage directory (staging, jobs, peers, range copies); locked for this process. */
  storageDirectory: string;
  /** Seconds to wait for an answer of Orthanc, and the longest silence inside one; 0 = none. Default 60. */
  timeoutSeconds?: number | undefined;
  /** Instances verified, and stored into Orthanc, at once during a commit (Transfers.CommitThreadsCount). */
  commitThreads?: number | undefined;
  /** Bytes of local copies of instances kept for range reads when Orthanc ignores Range. Default 1 GiB. */
  rangeCacheBytes?: number | undefined;
  /** HttpsVerifyPeers, for an https:// Orthanc. */
  verifyPeers?: boolean | undefined;
  /** HttpsCACertificates, for an https:// Orthanc. */
  caFile?: string | undefined;
  logger?: Logger | undefined;
}

/** What Orthanc says about itself (GET /system). */
export interface OrthancSystem {
  name: string;
  version: string;
}

/** Size, MD5 (when Orthanc stored one) and attachment UUID of an instance's DICOM file. */
interface Attachment {
  size: number;
  md5: string | undefined;
  uuid: string | undefined;
}

const LEVEL_PATH: Record<Level, string> = { Patient: 'patients', Study: 'studies', Series: 'series', Instance: 'instances' };
const MD5_RE = /^[0-9a-f]{32}$/;
/** Parallel attachment look-ups of one findInstances call. */
const LOOKUP_THREADS = 8;
/** MD5s computed from the bytes (when Orthanc stored none), kept per attachment. */
const MD5_CACHE_ENTRIES = 4096;
/**
 * When Orthanc sends a whole file for a range, up to this many unwanted bytes are read and dropped;
 * beyond it the file is copied to local disk once and the ranges are read from the copy.
 */
const SKIP_LIMIT = 8 * 1024 * 1024;

function safeInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** `bytes a-b/total` of a 206 answer. */
function parseContentRange(v: string | string[] | undefined): { start: number; end: number; total: number } | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  const m = s ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(s.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
}

function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const v = headers['content-length'];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

export class OrthancStore implements Store {
  readonly kind = 'orthanc' as const;
  readonly features = { resourceApi: false } as const;
  readonly #client: OrthancClient;
  readonly #dir: string;
  readonly #cache: RangeCache;
  readonly #commitThreads: number;
  readonly #logger: Logger | undefined;
  /** Whether Orthanc answers /attachments/dicom/info (older versions only have .../size and .../md5). */
  #infoRoute: boolean | undefined;
  /** Whether Orthanc honours Range on /file (1.10.1 does not). */
  #rangeHonoured: boolean | undefined;
  readonly #md5s = new Map<string, string>();
  readonly #md5Pending = new Map<string, Promise<string>>();
  /** Instances whose file is being asked for, so that concurrent range readers wait for one answer. */
  readonly #opening = new Map<string, Promise<void>>();
  readonly #lock: DirLock;
  #closed = false;

  private constructor(client: OrthancClient, dir: string, cache: RangeCache, opts: OrthancStoreOptions, lock: DirLock) {
    this.#lock = lock;
    this.#client = client;
    this.#dir = dir;
    this.#cache = cache;
    this.#commitThreads = Math.max(1, opts.commitThreads ?? 1);
    this.#logger = opts.logger;
  }

  /**
   * Opens the store: locks the storage directory, prepares staging, and asks Orthanc for /system once to
   * log what answers. An Orthanc that is down is not an error here: each operation that needs Orthanc
   * fails clearly while it is down and works again once it is back.
   */
  static async open(opts: OrthancStoreOptions): Promise<OrthancStore> {
    const dir = opts.storageDirectory;
    // First, as it refuses a malformed URL before anything is locked.
    const client = new OrthancClient({
      url: opts.url,
      username: opts.username,
      password: opts.password,
      timeoutMs: (opts.timeoutSeconds ?? 60) * 1000,
      verifyPeers: opts.verifyPeers,
      caFile: opts.caFile,
    });
    await mkdir(join(dir, 'staging'), { recursive: true });
    const lock = lockDirectory(dir);
    let cache: RangeCache;
    try {
      cache = await RangeCache.open({
        dir: join(dir, 'orthanc-range-cache'),
        maxBytes: opts.rangeCacheBytes ?? 1024 * 1024 * 1024,
        idleMs: 60_000,
      });
    } catch (e) {
      lock.release();
      throw e;
    }
    const store = new OrthancStore(client, dir, cache, opts, lock);
    try {
      const sys = await store.system();
      opts.logger?.info({ orthanc: client.url, name: sys.name, version: sys.version }, 'using the Orthanc store');
    } catch (e) {
      opts.logger?.warn(
        { orthanc: client.url, err: e instanceof Error ? e.message : String(e) },
        'Orthanc does not answer yet; operations that need it fail until it does',
      );
    }
    return store;
  }

  /** Orthanc's base URL (without credentials). */
  /** Orthanc's own `/tools/find` with a body already checked (the node answers it in Orthanc's shapes). */
  async find(body: Record<string, unknown>): Promise<unknown> {
    return this.#client.json({
      method: 'POST',
      path: '/tools/find',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  }

  /** A GET of Orthanc's REST API that answers JSON (the dashboard reads a study's series with it). */
  async getJson(path: string, signal?: AbortSignal): Promise<unknown> {
    return this.#client.json({ method: 'GET', path, signal });
  }

  get url(): string {
    return this.#client.url;
  }

  /** Orthanc's name and version (GET /system). */
  async system(): Promise<OrthancSystem> {
    const doc = await this.#client.json<Record<string, unknown>>({ method: 'GET', path: '/system' });
    return { name: String(doc['Name'] ?? ''), version: String(doc['Version'] ?? '') };
  }

  stagingRoot(): string {
    return join(this.#dir, 'staging');
  }

  // ---- reading ------------------------------------------------------------------------------------------

  async listInstances(level: Level, id: string): Promise<string[]> {
    if (!isOrthancId(id)) throw new XferError('UnknownResource', `${level} ${id}`);
    try {
      if (level === 'Instance') {
        await this.#client.json({ method: 'GET', path: `/instances/${id}` });
        return [id];
      }
      const list = await this.#client.json<unknown>({ method: 'GET', path: `/${LEVEL_PATH[level]}/${id}/instances` });
      if (!Array.isArray(list)) throw this.#unexpected(`/${LEVEL_PATH[level]}/${id}/instances`);
      const ids = list.map((o: unknown) => (typeof o === 'object' && o !== null ? (o as { ID?: unknown }).ID : undefined));
      // Orthanc answers [] for the ID of a resource of another level under /series/ (an existing
      // resource is never empty there): ask for the resource itself.
      if (ids.length === 0) await this.#client.json({ method: 'GET', path: `/${LEVEL_PATH[level]}/${id}` });
      return ids.filter(isOrthancId).sort();
    } catch (e) {
      // 400 "Bad type for a parameter" is Orthanc's answer for the ID of a resource of another level.
      if (isXferError(e, 'UnknownResource') || isXferError(e, 'BadParameterType')) {
        throw new XferError('UnknownResource', `${level} ${id}`);
      }
      throw e;
    }
  }

  async instanceInfo(id: string): Promise<InstanceInfo> {
    if (!isOrthancId(id)) throw new XferError('UnknownResource', `Instance ${id}`);
    const a = await this.#attachment(id);
    const md5 = a.md5 ?? (await this.#computedMd5(id, a));
    return { id, size: a.size, md5 };
  }

  async findInstances(ids: readonly string[]): Promise<Map<string, InstanceInfo>> {
    const out = new Map<string, InstanceInfo>();
    const wanted = [...new Set(ids)].filter(isOrthancId);
    await mapLimit(wanted, LOOKUP_THREADS, async (id) => {
      try {
        out.set(id, await this.instanceInfo(id));
      } catch (e) {
        if (!isXferError(e, 'UnknownResource')) throw e;
      }
    });
    // In the order asked, as the embedded store answers.
    return new Map(wanted.filter((id) => out.has(id)).map((id) => [id, out.get(id) as InstanceInfo]));
  }

  /** The attachment information of an instance; UnknownResource when Orthanc does not have it. */
  async #attachment(id: string): Promise<Attachment> {
    const base = `/instances/${id}/attachments/dicom`;
    const absent = () => new XferError('UnknownResource', `Instance ${id}`);
    if (this.#infoRoute !== false) {
      try {
        const doc = await this.#client.json<Record<string, unknown>>({ method: 'GET', path: `${base}/info` });
        const size = safeInt(doc['UncompressedSize']);
        if (size !== undefined) {
          this.#infoRoute = true;
          const md5 =
            typeof doc['UncompressedMD5'] === 'string' && MD5_RE.test(doc['UncompressedMD5']) ? doc['UncompressedMD5'] : undefined;
          const uuid = typeof doc['Uuid'] === 'string' ? doc['Uuid'] : undefined;
          return { size, md5, uuid };
        }
        this.#infoRoute = false;
      } catch (e) {
        if (!isXferError(e, 'UnknownResource')) throw e;
        if (this.#infoRoute === true) throw absent();
        // A 404 from an Orthanc without the info route, or an absent instance: .../size tells which.
      }
    }
    let sizeText: string;
    try {
      sizeText = (await this.#client.text(`${base}/size`)).trim();
    } catch (e) {
      throw isXferError(e, 'UnknownResource') ? absent() : e;
    }
    if (!/^\d+$/.test(sizeText)) throw this.#unexpected(`${base}/size`);
    if (this.#infoRoute === undefined) this.#infoRoute = false;
    let md5: string | undefined;
    try {
      const t = (await this.#client.text(`${base}/md5`)).trim();
      md5 = MD5_RE.test(t) ? t : undefined;
    } catch (e) {
      // 404: Orthanc stored no MD5 (StoreMD5ForAttachments false); it is computed from the bytes.
      if (!isXferError(e, 'UnknownResource')) throw e;
    }
    return { size: Number(sizeText), md5, uuid: undefined };
  }

  /**
   * The MD5 of an instance whose attachment has none: hashed from the (uncompressed) bytes Orthanc sends,
   * streamed, once per attachment (a small cache, and one download for concurrent callers).
   */
  async #computedMd5(id: string, a: Attachment): Promise<string> {
    const key = `${id}/${a.uuid ?? ''}/${a.size}`;
    const known = this.#md5s.get(key);
    if (known) return known;
    let p = this.#md5Pending.get(key);
    if (!p) {
      p = this.#client.retryIdempotent(async () => {
        const hash = createHash('md5');
        let n = 0;
        const res = await this.#client.request({ method: 'GET', path: `/instances/${id}/file` });
        try {
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            hash.update(chunk);
            n += chunk.length;
          }
        } catch (e) {
          throw this.#client.transportError(`GET /instances/${id}/file`, e);
        }
        if (n !== a.size)
          throw new XferError('NetworkProtocol', `Orthanc at ${this.url} sent ${n} bytes of instance ${id} instead of ${a.size}`);
        return hash.digest('hex');
      });
      this.#md5Pending.set(key, p);
    }
    try {
      const md5 = await p;
      this.#md5s.set(key, md5);
      if (this.#md5s.size > MD5_CACHE_ENTRIES) this.#md5s.delete(this.#md5s.keys().next().value as string);
      return md5;
    } catch (e) {
      throw isXferError(e, 'UnknownResource') ? new XferError('UnknownResource', `Instance ${id}`) : e;
    } finally {
      this.#md5Pending.delete(key);
    }
  }

  async readRange(id: string, start: number, end: number): Promise<Readable> {
    if (!isOrthancId(id)) throw new XferError('UnknownResource', `Instance ${id}`);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id}`);
    }
    // Concurrent readers of one instance (the buckets of a split instance) wait for the first one's
    // request: when Orthanc answers it with the whole file, they all read from the one local copy.
    for (let round = 0; round < 2; round++) {
      const copy = await this.#fromCopy(id, start, end);
      if (copy) return copy;
      const pending = this.#opening.get(id);
      if (!pending) break;
      await pending;
    }
    let opened!: () => void;
    this.#opening.set(id, new Promise<void>((resolve) => (opened = resolve)));
    try {
      return await this.#readFromOrthanc(id, start, end);
    } finally {
      this.#opening.delete(id);
      opened();
    }
  }

  async #fromCopy(id: string, start: number, end: number): Promise<Readable | undefined> {
    try {
      return await this.#cache.read(id, start, end);
    } catch (e) {
      throw this.#client.transportError(`GET /instances/${id}/file`, e);
    }
  }

  async #readFromOrthanc(id: string, start: number, end: number): Promise<Readable> {
    if (end === start) {
      const { size } = await this.instanceInfo(id);
      if (end > size) throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id} (${size} bytes)`);
      return Readable.from([]);
    }
    const path = `/instances/${id}/file`;
    let res: OrthancResponse;
    try {
      res = await this.#client.retryIdempotent(() =>
        this.#client.request({ method: 'GET', path, headers: { range: `bytes=${start}-${end - 1}` } }),
      );
    } catch (e) {
      if (isXferError(e, 'UnknownResource')) throw new XferError('UnknownResource', `Instance ${id}`);
      if (isXferError(e, 'BadRange')) throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id}`);
      throw e;
    }
    const what = `GET ${path}`;
    if (res.status === 206) {
      const cr = parseContentRange(res.headers['content-range']);
      if (!cr || cr.start !== start || cr.end !== end - 1) {
        res.body.destroy();
        throw new XferError('NetworkProtocol', `Orthanc at ${this.url} answered ${what} with another range than bytes=${start}-${end - 1}`);
      }
      this.#rangeHonoured = true;
      return this.#slice(res.body, 0, end - start, what);
    }
    // A 200: Orthanc sends the whole file whatever the Range header said.
    if (this.#rangeHonoured === undefined) {
      this.#rangeHonoured = false;
      this.#logger?.info({ orthanc: this.url }, 'Orthanc ignores HTTP Range: large instances are read through local copies');
    }
    const total = contentLength(res.headers) ?? (await this.instanceInfo(id).catch(() => undefined))?.size;
    if (total === undefined) {
      res.body.destroy();
      throw this.#unexpected(path);
    }
    if (end > total) {
      res.body.destroy();
      throw new XferError('ParameterOutOfRange', `range ${start}-${end} of instance ${id} (${total} bytes)`);
    }
    if (total - (end - start) <= SKIP_LIMIT || !(await this.#cache.canHold(total))) {
      return this.#slice(res.body, start, end, what);
    }
    this.#cache.begin(id, total, res.body);
    const copy = await this.#fromCopy(id, start, end);
    if (!copy) throw new XferError('InternalError', `the local copy of instance ${id} could not be made`);
    return copy;
  }

  /**
   * The bytes [skip, end) of an answer body as a stream: bytes before `skip` are dropped, the answer is
   * closed once `end` is reached, and an answer cut short fails the stream with an error naming Orthanc.
   */
  #slice(body: Readable, skip: number, end: number, what: string): Readable {
    const client = this.#client;
    const url = this.url;
    async function* bytes(): AsyncGenerator<Buffer> {
      let pos = 0;
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          const from = pos;
          pos += chunk.length;
          if (pos <= skip) continue;
          const piece = chunk.subarray(Math.max(0, skip - from), Math.min(chunk.length, end - from));
          if (piece.length > 0) yield piece;
          if (pos >= end) break;
        }
      } catch (e) {
        throw client.transportError(what, e);
      } finally {
        if (!body.readableEnded) body.destroy();
      }
      if (pos < end) throw new XferError('NetworkProtocol', `Orthanc at ${url} ended ${what} after ${pos} bytes, ${end} expected`);
    }
    return Readable.from(bytes(), { objectMode: false });
  }

  // ---- writing ------------------------------------------------------------------------------------------

  async ingestFile(path: string, size: number, _md5: string, _hints?: IngestHints): Promise<IngestResult> {
    const { ids, status } = await this.#post(path, size);
    await unlink(path).catch(() => undefined);
    return { ids, status };
  }

  /**
   * POST /instances with the file streamed. Resolves with Orthanc's verdict and the attempt that got it
   * (a retried store that answers AlreadyStored may have been stored by the attempt before).
   */
  async #post(path: string, size: number): Promise<{ ids: OrthancIds; status: IngestStatus; attempt: number }> {
    let attempt = 0;
    const doc = await this.#client.retryIdempotent(async () => {
      attempt++;
      return this.#client.json<Record<string, unknown>>({
        method: 'POST',
        path: '/instances',
        headers: { 'content-type': 'application/dicom' },
        body: { stream: createReadStream(path, { highWaterMark: 1 << 20 }), length: size },
      });
    });
    const status = doc['Status'];
    if (status === 'FilteredOut') {
      throw new XferError(
        'ForbiddenAccess',
        `Orthanc at ${this.url} refused the instance (Status "FilteredOut": ` +
          'a filter of Orthanc, such as a Lua ReceivedInstanceFilter, rejected it)',
      );
    }
    const ids = {
      patient: doc['ParentPatient'],
      study: doc['ParentStudy'],
      series: doc['ParentSeries'],
      instance: doc['ID'],
    };
    if ((status !== 'Success' && status !== 'AlreadyStored') || !Object.values(ids).every(isOrthancId)) {
      throw this.#unexpected('/instances', `Status ${JSON.stringify(status)}`);
    }
    return { ids: ids as OrthancIds, status, attempt };
  }

  /**
   * Verifies every staged instance (size, MD5, DICOM header, Orthanc ID) before storing any. Then stores
   * the ones Orthanc lacks, CommitThreadsCount at a time. Orthanc has no transaction: when a store fails,
   * the instances this commit added are deleted again (those there before are never touched, nor sent
   * again), so Orthanc ends as it was, and the error names the instance that failed and why. Instances
   * become visible one by one while the commit runs.
   */
  async commitStaged(staged: readonly StagedInstance[]): Promise<CommitResult> {
    await this.#verify(staged);
    const before = await this.findInstances(staged.map((s) => s.id));
    const alreadyStored: string[] = [];
    const toStore: StagedInstance[] = [];
    for (const s of staged) {
      if (before.has(s.id)) alreadyStored.push(s.id);
      else toStore.push(s);
    }
    const added: string[] = [];
    let failure: { id: string; error: unknown } | undefined;
    await mapLimit(toStore, this.#commitThreads, async (s) => {
      if (failure) return;
      try {
        const r = await this.#post(s.path, s.size);
        if (r.ids.instance !== s.id) {
          // Orthanc computed another ID than ours: keep it to remove it, and fail.
          if (r.status === 'Success') added.push(r.ids.instance);
          throw new XferError('CorruptedFile', `Orthanc stored it as instance ${r.ids.instance}`);
        }
        if (r.status === 'Success' || r.attempt > 1) added.push(s.id);
        else alreadyStored.push(s.id);
      } catch (error) {
        failure ??= { id: s.id, error };
      }
    });
    if (failure) {
      const why = failure.error instanceof Error ? failure.error.message : String(failure.error);
      const left = await this.#remove(added);
      const undo =
        left.length === 0
          ? `the ${added.length} instances this commit had stored were removed again`
          : `${left.length} of the ${added.length} instances this commit had stored could not be removed: ${left.join(', ')}`;
      this.#logger?.warn({ orthanc: this.url, instance: failure.id, err: why, removed: added.length - left.length }, 'commit failed');
      // Orthanc unreachable or too slow is no fault of the data: the staged files stay, and the same
      // commit may be made again once Orthanc is back (what it already holds is then skipped).
      const transient = isXferError(failure.error, 'DatabaseUnavailable') || isXferError(failure.error, 'Timeout');
      throw new XferError(
        transient ? (failure.error as XferError).code : 'CorruptedFile',
        `instance ${failure.id} was not stored into Orthanc (${why}); ${undo}`,
        {
          cause: failure.error,
        },
      );
    }
    for (const s of staged) await unlink(s.path).catch(() => undefined);
    return { stored: added.sort(), alreadyStored: alreadyStored.sort() };
  }

  /** Checks size, MD5, header and ID of every staged file; CorruptedFile naming each one that fails. */
  async #verify(staged: readonly StagedInstance[]): Promise<void> {
    const problems: string[] = [];
    await mapLimit(staged, this.#commitThreads, async (s) => {
      try {
        const st = await stat(s.path);
        if (st.size !== s.size) {
          problems.push(`${s.id}: ${st.size} bytes instead of ${s.size}`);
          return;
        }
        const actual = s.verified ? s.md5 : await md5File(s.path);
        if (actual !== s.md5) {
          problems.push(`${s.id}: bad MD5 (${actual} instead of ${s.md5})`);
          return;
        }
        const ids = orthancIds(await readDicomHeaderFromFile(s.path));
        if (ids.instance !== s.id) problems.push(`${s.id}: the file holds instance ${ids.instance}`);
      } catch (e) {
        problems.push(`${s.id}: ${isXferError(e) ? (e.details ?? e.message) : e instanceof Error ? e.message : String(e)}`);
      }
    });
    if (problems.length > 0) {
      problems.sort();
      throw new XferError(
        'CorruptedFile',
        `${problems.length} of ${staged.length} instances refused, nothing stored: ${problems.join('; ')}`,
      );
    }
  }

  /** Store.mainTags: Orthanc's own main tags of the instance, its series and its study. */
  mainTags(instanceId: string): Promise<InstanceTags | undefined> {
    return orthancMainTags(this.#client, instanceId);
  }

  /** Store.deleteInstances: DELETE /instances/{id} on Orthanc for each. */
  async deleteInstances(ids: readonly string[]): Promise<string[]> {
    return this.#remove(ids);
  }

  /** Deletes instances from Orthanc (an absent one counts as deleted). Returns those that could not be. */
  async #remove(ids: readonly string[]): Promise<string[]> {
    const left: string[] = [];
    await mapLimit(ids, this.#commitThreads, async (id) => {
      try {
        await this.#client.retryIdempotent(async () => {
          const res = await this.#client.request({ method: 'DELETE', path: `/instances/${id}` });
          res.body.resume();
        });
      } catch (e) {
        if (!isXferError(e, 'UnknownResource')) left.push(id);
      }
    });
    return left.sort();
  }

  #unexpected(path: string, what = 'an unexpected answer'): XferError {
    return new XferError('NetworkProtocol', `Orthanc at ${this.url} gave ${what} to ${path}`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#cache.close();
    await this.#client.close();
    this.#lock.release();
  }
}
