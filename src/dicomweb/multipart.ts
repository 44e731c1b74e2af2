// multipart/related (RFC 2387 over RFC 2046) as DICOMweb carries it, both ways and streaming: a reader that
// hands each part's body on piece by piece as it arrives, and a writer that yields a body part after part.
import { randomUUID } from 'node:crypto';
import { XferError } from '../errors.ts';

/** The parameters of a multipart/related Content-Type that DICOMweb uses. */
export interface MultipartType {
  boundary: string;
  /** The `type` parameter (the media type of the parts, e.g. application/dicom), lower case; undefined when absent. */
  type: string | undefined;
  /** The `transfer-syntax` parameter, when present. */
  transferSyntax: string | undefined;
}

/** One part as read: its headers (names in lower case) and its body, to be read before the next part. */
export interface MultipartPart {
  headers: Record<string, string>;
  /** The part's bytes, in pieces as they arrive; the reader drops what the consumer leaves unread. */
  body: AsyncIterable<Buffer>;
}

/** One part to write: its headers and its body (bytes, or pieces of them). */
export interface OutgoingPart {
  headers: Record<string, string>;
  body: Uint8Array | AsyncIterable<Uint8Array>;
}

export interface ReadOptions {
  /** Most bytes of one part's headers (16 KiB by default). */
  maxHeaderBytes?: number;
  /** Most parts (unbounded by default). */
  maxParts?: number;
}

const CRLF = Buffer.from('\r\n');
const HEADERS_END = Buffer.from('\r\n\r\n');

function bad(details: string): XferError {
  return new XferError('BadRequest', `multipart/related: ${details}`);
}

/** Splits `a; b="c; d"; e=f` at the semicolons outside quotes. */
function splitParams(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const c of s) {
    if (c === '"') quoted = !quoted;
    if (c === ';' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.map((p) => p.trim());
}

/** A media type and its parameters (names lower case, quotes removed). */
export function parseMediaType(value: string): { type: string; params: Record<string, string> } {
  const [head = '', ...rest] = splitParams(value);
  const params: Record<string, string> = {};
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq <= 0) continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    params[p.slice(0, eq).trim().toLowerCase()] = v;
  }
  return { type: head.toLowerCase(), params };
}

/**
 * Reads a Content-Type that must be multipart/related with a boundary; BadRequest otherwise (415 when it is
 * another media type).
 */
export function parseMultipartType(contentType: string | undefined): MultipartType {
  const { type, params } = parseMediaType(contentType ?? '');
  if (type !== 'multipart/related') {
    throw new XferError('BadRequest', `the body must be multipart/related, not "${contentType ?? ''}"`, { httpStatus: 415 });
  }
  const boundary = params.boundary;
  // RFC 2046 says 1 to 70 characters, but Orthanc's DICOMweb plugin writes 73: a little room beyond.
  if (!boundary || boundary.length > 200) throw bad('the Content-Type has no valid boundary');
  return { boundary, type: params.type?.toLowerCase(), transferSyntax: params['transfer-syntax'] };
}

/** A fresh boundary, unlikely to occur in any body. */
export function newBoundary(): string {
  return `dicom-xfer-${randomUUID()}`;
}

/** The Content-Type of a multipart/related body of `type` parts. */
export function multipartContentType(type: string, boundary: string, extra: Record<string, string> = {}): string {
  const more = Object.entries(extra)
    .map(([k, v]) => `; ${k}=${v}`)
    .join('');
  return `multipart/related; type="${type}"; boundary=${boundary}${more}`;
}

async function* toAsync(source: Iterable<Buffer>): AsyncGenerator<Buffer> {
  yield* source;
}

/** The bytes of a source, with a buffer of what was read but not yet consumed. */
class Input {
  #buf: Buffer = Buffer.alloc(0);
  #it: AsyncIterator<Buffer>;
  #ended = false;

  constructor(source: AsyncIterable<Buffer> | Iterable<Buffer>) {
    this.#it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : toAsync(source)[Symbol.asyncIterator]();
  }

  get buf(): Buffer {
    return this.#buf;
  }

  /** Drops the first `n` bytes of the buffer. */
  consume(n: number): void {
    this.#buf = this.#buf.subarray(n);
  }

