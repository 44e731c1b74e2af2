// The REST client of the Orthanc store, on the node's HTTP layer (src/http/): one endpoint to the Orthanc
// server (credentials, TLS, timeouts, a keep-alive pool), retries of idempotent reads, and the store's
// choice of codes for Orthanc's answers and transport failures (Orthanc down: DatabaseUnavailable).
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { XferError, type ErrorCode } from '../../errors.ts';
import { DEFAULT_BODY_LIMIT, readBounded, readErrorAnswer } from '../../http/body.ts';
import { type EndpointResponse, HttpEndpoint } from '../../http/endpoint.ts';
import { HttpError, type RemoteErrorDocument, codeOfAnswer, transportError } from '../../http/errors.ts';
import { retry, type RetryOptions } from '../../util/retry.ts';

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

/** Largest JSON answer read into memory (a study's instance list with its main tags). */
const JSON_LIMIT = DEFAULT_BODY_LIMIT;

/**
 * Our code for an answer of Orthanc other than 2xx: the code the answer names (codeOfAnswer), but for the
 * statuses whose meaning for dicom-xfer's caller differs from their meaning for dicom-xfer.
 */
function codeFor(status: number, doc: RemoteErrorDocument | undefined): ErrorCode {
  // Credentials refused by Orthanc concern dicom-xfer's configuration, not the caller of dicom-xfer.
  if (status === 401 || status === 403) return 'NetworkProtocol';
  if (status === 404) return 'UnknownResource';
  if (status === 503) return 'DatabaseUnavailable';
  const code = codeOfAnswer(status, doc);
  // Another refusal the answer does not name is Orthanc's answer to dicom-xfer, not the caller's mistake.
  return code === 'BadRequest' && status !== 400 && doc?.OrthancStatus === undefined ? 'NetworkProtocol' : code;
}

export class OrthancClient {
  /** The base URL without credentials, for messages. */
  readonly url: string;
  readonly #endpoint: HttpEndpoint;
  readonly #opts: OrthancClientOptions;

  constructor(opts: OrthancClientOptions) {
    this.#endpoint = new HttpEndpoint({
      url: opts.url,
      username: opts.username,
      password: opts.password,
      connections: opts.connections ?? 16,
      timeoutMs: opts.timeoutMs,
      connectTimeoutMs: 10_000,
      tls: { verifyPeers: opts.verifyPeers ?? true, caFile: opts.caFile },
    });
    this.url = this.#endpoint.url;
    this.#opts = opts;
  }

  /** One call. Resolves with any 2xx answer (the caller reads or destroys the body); rejects otherwise. */
  async request(req: OrthancRequest): Promise<OrthancResponse> {
    const headers: Record<string, string> = { ...this.#endpoint.baseHeaders(), ...req.headers };
    if (this.#endpoint.authorization) headers['authorization'] = this.#endpoint.authorization;
    let body: string | Buffer | Readable | undefined;
    if (req.body !== undefined && typeof req.body === 'object' && !Buffer.isBuffer(req.body)) {
      body = req.body.stream;
      headers['content-length'] = String(req.body.length);
    } else body = req.body;
    const where = `${req.method} ${this.url}${req.path}`;
    let res: EndpointResponse;
    try {
      res = await this.#endpoint.request({
        path: this.#endpoint.prefix + req.path,
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
    const { text, remote } = await readErrorAnswer(res);
    const why = remote?.Details ?? remote?.Message ?? (text.length > 0 && !remote ? text.toString('utf8').slice(0, 200) : '');
    const auth = res.statusCode === 401 || res.statusCode === 403 ? ' (check OrthancStore.Username and Password)' : '';
    throw new HttpError({
      code: codeFor(res.statusCode, remote),
      method: req.method,
      url: `${this.url}${req.path}`,
      status: res.statusCode,
      details: `Orthanc answered ${where} with HTTP ${res.statusCode}${why ? `: ${why}` : ''}${auth}`,
      remote,
    });
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
    try {
      return await readBounded(
        body,
        JSON_LIMIT,
        () => new XferError('NotEnoughMemory', `Orthanc's answer to ${what} exceeds ${JSON_LIMIT} bytes`),
      );
    } catch (e) {
      throw this.transportError(what, e);
    }
  }

  /**
   * A transport failure (no answer, cut answer, timeout) as an error naming Orthanc's URL: Timeout, or
   * DatabaseUnavailable (connection refused, reset, closed...: the store is unavailable until Orthanc is
   * back; the pool reconnects by itself on the next call).
   */
  transportError(what: string, e: unknown): XferError {
    return transportError(
      e,
      (info) =>
        info.failure === 'timeout' || info.failure === 'connect-timeout'
          ? `Orthanc at ${this.url} did not answer in time (${what}): ${info.detail}`
          : `Orthanc at ${this.url} cannot be reached (${what}): ${info.detail}`,
      { code: (f) => (f === 'timeout' || f === 'connect-timeout' ? 'Timeout' : 'DatabaseUnavailable') },
    );
  }

  /** Lets calls in flight finish, then closes the connections. */
  async close(): Promise<void> {
    await this.#endpoint.close();
  }
}
