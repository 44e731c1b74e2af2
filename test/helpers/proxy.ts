// A recording, fault-injecting HTTP proxy on 127.0.0.1 for end-to-end transfer tests: it stands between a
// node and its peer, streams every request and answer through, records what passed, and can be told to
// corrupt, delay, hold, refuse or cut chosen requests.
import { createHash, type Hash } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** Which requests a rule or a query applies to. Both parts must match when given. */
export interface Matcher {
  /** HTTP method, case-insensitive. */
  method?: string;
  /** Matched against the path as sent (query string included, `//` kept): a substring or a RegExp. */
  path?: string | RegExp;
}

/** Which of the matching requests a rule acts on. */
export interface Selection extends Matcher {
  /** Let this many matching requests pass untouched first. Default 0. */
  skip?: number;
  /** Act on at most this many matching requests (after `skip`); then the rule is spent. Default: all. */
  times?: number;
}

/** What became of a request that went through the proxy. */
export type Outcome =
  /** The upstream answer was passed back completely (whatever its status). */
  | 'completed'
  /** The proxy answered by itself (an injected error status). */
  | 'injected'
  /** The proxy cut the connection on purpose (a drop rule). */
  | 'dropped'
  /** The client went away before its answer was complete (e.g. an aborted call). */
  | 'aborted'
  /** The upstream could not be reached or failed mid-answer (the client's connection is then cut too). */
  | 'upstream-error';

/** One request seen by the proxy. Fields fill in as the exchange goes on. */
export interface ProxyRecord {
  /** 1-based arrival order. */
  seq: number;
  method: string;
  /** Path and query exactly as the client sent them. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Request body bytes received from the client. */
  requestBytes: number;
  /** Status passed back to the client (the upstream's, or an injected one); undefined if none was sent. */
  status: number | undefined;
  /** Answer body bytes passed back to the client. */
  responseBytes: number;
  /** Headers of the upstream's answer, as passed back; undefined when none came. */
  responseHeaders?: IncomingHttpHeaders;
  /** MD5 of the request body as forwarded (after any corruption), when `hashBodies` is on. */
  requestMd5?: string;
  /** MD5 of the answer body as passed back (after any corruption), when `hashBodies` is on. */
  responseMd5?: string;
  /** The request body, for requests matched by the `keepBodies` option. */
  requestBody?: Buffer;
  /** The answer body, for requests matched by the `keepBodies` option. */
  responseBody?: Buffer;
  /** Names of the rules that acted on this request ("corrupt-request", "hold", ...). */
  actions: string[];
  outcome: Outcome | undefined;
  /** Settles once the exchange is over, whatever its outcome. */
  done: Promise<void>;
}

export interface ProxyOptions {
  /** Port of the upstream server on 127.0.0.1. */
  target: number;
  /** Compute the MD5 of every request and answer body (streaming). Default false. */
  hashBodies?: boolean;
  /** Keep whole request and answer bodies of the requests these match (small JSON calls, not buckets). */
  keepBodies?: Matcher[];
}

/** A set of held requests, released together. */
export interface Gate {
  /** Requests held now (not yet forwarded and still wanted by their client). */
  readonly held: number;
  /** Requests that were held at some point, in arrival order. */
  readonly records: readonly ProxyRecord[];
  /** Resolves once at least `n` requests are held at the same time; rejects after `timeoutMs`. */
  waitHeld(n: number, timeoutMs?: number): Promise<void>;
  /** Forwards every held request, and stops holding new ones. */
  release(): void;
}

