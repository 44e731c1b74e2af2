// Bounded reading of answer bodies: a whole answer up to a limit, or the head of an error answer with the
// Orthanc error document it holds.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { XferError } from '../errors.ts';
import { parseErrorDocument, parseRetryAfter, type RemoteErrorDocument } from './errors.ts';

/** The most of an error answer that is read (its Orthanc error document is far smaller). */
export const ERROR_BODY_LIMIT = 64 * 1024;

/** The default limit of an answer read whole into memory. */
export const DEFAULT_BODY_LIMIT = 256 * 1024 * 1024;

/**
 * Reads a body to the end, failing past `limit` bytes with `onTooLarge()` (default: NotEnoughMemory);
 * the body is destroyed then, so that the connection is not kept for the bytes left.
 */
export async function readBounded(body: Readable, limit: number, onTooLarge?: () => Error): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      body.destroy();
      throw onTooLarge ? onTooLarge() : new XferError('NotEnoughMemory', `the answer is larger than ${limit} bytes`);
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts, total);
}

/** Reads at most `limit` bytes of an error answer, then drops the rest; a cut answer keeps what came. */
export async function readSome(body: Readable, limit: number = ERROR_BODY_LIMIT): Promise<Buffer> {
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

/** The head of an error answer: its bytes, its Orthanc error document if it is one, its Retry-After. */
export interface ErrorAnswer {
  text: Buffer;
  remote: RemoteErrorDocument | undefined;
  retryAfterMs: number | undefined;
}

/** Reads an answer that is not a success (at most ERROR_BODY_LIMIT bytes of it) and its error document. */
export async function readErrorAnswer(res: { headers: IncomingHttpHeaders; body: Readable }): Promise<ErrorAnswer> {
  const text = await readSome(res.body);
  return { text, remote: parseErrorDocument(text), retryAfterMs: parseRetryAfter(res.headers['retry-after']) };
}
