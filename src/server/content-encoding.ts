// Request bodies sent with `Content-Encoding: gzip` (Orthanc's peer store with "Compress": true does it),
// inflated as a stream as they arrive, so that every limit applies to the inflated bytes and a gzip bomb
// is cut off after a few megabytes, with bounded memory. Other codings are refused with 415.
import { once } from 'node:events';
import { createGunzip } from 'node:zlib';
import type { IncomingHttpHeaders } from 'node:http';
import { XferError } from '../errors.ts';

export type BodyCoding = 'identity' | 'gzip';

/**
 * The coding of a request body from its Content-Encoding: none (or `identity`), or `gzip` (`x-gzip`),
 * as Orthanc inflates it. Anything else is refused with 415 rather than stored as it came.
 */
export function bodyCoding(headers: IncomingHttpHeaders): BodyCoding {
  const raw = headers['content-encoding'];
  const value = (Array.isArray(raw) ? raw.join(',') : (raw ?? '')).trim().toLowerCase();
  const codings = value
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return 'identity';
  if (codings.length === 1 && (codings[0] === 'gzip' || codings[0] === 'x-gzip')) return 'gzip';
  throw new XferError('BadRequest', `unsupported Content-Encoding "${value}": send the body as it is, or gzipped`, {
    httpStatus: 415,
  });
}

/** Inflated bytes below which the ratio limit does not apply (small bodies compress as they like). */
export const INFLATE_RATIO_FLOOR = 16 * 1024 * 1024;

export interface InflateOptions {
  /**
   * Most inflated bytes per compressed byte once past INFLATE_RATIO_FLOOR (a gzip bomb inflates ~1000
   * times); 0 means no ratio limit (the caller's size limit still applies to the inflated bytes).
   */
  maxRatio: number;
}

/**
 * The body of a request as it was before its Content-Encoding: `source` (the raw body, e.g.
 * withIdleTimeout(req)) as it is, or inflated as a stream. A body that does not inflate is BadRequest
 * (400); one that inflates beyond `maxRatio` is refused with 413 while it is read.
 */
export function decodedBody(
  coding: BodyCoding,
  source: AsyncIterable<Buffer>,
  options: InflateOptions = { maxRatio: 0 },
): AsyncIterable<Buffer> {
  return coding === 'gzip' ? inflateGzip(source, options.maxRatio) : source;
}

async function* inflateGzip(source: AsyncIterable<Buffer>, maxRatio: number): AsyncGenerator<Buffer> {
  const gunzip = createGunzip();
  const stop = new AbortController();
  let compressed = 0;
  let inflated = 0;
  let sourceError: unknown;
  // Feeds the compressed bytes as the inflater takes them (its buffer is small), so that memory holds a
  // few pieces at a time whatever the ratio. Ends when the body ends, fails, or the reader stops.
  // The reader below sees every failure of the inflater through its iteration; this listener only keeps
  // an error emitted after the reader left from being an uncaught one.
  gunzip.on('error', () => undefined);
  const feed = (async () => {
    try {
      for await (const chunk of source) {
        if (stop.signal.aborted || gunzip.destroyed) return;
        compressed += chunk.length;
        if (!gunzip.write(chunk)) await once(gunzip, 'drain', { signal: stop.signal });
      }
      gunzip.end();
    } catch (e) {
      // The reader stopped, or the inflater failed (the reader reports that): nothing to add.
      if (stop.signal.aborted || gunzip.destroyed) return;
      // The body itself failed (a timeout, a client gone): that is the answer.
      sourceError = e;
      gunzip.destroy(e instanceof Error ? e : new Error(String(e)));
    }
  })();
  try {
    for await (const piece of gunzip as AsyncIterable<Buffer>) {
      inflated += piece.length;
      if (maxRatio > 0 && inflated > INFLATE_RATIO_FLOOR && inflated > maxRatio * compressed) {
        throw new XferError(
          'BadRequest',
          `the gzip-encoded body inflates more than ${maxRatio} times (${inflated} bytes from ${compressed}): refused ` +
            `(MaximumInflationRatio)`,
          { httpStatus: 413 },
        );
      }
      yield piece;
    }
  } catch (e) {
    if (sourceError !== undefined) throw sourceError;
    if (e instanceof XferError) throw e;
    throw new XferError('BadRequest', `the gzip-encoded body cannot be inflated: ${(e as Error).message}`, { cause: e });
  } finally {
    stop.abort();
    gunzip.destroy();
    // The feeder ends at its next step (a body still arriving is then left to the error handler).
    feed.catch(() => undefined);
  }
}
