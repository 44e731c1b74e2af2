// The errors of the HTTP layer: an answer that is not a success (HttpError, with the Orthanc error document
// it carried) and a call that got no answer (TransportError). Every client maps failures through here.
import { ERRORS, XferError, type ErrorCode } from '../errors.ts';

/** Orthanc's JSON error document as a remote server sends it (docs/protocol.md#errors); every key optional. */
export interface RemoteErrorDocument {
  HttpError?: string;
  HttpStatus?: number;
  Message?: string;
  Method?: string;
  OrthancError?: string;
  OrthancStatus?: number;
  Uri?: string;
  Details?: string;
}

const STRING_KEYS = ['HttpError', 'Message', 'Method', 'OrthancError', 'Uri', 'Details'] as const;
const NUMBER_KEYS = ['HttpStatus', 'OrthancStatus'] as const;

/**
 * The error document in an answer's body (bytes, text or parsed JSON), or undefined when the body is not
 * one: it must be a JSON object with at least a Message, Details or OrthancStatus of the right type.
 */
export function parseErrorDocument(raw: Buffer | string | unknown): RemoteErrorDocument | undefined {
  let v: unknown = raw;
  if (typeof raw === 'string' || Buffer.isBuffer(raw)) {
    try {
      v = JSON.parse(raw.toString('utf8'));
    } catch {
      return undefined;
    }
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const doc: RemoteErrorDocument = {};
  for (const k of STRING_KEYS) if (typeof o[k] === 'string') doc[k] = o[k];
  for (const k of NUMBER_KEYS) if (typeof o[k] === 'number') doc[k] = o[k];
  return doc.Message === undefined && doc.Details === undefined && doc.OrthancStatus === undefined ? undefined : doc;
}

/** "Bad file format: Cannot parse an invalid DICOM file" from a document: its Message and Details. */
export function documentReason(doc: RemoteErrorDocument): string | undefined {
  if (doc.Message !== undefined && doc.Details !== undefined) return `${doc.Message}: ${doc.Details}`;
  return doc.Message ?? doc.Details;
}

const CODE_BY_ORTHANC_STATUS = new Map<number, ErrorCode>(
  (Object.entries(ERRORS) as [ErrorCode, (typeof ERRORS)[ErrorCode]][]).map(([code, spec]) => [spec.status, code]),
);

/**
 * The code an answer names: its document's OrthancStatus when the error table has it, else one per HTTP
 * status. The one mapping from a remote answer to the table; clients may still give the failure another
 * code of their own (a peer's refusal is NetworkProtocol to the job that called it).
 */
export function codeOfAnswer(status: number, doc: RemoteErrorDocument | undefined): ErrorCode {
  const byStatus = doc?.OrthancStatus !== undefined ? CODE_BY_ORTHANC_STATUS.get(doc.OrthancStatus) : undefined;
  if (byStatus !== undefined) return byStatus;
  if (status === 401) return 'Unauthorized';
  if (status === 403) return 'ForbiddenAccess';
  if (status === 404) return 'UnknownResource';
  if (status === 416) return 'BadRange';
  if (status === 503) return 'DatabaseUnavailable';
  if (status === 507) return 'FullStorage';
  if (status >= 500) return 'InternalError';
  if (status >= 400) return 'BadRequest';
  return 'NetworkProtocol';
}

/** Retry-After as milliseconds (seconds or an HTTP date), capped at 5 minutes. */
export function parseRetryAfter(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const cap = 5 * 60_000;
  if (/^\d+$/.test(s.trim())) return Math.min(Number(s.trim()) * 1000, cap);
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.min(Math.max(0, at - Date.now()), cap);
}

export interface HttpErrorInit {
  /** The code this node gives the failure (often `codeOfAnswer`, but the client decides). */
  code: ErrorCode;
  method: string;
  url: string;
  /** The remote HTTP status (a 200 for an answer whose body could not be used). */
  status: number;
  /** The text after the code's words in the message: where, what was answered. */
  details: string;
  remote?: RemoteErrorDocument | undefined;
  /** The server's reason in a few words; default: the document's Message and Details, else `HTTP <status>`. */
  reason?: string | undefined;
  badBody?: boolean | undefined;
  retryAfterMs?: number | undefined;
  /** What the person at the keyboard should do; when given, it is the whole message. */
  advice?: string | undefined;
  httpStatus?: number | undefined;
  cause?: unknown;
}

/**
 * A call that reached the server and was not a success: a refused status, or a success whose body could not
 * be used (`badBody`: empty or not JSON where JSON was expected, or over the size limit). The one error type
 * of every HTTP client of the node; `status` lets the retry primitive tell 5xx from 4xx.
 */
export class HttpError extends XferError {
  readonly method: string;
  readonly url: string;
  readonly status: number;
  /** The server's Orthanc error document, when it sent one. */
  readonly remote: RemoteErrorDocument | undefined;
  /** The server's reason (Message: Details) or the HTTP status; no advice. */
  readonly reason: string;
  /** A success answer whose body could not be used (retryable, as in the plugin). */
  readonly badBody: boolean;
  /** From a Retry-After header, in ms. */
  readonly retryAfterMs: number | undefined;
  readonly advice: string | undefined;

  constructor(init: HttpErrorInit) {
    super(init.code, init.details, { cause: init.cause, httpStatus: init.httpStatus });
    this.name = 'HttpError';
    this.method = init.method;
    this.url = init.url;
    this.status = init.status;
    this.remote = init.remote;
    this.reason = init.reason ?? (init.remote ? documentReason(init.remote) : undefined) ?? `HTTP ${init.status}`;
    this.badBody = init.badBody ?? false;
    this.retryAfterMs = init.retryAfterMs;
    this.advice = init.advice;
    if (init.advice !== undefined) this.message = init.advice;
  }

  /** The code the answer itself names (its OrthancStatus, else its HTTP status), whatever `code` is. */
  get remoteCode(): ErrorCode {
    return codeOfAnswer(this.status, this.remote);
  }
}

/** What went wrong below HTTP, in a few kinds that decide what a caller does next. */
export type TransportFailure = 'timeout' | 'connect-timeout' | 'refused' | 'unreachable' | 'reset' | 'tls' | 'other';

/** errno-like codes: their kind and a few plain words. */
const TRANSPORT_CODES: Record<string, readonly [TransportFailure, string]> = {
  ECONNREFUSED: ['refused', 'connection refused'],
  ENOTFOUND: ['unreachable', 'host not found'],
  EAI_AGAIN: ['unreachable', 'host name lookup failed'],
  EHOSTUNREACH: ['unreachable', 'host unreachable'],
  EHOSTDOWN: ['unreachable', 'host down'],
  ENETUNREACH: ['unreachable', 'network unreachable'],
  ENETDOWN: ['unreachable', 'network down'],
  EADDRNOTAVAIL: ['unreachable', 'address not available'],
  UND_ERR_CONNECT_TIMEOUT: ['connect-timeout', 'connection timed out'],
  ETIMEDOUT: ['timeout', 'timed out'],
  UND_ERR_HEADERS_TIMEOUT: ['timeout', 'no answer in time'],
  UND_ERR_BODY_TIMEOUT: ['timeout', 'answer stalled'],
  ECONNRESET: ['reset', 'connection reset'],
  ECONNABORTED: ['reset', 'connection aborted'],
  ENETRESET: ['reset', 'connection reset'],
  EPIPE: ['reset', 'connection closed while sending'],
  UND_ERR_SOCKET: ['reset', 'connection closed by the server'],
  UND_ERR_CLOSED: ['reset', 'connection closed'],
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: ['reset', 'answer cut short'],
  EPROTO: ['tls', 'TLS handshake failed'],
};

/** The errno-like code of a network error, looking through `cause` and AggregateError members. */
export function networkErrorCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 5 && typeof cur === 'object' && cur !== null; i++) {
    const o = cur as { code?: unknown; cause?: unknown; errors?: unknown };
    if (typeof o.code === 'string' && o.code !== 'ERR_AGGREGATE' && !(cur instanceof XferError)) return o.code;
    cur = Array.isArray(o.errors) && o.errors.length > 0 ? o.errors[0] : o.cause;
  }
  return undefined;
}

