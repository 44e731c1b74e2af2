// The HTTP client of one peer: a keep-alive undici Pool made on first use, the peer's URL (with any path
// prefix), Basic credentials, extra headers and TLS settings applied to every call, success meaning
// exactly 200, and per-peer byte and latency counters.
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable, Transform } from 'node:stream';
import { Pool } from 'undici';
import type { PeerConfig } from '../config/types.ts';
import { XferError } from '../errors.ts';
import { VERSION } from '../version.ts';
import { whenAborted } from '../util/abort.ts';

export type PeerMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** Settings shared by every peer of a node (Orthanc's global keys). */
export interface PeerClientSettings {
  /** HttpTimeout: seconds allowed for a call when neither the call nor the peer says otherwise; 0 = none. */
  httpTimeout: number;
  /** HttpsVerifyPeers. */
  verifyPeers: boolean;
  /** HttpsCACertificates: PEM bundle that replaces the system's CAs for HTTPS peers. */
  caFile?: string | undefined;
  /** Most connections open to this peer at once; unlimited when absent. */
  maxConnections?: number | undefined;
  /** Largest answer read into memory (JSON and buffer calls, error bodies aside); default 256 MiB. */
  maxBodyBytes?: number | undefined;
}

/** Counters of one peer, kept across the clients that replace each other when the peer is changed. */
export interface PeerStats {
  requests: number;
  /** Calls that ended in an error (non-200, transport error, timeout, bad body). */
  failures: number;
  /** Request body bytes handed to the socket. */
  bytesSent: number;
  /** Answer body bytes read (the status line and headers not included). */
  bytesReceived: number;
  /** Milliseconds from sending to the answer's headers, for the last call that had no request body. */
  lastRttMs: number | undefined;
  /** ISO time of the last 200 answer. */
  lastSuccessAt: string | undefined;
  /** ISO time and text of the last failure. */
  lastFailureAt: string | undefined;
  lastError: string | undefined;
}

export function newPeerStats(): PeerStats {
  return {
    requests: 0,
    failures: 0,
    bytesSent: 0,
    bytesReceived: 0,
    lastRttMs: undefined,
    lastSuccessAt: undefined,
    lastFailureAt: undefined,
    lastError: undefined,
  };
}

/**
 * A request body: bytes in memory, or a stream of exactly `length` bytes (sent with Content-Length). A
 * stream without `length` goes with chunked transfer encoding, which only dicom-xfer peers are sent.
 */
export type PeerRequestBody =
  | Buffer
  | Uint8Array
  | string
  | { stream: Readable | AsyncIterable<Uint8Array>; length?: number | undefined };

/** Pieces a body in memory is handed to the socket in when its progress is watched. */
const PROGRESS_PIECE = 64 * 1024;

export interface PeerRequest {
  method: PeerMethod;
  /** Path (and query) appended to the peer URL: `/transfers/push` or `transfers/push` alike. */
  path: string;
  /** Headers of this call, added after the peer's HttpHeaders (so they win), before the credentials. */
  headers?: Record<string, string> | undefined;
  body?: PeerRequestBody | undefined;
  /**
   * Milliseconds for the whole call (the answer's body included for JSON and buffer calls; up to the
   * headers, then as the longest silence between body bytes, for stream calls). 0 = none. Default: the
   * peer's Timeout, else HttpTimeout.
   */
  timeoutMs?: number | undefined;
  /** Aborts the call; the promise (or the answer stream) then fails with the signal's reason. */
  signal?: AbortSignal | undefined;
  /**
   * Told the payload's bytes as they move, so that a long transfer shows its progress as it goes: the
   * request body's as they are handed to the socket (a body in memory in pieces of 64 KiB), and a
   * stream call's answer body's as they are read.
   */
  onBodyBytes?: ((n: number) => void) | undefined;
}

export interface PeerResponseMeta {
  /** Always 200: any other status is an error. */
  status: number;
  headers: IncomingHttpHeaders;
  /**
   * The `Cookie` header to send back: the `name=value` part of every Set-Cookie of the answer, joined with
   * "; " (a name seen twice keeps its last value). Undefined when the answer set none.
   */
  cookie: string | undefined;
  /** Milliseconds from sending the request to the answer's headers. */
  rttMs: number;
  /** The full URL called. */
  url: string;
}

export interface PeerJsonResponse<T = unknown> extends PeerResponseMeta {
  body: T;
}
export interface PeerBufferResponse extends PeerResponseMeta {
  body: Buffer;
}
export interface PeerStreamResponse extends PeerResponseMeta {
  /** The answer's bytes; the caller must read it to the end or destroy it (which closes the connection). */
  body: Readable;
}

/** The Orthanc error document a peer may answer with (docs/protocol.md#errors). */
export interface RemoteOrthancError {
  Message?: string;
  Details?: string;
  OrthancError?: string;
  OrthancStatus?: number;
  HttpStatus?: number;
}

/**
 * A call that reached the peer but did not succeed: a status other than 200, or a 200 whose body could
 * not be used (`badBody`: empty or not JSON where JSON was expected). Code NetworkProtocol, as the plugin
 * reports these.
 */
export class PeerHttpError extends XferError {
  readonly peer: string;
  readonly method: PeerMethod;
  readonly url: string;
  /** The peer's HTTP status. */
  readonly status: number;
  /** The peer's Orthanc error document, when it sent one. */
  readonly remote: RemoteOrthancError | undefined;
  /** A 200 whose body was empty or not JSON (retryable, as in the plugin). */
  readonly badBody: boolean;
  /** From a Retry-After header, in ms. */
  readonly retryAfterMs: number | undefined;

  constructor(args: {
    peer: string;
    method: PeerMethod;
    url: string;
    status: number;
    reason: string;
    remote?: RemoteOrthancError | undefined;
    badBody?: boolean;
    retryAfterMs?: number | undefined;
    cause?: unknown;
  }) {
    super('NetworkProtocol', `${args.method} ${args.url} (peer "${args.peer}"): ${args.reason}`, { cause: args.cause });
    this.name = 'PeerHttpError';
    this.peer = args.peer;
    this.method = args.method;
    this.url = args.url;
    this.status = args.status;
    this.remote = args.remote;
    this.badBody = args.badBody ?? false;
    this.retryAfterMs = args.retryAfterMs;
  }
}

/**
 * `base` (a peer URL, ending with '/') followed by `path` with its leading slashes dropped, so that
 * `http://b/` + `/transfers/push` is `http://b/transfers/push` and a prefix such as `https://h/orthanc/`
 * is kept.
 */
export function joinPeerUrl(base: string, path: string): string {
  const b = base.endsWith('/') ? base : `${base}/`;
  return b + path.replace(/^\/+/, '');
}

/** The `Cookie` header built from Set-Cookie values (see PeerResponseMeta.cookie). */
export function cookieFromSetCookie(values: readonly string[]): string | undefined {
  const byName = new Map<string, string>();
  for (const v of values) {
    const pair = (v.split(';')[0] ?? '').trim();
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq).trim();
    byName.set(name, pair);
  }
  return byName.size === 0 ? undefined : [...byName.values()].join('; ');
}

