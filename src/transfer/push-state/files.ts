// The push transactions' state in files beside their staging: `push/<tx>/manifest.json` (the create body,
// written once), `push/<tx>/buckets.log` (one line per bucket received, appended and flushed) and
// `push-outcomes/<tx>.json` (each commit's outcome, kept for a day). What is read back goes through a schema.
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { XferError, isXferError } from '../../errors.ts';
import { PushCreateSchema, toWirePushCreate } from '../../protocol/wire.ts';
import { fsyncDir } from '../../util/fs.ts';
import { readStored, storedCodec, type StoredCodec } from '../../util/stored-json.ts';
import {
  OUTCOME_RETENTION_MS,
  TX_ID,
  commitOutcomeCodec,
  type CommitOutcome,
  type NewPushTransaction,
  type PushTransactionState,
  type ReloadedPushTransaction,
  type StoredPushTransaction,
} from './types.ts';

export { commitOutcomeCodec } from './types.ts';

const MANIFEST = 'manifest.json';
const DONE_LOG = 'buckets.log';
const MANIFEST_VERSION = 1;
/** Most outcomes kept (the oldest go first beyond this). */
const MAX_OUTCOMES = 10_000;

/** The manifest of a transaction, as kept in its staging directory (the create body in its wire form). */
const ManifestSchema = z.object({
  Version: z.literal(MANIFEST_VERSION),
  ID: z.string().regex(TX_ID),
  CreatedAt: z.number().int(),
  LastActivity: z.number().int(),
  Create: PushCreateSchema,
});
export type Manifest = z.output<typeof ManifestSchema>;

/** Manifests in and out: a manifest that does not read back (damaged, other version) is refused. */
export const manifestCodec: StoredCodec<Manifest> = {
  toJSON: (m) => JSON.stringify({ ...m, Create: toWirePushCreate(m.Create) }),
  fromJSON: (text) => readStored(ManifestSchema, text, 'manifest'),
};

/** One line of a transaction's log of received buckets. */
const DoneEntrySchema = z.object({ Bucket: z.number().int().nonnegative(), At: z.number().int() });
export const doneEntryCodec = storedCodec(DoneEntrySchema, 'received bucket');

export interface FilePushStateOptions {
  /** Directory of the transactions, one `<tx>/` each (shared with the staged files of that transaction). */
  dir: string;
  /** Directory of the recorded commit outcomes, one `<tx>.json` each. */
  outcomesDir: string;
  /** How long an outcome is kept; default OUTCOME_RETENTION_MS. */
  retentionMs?: number;
  /** Most outcomes kept; default 10,000. */
  maxOutcomes?: number;
  logger?: Logger | undefined;
}

/** Writes `text` to `file` through a flushed temporary file and a rename: the old or the new, never half. */
async function writeDurably(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await fsyncDir(join(file, '..'));
}

export class FilePushState implements PushTransactionState {
  readonly #dir: string;
  readonly #outcomesDir: string;
  readonly #retentionMs: number;
  readonly #maxOutcomes: number;
  readonly #log: Logger | undefined;
  /** Recorded commit outcomes by transaction ID, oldest first. */
  readonly #outcomes = new Map<string, CommitOutcome>();
  /** Transactions recorded (created, or listed and readable) and not deleted since. */
  readonly #known = new Set<string>();
  readonly #background = new Set<Promise<unknown>>();

  private constructor(opts: FilePushStateOptions) {
    this.#dir = opts.dir;
    this.#outcomesDir = opts.outcomesDir;
    this.#retentionMs = opts.retentionMs ?? OUTCOME_RETENTION_MS;
    this.#maxOutcomes = Math.max(1, opts.maxOutcomes ?? MAX_OUTCOMES);
    this.#log = opts.logger;
  }

