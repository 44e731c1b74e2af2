// The CLI's HTTP client to a dicom-xfer (or Orthanc) node, on the node's HTTP layer (src/http/): where the
// node is, Basic credentials, one keep-alive pool, and every failure turned into an error whose message says
// the cause and what to do.
import type { Readable } from 'node:stream';
import { Option, type Command } from 'commander';
import { DEFAULT_BODY_LIMIT, readBounded } from '../http/body.ts';
import { type EndpointResponse, HttpEndpoint } from '../http/endpoint.ts';
import {
  HttpError,
  type RemoteErrorDocument,
  TransportError,
  classifyTransport,
  codeOfAnswer,
  documentReason,
  parseErrorDocument,
} from '../http/errors.ts';

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
    throw new UsageError(`give both a user name and a password (--username and --password, or ${ENV_USERNAME} and ${ENV_PASSWORD})`);
  }
  const url = parsed.toString().replace(/\/+$/, '');
  return { url, username, password };
}

/** "Bad file format: Cannot parse an invalid DICOM file (size: 17 bytes)" from Orthanc's error JSON. */
export function orthancReason(body: RemoteErrorDocument): string {
  return documentReason(body) ?? '';
}

/**
 * The node answered with a status other than 2xx (or a 2xx that is not JSON): the HTTP layer's one HttpError,
 * its code the one the answer names, `remote` Orthanc's error document when there was one, `reason` the
 * server's words, and the message the advice for the person at the keyboard.
 */
export function nodeHttpError(
  target: NodeTarget,
  method: string,
  path: string,
  status: number,
  remote: RemoteErrorDocument | undefined,
  text: string,
): HttpError {
  const reason = (remote ? documentReason(remote) : undefined) ?? (text.trim().slice(0, 200) || `HTTP ${status}`);
  return new HttpError({
    code: codeOfAnswer(status, remote),
    method,
    url: `${target.url}${path}`,
    status,
    details: reason,
    remote,
    reason,
    advice: adviceFor(target, method, path, status, reason),
    httpStatus: status,
  });
}

function adviceFor(target: NodeTarget, method: string, path: string, status: number, reason: string): string {
  if (status === 401) {
    return target.username === undefined
      ? `The node at ${target.url} needs credentials: pass --username and --password, or set ${ENV_USERNAME} and ${ENV_PASSWORD}.`
      : `The node at ${target.url} refused the credentials of user "${target.username}": check --username and --password (or ` +
          `${ENV_USERNAME} and ${ENV_PASSWORD}).`;
  }
  if (status === 403) {
    const who = target.username === undefined ? 'anonymous users' : `user "${target.username}"`;
    return `The node at ${target.url} forbids ${method} ${path} for ${who}: ask its administrator for access.`;
  }
  if (status === 404 && reason === `HTTP 404`) {
    return `The node at ${target.url} has no ${method} ${path}: is it a dicom-xfer or Orthanc node, and is the URL its base address?`;
  }
  return `${method} ${path} failed with HTTP ${status}: ${reason}`;
}

/** The node could not be reached, or the connection broke before an answer arrived (the layer's TransportError). */
export class NodeConnectionError extends TransportError {
  constructor(target: NodeTarget, cause: unknown) {
    const info = classifyTransport(cause);
    const words = info.errno === 'UND_ERR_SOCKET' ? 'connection closed by the node' : info.words;
    super({ ...info, words }, words, { code: 'NetworkProtocol', cause });
    this.name = 'NodeConnectionError';
    this.message = this.unreachable
      ? `Cannot connect to ${target.url} (${words}): is the node running? Start it with \`dicom-xfer serve\`, or give its address with ` +
        `--url or ${ENV_URL}.`
      : `The connection to ${target.url} failed (${words}).`;
  }

  /** Worth sending the same request again: the connection broke, the node itself answers. */
  override get retryable(): boolean {
    return this.transient;
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

/** The largest answer of a node read into memory. */
const ANSWER_LIMIT = DEFAULT_BODY_LIMIT;

/**
 * Requests to one node over a keep-alive pool, with Basic credentials when the target has them.
 * `json()` resolves with the parsed body of a 2xx answer and rejects with HttpError (see nodeHttpError) or
 * NodeConnectionError, never anything else. Call `close()` when done so no socket keeps the process up.
 */
export class NodeClient {
  readonly target: NodeTarget;
  readonly #endpoint: HttpEndpoint;

  constructor(target: NodeTarget, opts: NodeClientOptions = {}) {
    this.target = target;
    this.#endpoint = new HttpEndpoint({
      url: target.url,
      username: target.username,
      password: target.password ?? '',
      connections: opts.connections ?? 8,
    });
  }

  /** Full URL of a path on the node ("/instances" → "http://host:8042/instances"). */
  urlOf(path: string): string {
    return `${this.target.url}${path.startsWith('/') ? path : `/${path}`}`;
  }

  async json<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const headers = this.#endpoint.baseHeaders();
    headers['accept'] = 'application/json';
    if (opts.contentType) headers['content-type'] = opts.contentType;
    if (opts.contentLength !== undefined) headers['content-length'] = String(opts.contentLength);
    let res: EndpointResponse;
    let text: string;
    try {
      res = await this.#endpoint.request({
        method: method as 'GET',
        path: this.#endpoint.path(path),
        headers,
        body: opts.body ?? null,
        signal: opts.signal ?? null,
      });
      const status = res.statusCode;
      const tooLarge = () => nodeHttpError(this.target, method, path, status, undefined, `the answer is larger than ${ANSWER_LIMIT} bytes`);
      text = (await readBounded(res.body, ANSWER_LIMIT, tooLarge)).toString('utf8');
    } catch (e) {
      if (e instanceof HttpError) throw e;
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
        const why = `the node answered HTTP ${res.statusCode} with a body that is not JSON`;
        throw nodeHttpError(this.target, method, path, res.statusCode, undefined, why);
      }
      return parsed as T;
    }
    throw nodeHttpError(this.target, method, path, res.statusCode, isJson ? parseErrorDocument(parsed) : undefined, text);
  }

  async close(): Promise<void> {
    await this.#endpoint.close();
  }
}