function setCookieValues(headers: IncomingHttpHeaders): string[] {
  const v = headers['set-cookie'];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** Retry-After as milliseconds (seconds or an HTTP date), capped at 5 minutes. */
function parseRetryAfter(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const cap = 5 * 60_000;
  if (/^\d+$/.test(s.trim())) return Math.min(Number(s.trim()) * 1000, cap);
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.min(Math.max(0, at - Date.now()), cap);
}

const ERROR_BODY_LIMIT = 64 * 1024;
const DEFAULT_MAX_BODY = 256 * 1024 * 1024;

/** Reads a body to the end, failing with `onTooLarge()` past `limit` bytes. */
async function readAll(body: Readable, limit: number, onTooLarge: () => Error): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      body.destroy();
      throw onTooLarge();
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts, total);
}

/** Reads at most `limit` bytes of an error answer, then drops the rest. */
async function readSome(body: Readable, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      parts.push(chunk);
      total += chunk.length;
      if (total >= limit) break;
    }
  } catch {
    // An error answer cut short still says what it said so far.
  }
  if (!body.readableEnded) body.destroy();
  return Buffer.concat(parts).subarray(0, limit);
}

function parseRemoteError(buf: Buffer): RemoteOrthancError | undefined {
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    const o = v as Record<string, unknown>;
    const out: RemoteOrthancError = {};
    if (typeof o['Message'] === 'string') out.Message = o['Message'];
    if (typeof o['Details'] === 'string') out.Details = o['Details'];
    if (typeof o['OrthancError'] === 'string') out.OrthancError = o['OrthancError'];
    if (typeof o['OrthancStatus'] === 'number') out.OrthancStatus = o['OrthancStatus'];
    if (typeof o['HttpStatus'] === 'number') out.HttpStatus = o['HttpStatus'];
    return out.Message === undefined && out.Details === undefined ? undefined : out;
  } catch {
    return undefined;
  }
}