  /** Makes both directories and reads the recorded outcomes (removing unreadable ones and the expired). */
  static async open(opts: FilePushStateOptions): Promise<FilePushState> {
    const s = new FilePushState(opts);
    await mkdir(s.#dir, { recursive: true });
    await mkdir(s.#outcomesDir, { recursive: true });
    await s.#loadOutcomes();
    return s;
  }

  async create(tx: NewPushTransaction): Promise<void> {
    const dir = join(this.#dir, tx.id);
    await mkdir(dir, { recursive: true });
    const manifest: Manifest = {
      Version: MANIFEST_VERSION,
      ID: tx.id,
      CreatedAt: tx.createdAt,
      LastActivity: tx.createdAt,
      Create: tx.create,
    };
    await writeDurably(join(dir, MANIFEST), manifestCodec.toJSON(manifest));
    this.#known.add(tx.id);
  }

  async recordBuckets(id: string, indexes: readonly number[], at: number): Promise<void> {
    if (!this.#known.has(id)) throw new XferError('UnknownResource', `no push transaction ${id}`);
    const fh = await open(join(this.#dir, id, DONE_LOG), 'a');
    try {
      await fh.write(indexes.map((i) => `${doneEntryCodec.toJSON({ Bucket: i, At: at })}\n`).join(''));
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  async list(): Promise<ReloadedPushTransaction[]> {
    const found: StoredPushTransaction[] = [];
    const refused: ReloadedPushTransaction[] = [];
    for (const name of await readdir(this.#dir).catch(() => [] as string[])) {
      // Not a transaction's directory: the receiver's to remove with the staging nobody owns.
      if (!TX_ID.test(name)) continue;
      if (this.#outcomes.has(name)) {
        // Its commit ended before a crash let the manifest go: the outcome is what counts.
        await this.delete(name);
        continue;
      }
      try {
        const tx = await this.#load(name);
        // No manifest: deleted, or created only in part; nothing to resume.
        if (!tx) continue;
        found.push(tx);
        this.#known.add(name);
      } catch (e) {
        refused.push({ ok: false, id: name, reason: isXferError(e) ? (e.details ?? e.message) : String(e) });
      }
    }
    found.sort((a, b) => a.lastActivity - b.lastActivity);
    return [...found.map((tx) => ({ ok: true as const, tx })), ...refused];
  }

  async #load(name: string): Promise<StoredPushTransaction | undefined> {
    const dir = join(this.#dir, name);
    let text: string;
    try {
      text = await readFile(join(dir, MANIFEST), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new XferError('BadFileFormat', `no readable manifest: ${(e as Error).message}`);
    }
    // Damaged, or of another version: BadFileFormat naming the field.
    const manifest = manifestCodec.fromJSON(text);
    if (manifest.ID !== name) throw new XferError('BadFileFormat', `manifest of another transaction (${manifest.ID})`);
    const count = manifest.Create.Buckets.length;
    const done = new Set<number>();
    let last = manifest.LastActivity;
    const log = await readFile(join(dir, DONE_LOG), 'utf8').catch(() => '');
    for (const line of log.split('\n')) {
      // A line torn by a crash (or otherwise unreadable) is ignored: that bucket will simply be sent again.
      let entry: z.output<typeof DoneEntrySchema>;
      try {
        entry = doneEntryCodec.fromJSON(line);
      } catch {
        continue;
      }
      if (entry.Bucket < count) done.add(entry.Bucket);
      last = Math.max(last, entry.At);
    }
    return {
      id: name,
      createdAt: manifest.CreatedAt,
      lastActivity: last,
      create: manifest.Create,
      buckets: [...done].sort((a, b) => a - b),
    };
  }

  async delete(id: string): Promise<void> {
    this.#known.delete(id);
    if (!TX_ID.test(id)) return;
    const dir = join(this.#dir, id);
    // The manifest first: without it nothing is resumed, whatever else a crash leaves.
    await rm(join(dir, MANIFEST), { force: true });
    await rm(join(dir, DONE_LOG), { force: true });
  }

  async finishCommit(o: CommitOutcome): Promise<void> {
    this.#outcomes.delete(o.ID);
    this.#outcomes.set(o.ID, o);
    try {
      await writeDurably(join(this.#outcomesDir, `${o.ID}.json`), commitOutcomeCodec.toJSON(o));
    } finally {
      // Recorded or not, the transaction is over; a crash before this line leaves both on disk, and
      // list() then honours the outcome.
      await this.delete(o.ID);
      if (this.#outcomes.size > this.#maxOutcomes) this.#track(this.pruneOutcomes(Date.now()));
    }
  }

  async outcome(id: string): Promise<CommitOutcome | undefined> {
    return this.#outcomes.get(id);
  }

  async pruneOutcomes(now: number): Promise<void> {
    // Every expired one (an outcome may have been recorded out of order), then the oldest recorded beyond the cap.
    const gone = new Set<string>();
    for (const o of this.#outcomes.values()) if (now - o.At > this.#retentionMs) gone.add(o.ID);
    for (const o of this.#outcomes.values()) {
      if (this.#outcomes.size - gone.size <= this.#maxOutcomes) break;
      gone.add(o.ID);
    }
    for (const id of gone) {
      this.#outcomes.delete(id);
      await rm(join(this.#outcomesDir, `${id}.json`), { force: true }).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    for (let i = 0; i < 100 && this.#background.size > 0; i++) await Promise.allSettled([...this.#background]);
  }

  async #loadOutcomes(): Promise<void> {
    const found: CommitOutcome[] = [];
    for (const name of await readdir(this.#outcomesDir).catch(() => [] as string[])) {
      const id = name.endsWith('.json') ? name.slice(0, -5) : '';
      if (TX_ID.test(id)) {
        try {
          const o = commitOutcomeCodec.fromJSON(await readFile(join(this.#outcomesDir, name), 'utf8'));
          if (o.ID === id) {
            found.push(o);
            continue;
          }
        } catch (e) {
          // Unreadable (damaged, or from an incompatible version): removed below.
          this.#log?.warn({ file: name, err: isXferError(e) ? e.details : String(e) }, 'removing an unreadable commit outcome');
        }
      }
      // A temporary file left by a crash, something that is not ours, or an unreadable outcome.
      await rm(join(this.#outcomesDir, name), { force: true }).catch(() => undefined);
    }
    found.sort((a, b) => a.At - b.At);
    for (const o of found) this.#outcomes.set(o.ID, o);
    await this.pruneOutcomes(Date.now());
  }

  #track(p: Promise<unknown>): void {
    const quiet = p.catch(() => undefined);
    this.#background.add(quiet);
    void quiet.finally(() => this.#background.delete(quiet));
  }
}