  /** Reads one more piece into the buffer; false at the end of the source. */
  async more(): Promise<boolean> {
    if (this.#ended) return false;
    const r = await this.#it.next();
    if (r.done) {
      this.#ended = true;
      return false;
    }
    this.#buf = this.#buf.length === 0 ? r.value : Buffer.concat([this.#buf, r.value]);
    return true;
  }

  /** Waits until the buffer holds `n` bytes; false when the source ends first. */
  async need(n: number): Promise<boolean> {
    // Bounded: each round adds a piece of the source or ends.
    while (this.#buf.length < n) if (!(await this.more())) return false;
    return true;
  }

  async close(): Promise<void> {
    await this.#it.return?.();
  }
}

function parseHeaders(text: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw bad(`a part header is malformed: "${line.slice(0, 80)}"`);
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/**
 * After a delimiter: "--" closes the body (true), else white space then CRLF starts a part (false).
 */
async function afterDelimiter(input: Input): Promise<boolean> {
  if (!(await input.need(2))) throw bad('the body ends after a boundary');
  if (input.buf[0] === 0x2d && input.buf[1] === 0x2d) return true;
  // Transport padding (RFC 2046): spaces and tabs before the line end; bounded by the header limit.
  for (let i = 0; i < 1024; i++) {
    if (!(await input.need(2))) throw bad('the body ends after a boundary');
    if (input.buf[0] === 0x0d && input.buf[1] === 0x0a) {
      input.consume(2);
      return false;
    }
    if (input.buf[0] !== 0x20 && input.buf[0] !== 0x09) throw bad('a boundary is followed by something else than a line end');
    input.consume(1);
  }
  throw bad('too much padding after a boundary');
}

/**
 * Reads a multipart body part by part as its bytes arrive: for each part, its headers, then its body in
 * pieces (never more than a piece of the source and a boundary's length held). A part's body must be read
 * (or abandoned) before the next part is asked for; what is left of it is skipped. Throws BadRequest for a
 * body that breaks the format or ends before its closing boundary.
 */
export async function* readMultipart(
  source: AsyncIterable<Buffer> | Iterable<Buffer>,
  boundary: string,
  opts: ReadOptions = {},
): AsyncGenerator<MultipartPart> {
  const maxHeaderBytes = opts.maxHeaderBytes ?? 16 * 1024;
  const maxParts = opts.maxParts ?? Number.POSITIVE_INFINITY;
  const input = new Input(source);
  const first = Buffer.from(`--${boundary}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  try {
    // The preamble (usually empty) up to the first boundary, which may open the body without a line end.
    let at = -1;
    // Bounded: each round reads more of the source or fails; the preamble is capped by the header limit.
    for (;;) {
      if (input.buf.length >= first.length && input.buf.subarray(0, first.length).equals(first)) at = 0;
      else {
        const d = input.buf.indexOf(delimiter);
        if (d >= 0) at = d + 2;
      }
      if (at >= 0) break;
      if (input.buf.length > maxHeaderBytes) throw bad('no boundary at the start of the body');
      if (!(await input.more())) throw bad(input.buf.length === 0 ? 'the body is empty' : 'the body holds no boundary');
    }
    input.consume(at + first.length);
    let count = 0;
    // Bounded: each round consumes a part of the source, or ends.
    while (!(await afterDelimiter(input))) {
      if (++count > maxParts) throw bad(`more than ${maxParts} parts`);
      if (!(await input.need(2))) throw bad("the body ends in a part's headers");
      let end = input.buf.indexOf(HEADERS_END);
      // A part with no header at all starts with the blank line straight away.
      const noHeaders = input.buf[0] === 0x0d && input.buf[1] === 0x0a;
      while (!noHeaders && end < 0) {
        if (input.buf.length > maxHeaderBytes) throw bad(`a part's headers are longer than ${maxHeaderBytes} bytes`);
        if (!(await input.more())) throw bad("the body ends in a part's headers");
        end = input.buf.indexOf(HEADERS_END);
      }
      const headers = noHeaders ? {} : parseHeaders(input.buf.subarray(0, end).toString('latin1'));
      input.consume(noHeaders ? CRLF.length : end + HEADERS_END.length);
      let done = false;
      const body = partBody(input, delimiter, () => {
        done = true;
      });
      yield { headers, body };
      if (!done) await skipPart(input, delimiter);
    }
  } finally {
    await input.close();
  }
}

/** The body of the current part: pieces up to the next delimiter, which is consumed. */
async function* partBody(input: Input, delimiter: Buffer, onEnd: () => void): AsyncGenerator<Buffer> {
  // Bounded: each round yields or reads more of the source, or ends.
  for (;;) {
    const at = input.buf.indexOf(delimiter);
    if (at >= 0) {
      const piece = input.buf.subarray(0, at);
      input.consume(at + delimiter.length);
      onEnd();
      if (piece.length > 0) yield piece;
      return;
    }
    // Everything but a tail that might be the start of the delimiter can go.
    const safe = input.buf.length - (delimiter.length - 1);
    if (safe > 0) {
      const piece = input.buf.subarray(0, safe);
      input.consume(safe);
      yield piece;
    }
    if (!(await input.more())) throw bad('the body ends inside a part (no closing boundary)');
  }
}

/** Drops what is left of the current part's body, up to and with the next delimiter. */
async function skipPart(input: Input, delimiter: Buffer): Promise<void> {
  // Bounded: each round drops what was read or reads more of the source, or ends.
  for (;;) {
    const at = input.buf.indexOf(delimiter);
    if (at >= 0) {
      input.consume(at + delimiter.length);
      return;
    }
    input.consume(Math.max(0, input.buf.length - (delimiter.length - 1)));
    if (!(await input.more())) throw bad('the body ends inside a part (no closing boundary)');
  }
}

/** The headers of a part as text, ending with the blank line. */
function headerBlock(headers: Record<string, string>): string {
  return `${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

/**
 * The exact length of the body writeMultipart makes of parts with these headers and body lengths, for a
 * Content-Length sent before the first byte (the bodies are then streamed, never held together).
 */
export function multipartLength(parts: Iterable<{ headers: Record<string, string>; length: number }>, boundary: string): number {
  let n = Buffer.byteLength(`--${boundary}--\r\n`, 'latin1');
  for (const p of parts) n += Buffer.byteLength(`--${boundary}\r\n${headerBlock(p.headers)}`, 'latin1') + p.length + CRLF.length;
  return n;
}

/**
 * Writes parts as a multipart body: yields the bytes piece by piece, a part's body as its source yields it.
 * The caller picks the boundary (newBoundary) and says it in the Content-Type (multipartContentType).
 */
export async function* writeMultipart(
  parts: AsyncIterable<OutgoingPart> | Iterable<OutgoingPart>,
  boundary: string,
): AsyncGenerator<Uint8Array> {
  for await (const part of parts) {
    yield Buffer.from(`--${boundary}\r\n${headerBlock(part.headers)}`, 'latin1');
    if (part.body instanceof Uint8Array) yield part.body;
    else for await (const piece of part.body) yield piece;
    yield CRLF;
  }
  yield Buffer.from(`--${boundary}--\r\n`, 'latin1');
}
