// The CLI's HTTP client to a dicom-xfer (or Orthanc) node: where the node is, Basic credentials, one
// keep-alive pool, and every failure turned into an error whose message says the cause and what to do.
import type { Readable } from 'node:stream';
import { Option, type Command } from 'commander';
import { Agent, request } from 'undici';
import { ERRORS, XferError, type ErrorCode, type OrthancErrorBody } from '../errors.ts';

export const DEFAULT_NODE_URL = 'http://127.0.0.1:8042';
export const ENV_URL = 'DICOM_XFER_URL';
export const ENV_USERNAME = 'DICOM_XFER_USERNAME';
export const ENV_PASSWORD = 'DICOM_XFER_PASSWORD';

/** A mistake on the command line (bad URL, missing path, bad number): the command exits with status 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Adds --url, --username and --password (documented with their environment variables) to a command;
 * read them back with resolveTarget(). Returns the command for chaining.
 */
export function addTargetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--url <url>', `the node's address (env ${ENV_URL})`).default(undefined, DEFAULT_NODE_URL))
    .addOption(new Option('--username <user>', `user name for HTTP Basic authentication (env ${ENV_USERNAME})`))
    .addOption(new Option('--password <password>', `password for HTTP Basic authentication (env ${ENV_PASSWORD})`));
}

/** Where a node is and how to log in. `url` carries no credentials and no trailing slash. */
export interface NodeTarget {
  url: string;
  username: string | undefined;
  password: string | undefined;
}

export interface TargetFlags {
  url?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
}

/**
 * The node a command talks to: --url, else $DICOM_XFER_URL, else the local node; credentials from
 * --username/--password, else $DICOM_XFER_USERNAME/$DICOM_XFER_PASSWORD, else the URL's user info.
 * Throws UsageError for a URL that is not http(s) or a user name without a password (or the reverse).
 */
export function resolveTarget(flags: TargetFlags, env: NodeJS.ProcessEnv = process.env): NodeTarget {
  const raw = flags.url ?? (env[ENV_URL] || undefined) ?? DEFAULT_NODE_URL;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new UsageError(`"${raw}" is not a URL; give the node's address like ${DEFAULT_NODE_URL}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`"${raw}" is not an http:// or https:// URL; give the node's address like ${DEFAULT_NODE_URL}`);
  }
  if (parsed.search || parsed.hash) {
    throw new UsageError(`"${raw}" has a query or fragment; give only the node's base address like ${DEFAULT_NODE_URL}`);
  }
  let username = flags.username ?? (env[ENV_USERNAME] || undefined);
  let password = flags.password ?? (env[ENV_PASSWORD] || undefined);
  if (username === undefined && password === undefined && parsed.username) {
    username = decodeURIComponent(parsed.username);
    password = decodeURIComponent(parsed.password);
  }
  parsed.username = '';
  parsed.password = '';
  if ((username === undefined) !== (password === undefined)) {
    throw new UsageError(
      `give both a user name and a password (--username and --password, or ${ENV_USERNAME} and ${ENV_PASSWORD})`,
    );
  }
  const url = parsed.toString().replace(/\/+$/, '');
  return { url, username, password };
}

/** Orthanc's error JSON when `v` has its shape (HttpStatus and Message at least), else undefined. */
export function asOrthancError(v: unknown): OrthancErrorBody | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.Message !== 'string' || typeof o.HttpStatus !== 'number') return undefined;
  return {
    HttpError: typeof o.HttpError === 'string' ? o.HttpError : '',
    HttpStatus: o.HttpStatus,
    Message: o.Message,
    Method: typeof o.Method === 'string' ? o.Method : '',
    OrthancError: typeof o.OrthancError === 'string' ? o.OrthancError : o.Message,
    OrthancStatus: typeof o.OrthancStatus === 'number' ? o.OrthancStatus : -1,
    Uri: typeof o.Uri === 'string' ? o.Uri : '',
    ...(typeof o.Details === 'string' ? { Details: o.Details } : {}),
  };
}

/** "Bad file format: Cannot parse an invalid DICOM file (size: 17 bytes)" from Orthanc's error JSON. */
export function orthancReason(body: OrthancErrorBody): string {
  return body.Details ? `${body.Message}: ${body.Details}` : body.Message;
}

function codeFor(status: number, body: OrthancErrorBody | undefined): ErrorCode {
  if (body) {
    for (const [code, spec] of Object.entries(ERRORS)) {
      if (spec.status === body.OrthancStatus) return code as ErrorCode;
    }
  }
  if (status === 401) return 'Unauthorized';
  if (status === 403) return 'ForbiddenAccess';
  if (status === 404) return 'UnknownResource';
  if (status === 416) return 'BadRange';
  if (status === 507) return 'FullStorage';
  if (status >= 500) return 'InternalError';
  return 'BadRequest';
}

/**
 * The node answered with a status other than 2xx (or a 2xx that is not JSON). `status` is the HTTP status,
 * `body` Orthanc's error JSON when there was one, `code` the matching entry of the error table.
 */
export class NodeHttpError extends XferError {
  readonly status: number;
  readonly body: OrthancErrorBody | undefined;
  /** The server's reason (Message: Details) or the HTTP status text; no advice. */
  readonly reason: string;

  constructor(target: NodeTarget, method: string, path: string, status: number, body: OrthancErrorBody | undefined, text: string) {
    const code = codeFor(status, body);
    const reason = body ? orthancReason(body) : text.trim().slice(0, 200) || `HTTP ${status}`;
    super(code, reason, { httpStatus: status });
    this.name = 'NodeHttpError';
    this.status = status;
    this.body = body;
    this.reason = reason;
    this.message = adviceFor(target, method, path, status, reason);
  }
}

