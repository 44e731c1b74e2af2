// One server the node talks to over HTTP: its base URL (a path prefix kept), Basic credentials, and one
// keep-alive undici Pool to its origin with the TLS options (verification, CA bundle, client certificate)
// and timeouts, made on first use. The peer, Orthanc store, proxy and CLI clients are built on it.
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import { XferError } from '../errors.ts';
import { VERSION } from '../version.ts';

/** TLS settings for an https:// server (Orthanc's HttpsVerifyPeers, HttpsCACertificates, a peer's certificate). */
export interface TlsOptions {
  /** HttpsVerifyPeers; default true. */
  verifyPeers?: boolean | undefined;
  /** HttpsCACertificates: a PEM bundle that replaces the system's CAs. */
  caFile?: string | undefined;
  /** A client certificate (PEM); its key is in the same file unless `certificateKeyFile` is given. */
  certificateFile?: string | undefined;
  certificateKeyFile?: string | undefined;
  certificateKeyPassword?: string | undefined;
}

export interface EndpointOptions {
  /** Base URL; a path prefix such as `https://h/orthanc/` is kept, credentials in it are used. */
  url: string;
  /** Credentials that replace those of the URL (a user name without a password has an empty one). */
  username?: string | undefined;
  password?: string | undefined;
  /** Names the server in messages about its set-up: `peer "b"`, `Orthanc at https://h`. */
  owner?: string | undefined;
  tls?: TlsOptions | undefined;
  /** Most connections open at once; null or absent: unlimited. */
  connections?: number | null | undefined;
  /** Milliseconds to wait for an answer's headers, and the longest silence in a body; 0 = none. */
  timeoutMs?: number | undefined;
  /** Milliseconds to open a connection (TLS included); default undici's 10 s. */
  connectTimeoutMs?: number | undefined;
}

/** `base` (a path ending with '/') followed by `path` with its leading slashes dropped: one slash between. */
export function joinUrlPath(base: string, path: string): string {
  const b = base.endsWith('/') ? base : `${base}/`;
  return b + path.replace(/^\/+/, '');
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** The request options of the layer: undici's, without the origin (the endpoint's own). */
export type EndpointRequest = Omit<Dispatcher.RequestOptions, 'origin'>;

export interface EndpointResponse {
  statusCode: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Readable;
}

export class HttpEndpoint {
  readonly origin: string;
  /** The base URL's path without its trailing slash ('' at the root). */
  readonly prefix: string;
  /** The base URL without credentials nor trailing slash, for messages. */
  readonly url: string;
  /** The Basic `Authorization` header of the configured credentials, if any. */
  readonly authorization: string | undefined;
  readonly #opts: EndpointOptions;
  #pool: Promise<Pool> | undefined;
  #closed = false;

  constructor(opts: EndpointOptions) {
    const u = new URL(opts.url);
    this.origin = u.origin;
    this.prefix = u.pathname.replace(/\/+$/, '');
    this.url = this.origin + this.prefix;
    // Credentials in the URL itself are honoured when the options give none, and never shown in messages.
    const user = opts.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
    const pass = opts.username !== undefined ? (opts.password ?? '') : decodeURIComponent(u.password);
    this.authorization = user ? basicAuthorization(user, pass) : undefined;
    this.#opts = opts;
  }

  /** The request path of `path` under the base URL (one slash between, `transfers/x` and `/transfers/x` alike). */
  path(path: string): string {
    return joinUrlPath(`${this.prefix}/`, path);
  }

  /** The full URL of `path` (without credentials). */
  urlOf(path: string): string {
    return this.origin + this.path(path);
  }

  /** The headers every call carries: user agent, accept, the configured credentials. */
  baseHeaders(): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': `dicom-xfer/${VERSION}`, accept: '*/*' };
    if (this.authorization) h['authorization'] = this.authorization;
    return h;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** One call on the pool; a transport failure is thrown as undici threw it (see transportError). */
  async request(req: EndpointRequest): Promise<EndpointResponse> {
    const pool = await this.pool();
    const res = await pool.request({ ...req, origin: this.origin });
    return { statusCode: res.statusCode, headers: res.headers, body: res.body as unknown as Readable };
  }

  /** The pool, made on the first call; a failed set-up (a certificate file missing) is tried again next time. */
  pool(): Promise<Pool> {
    if (this.#closed) {
      const who = this.#opts.owner ?? this.url;
      return Promise.reject(new XferError('BadSequenceOfCalls', `the client of ${who} is closed`));
    }
    if (!this.#pool) {
      const p = this.#makePool();
      this.#pool = p;
      p.catch(() => {
        if (this.#pool === p) this.#pool = undefined;
      });
    }
    return this.#pool;
  }

  /** Lets calls in flight finish, then closes the connections; later calls fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const p = this.#pool;
    this.#pool = undefined;
    if (p) await (await p.catch(() => undefined))?.close().catch(() => undefined);
  }

  /** Closes the connections at once, failing the calls in flight. */
  async destroy(): Promise<void> {
    this.#closed = true;
    const p = this.#pool;
    this.#pool = undefined;
    if (p) await (await p.catch(() => undefined))?.destroy().catch(() => undefined);
  }

  async #makePool(): Promise<Pool> {
    const o = this.#opts;
    const connect: Record<string, unknown> = {};
    if (o.connectTimeoutMs !== undefined) connect['timeout'] = o.connectTimeoutMs;
    if (this.origin.startsWith('https:')) Object.assign(connect, await this.#tls(o.tls ?? {}));
    return new Pool(this.origin, {
      connections: o.connections ?? null,
      // Orthanc's server announces "Keep-Alive: timeout=1"; undici's default margin of 2 s would then
      // never reuse a connection to it. Half a second of margin keeps reuse and avoids the race.
      keepAliveTimeoutThreshold: 500,
      keepAliveTimeout: 4000,
      ...(o.timeoutMs !== undefined ? { headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs } : {}),
      connect,
    });
  }

  async #tls(tls: TlsOptions): Promise<Record<string, unknown>> {
    const of = this.#opts.owner ? ` of ${this.#opts.owner}` : '';
    const read = async (path: string, what: string) => {
      try {
        return await readFile(path);
      } catch (e) {
        throw new XferError('InexistentFile', `${what}${of} cannot be read: ${path}`, { cause: e });
      }
    };
    const out: Record<string, unknown> = { rejectUnauthorized: tls.verifyPeers ?? true };
    if (tls.caFile) out['ca'] = await read(tls.caFile, 'HttpsCACertificates');
    if (tls.certificateFile) {
      out['cert'] = await read(tls.certificateFile, 'CertificateFile');
      // Orthanc takes the key from the certificate file when no key file is given.
      out['key'] = tls.certificateKeyFile ? await read(tls.certificateKeyFile, 'CertificateKeyFile') : out['cert'];
      if (tls.certificateKeyPassword) out['passphrase'] = tls.certificateKeyPassword;
    }
    return out;
  }
}
