// The HTTP client of one peer, on the node's HTTP layer (src/http/): the peer's endpoint (URL with any path
// prefix, Basic credentials, TLS settings, one keep-alive pool), its extra headers on every call, success
// meaning exactly 200, and per-peer byte and latency counters.
import type { IncomingHttpHeaders } from 'node:http';
import { Readable, Transform } from 'node:stream';
import type { PeerConfig } from '../config/types.ts';
import { XferError } from '../errors.ts';
import { DEFAULT_BODY_LIMIT, readBounded, readErrorAnswer } from '../http/body.ts';
import { type EndpointResponse, HttpEndpoint, joinUrlPath } from '../http/endpoint.ts';
import { HttpError, type RemoteErrorDocument, documentReason, transportError } from '../http/errors.ts';
import { whenAborted } from '../util/abort.ts';
import { pieces, requestHeadBytes, responseHeadBytes, type WireGate } from './wire-gate.ts';

export type { WireGate, WireWay } from './wire-gate.ts';

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
export type PeerRequestBody = Buffer | Uint8Array | string | { stream: Readable | AsyncIterable<Uint8Array>; length?: number | undefined };

/**
 * Pieces a body in memory is handed to the socket in when its progress is watched (or paced; a limit in
 * force cuts them again into PACE_PIECE). 1 MiB: each piece costs a turn of the stream machinery; on
 * loopback, PUTs of 4 MiB cost about 0.5 CPU-s per GB in 64 KiB pieces, 0.35 in 1 MiB ones, 0.3 whole.
 */
const PROGRESS_PIECE = 1024 * 1024;

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
   * A transfer's payload call (a bucket PUT, a chunk GET): its bytes wait for the peer's WireGate, and its
   * deadline counts the silence between granted pieces rather than the wait for its turn.
   */
  paced?: boolean | undefined;
  /**
   * Told the payload's bytes as they move, so that a long transfer shows its progress as it goes: the
   * request body's as they are handed to the socket (a body in memory in pieces of 1 MiB), and a
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
export type RemoteOrthancError = RemoteErrorDocument;

/**
 * A call that reached the peer but did not succeed: a status other than 200, or a 200 whose body could
 * not be used (`badBody`: empty or not JSON where JSON was expected). The layer's one HttpError, with code
 * NetworkProtocol (as the plugin reports these) and the peer's name: a subclass so that the transfer code
 * tells a peer's answers from the Orthanc store's, which are HttpErrors too.
 */
export class PeerHttpError extends HttpError {
  readonly peer: string;

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
    super({
      code: 'NetworkProtocol',
      method: args.method,
      url: args.url,
      status: args.status,
      details: `${args.method} ${args.url} (peer "${args.peer}"): ${args.reason}`,
      remote: args.remote,
      badBody: args.badBody,
      retryAfterMs: args.retryAfterMs,
      cause: args.cause,
    });
    this.name = 'PeerHttpError';
    this.peer = args.peer;
  }
}

/**
 * `base` (a peer URL, ending with '/') followed by `path` with its leading slashes dropped, so that
 * `http://b/` + `/transfers/push` is `http://b/transfers/push` and a prefix such as `https://h/orthanc/`
 * is kept.
 */
export const joinPeerUrl: (base: string, path: string) => string = joinUrlPath;

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

type Mode = 'json' | 'buffer' | 'stream';

/**
 * The client of one peer. Cheap to create: the connection pool (and the TLS files) are set up on the first
 * call. `close()` lets calls in flight finish; the registry's owner closes a client when its peer changes.
 */
export class PeerClient {
  readonly peer: PeerConfig;
  readonly stats: PeerStats;
  /** The bandwidth policy's gate for this peer: every call is counted, paced calls wait for it. */
  readonly wire: WireGate | undefined;
  readonly #settings: PeerClientSettings;
  readonly #endpoint: HttpEndpoint;

