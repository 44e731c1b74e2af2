// MD5 of staged files in a worker thread: a receiver's largest CPU item (a core-second or two per GB)
// leaves the event loop, which keeps answering HTTP routes and the dashboard while a transfer lands.
import { Worker } from 'node:worker_threads';

/**
 * The worker's code, plain JavaScript (it needs no TypeScript loader). One hash per key, fed with byte
 * ranges of files read back from the page cache: nothing is copied between the threads but paths.
 */
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const hashes = new Map();
const buf = Buffer.allocUnsafe(1024 * 1024);
function feed(hash, path, start, end) {
  const fd = openSync(path, 'r');
  try {
    for (let at = start; at < end; ) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, end - at), at);
      if (n === 0) throw new Error(path + ' ends at ' + at + ', before ' + end);
      hash.update(buf.subarray(0, n));
      at += n;
    }
  } finally {
    closeSync(fd);
  }
}
function step(m) {
  let hash = hashes.get(m.key);
  try {
    if (!hash) {
      hash = createHash('md5');
      hashes.set(m.key, hash);
    }
    if (m.end > m.start) feed(hash, m.path, m.start, m.end);
    if (!m.digest) return { id: m.id };
    hashes.delete(m.key);
    return { id: m.id, md5: hash.digest('hex') };
  } catch (e) {
    hashes.delete(m.key);
    return { id: m.id, error: String(e && e.message || e) };
  }
}
parentPort.on('message', (batch) => {
  parentPort.postMessage(batch.map(step));
});
`;

interface Answer {
  id: number;
  md5?: string;
  error?: string;
}

interface Step {
  id: number;
  key: number;
  path: string;
  start: number;
  end: number;
  digest: boolean;
}

/**
 * One worker thread that hashes file ranges, started on first use; idle, it never keeps the process alive.
 * The calls of one turn of the event loop go in one message, answered by one: a message per call (thousands
 * per GB of small instances) cost the event loop more in posting and waking the thread than the hashing saved.
 */
export class Md5Worker {
  #worker: Worker | undefined;
  #next = 1;
  #keys = 1;
  readonly #waiting = new Map<number, { resolve(md5: string): void; reject(e: Error): void }>();
  /** The calls of this turn, posted together at its end. */
  #batch: Step[] = [];

  /** A key for one running hash. */
  newKey(): number {
    return this.#keys++;
  }

  /**
   * Feeds bytes [start, end) of the file at `path` into the hash of `key` (made on first use); with
   * `digest`, resolves with its hex MD5 and forgets it. Calls on one key run in the order they are made.
   * Rejects when the file cannot be read (the hash of that key is forgotten too).
   */
  hash(key: number, path: string, start: number, end: number, digest: boolean): Promise<string> {
    const w = this.#start();
    const id = this.#next++;
    return new Promise<string>((resolve, reject) => {
      // Held while it has work, so that the process waits for a hash it asked for; let go when idle.
      if (this.#waiting.size === 0) w.ref();
      this.#waiting.set(id, { resolve, reject });
      if (this.#batch.length === 0) setImmediate(() => this.#post());
      this.#batch.push({ id, key, path, start, end, digest });
    });
  }

  /** Posts the calls of the turn, in the order they were made, to the worker of the moment. */
  #post(): void {
    const batch = this.#batch;
    this.#batch = [];
    if (batch.length > 0) this.#worker?.postMessage(batch);
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(SOURCE, { eval: true });
    w.on('message', (answers: Answer[]) => {
      for (const a of answers) {
        const waiter = this.#waiting.get(a.id);
        this.#waiting.delete(a.id);
        if (!waiter) continue;
        if (a.error !== undefined) waiter.reject(new Error(a.error));
        else waiter.resolve(a.md5 ?? '');
      }
      if (this.#waiting.size === 0) w.unref();
    });
    const fail = (e: unknown) => {
      // A worker that died takes its hashes with it: every waiter is refused, the next call starts another.
      if (this.#worker === w) this.#worker = undefined;
      this.#batch = [];
      for (const waiter of this.#waiting.values()) waiter.reject(e instanceof Error ? e : new Error(String(e)));
      this.#waiting.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`the MD5 worker exited (${code})`)));
    // Unreferenced after its listeners are on (adding one references it again): an idle worker never keeps
    // the process alive.
    w.unref();
    this.#worker = w;
    return w;
  }
}

/**
 * The node's one MD5 worker, shared by every staging area of the process: a thread, like the libuv pool,
 * is a resource of the process rather than a part the composition root wires (it holds no state of its
 * callers beyond one running hash per key).
 */
export const md5Worker = new Md5Worker();
