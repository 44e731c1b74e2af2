// The push create's body read on its common path by hand: a transaction of thousands of instances and
// buckets took the zod schema over a hundred milliseconds with the event loop held. A body of any other
// shape goes to the schema (wire.ts), so bad input gets exactly the errors it always got.
import {
  INSTANCE_ID,
  MD5_HEX,
  parseCompression,
  parseDecimal,
  parsePushCreate,
  type Bucket,
  type Chunk,
  type Compression,
  type InstanceInfo,
  type PushCreateBody,
} from './wire.ts';

/**
 * Body of POST /transfers/push, as parsePushCreate reads it (the same value, the same errors): a well-formed
 * body is read by hand, anything the hand check does not take is given to the schema.
 */
export function readPushCreate(body: unknown): PushCreateBody {
  return wellFormed(body) ?? parsePushCreate(body);
}

/** The body when it has the plain shape (other keys ignored, as the schema strips them), else undefined. */
function wellFormed(body: unknown): PushCreateBody | undefined {
  if (!isRecord(body) || !Array.isArray(body.Instances) || !Array.isArray(body.Buckets)) return undefined;
  // An unknown compression is the schema's to report (ParameterOutOfRange, after the shape checks).
  const compression = body.Compression;
  if (compression !== 'gzip' && compression !== 'none' && compression !== 'zstd') return undefined;
  const instances: InstanceInfo[] = new Array(body.Instances.length);
  for (let i = 0; i < body.Instances.length; i++) {
    const v: unknown = body.Instances[i];
    if (!isRecord(v)) return undefined;
    const { ID, Size, MD5 } = v;
    if (!isId(ID) || typeof MD5 !== 'string' || !MD5_HEX.test(MD5)) return undefined;
    const size = decimal(Size);
    if (size === undefined) return undefined;
    instances[i] = { ID, Size: size, MD5 };
  }
  const buckets: Bucket[] = new Array(body.Buckets.length);
  for (let b = 0; b < body.Buckets.length; b++) {
    const bucket = readBucket(body.Buckets[b]);
    if (!bucket) return undefined;
    buckets[b] = bucket;
  }
  return { Instances: instances, Buckets: buckets, Compression: parseCompression(compression) satisfies Compression };
}

function readBucket(v: unknown): Bucket | undefined {
  if (!Array.isArray(v)) return undefined;
  const out: Chunk[] = new Array(v.length);
  for (let k = 0; k < v.length; k++) {
    const c: unknown = v[k];
    if (!isRecord(c) || !isId(c.ID)) return undefined;
    const offset = decimal(c.Offset);
    const size = decimal(c.Size);
    if (offset === undefined || size === undefined) return undefined;
    out[k] = { ID: c.ID, Offset: offset, Size: size };
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isId(v: unknown): v is string {
  return typeof v === 'string' && INSTANCE_ID.test(v);
}

function decimal(v: unknown): number | undefined {
  return typeof v === 'string' ? parseDecimal(v) : undefined;
}
