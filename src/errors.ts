// The one table of errors: Orthanc's error codes with their HTTP status and text, and the single error
// class that carries one of them. Code above the edges branches on `code`, never on message text.

export interface ErrorSpec {
  /** Orthanc's numeric error code (OrthancStatus). */
  readonly status: number;
  /** HTTP status that Orthanc answers with. */
  readonly http: number;
  /** Orthanc's description of the error (Message / OrthancError). */
  readonly message: string;
  /** Whether a client may try the same call again and hope for another outcome. */
  readonly retryable: boolean;
}

/** Orthanc's error codes (ErrorCodes.json), the ones dicom-xfer can produce. */
export const ERRORS = {
  InternalError: { status: -1, http: 500, message: 'Internal error', retryable: true },
  Plugin: { status: 1, http: 500, message: 'Error encountered within the plugin engine', retryable: false },
  NotImplemented: { status: 2, http: 501, message: 'Not implemented yet', retryable: false },
  ParameterOutOfRange: { status: 3, http: 400, message: 'Parameter out of range', retryable: false },
  NotEnoughMemory: { status: 4, http: 500, message: 'The server hosting Orthanc is running out of memory', retryable: true },
  BadParameterType: { status: 5, http: 400, message: 'Bad type for a parameter', retryable: false },
  BadSequenceOfCalls: { status: 6, http: 400, message: 'Bad sequence of calls', retryable: false },
  InexistentItem: { status: 7, http: 404, message: 'Accessing an inexistent item', retryable: false },
  BadRequest: { status: 8, http: 400, message: 'Bad request', retryable: false },
  NetworkProtocol: { status: 9, http: 500, message: 'Error in the network protocol', retryable: true },
  Database: { status: 11, http: 500, message: 'Error with the database engine', retryable: true },
  UriSyntax: { status: 12, http: 400, message: 'Badly formatted URI', retryable: false },
  InexistentFile: { status: 13, http: 404, message: 'Inexistent file', retryable: false },
  CannotWriteFile: { status: 14, http: 500, message: 'Cannot write to file', retryable: true },
  BadFileFormat: { status: 15, http: 400, message: 'Bad file format', retryable: false },
  Timeout: { status: 16, http: 500, message: 'Timeout', retryable: true },
  UnknownResource: { status: 17, http: 404, message: 'Unknown resource', retryable: false },
  FullStorage: { status: 19, http: 507, message: 'The file storage is full', retryable: false },
  CorruptedFile: { status: 20, http: 500, message: 'Corrupted file (e.g. inconsistent MD5 hash)', retryable: false },
  InexistentTag: { status: 21, http: 404, message: 'Inexistent tag', retryable: false },
  BadJson: { status: 28, http: 400, message: 'Cannot parse a JSON document', retryable: false },
  Unauthorized: { status: 29, http: 401, message: 'Bad credentials were provided to an HTTP request', retryable: false },
  EmptyRequest: { status: 33, http: 400, message: 'The request is empty', retryable: false },
  DatabaseUnavailable: {
    status: 36,
    http: 503,
    message: 'The database is currently not available (probably a transient situation)',
    retryable: true,
  },
  CanceledJob: { status: 37, http: 500, message: 'This job was canceled', retryable: false },
  BadRange: { status: 41, http: 416, message: 'Incorrect range request', retryable: false },
  ForbiddenAccess: { status: 45, http: 403, message: 'Access to a resource is forbidden', retryable: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** The error class of dicom-xfer: an Orthanc error code, an optional detail text, an optional cause. */
export class XferError extends Error {
  readonly code: ErrorCode;
  readonly details: string | undefined;
  /** Overrides the HTTP status of the code's table entry (rarely needed, e.g. 413 or 503). */
  readonly httpStatus: number | undefined;

  constructor(code: ErrorCode, details?: string, options?: { cause?: unknown; httpStatus?: number }) {
    super(details ? `${ERRORS[code].message}: ${details}` : ERRORS[code].message, { cause: options?.cause });
    this.name = 'XferError';
    this.code = code;
    this.details = details;
    this.httpStatus = options?.httpStatus;
  }

  get spec(): ErrorSpec {
    return ERRORS[this.code];
  }

  get http(): number {
    return this.httpStatus ?? ERRORS[this.code].http;
  }

  get retryable(): boolean {
    return ERRORS[this.code].retryable;
  }
}

export function isXferError(e: unknown, code?: ErrorCode): e is XferError {
  return e instanceof XferError && (code === undefined || e.code === code);
}

const HTTP_REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  416: 'Requested Range Not Satisfiable',
  422: 'Unprocessable Content',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  507: 'Insufficient Storage',
};

export function httpReason(status: number): string {
  return HTTP_REASONS[status] ?? 'Error';
}

/** Orthanc's JSON error body (docs/protocol.md#errors). Keys as Orthanc writes them. */
export interface OrthancErrorBody {
  Details?: string;
  HttpError: string;
  HttpStatus: number;
  Message: string;
  Method: string;
  OrthancError: string;
  OrthancStatus: number;
  Uri: string;
}

export function errorBody(err: XferError, method: string, uri: string): OrthancErrorBody {
  const body: OrthancErrorBody = {
    HttpError: httpReason(err.http),
    HttpStatus: err.http,
    Message: err.spec.message,
    Method: method,
    OrthancError: err.spec.message,
    OrthancStatus: err.spec.status,
    Uri: uri,
  };
  if (err.details) body.Details = err.details;
  return body;
}

/** Wraps anything thrown into an XferError, keeping the original as the cause. */
export function toXferError(e: unknown, fallback: ErrorCode = 'InternalError'): XferError {
  if (e instanceof XferError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new XferError(fallback, msg, { cause: e });
}