type Mode = 'json' | 'buffer' | 'stream';

/**
 * The client of one peer. Cheap to create: the connection pool (and the TLS files) are set up on the first
 * call. `close()` lets calls in flight finish; the registry's owner closes a client when its peer changes.
 */
export class PeerClient {
  readonly peer: PeerConfig;
  readonly stats: PeerStats;
  readonly #settings: PeerClientSettings;
  readonly #origin: string;
  /** The peer URL's path, always ending with '/'. */
  readonly #prefix: string;
  readonly #authorization: string | undefined;
  #pool: Promise<Pool> | undefined;
  #closed = false;

  constructor(peer: PeerConfig, settings: PeerClientSettings, stats: PeerStats = newPeerStats()) {
    this.peer = peer;
    this.stats = stats;
    this.#settings = settings;
    const u = new URL(peer.url);
    this.#origin = u.origin;
    this.#prefix = u.pathname.endsWith('/') ? u.pathname : `${u.pathname}/`;
    // Credentials in the URL itself are honoured when the entry gives none, and never shown in messages.
    const user = peer.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
    const pass = peer.username !== undefined ? (peer.password ?? '') : decodeURIComponent(u.password);
    this.#authorization = user ? `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` : undefined;
  }

  get name(): string {
    return this.peer.name;
  }

  /** The full URL of `path` on this peer (without credentials). */
  url(path: string): string {
    return this.#origin + joinPeerUrl(this.#prefix, path);
  }