function adviceFor(target: NodeTarget, method: string, path: string, status: number, reason: string): string {
  if (status === 401) {
    return target.username === undefined
      ? `The node at ${target.url} needs credentials: pass --username and --password, or set ${ENV_USERNAME} and ${ENV_PASSWORD}.`
      : `The node at ${target.url} refused the credentials of user "${target.username}": check --username and --password (or ${ENV_USERNAME} and ${ENV_PASSWORD}).`;
  }
  if (status === 403) {
    return `The node at ${target.url} forbids ${method} ${path} for ${target.username === undefined ? 'anonymous users' : `user "${target.username}"`}: ask its administrator for access.`;
  }
  if (status === 404 && reason === `HTTP 404`) {
    return `The node at ${target.url} has no ${method} ${path}: is it a dicom-xfer or Orthanc node, and is the URL its base address?`;
  }
  return `${method} ${path} failed with HTTP ${status}: ${reason}`;
}

/** Socket-level codes worth one more try: the connection broke, the node is there. */
const TRANSIENT = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** Codes meaning nothing answers at that address: no point sending anything else there. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** The errno-like code of a network error, looking through `cause` and AggregateError members. */
export function networkErrorCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 5 && typeof cur === 'object' && cur !== null; i++) {
    const o = cur as { code?: unknown; cause?: unknown; errors?: unknown };
    if (typeof o.code === 'string' && o.code !== 'ERR_AGGREGATE') return o.code;
    cur = Array.isArray(o.errors) && o.errors.length > 0 ? o.errors[0] : o.cause;
  }
  return undefined;
}

const PLAIN: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while sending',
  ETIMEDOUT: 'timed out',
  UND_ERR_SOCKET: 'connection closed by the node',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'answer stalled',
};

/** The node could not be reached, or the connection broke before an answer arrived. */
export class NodeConnectionError extends XferError {
  /** errno-like code (ECONNREFUSED, UND_ERR_SOCKET, ...) when known. */
  readonly errno: string | undefined;
  /** True when nothing answers at the address at all (refused, unknown host): stop sending. */
  readonly unreachable: boolean;

  constructor(target: NodeTarget, cause: unknown) {
    const errno = networkErrorCode(cause);
    const what = (errno && PLAIN[errno]) ?? (cause instanceof Error ? cause.message : String(cause));
    super('NetworkProtocol', what, { cause });
    this.name = 'NodeConnectionError';
    this.errno = errno;
    this.unreachable = errno !== undefined && (UNREACHABLE.has(errno) || errno === 'UND_ERR_CONNECT_TIMEOUT');
    this.message = this.unreachable
      ? `Cannot connect to ${target.url} (${what}): is the node running? Start it with \`dicom-xfer serve\`, or give its address with --url or ${ENV_URL}.`
      : `The connection to ${target.url} failed (${what}).`;
  }

  /** Worth sending the same request again: the connection broke, the node itself answers. */
  override get retryable(): boolean {
    return this.errno !== undefined && TRANSIENT.has(this.errno);
  }
}

export interface RequestOptions {
  /** A stream (give `contentLength` with it), a buffer or a string. */
  body?: Readable | Buffer | string;
  contentLength?: number;
  contentType?: string;
  signal?: AbortSignal;
}

export interface NodeClientOptions {
  /** Most sockets open at once to the node (default 8). */
  connections?: number;
}

/**
 * Requests to one node over a keep-alive pool, with Basic credentials when the target has them.
 * `json()` resolves with the parsed body of a 2xx answer and rejects with NodeHttpError or
 * NodeConnectionError, never anything else. Call `close()` when done so no socket keeps the process up.
 */
export class NodeClient {
  readonly target: NodeTarget;
  readonly #agent: Agent;
  readonly #auth: string | undefined;

  constructor(target: NodeTarget, opts: NodeClientOptions = {}) {
    this.target = target;
    this.#agent = new Agent({
      connections: opts.connections ?? 8,
      // Orthanc announces "Keep-Alive: timeout=1"; undici's default 2 s margin would then never reuse a
      // socket. Half a second keeps reuse while uploads flow and stays clear of the server's close.
      keepAliveTimeoutThreshold: 500,
    });
    this.#auth =
      target.username !== undefined
        ? `Basic ${Buffer.from(`${target.username}:${target.password ?? ''}`).toString('base64')}`
        : undefined;
  }

  /** Full URL of a path on the node ("/instances" → "http://host:8042/instances"). */
  urlOf(path: string): string {
    return `${this.target.url}${path.startsWith('/') ? path : `/${path}`}`;
  }

  async json<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#auth) headers.authorization = this.#auth;
    if (opts.contentType) headers['content-type'] = opts.contentType;
    if (opts.contentLength !== undefined) headers['content-length'] = String(opts.contentLength);
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(this.urlOf(path), {
        method: method as 'GET',
        headers,
        body: opts.body,
        signal: opts.signal,
        dispatcher: this.#agent,
      });
    } catch (e) {
      throw new NodeConnectionError(this.target, e);
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (e) {
      throw new NodeConnectionError(this.target, e);
    }
    let parsed: unknown;
    let isJson = false;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
        isJson = true;
      } catch {
        // not JSON: handled below according to the status
      }
    }
    if (res.statusCode >= 200 && res.statusCode < 300) {
      if (!isJson) {
        throw new NodeHttpError(this.target, method, path, res.statusCode, undefined, `the node answered HTTP ${res.statusCode} with a body that is not JSON`);
      }
      return parsed as T;
    }
    throw new NodeHttpError(this.target, method, path, res.statusCode, isJson ? asOrthancError(parsed) : undefined, text);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