  constructor(peer: PeerConfig, settings: PeerClientSettings, stats: PeerStats = newPeerStats(), wire?: WireGate) {
    this.peer = peer;
    this.stats = stats;
    this.wire = wire;
    this.#settings = settings;
    this.#endpoint = new HttpEndpoint({
      url: peer.url,
      username: peer.username,
      password: peer.password,
      owner: `peer "${peer.name}"`,
      connections: settings.maxConnections ?? null,
      tls: {
        verifyPeers: settings.verifyPeers,
        caFile: settings.caFile,
        certificateFile: peer.certificateFile,
        certificateKeyFile: peer.certificateKeyFile,
        certificateKeyPassword: peer.certificateKeyPassword,
      },
    });
  }

  get name(): string {
    return this.peer.name;
  }

  /** The full URL of `path` on this peer (without credentials). */
  url(path: string): string {
    return this.#endpoint.urlOf(path);
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
    await this.#endpoint.close();
  }

  /** Closes the pool at once, failing the calls in flight. */
  async destroy(): Promise<void> {
    await this.#endpoint.destroy();
  }

  #timeoutMs(req: PeerRequest): number {
    if (req.timeoutMs !== undefined) return Math.max(0, req.timeoutMs);
    return (this.peer.timeout ?? this.#settings.httpTimeout) * 1000;
  }

  #headers(req: PeerRequest, length: number | undefined): Record<string, string> {
    const h = this.#endpoint.baseHeaders();
    const auth = h['authorization'];
    for (const [k, v] of Object.entries(this.peer.httpHeaders)) h[k.toLowerCase()] = v;
    for (const [k, v] of Object.entries(req.headers ?? {})) h[k.toLowerCase()] = v;
    // The peer's credentials win over any header of the same name.
    if (auth) h['authorization'] = auth;
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
    this.stats.requests++;
    if (req.signal?.aborted) throw req.signal.reason;
    const call = new PeerCall(req, this.url(req.path), this.#timeoutMs(req), this.name, this.stats, (e) => this.#fail(e), this.wire);
    const body = requestBody(req, this.stats, call.pace('out'));
    const path = this.#endpoint.path(req.path);
    const headers = this.#headers(req, body.length);
    // The heads are counted, never waited for: the body's next piece pays for them.
    this.wire?.charge('out', requestHeadBytes(req.method, path, new URL(call.url).host, headers));
    if (body.countWhenSent) this.wire?.charge('out', body.length ?? 0);
    const started = performance.now();
    let res: EndpointResponse;
    try {
      res = await this.#endpoint.request({
        method: req.method,
        path,
        headers,
        body: body.body ?? null,
        signal: call.signal,
        headersTimeout: call.timeoutMs,
        bodyTimeout: call.timeoutMs,
      });
    } catch (e) {
      call.cleanup();
      throw call.translate(e);
    }
    const rttMs = performance.now() - started;
    this.wire?.charge('in', responseHeadBytes(res.statusCode, res.headers));
    if (body.countWhenSent) this.stats.bytesSent += body.length ?? 0;
    if (req.body === undefined) this.stats.lastRttMs = rttMs;
    const meta: PeerResponseMeta = {
      status: res.statusCode,
      headers: res.headers,
      cookie: cookieFromSetCookie(setCookieValues(res.headers)),
      rttMs,
      url: call.url,
    };
    if (res.statusCode !== 200) throw await call.refused(res);
    if (mode === 'stream') return { ...meta, body: call.streamed(res.body) };
    const buf = await call.readWhole(res.body, this.#settings.maxBodyBytes ?? DEFAULT_BODY_LIMIT);
    if (mode === 'buffer') return call.succeeded({ ...meta, body: buf });
    return call.succeeded({ ...meta, body: call.parseJson(buf) });
  }
}

/** A request body as undici takes it, its Content-Length, and whether its bytes are counted when sent. */
interface PreparedBody {
  body: Buffer | Uint8Array | string | Readable | undefined;
  length: number | undefined;
  /** A body in memory handed over whole: counted at once when the answer comes (streams count as they go). */
  countWhenSent: boolean;
}

