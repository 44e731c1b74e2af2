// The REST client of the Orthanc store: one keep-alive undici Pool to the Orthanc server, Basic
// credentials, timeouts, retries of idempotent reads, and the one place where Orthanc's answers and
// transport failures become dicom-xfer's errors (Orthanc's error JSON is read here and nowhere else).
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import { ERRORS, XferError, type ErrorCode } from '../../errors.ts';
import { retry, type RetryOptions } from '../../util/retry.ts';
import { VERSION } from '../../version.ts';

export type OrthancMethod = 'GET' | 'POST' | 'DELETE';

export interface OrthancClientOptions {
  /** Base URL of the Orthanc server (a path prefix such as `https://h/orthanc/` is kept). */
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  /** Milliseconds to wait for an answer's headers, and the longest silence inside a body; 0 = none. */
  timeoutMs: number;
  /** Most connections open to Orthanc at once. */
  connections?: number | undefined;
  /** Verify the certificate of an https:// Orthanc (HttpsVerifyPeers). */
  verifyPeers?: boolean | undefined;
  /** PEM bundle of trusted CAs for an https:// Orthanc (HttpsCACertificates). */
  caFile?: string | undefined;
  /** Attempts of an idempotent call in all; default 3. */
  attempts?: number | undefined;
}

export interface OrthancRequest {
  method: OrthancMethod;
  /** Path and query under the base URL, e.g. `/instances/{id}/file`. */
  path: string;
  headers?: Record<string, string> | undefined;
  /** Bytes in memory, or a stream of exactly `length` bytes. */
  body?: string | Buffer | { stream: Readable; length: number } | undefined;
  signal?: AbortSignal | undefined;
}

export interface OrthancResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

/** What Orthanc sends with an error (its JSON error document), when it sends one. */
interface OrthancErrorDocument {
  Details?: string;
  Message?: string;
  OrthancStatus?: number;
}

/**
 * An answer of Orthanc other than 2xx, translated into dicom-xfer's error table. `status` is Orthanc's HTTP
 * status: the retry primitive reads it to decide whether another attempt is worth it (5xx yes, 4xx no).
 */
export class OrthancHttpError extends XferError {
  readonly status: number;
  constructor(code: ErrorCode, details: string, status: number) {
    super(code, details);
    this.name = 'OrthancHttpError';
    this.status = status;
  }
}

const ERROR_BODY_LIMIT = 64 * 1024;
/** Largest JSON answer read into memory (a study's instance list with its main tags). */
const JSON_LIMIT = 256 * 1024 * 1024;

const CODE_BY_ORTHANC_STATUS = new Map<number, ErrorCode>(
  (Object.entries(ERRORS) as [ErrorCode, (typeof ERRORS)[ErrorCode]][]).map(([code, spec]) => [spec.status, code]),
);

/** Our code for an Orthanc answer: its OrthancStatus when our table has it, else one per HTTP status. */
function codeFor(status: number, doc: OrthancErrorDocument | undefined): ErrorCode {
  // Credentials refused by Orthanc concern dicom-xfer's configuration, not the caller of dicom-xfer.
  if (status === 401 || status === 403) return 'NetworkProtocol';
  if (status === 404) return 'UnknownResource';
  if (status === 503) return 'DatabaseUnavailable';
  const byStatus = doc?.OrthancStatus !== undefined ? CODE_BY_ORTHANC_STATUS.get(doc.OrthancStatus) : undefined;
  if (byStatus !== undefined) return byStatus;
  if (status === 507) return 'FullStorage';
  if (status === 400) return 'BadRequest';
  if (status === 416) return 'BadRange';
  return status >= 500 ? 'InternalError' : 'NetworkProtocol';
}

function parseErrorDocument(buf: Buffer): OrthancErrorDocument | undefined {
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    const o = v as Record<string, unknown>;
    const doc: OrthancErrorDocument = {};
    if (typeof o['Details'] === 'string') doc.Details = o['Details'];
    if (typeof o['Message'] === 'string') doc.Message = o['Message'];
    if (typeof o['OrthancStatus'] === 'number') doc.OrthancStatus = o['OrthancStatus'];
    return doc;
  } catch {
    return undefined;
  }
}

/** Reads at most `limit` bytes of a body and drops the rest. */
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
    // A cut error answer still says what it said so far.
  }
  if (!body.readableEnded) body.destroy();
  return Buffer.concat(parts).subarray(0, limit);
}