export interface FaultProxy {
  /** http://127.0.0.1:<port> (no trailing slash). */
  readonly url: string;
  readonly port: number;
  /** Every request seen, in arrival order (a copy of the list; the records themselves are live). */
  records(filter?: Matcher): ProxyRecord[];
  /** Forgets the records seen so far. */
  clearRecords(): void;
  /** Waits until `predicate` holds for the records, polling every 20 ms, at most `timeoutMs`. */
  waitFor(what: string, predicate: (records: ProxyRecord[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Flips one byte of the request bodies selected (byte `at`, default the middle when the length is known). */
  corruptRequest(sel: Selection & { at?: number }): void;
  /** Flips one byte of the answer bodies of the requests selected (byte `at`, default as above). */
  corruptResponse(sel: Selection & { at?: number }): void;
  /** Forwards the requests selected only after `ms` milliseconds. */
  delay(ms: number, sel: Selection): void;
  /** Holds the requests selected until the gate is released (their bodies are read into memory meanwhile). */
  hold(sel: Selection): Gate;
  /** Answers the requests selected with `status` and an Orthanc-style JSON error, without forwarding. */
  failWith(status: number, sel: Selection): void;
  /**
   * Cuts the connection of the requests selected: `before` forwarding (the upstream never sees them), or
   * `after` the upstream answered (the upstream did the work, the client gets no answer).
   */
  drop(sel: Selection & { phase?: 'before' | 'after' }): void;
  /** Removes every rule (held requests of open gates are released). */
  clearRules(): void;
  /** Closes the listener and every connection; requests in progress are cut. */
  stop(): Promise<void>;
}

type RuleKind = 'corrupt-request' | 'corrupt-response' | 'delay' | 'hold' | 'fail' | 'drop';

interface Rule {
  kind: RuleKind;
  sel: Selection;
  seen: number;
  applied: number;
  at?: number;
  ms?: number;
  status?: number;
  phase?: 'before' | 'after';
  gate?: GateImpl;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function forwardHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

/** Whether `m` matches a request; an empty matcher matches everything. */
export function matches(m: Matcher, method: string, path: string): boolean {
  if (m.method !== undefined && m.method.toUpperCase() !== method.toUpperCase()) return false;
  if (m.path === undefined) return true;
  return typeof m.path === 'string' ? path.includes(m.path) : m.path.test(path);
}

/**
 * A pass-through stream that flips the byte at offset `at` of what goes through (the middle of `length`
 * when `at` is absent and the length is known). When the stream ends before that offset, the last byte
 * is flipped instead, so a selected body is always changed. Holds back at most one chunk.
 */
class ByteFlipper extends Transform {
  readonly #at: number;
  #offset = 0;
  #held: Buffer | undefined;
  #flipped = false;

  constructor(at: number | undefined, length: number | undefined) {
    super();
    this.#at = at ?? (length !== undefined && length > 0 ? Math.floor(length / 2) : 64);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#held) this.push(this.#held);
    let c = chunk;
    if (!this.#flipped && this.#at >= this.#offset && this.#at < this.#offset + c.length) {
      c = Buffer.from(c);
      const i = this.#at - this.#offset;
      c[i] = (c[i] as number) ^ 0xff;
      this.#flipped = true;
    }
    this.#offset += chunk.length;
    this.#held = c;
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.#held) {
      let c = this.#held;
      if (!this.#flipped && c.length > 0) {
        c = Buffer.from(c);
        c[c.length - 1] = (c[c.length - 1] as number) ^ 0xff;
        this.#flipped = true;
      }
      this.push(c);
    }
    cb();
  }
}

/** Counts (and optionally hashes or keeps) the bytes that go through. */
class Tap extends Transform {
  bytes = 0;
  readonly #hash: Hash | undefined;
  readonly #keep: Buffer[] | undefined;

  constructor(hash: boolean, keep: boolean) {
    super();
    this.#hash = hash ? createHash('md5') : undefined;
    this.#keep = keep ? [] : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.#hash?.update(chunk);
    this.#keep?.push(chunk);
    cb(null, chunk);
  }

  digest(): string | undefined {
    return this.#hash?.digest('hex');
  }

  kept(): Buffer | undefined {
    return this.#keep ? Buffer.concat(this.#keep) : undefined;
  }
}

class GateImpl implements Gate {
  readonly records: ProxyRecord[] = [];
  #waiting: { rec: ProxyRecord; go: () => void }[] = [];
  #released = false;

  get held(): number {
    return this.#waiting.length;
  }

  get released(): boolean {
    return this.#released;
  }

  /** Resolves when the request may go on; `gone` (the client went away) removes it and lets it go on. */
  enter(rec: ProxyRecord): { pass: Promise<void>; gone: () => void } {
    this.records.push(rec);
    if (this.#released) return { pass: Promise.resolve(), gone: () => undefined };
    let go!: () => void;
    const pass = new Promise<void>((r) => (go = r));
    const entry = { rec, go };
    this.#waiting.push(entry);
    return {
      pass,
      // The client went away: the request is no longer held, and its handler goes on to record that.
      gone: () => {
        this.#waiting = this.#waiting.filter((e) => e !== entry);
        go();
      },
    };
  }

  async waitHeld(n: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 1_000_000 && this.held < n; i++) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${n} held requests (${this.held} held)`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  release(): void {
    this.#released = true;
    const w = this.#waiting;
    this.#waiting = [];
    for (const e of w) e.go();
  }
}

/** Starts a proxy on 127.0.0.1 (a port the kernel picks) in front of 127.0.0.1:`target`. */
export async function startProxy(opts: ProxyOptions): Promise<FaultProxy> {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let records: ProxyRecord[] = [];
  let rules: Rule[] = [];
  let seq = 0;
  const sockets = new Set<Socket>();

  /** The rules that act on this request (each rule counts the requests it matches). */
  function pick(method: string, path: string): Rule[] {
    const out: Rule[] = [];
    for (const r of rules) {
      if (!matches(r.sel, method, path)) continue;
      r.seen++;
      if (r.seen <= (r.sel.skip ?? 0)) continue;
      if (r.applied >= (r.sel.times ?? Infinity)) continue;
      r.applied++;
      out.push(r);
    }
    return out;
  }

  async function handle(req: IncomingMessage, res: ServerResponse, rec: ProxyRecord): Promise<void> {
    const acting = pick(rec.method, rec.path);
    const of = (k: RuleKind) => acting.find((r) => r.kind === k);
    for (const r of acting) rec.actions.push(r.kind);
    let clientGone = false;
    res.on('close', () => {
      if (!res.writableFinished) clientGone = true;
    });
    const keep = (opts.keepBodies ?? []).some((m) => matches(m, rec.method, rec.path));

    // What the upstream gets as the request body: the client's stream, or what a hold read meanwhile.
    let body: Readable = req;
    const hold = of('hold');
    if (hold?.gate) {
      // A held body is read into memory meanwhile: a socket left unread would never show the client's
      // close (its FIN waits behind the unread bytes), so an aborted call would look held forever.
      const parts: Buffer[] = [];
      const reading = (async () => {
        for await (const c of req) parts.push(c as Buffer);
      })();
      reading.catch(() => undefined);
      body = Readable.from(
        (async function* () {
          await reading;
          yield* parts;
        })(),
      );
      const { pass, gone } = hold.gate.enter(rec);
      const onClose = () => {
        if (!res.writableFinished) gone();
      };
      res.on('close', onClose);
      await pass;
      res.off('close', onClose);
      if (clientGone) {
        rec.outcome = 'aborted';
        return;
      }
    }
    const delay = of('delay');
    if (delay) await new Promise((r) => setTimeout(r, delay.ms));
    if (clientGone) {
      rec.outcome = 'aborted';
      return;
    }
    const fail = of('fail');
    if (fail) {
      // Read (and count) the body first, so the connection stays usable, as a real server would.
      for await (const c of body) rec.requestBytes += (c as Buffer).length;
      const status = fail.status ?? 500;
      const answer = JSON.stringify({ HttpStatus: status, Message: 'injected by the test proxy', Method: rec.method, Uri: rec.path });
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
      res.end(answer);
      rec.status = status;
      rec.responseBytes = Buffer.byteLength(answer);
      rec.outcome = 'injected';
      return;
    }
    const drop = of('drop');
    if (drop && (drop.phase ?? 'before') === 'before') {
      rec.outcome = 'dropped';
      req.socket.destroy();
      return;
    }

    const reqTap = new Tap(opts.hashBodies ?? false, keep);
    const upstream = httpRequest({
      host: '127.0.0.1',
      port: opts.target,
      method: rec.method,
      path: rec.path,
      headers: forwardHeaders(req.headers),
      agent,
    });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      upstream.on('response', resolve);
      upstream.on('error', reject);
    });
    answered.catch(() => undefined);
    const corruptReq = of('corrupt-request');
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
    const sending = corruptReq
      ? pipeline(body, new ByteFlipper(corruptReq.at, declared), reqTap, upstream)
      : pipeline(body, reqTap, upstream);
    sending.catch(() => undefined);
    let up: IncomingMessage;
    try {
      up = await answered;
    } catch {
      // The upstream is down (or cut the connection): the client sees the same, a cut connection.
      rec.requestBytes = reqTap.bytes;
      rec.outcome = clientGone ? 'aborted' : 'upstream-error';
      res.destroy();
      return;
    }
    // An answer that comes before the client's whole body (the upstream refused it early, e.g. a bucket
    // damaged in its first bytes) is passed on at once, as a streaming proxy does: waiting for the body
    // would wait for ever on a client that stops sending once it is answered (and Node's client stalls
    // writing a body whose answer has come). Forwarding the body then ends with the client or the
    // upstream, and the request is recorded after the answer.
    const early = !drop && !clientGone && !req.complete && (up.statusCode ?? 502) >= 300;
    const recordRequest = async (): Promise<void> => {
      await sending.catch(() => undefined);
      rec.requestBytes = reqTap.bytes;
      rec.requestMd5 = reqTap.digest();
      if (keep) rec.requestBody = reqTap.kept();
    };
    if (!early) await recordRequest();
    try {
      if (drop) {
        // phase "after": the upstream did the work; the client never hears of it.
        up.resume();
        await new Promise<void>((r) => {
          up.on('end', r);
          up.on('error', () => r());
        });
        rec.outcome = 'dropped';
        req.socket.destroy();
        return;
      }
      if (clientGone) {
        up.destroy();
        rec.outcome = 'aborted';
        return;
      }
      const resTap = new Tap(opts.hashBodies ?? false, keep);
      const headers = forwardHeaders(up.headers);
      res.writeHead(up.statusCode ?? 502, headers);
      rec.status = up.statusCode;
      rec.responseHeaders = up.headers;
      const corruptRes = of('corrupt-response');
      const length = up.headers['content-length'] !== undefined ? Number(up.headers['content-length']) : undefined;
      try {
        if (corruptRes) await pipeline(up, new ByteFlipper(corruptRes.at, length), resTap, res);
        else await pipeline(up, resTap, res);
        rec.outcome = 'completed';
      } catch {
        rec.outcome = clientGone ? 'aborted' : 'upstream-error';
        res.destroy();
      }
      rec.responseBytes = resTap.bytes;
      rec.responseMd5 = resTap.digest();
      if (keep) rec.responseBody = resTap.kept();
    } finally {
      // An early answer's request is recorded once its body has stopped.
      if (early) await recordRequest();
    }
  }

  const server: Server = createServer((req, res) => {
    let settle!: () => void;
    const rec: ProxyRecord = {
      seq: ++seq,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: req.headers,
      requestBytes: 0,
      status: undefined,
      responseBytes: 0,
      actions: [],
      outcome: undefined,
      done: new Promise<void>((r) => (settle = r)),
    };
    records.push(rec);
    handle(req, res, rec)
      .catch(() => {
        rec.outcome ??= 'upstream-error';
        res.destroy();
      })
      .finally(() => {
        rec.outcome ??= 'aborted';
        settle();
      });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  const add = (kind: RuleKind, sel: Selection, extra: Partial<Rule> = {}): Rule => {
    const r: Rule = { kind, sel, seen: 0, applied: 0, ...extra };
    rules.push(r);
    return r;
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    records(filter) {
      return filter ? records.filter((r) => matches(filter, r.method, r.path)) : [...records];
    },
    clearRecords() {
      records = [];
    },
    async waitFor(what, predicate, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (let i = 0; i < 1_000_000; i++) {
        if (predicate([...records])) return;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    corruptRequest(sel) {
      add('corrupt-request', sel, sel.at !== undefined ? { at: sel.at } : {});
    },
    corruptResponse(sel) {
      add('corrupt-response', sel, sel.at !== undefined ? { at: sel.at } : {});
    },
    delay(ms, sel) {
      add('delay', sel, { ms });
    },
    hold(sel) {
      const gate = new GateImpl();
      add('hold', sel, { gate });
      return gate;
    },
    failWith(status, sel) {
      add('fail', sel, { status });
    },
    drop(sel) {
      add('drop', sel, { phase: sel.phase ?? 'before' });
    },
    clearRules() {
      for (const r of rules) r.gate?.release();
      rules = [];
    },
    async stop() {
      for (const r of rules) r.gate?.release();
      rules = [];
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
      agent.destroy();
    },
  };
}
