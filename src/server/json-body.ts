// Bounds on JSON request bodies: each route reads at most the bytes its real use needs, and a body is
// parsed only after a scan has counted its objects and arrays, so that parsing builds at most a small
// multiple of the body in memory (a body of empty objects would otherwise cost some 30 times its size).
import { XferError } from '../errors.ts';

/** Bytes in a mebibyte. */
const MiB = 1024 * 1024;

/** Largest JSON body of a route that takes a small document (peers, jobs, the dashboard's forms). */
export const SMALL_JSON_BODY = 1 * MiB;

/**
 * Largest list of resources (`/transfers/lookup`, `/transfers/send`, `/transfers/pull`, the dashboard's
 * send) and largest `/transfers/have` batch: 100,000 instance-level resources take 7 MiB, a batch of
 * 100,000 `{ID, MD5}` 9.1 MiB.
 */
export const RESOURCES_JSON_BODY = 16 * MiB;

/**
 * Bytes of a push create body allowed per instance of the cap: 100,000 instances take 18 to 19 MiB with
 * a chunk each (whatever the bucket size), plus about 75 bytes per extra chunk of an instance cut into
 * several; 64 MiB per 100,000 instances (some 671 bytes each) leaves room for some 600,000 extra chunks.
 */
const CREATE_BYTES_PER_INSTANCE = (64 * MiB) / 100_000;

/** Largest push create body for a cap of `maxInstances` instances per transaction (64 MiB by default). */
export function createBodyLimit(maxInstances: number): number {
  return Math.max(4 * MiB, Math.ceil(maxInstances * CREATE_BYTES_PER_INSTANCE));
}

/**
 * Objects and arrays allowed per byte of the limit: one per 32 bytes. The real bodies have one per 75
 * bytes or more (a chunk `{"ID":…,"Offset":…,"Size":…}`); a V8 object costs some 60 bytes, so a body
 * parsed within this bound takes at most about twice the limit in objects, beside its text.
 */
const BYTES_PER_CONTAINER = 32;

/** Too large a body, in Orthanc's error shape with status 413. */
export function bodyTooLarge(details: string): XferError {
  return new XferError('BadRequest', details, { httpStatus: 413 });
}

/**
 * Counts the objects and arrays of a JSON text (outside strings), stopping past `max`. The text need not
 * be valid JSON: JSON.parse judges that afterwards.
 */
export function countContainers(buf: Uint8Array, max: number): number {
  let n = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i] as number;
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++n > max) return n;
    }
  }
  return n;
}

/**
 * Parses a JSON body read within `limit` bytes: BadFileFormat (400) when it is not JSON, 413 when it holds
 * more objects and arrays than such a body really has (one per BYTES_PER_CONTAINER of the limit); an
 * empty body is `undefined`.
 */
export function parseJsonBody(buf: Buffer, limit: number): unknown {
  const max = Math.max(1024, Math.floor(limit / BYTES_PER_CONTAINER));
  if (countContainers(buf, max) > max) {
    throw bodyTooLarge(
      `the body holds more than ${max} JSON objects and arrays (at most one per ${BYTES_PER_CONTAINER} bytes of its ${limit}-byte limit)`,
    );
  }
  const text = buf.toString('utf8').trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new XferError('BadFileFormat', 'the body is not valid JSON');
  }
}