/** Transport failures that mean "Orthanc cannot be reached right now" rather than a bad answer. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export class OrthancClient {
  /** The base URL without credentials, for messages. */
  readonly url: string;
  readonly #origin: string;
  readonly #prefix: string;
  readonly #authorization: string | undefined;
  readonly #opts: OrthancClientOptions;
  #pool: Promise<Pool> | undefined;
  #closed = false;

  constructor(opts: OrthancClientOptions) {
    const u = new URL(opts.url);
    this.#origin = u.origin;
    this.#prefix = u.pathname.replace(/\/+$/, '');
    this.url = `${u.origin}${this.#prefix}`;
    const user = opts.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
    const pass = opts.username !== undefined ? (opts.password ?? '') : decodeURIComponent(u.password);
    this.#authorization = user ? `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` : undefined;
    this.#opts = opts;
  }

  /** One call. Resolves with any 2xx answer (the caller reads or destroys the body); rejects otherwise. */
  async request(req: OrthancRequest): Promise<OrthancResponse> {
    const pool = await this.#getPool();
    const headers: Record<string, string> = { 'user-agent': `dicom-xfer/${VERSION}`, accept: '*/*', ...req.headers };
    if (this.#authorization) headers['authorization'] = this.#authorization;
    let body: string | Buffer | Readable | undefined;
    if (req.body !== undefined && typeof req.body === 'object' && !Buffer.isBuffer(req.body)) {
      body = req.body.stream;
      headers['content-length'] = String(req.body.length);
    } else body = req.body;
    const where = `${req.method} ${this.url}${req.path}`;
    let res;
    try {
      res = await pool.request({
        origin: this.#origin,
        path: this.#prefix + req.path,
        method: req.method,
        headers,
        body: body ?? null,
        signal: req.signal ?? null,
      });
    } catch (e) {
      if (req.signal?.aborted) throw req.signal.reason;
      throw this.transportError(where, e);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return { status: res.statusCode, headers: res.headers, body: res.body };
    const text = await readSome(res.body, ERROR_BODY_LIMIT);
    const doc = parseErrorDocument(text);
    const why = doc?.Details ?? doc?.Message ?? (text.length > 0 && !doc ? text.toString('utf8').slice(0, 200) : '');
    const auth = res.statusCode === 401 || res.statusCode === 403 ? ' (check OrthancStore.Username and Password)' : '';
    throw new OrthancHttpError(
      codeFor(res.statusCode, doc),
      `Orthanc answered ${where} with HTTP ${res.statusCode}${why ? `: ${why}` : ''}${auth}`,
      res.statusCode,
    );
  }

  /** A call whose answer is JSON, read whole (bounded); GETs are retried. */
  async json<T = unknown>(req: OrthancRequest): Promise<T> {
    const run = async (): Promise<T> => {
      const res = await this.request(req);
      const buf = await this.#readBody(res.body, `${req.method} ${req.path}`);
      try {
        return JSON.parse(buf.toString('utf8')) as T;
      } catch (e) {
        throw new XferError('NetworkProtocol', `Orthanc at ${this.url} answered ${req.method} ${req.path} with a body that is not JSON`, {
          cause: e,
        });
      }
    };
    return req.method === 'POST' ? run() : this.retryIdempotent(run, req.signal);
  }

  /** A GET whose answer is short text (e.g. a size or an MD5), retried. */
  async text(path: string, signal?: AbortSignal): Promise<string> {
    return this.retryIdempotent(async () => {
      const res = await this.request({ method: 'GET', path, signal });
      return (await this.#readBody(res.body, `GET ${path}`)).toString('utf8');
    }, signal);
  }

  /**
   * Runs an idempotent call (a read, a DELETE, or POST /instances, which Orthanc answers AlreadyStored when
   * repeated) with a few quick retries: Orthanc restarting, a keep-alive connection lost.
   */
  retryIdempotent<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const opts: RetryOptions = {
      maxAttempts: this.#opts.attempts ?? 3,
      backoff: { kind: 'exponential', baseMs: 200, capMs: 1000 },
    };
    if (signal) opts.signal = signal;
    return retry(() => fn(), opts);
  }

  async #readBody(body: Readable, what: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > JSON_LIMIT) {
          body.destroy();
          throw new XferError('NotEnoughMemory', `Orthanc's answer to ${what} exceeds ${JSON_LIMIT} bytes`);
        }
        parts.push(chunk);
      }
    } catch (e) {
      if (e instanceof XferError) throw e;
      throw this.transportError(what, e);
    }
    return Buffer.concat(parts, total);
  }

  /** A transport failure (no answer, cut answer, timeout) as an error naming Orthanc's URL. */
  transportError(what: string, e: unknown): XferError {
    if (e instanceof XferError) return e;
    const code = (e as { code?: unknown }).code;
    const msg = e instanceof Error ? e.message : String(e);
    const detail = typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
    if (typeof code === 'string' && TIMEOUT_CODES.has(code)) {
      return new XferError('Timeout', `Orthanc at ${this.url} did not answer in time (${what}): ${detail}`, { cause: e });
    }
    // Connection refused, reset, closed...: the store is unavailable until Orthanc is back; the pool
    // reconnects by itself on the next call.
    return new XferError('DatabaseUnavailable', `Orthanc at ${this.url} cannot be reached (${what}): ${detail}`, { cause: e });
  }

  #getPool(): Promise<Pool> {
    if (this.#closed) return Promise.reject(new XferError('BadSequenceOfCalls', `the client of Orthanc at ${this.url} is closed`));
    if (!this.#pool) {
      const p = this.#makePool();
      this.#pool = p;
      p.catch(() => {
        if (this.#pool === p) this.#pool = undefined;
      });
    }
    return this.#pool;
  }

  async #makePool(): Promise<Pool> {
    const connect: Record<string, unknown> = { timeout: 10_000 };
    if (this.#origin.startsWith('https:')) {
      connect['rejectUnauthorized'] = this.#opts.verifyPeers ?? true;
      if (this.#opts.caFile) {
        try {
          connect['ca'] = await readFile(this.#opts.caFile);
        } catch (e) {
          throw new XferError('InexistentFile', `HttpsCACertificates cannot be read: ${this.#opts.caFile}`, { cause: e });
        }
      }
    }
    const t = this.#opts.timeoutMs;
    return new Pool(this.#origin, {
      connections: this.#opts.connections ?? 16,
      // Orthanc announces "Keep-Alive: timeout=1": with undici's default 2 s margin no connection would
      // ever be reused; half a second of margin keeps reuse and avoids racing Orthanc's close.
      keepAliveTimeoutThreshold: 500,
      keepAliveTimeout: 4000,
      headersTimeout: t,
      bodyTimeout: t,
      connect,
    });
  }

  /** Lets calls in flight finish, then closes the connections. */
  async close(): Promise<void> {
    this.#closed = true;
    const p = this.#pool;
    this.#pool = undefined;
    if (p) await (await p.catch(() => undefined))?.close().catch(() => undefined);
  }
}