function requestBody(req: PeerRequest, stats: PeerStats, pace: Pace | undefined): PreparedBody {
  const b = req.body;
  if (b === undefined) {
    // Orthanc's peers send POSTs without a body (the commit) with Content-Length 0.
    return { body: undefined, length: req.method === 'POST' || req.method === 'PUT' ? 0 : undefined, countWhenSent: false };
  }
  if (typeof b === 'string' || b instanceof Uint8Array) {
    const length = typeof b === 'string' ? Buffer.byteLength(b) : b.byteLength;
    if (!req.onBodyBytes && !pace?.waits) return { body: b, length, countWhenSent: true };
    const counted = countBytes(inPieces(b), stats, req.onBodyBytes, pace);
    return { body: Readable.from(counted, { objectMode: false }), length, countWhenSent: false };
  }
  const body = Readable.from(countBytes(b.stream, stats, req.onBodyBytes, pace), { objectMode: false });
  return { body, length: b.length, countWhenSent: false };
}

type HttpErrorExtras = { remote?: RemoteOrthancError | undefined; retryAfterMs?: number | undefined; badBody?: boolean };

/** A call's side of the wire gate, one way: `take` waits for a paced call's piece (`waits`), else only counts. */
interface Pace {
  waits: boolean;
  /** A limit is in force now. */
  limited(): boolean;
  take(bytes: number): Promise<void> | undefined;
}

/**
 * The state of one call to a peer: the controller that aborts it on the caller's signal or on its deadline,
 * and the translation of whatever fails into the client's errors (counted as failures of the peer).
 */
class PeerCall {
  readonly url: string;
  readonly timeoutMs: number;
  readonly #req: PeerRequest;
  readonly #peer: string;
  readonly #stats: PeerStats;
  readonly #fail: (e: XferError) => XferError;
  readonly #wire: WireGate | undefined;
  readonly #ac = new AbortController();
  #timedOut = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #unwatch: (() => void) | undefined;

  constructor(
    req: PeerRequest,
    url: string,
    timeoutMs: number,
    peer: string,
    stats: PeerStats,
    fail: (e: XferError) => XferError,
    wire?: WireGate,
  ) {
    this.#req = req;
    this.#wire = wire;
    this.url = url;
    this.timeoutMs = timeoutMs;
    this.#peer = peer;
    this.#stats = stats;
    this.#fail = fail;
    // Through the signal's shared listener: a job's signal is watched by every request it has in flight.
    this.#unwatch = req.signal ? whenAborted(req.signal, () => this.#ac.abort(req.signal?.reason)) : undefined;
    this.#arm();
  }

