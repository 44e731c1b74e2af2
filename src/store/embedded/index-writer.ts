// A worker thread that runs the SQLite index's large adoptions (a commit's one transaction, a few hundred
// milliseconds for thousands of instances) on its own connection, so that the event loop keeps serving.
import { setImmediate as turn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { AdoptResult, IndexEntry, ReplacePolicy } from './instance-index.ts';

/**
 * The worker's bootstrap, plain JavaScript: it registers the TypeScript loader (a thread does not inherit
 * the one registered in-process by bin/dicom-xfer.mjs), then opens the database with the very index code
 * of the main thread, so that an adoption does the same statements whichever thread runs it.
 */
const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ready = (async () => {
  const tsx = await import(workerData.tsx);
  tsx.register();
  const { openDb } = await import(workerData.db);
  const { SqliteInstanceIndex } = await import(workerData.index);
  return new SqliteInstanceIndex(openDb(workerData.path), { workerMin: Number.POSITIVE_INFINITY });
})();
const parts = new Map();
parentPort.on('message', (m) => {
  const entries = parts.get(m.id) ?? [];
  for (const e of m.entries) entries.push(e);
  if (!m.last) {
    parts.set(m.id, entries);
    return;
  }
  parts.delete(m.id);
  ready
    .then((index) => index.adopt(entries, m.replace, m.now))
    .then(
      (result) => parentPort.postMessage({ id: m.id, result }),
      (e) => parentPort.postMessage({ id: m.id, error: String((e && e.details) || (e && e.message) || e) }),
    );
});
`;

/** Entries copied to the worker per message. */
const SLICE = 256;

interface Answer {
  id: number;
  result?: AdoptResult;
  error?: string;
}

/** One worker with its own connection to one database file, started on first use; idle, it never keeps the process alive. */
export class IndexWriter {
  readonly #path: string;
  #worker: Worker | undefined;
  #next = 1;
  readonly #waiting = new Map<number, { resolve(r: AdoptResult): void; reject(e: Error): void }>();

  constructor(path: string) {
    this.#path = path;
  }

  /** Runs SqliteInstanceIndex.adopt in the worker; the caller keeps every other write of the index behind it. */
  async adopt(entries: readonly IndexEntry[], replace: ReplacePolicy, now: number): Promise<AdoptResult> {
    const w = this.#start();
    const id = this.#next++;
    const answer = new Promise<AdoptResult>((resolve, reject) => {
      // Held while it has work, so that the process waits for a commit it asked for; let go when idle.
      if (this.#waiting.size === 0) w.ref();
      this.#waiting.set(id, { resolve, reject });
    });
    // Handled here too: the worker may die between two slices, before the caller awaits the answer.
    answer.catch(() => undefined);
    // Sent in slices, a turn of the event loop between two: copying thousands of entries for the thread at
    // once is itself a stall of tens of ms. The worker begins once it has them all.
    for (let at = 0; at === 0 || at < entries.length; at += SLICE) {
      if (at > 0) await turn();
      if (this.#worker !== w) break;
      w.postMessage({ id, entries: entries.slice(at, at + SLICE), last: at + SLICE >= entries.length, replace, now });
    }
    return answer;
  }

  /** Stops the worker (its connection closes with it); the caller has waited for its adoptions. */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(SOURCE, {
      eval: true,
      workerData: {
        path: this.#path,
        tsx: import.meta.resolve('tsx/esm/api'),
        db: new URL('./db.ts', import.meta.url).href,
        index: new URL('./sqlite-index.ts', import.meta.url).href,
      },
    });
    w.on('message', (a: Answer) => {
      const waiter = this.#waiting.get(a.id);
      this.#waiting.delete(a.id);
      if (this.#waiting.size === 0) w.unref();
      if (!waiter) return;
      if (a.error !== undefined || a.result === undefined) waiter.reject(new Error(a.error ?? 'no answer from the index writer'));
      else waiter.resolve(a.result);
    });
    const fail = (e: unknown) => {
      // A worker that died (out of memory, terminated) leaves an open transaction uncommitted (SQLite rolls it
      // back): every waiter is refused, the next adoption starts another.
      if (this.#worker === w) this.#worker = undefined;
      for (const waiter of this.#waiting.values()) waiter.reject(e instanceof Error ? e : new Error(String(e)));
      this.#waiting.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`the index writer exited (${code})`)));
    w.unref();
    this.#worker = w;
    return w;
  }
}