  /** A call whose 200 answer must be a JSON document (an empty or unparsable body is a PeerHttpError). */
  async json<T = unknown>(req: PeerRequest): Promise<PeerJsonResponse<T>> {
    return (await this.#call(req, 'json')) as PeerJsonResponse<T>;
  }

  /** A call whose 200 answer is read whole into memory (maxBodyBytes at most). */
  async buffer(req: PeerRequest): Promise<PeerBufferResponse> {
    return (await this.#call(req, 'buffer')) as PeerBufferResponse;
  }

  /** A call whose 200 answer is handed over as a stream (for chunk downloads). */
  async stream(req: PeerRequest): Promise<PeerStreamResponse> {
    return (await this.#call(req, 'stream')) as PeerStreamResponse;
  }

  /** Closes the pool once the calls in flight are done; later calls fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const p = this.#pool;
    this.#pool = undefined;
    if (p) await (await p.catch(() => undefined))?.close().catch(() => undefined);
  }

  /** Closes the pool at once, failing the calls in flight. */
  async destroy(): Promise<void> {
    this.#closed = true;
    const p = this.#pool;
    this.#pool = undefined;
    if (p) await (await p.catch(() => undefined))?.destroy().catch(() => undefined);
  }

  #getPool(): Promise<Pool> {
    if (this.#closed) return Promise.reject(new XferError('BadSequenceOfCalls', `the client of peer "${this.name}" is closed`));
    if (!this.#pool) {
      const p = this.#makePool();
      this.#pool = p;
      // A failed set-up (e.g. a missing certificate file) is not kept: the file may appear.
      p.catch(() => {
        if (this.#pool === p) this.#pool = undefined;
      });
    }
    return this.#pool;
  }

  async #makePool(): Promise<Pool> {
    const https = this.#origin.startsWith('https:');
    const connect: Record<string, unknown> = {};
    if (https) {
      const { peer } = this;
      const settings = this.#settings;
      const read = async (path: string, what: string) => {
        try {
          return await readFile(path);
        } catch (e) {
          throw new XferError('InexistentFile', `${what} of peer "${peer.name}" cannot be read: ${path}`, { cause: e });
        }
      };
      connect['rejectUnauthorized'] = settings.verifyPeers;
      if (settings.caFile) connect['ca'] = await read(settings.caFile, 'HttpsCACertificates');
      if (peer.certificateFile) {
        connect['cert'] = await read(peer.certificateFile, 'CertificateFile');
        // Orthanc takes the key from the certificate file when no key file is given.
        connect['key'] = peer.certificateKeyFile ? await read(peer.certificateKeyFile, 'CertificateKeyFile') : connect['cert'];
        if (peer.certificateKeyPassword) connect['passphrase'] = peer.certificateKeyPassword;
      }
    }
    return new Pool(this.#origin, {
      connections: this.#settings.maxConnections ?? null,
      // Orthanc's server announces "Keep-Alive: timeout=1"; undici's default margin of 2 s would then
      // never reuse a connection to it. Half a second of margin keeps reuse and avoids the race.
      keepAliveTimeoutThreshold: 500,
      keepAliveTimeout: 4000,
      connect,
    });
  }

  #timeoutMs(req: PeerRequest): number {
    if (req.timeoutMs !== undefined) return Math.max(0, req.timeoutMs);
    return (this.peer.timeout ?? this.#settings.httpTimeout) * 1000;
  }

  #headers(req: PeerRequest, length: number | undefined): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': `dicom-xfer/${VERSION}`, accept: '*/*' };
    for (const [k, v] of Object.entries(this.peer.httpHeaders)) h[k.toLowerCase()] = v;
    for (const [k, v] of Object.entries(req.headers ?? {})) h[k.toLowerCase()] = v;
    if (this.#authorization) h['authorization'] = this.#authorization;
    // Never ask for 100-continue: Orthanc peers do not expect it and it costs a round trip per upload.
    delete h['expect'];
    if (length !== undefined) h['content-length'] = String(length);
    return h;
  }

  #fail(e: XferError): XferError {
    this.stats.failures++;
    this.stats.lastFailureAt = new Date().toISOString();
    this.stats.lastError = e.message;
    return e;
  }

  async #call(req: PeerRequest, mode: Mode): Promise<PeerJsonResponse | PeerBufferResponse | PeerStreamResponse> {
    const url = this.url(req.path);
    const path = joinPeerUrl(this.#prefix, req.path);
    const timeoutMs = this.#timeoutMs(req);
    const stats = this.stats;
    stats.requests++;
    if (req.signal?.aborted) throw req.signal.reason;

    // One controller aborts the call on the caller's signal or on the deadline.
    const ac = new AbortController();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    // Through the signal's shared listener: a job's signal is watched by every request it has in flight.
    const unwatch = req.signal ? whenAborted(req.signal, () => ac.abort(req.signal?.reason)) : undefined;
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true;
        ac.abort(new XferError('Timeout', `${req.method} ${url} (peer "${this.name}"): no answer within ${timeoutMs / 1000} s`));
      }, timeoutMs);
    }
    const cleanup = () => {
      clearTimeout(timer);
      unwatch?.();
    };
    const translate = (e: unknown): unknown => {
      if (req.signal?.aborted) return req.signal.reason;
      if (timedOut) return this.#fail(ac.signal.reason as XferError);
      if (e instanceof XferError) return this.#fail(e);
      const code = (e as { code?: unknown }).code;
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
        return this.#fail(
          new XferError('Timeout', `${req.method} ${url} (peer "${this.name}"): no data for ${timeoutMs / 1000} s`, { cause: e }),
        );
      }
      const msg = e instanceof Error ? e.message : String(e);
      return this.#fail(
        new XferError('NetworkProtocol', `${req.method} ${url} (peer "${this.name}"): ${typeof code === 'string' ? `${code}: ` : ''}${msg}`, {
          cause: e,
        }),
      );
    };

    let bodyLength: number | undefined;
    let body: Buffer | Uint8Array | string | Readable | undefined;
    const b = req.body;
    if (b === undefined) {
      // Orthanc's peers send POSTs without a body (the commit) with Content-Length 0.
      if (req.method === 'POST' || req.method === 'PUT') bodyLength = 0;
    } else if (typeof b === 'string' || b instanceof Uint8Array) {
      bodyLength = typeof b === 'string' ? Buffer.byteLength(b) : b.byteLength;
      body = req.onBodyBytes ? Readable.from(countBytes(inPieces(b), stats, req.onBodyBytes), { objectMode: false }) : b;
    } else {
      bodyLength = b.length;
      body = Readable.from(countBytes(b.stream, stats, req.onBodyBytes), { objectMode: false });
    }

    let pool: Pool;
    let res: Awaited<ReturnType<Pool['request']>>;
    const started = performance.now();
    try {
      pool = await this.#getPool();
      res = await pool.request({
        method: req.method,
        path,
        headers: this.#headers(req, bodyLength),
        body: body ?? null,
        signal: ac.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (e) {
      cleanup();
      throw translate(e);
    }
    const rttMs = performance.now() - started;
    if ((typeof b === 'string' || b instanceof Uint8Array) && !req.onBodyBytes) stats.bytesSent += bodyLength ?? 0;
    if (b === undefined) stats.lastRttMs = rttMs;

    const meta: PeerResponseMeta = {
      status: res.statusCode,
      headers: res.headers,
      cookie: cookieFromSetCookie(setCookieValues(res.headers)),
      rttMs,
      url,
    };
    const raw = res.body as unknown as Readable;

    if (res.statusCode !== 200) {
      let remote: RemoteOrthancError | undefined;
      try {
        const text = await readSome(raw, ERROR_BODY_LIMIT);
        stats.bytesReceived += text.length;
        remote = parseRemoteError(text);
      } finally {
        cleanup();
      }
      const what = remote ? `: ${remote.Message ?? ''}${remote.Details ? `${remote.Message ? ': ' : ''}${remote.Details}` : ''}` : '';
      throw this.#fail(
        new PeerHttpError({
          peer: this.name,
          method: req.method,
          url,
          status: res.statusCode,
          reason: `HTTP ${res.statusCode} instead of 200${what}`,
          remote,
          retryAfterMs: parseRetryAfter(res.headers['retry-after']),
        }),
      );
    }

    if (mode === 'stream') {
      // The deadline covered the wait for the headers; from here undici's bodyTimeout limits silences.
      clearTimeout(timer);
      const moved = req.onBodyBytes;
      const counted = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          stats.bytesReceived += chunk.length;
          moved?.(chunk.length);
          cb(null, chunk);
        },
      });
      // Not stream.pipeline: it would hand undici's own errors to the reader; they are translated here.
      raw.on('error', (err) => {
        cleanup();
        counted.destroy(translate(err) as Error);
      });
      counted.on('close', () => {
        cleanup();
        if (!raw.destroyed) raw.destroy();
      });
      raw.pipe(counted);
      stats.lastSuccessAt = new Date().toISOString();
      return { ...meta, body: counted };
    }

    let buf: Buffer;
    const limit = this.#settings.maxBodyBytes ?? DEFAULT_MAX_BODY;
    try {
      buf = await readAll(
        raw,
        limit,
        () =>
          new PeerHttpError({ peer: this.name, method: req.method, url, status: 200, reason: `the answer is larger than ${limit} bytes` }),
      );
    } catch (e) {
      throw translate(e);
    } finally {
      cleanup();
    }
    stats.bytesReceived += buf.length;
    if (mode === 'buffer') {
      stats.lastSuccessAt = new Date().toISOString();
      return { ...meta, body: buf };
    }
    const text = buf.toString('utf8');
    let value: unknown;
    try {
      if (text.trim() === '') throw new Error('empty');
      value = JSON.parse(text) as unknown;
    } catch {
      throw this.#fail(
        new PeerHttpError({
          peer: this.name,
          method: req.method,
          url,
          status: 200,
          badBody: true,
          reason: text.trim() === '' ? 'the answer is empty where JSON was expected' : 'the answer is not valid JSON',
        }),
      );
    }
    stats.lastSuccessAt = new Date().toISOString();
    return { ...meta, body: value };
  }
}

/** Passes a body stream through while counting its bytes as sent (and telling `moved`). */
async function* countBytes(
  src: Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  stats: PeerStats,
  moved?: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of src as AsyncIterable<Uint8Array>) {
    stats.bytesSent += chunk.byteLength;
    moved?.(chunk.byteLength);
    yield chunk;
  }
}

/** A body in memory as pieces of at most PROGRESS_PIECE bytes (views, no copy). */
function* inPieces(b: string | Uint8Array): Generator<Uint8Array> {
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  for (let at = 0; at < buf.byteLength; at += PROGRESS_PIECE) yield buf.subarray(at, at + PROGRESS_PIECE);
}