  #arm(): void {
    const timeoutMs = this.timeoutMs;
    if (timeoutMs <= 0) return;
    this.#timer = setTimeout(() => {
      this.#timedOut = true;
      this.#ac.abort(new XferError('Timeout', `${this.#where()}: no answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
  }

  /**
   * The gate one way for this call (none without a gate): a paced call's pieces wait for their turn, and
   * each piece granted starts the deadline again, which then bounds a silence, not the wait for the link.
   */
  pace(way: 'out' | 'in'): Pace | undefined {
    const wire = this.#wire;
    if (!wire) return undefined;
    if (!this.#req.paced) {
      return {
        waits: false,
        limited: () => false,
        take: (n) => {
          wire.charge(way, n);
          return undefined;
        },
      };
    }
    const granted = (): void => {
      if (this.#timer === undefined) return;
      clearTimeout(this.#timer);
      this.#arm();
    };
    return {
      waits: true,
      limited: () => wire.limitMbps() !== undefined,
      take: (n) => {
        const turn = wire.take(way, n, this.signal);
        if (!turn) return undefined;
        return turn.then(granted);
      },
    };
  }

  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  #where(): string {
    return `${this.#req.method} ${this.url} (peer "${this.#peer}")`;
  }

  cleanup(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unwatch?.();
  }

  /** What the caller sees for a failure: the caller's own abort reason, the deadline, or a transport error. */
  translate(e: unknown): unknown {
    const signal = this.#req.signal;
    if (signal?.aborted) return signal.reason;
    if (this.#timedOut) return this.#fail(this.#ac.signal.reason as XferError);
    const err = transportError(e, (info) =>
      // undici's own headers and body timeouts are the call's timeout too, seen as a silence.
      info.failure === 'timeout' && info.errno?.startsWith('UND_ERR_')
        ? `${this.#where()}: no data for ${this.timeoutMs / 1000} s`
        : `${this.#where()}: ${info.detail}`,
    );
    return this.#fail(err);
  }

  /** The error for an answer other than 200, with the peer's error document when it sent one. */
  async refused(res: EndpointResponse): Promise<XferError> {
    let answer: Awaited<ReturnType<typeof readErrorAnswer>>;
    try {
      answer = await readErrorAnswer(res);
    } finally {
      this.cleanup();
    }
    this.#stats.bytesReceived += answer.text.length;
    this.#wire?.charge('in', answer.text.length);
    const said = answer.remote ? documentReason(answer.remote) : undefined;
    return this.#fail(
      this.#httpError(res.statusCode, `HTTP ${res.statusCode} instead of 200${said !== undefined ? `: ${said}` : ''}`, {
        remote: answer.remote,
        retryAfterMs: answer.retryAfterMs,
      }),
    );
  }

  #httpError(status: number, reason: string, more: HttpErrorExtras): PeerHttpError {
    return new PeerHttpError({ peer: this.#peer, method: this.#req.method, url: this.url, status, reason, ...more });
  }

  /** A 200 answer's body as a stream, counted as it is read, its failures translated. */
  streamed(raw: Readable): Readable {
    // The deadline covered the wait for the headers; from here undici's bodyTimeout limits silences.
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const stats = this.#stats;
    const moved = this.#req.onBodyBytes;
    // Paced, a chunk waits for its turn before it is passed on: the reading stops, and TCP slows the peer.
    const pace = this.pace('in');
    const counted = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        stats.bytesReceived += chunk.length;
        moved?.(chunk.length);
        const turn = pace?.take(chunk.length);
        if (turn) turn.then(() => cb(null, chunk), cb);
        else cb(null, chunk);
      },
    });
    // Not stream.pipeline: it would hand undici's own errors to the reader; they are translated here.
    raw.on('error', (err) => {
      this.cleanup();
      counted.destroy(this.translate(err) as Error);
    });
    counted.on('close', () => {
      this.cleanup();
      if (!raw.destroyed) raw.destroy();
    });
    raw.pipe(counted);
    stats.lastSuccessAt = new Date().toISOString();
    return counted;
  }

  /** A 200 answer's body read whole, `limit` bytes at most. */
  async readWhole(raw: Readable, limit: number): Promise<Buffer> {
    let buf: Buffer;
    try {
      buf = await readBounded(raw, limit, () => this.#httpError(200, `the answer is larger than ${limit} bytes`, {}));
    } catch (e) {
      throw this.translate(e);
    } finally {
      this.cleanup();
    }
    this.#stats.bytesReceived += buf.length;
    this.#wire?.charge('in', buf.length);
    return buf;
  }

  parseJson(buf: Buffer): unknown {
    const text = buf.toString('utf8');
    try {
      if (text.trim() === '') throw new Error('empty');
      return JSON.parse(text) as unknown;
    } catch {
      const reason = text.trim() === '' ? 'the answer is empty where JSON was expected' : 'the answer is not valid JSON';
      throw this.#fail(this.#httpError(200, reason, { badBody: true }));
    }
  }

  succeeded<T>(response: T): T {
    this.#stats.lastSuccessAt = new Date().toISOString();
    return response;
  }
}

/**
 * Passes a body stream through while counting its bytes as sent (and telling `moved`); with `pace`, each
 * piece of at most PACE_PIECE bytes first waits for its turn on the wire (or is only counted).
 */
async function* countBytes(
  src: Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  stats: PeerStats,
  moved?: (n: number) => void,
  pace?: Pace,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of src as AsyncIterable<Uint8Array>) {
    // Without a limit in force, a chunk goes whole (counted): pieces only matter when they wait their turn.
    for (const piece of pace?.waits && pace.limited() ? pieces(chunk) : [chunk]) {
      const turn = pace?.take(piece.byteLength);
      if (turn) await turn;
      stats.bytesSent += piece.byteLength;
      moved?.(piece.byteLength);
      yield piece;
    }
  }
}

/** A body in memory as pieces of at most PROGRESS_PIECE bytes (views, no copy). */
function* inPieces(b: string | Uint8Array): Generator<Uint8Array> {
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  for (let at = 0; at < buf.byteLength; at += PROGRESS_PIECE) yield buf.subarray(at, at + PROGRESS_PIECE);
}