export interface TransportInfo {
  failure: TransportFailure;
  /** errno-like code (ECONNREFUSED, UND_ERR_SOCKET, CERT_HAS_EXPIRED...) when known. */
  errno: string | undefined;
  /** "connection refused": the plain words, else the error's own message. */
  words: string;
  /** "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9": the code and the error's message, for logs. */
  detail: string;
}

/** Classifies a failure of the transport (the one table of errno-like codes of the node's HTTP clients). */
export function classifyTransport(e: unknown): TransportInfo {
  const errno = networkErrorCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  const known = errno !== undefined ? TRANSPORT_CODES[errno] : undefined;
  const tls = errno !== undefined && /^(ERR_SSL_|ERR_TLS_|CERT_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_)/.test(errno);
  const failure: TransportFailure = known?.[0] ?? (tls ? 'tls' : 'other');
  const detail = errno !== undefined && !msg.includes(errno) ? `${errno}: ${msg}` : msg;
  return { failure, errno, words: known?.[1] ?? msg, detail };
}

/** The default code of a transport failure: timeouts are Timeout, the rest NetworkProtocol. */
export function transportCode(failure: TransportFailure): ErrorCode {
  return failure === 'timeout' || failure === 'connect-timeout' ? 'Timeout' : 'NetworkProtocol';
}

/** A call that got no answer (or a cut one): refused, unreachable, reset, timed out, TLS refused. */
export class TransportError extends XferError {
  readonly failure: TransportFailure;
  readonly errno: string | undefined;
  /** The plain words of the failure ("connection refused"). */
  readonly words: string;

  constructor(
    info: TransportInfo,
    details: string,
    options: { code?: ErrorCode | undefined; cause?: unknown; httpStatus?: number | undefined } = {},
  ) {
    super(options.code ?? transportCode(info.failure), details, { cause: options.cause, httpStatus: options.httpStatus });
    this.name = 'TransportError';
    this.failure = info.failure;
    this.errno = info.errno;
    this.words = info.words;
  }

  /** Nothing answers at the address at all (refused, unknown host, no connection in time). */
  get unreachable(): boolean {
    return this.failure === 'refused' || this.failure === 'unreachable' || this.failure === 'connect-timeout';
  }

  /** The connection broke or stalled while the server was there: the same call may well succeed. */
  get transient(): boolean {
    return this.failure === 'reset' || this.failure === 'timeout';
  }
}

/**
 * The error for a thrown transport failure: an XferError already made (a deadline, a file that cannot be
 * read) passes through; anything else becomes a TransportError whose details `describe` writes.
 */
export function transportError(
  e: unknown,
  describe: (info: TransportInfo) => string,
  options: { code?: (failure: TransportFailure) => ErrorCode; httpStatus?: (failure: TransportFailure) => number | undefined } = {},
): XferError {
  if (e instanceof XferError) return e;
  const info = classifyTransport(e);
  return new TransportError(info, describe(info), {
    code: options.code?.(info.failure),
    httpStatus: options.httpStatus?.(info.failure),
    cause: e,
  });
}
