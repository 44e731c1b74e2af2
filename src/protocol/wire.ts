// Wire objects of the Transfers Accelerator protocol (docs/protocol.md#json-encoding, #routes,
// #wire-objects): zod schemas, parsers that turn parsed JSON into typed values or throw the XferError an
// Orthanc peer would answer with, and serializers.
//
// Sizes and offsets: on the wire they are decimal strings; here they are JavaScript numbers, exact up to
// Number.MAX_SAFE_INTEGER (2^53 - 1, about 8 PiB). A size string with more than that, or anything but
// ASCII digits, is refused as BadFileFormat (the plugin's lexical_cast failure). bigint would buy nothing:
// no DICOM file and no file offset comes near 2^53, and numbers keep arithmetic and fs calls simple.
//
// Error codes follow the plugin's order of checks: first the JSON shape (BadFileFormat, 400), then the
// values (an unknown Compression or Level is ParameterOutOfRange, 400). The zod object shapes below list
// their keys in the order the plugin checks them, and a failed parse reports the first issue, so the code
// thrown is the one the plugin would have thrown first.

import { z } from 'zod';
import { XferError, type ErrorCode } from '../errors.ts';
import type { Level } from '../dicom/types.ts';
import { pushTransactionPath } from './paths.ts';
import { toMegabytes } from './progress.ts';

export type { Level };

/**
 * Bucket compression on the wire: exactly these strings, case-sensitive. "zstd" is the extension of that
 * name, between dicom-xfer nodes only: a node that does not list it refuses it as the plugin would
 * (refuseUnlistedZstd).
 */
export type Compression = 'gzip' | 'none' | 'zstd';

export interface Resource {
  Level: Level;
  ID: string;
}

/** Body of /transfers/send and /transfers/pull (docs/protocol.md#send). */
export interface TransferQuery {
  Resources: Resource[];
  Peer: string;
  Compression: Compression;
  /** Job priority; 0 when the body had none. */
  Priority: number;
  /** Value for the `sender-transfer-id` header; absent when the body had none (the caller makes a UUID). */
  SenderTransferID?: string;
  Originator?: string;
}

export interface InstanceInfo {
  ID: string;
  /** Bytes of the raw DICOM file. */
  Size: number;
  /** 32 lowercase hex digits. */
  MD5: string;
}

/** The bytes [Offset, Offset + Size) of instance ID. */
export interface Chunk {
  ID: string;
  Offset: number;
  Size: number;
}

/** One unit of HTTP transfer: its payload is the concatenation of its chunks. */
export type Bucket = Chunk[];

/** Body of POST /transfers/push (docs/protocol.md#push-create). */
export interface PushCreateBody {
  Instances: InstanceInfo[];
  Buckets: Bucket[];
  Compression: Compression;
}

/** Answer of POST /transfers/lookup (docs/protocol.md#lookup). Only Instances and Originator are required. */
export interface LookupAnswer {
  Instances: InstanceInfo[];
  Originator: string;
  CountInstances?: number;
  TotalSize?: number;
  TotalSizeMB?: number;
}

/** `{ID, Path}` answered by /transfers/send (push mode) and /transfers/pull: a job on that server. */
export interface JobHandle {
  ID: string;
  Path: string;
}

/** `{ID, Path}` answered by POST /transfers/push. An Orthanc sender only needs Path. */
export interface PushHandle {
  ID?: string;
  Path: string;
}

/** Answer of /transfers/send in pull mode: a job on the remote peer. */
export interface RemoteJobHandle {
  Peer: string;
  RemoteJob: string;
  URL: string;
}

// ---------------------------------------------------------------------------------------------------
// Small value parsers

const LEVEL_NAMES: Readonly<Record<string, Level>> = {
  PATIENT: 'Patient',
  PATIENTS: 'Patient',
  STUDY: 'Study',
  STUDIES: 'Study',
  SERIES: 'Series',
  INSTANCE: 'Instance',
  INSTANCES: 'Instance',
  IMAGE: 'Instance',
  IMAGES: 'Instance',
};

/** The resource level named by `s`, any case, singular or plural; ParameterOutOfRange otherwise. */
export function parseLevel(s: string): Level {
  const level = Object.hasOwn(LEVEL_NAMES, s.toUpperCase()) ? LEVEL_NAMES[s.toUpperCase()] : undefined;
  if (level === undefined) throw new XferError('ParameterOutOfRange', `Unknown resource level: ${s}`);
  return level;
}

/** "gzip", "none" or "zstd" exactly; ParameterOutOfRange otherwise (the plugin rejects "None" too). */
export function parseCompression(s: string): Compression {
  if (s === 'gzip' || s === 'none' || s === 'zstd') return s;
  throw new XferError('ParameterOutOfRange', `Valid compression methods are "gzip" and "none", not: ${s}`);
}

/**
 * A node that does not list the extension zstd (Transfers.Zstd, Transfers.Extensions) answers "zstd" in a
 * push create or a chunk URL as the plugin answers any unknown method: ParameterOutOfRange.
 */
export function refuseUnlistedZstd(c: Compression, listed: boolean): void {
  if (c === 'zstd' && !listed) throw new XferError('ParameterOutOfRange', `Valid compression methods are "gzip" and "none", not: ${c}`);
}

const DECIMAL = /^[0-9]+$/;
export const MD5_HEX = /^[0-9a-f]{32}$/;
/**
 * Orthanc IDs are lowercase hex and dashes; the chunk route cannot address anything else
 * (docs/protocol.md#identifiers).
 */
export const INSTANCE_ID = /^[0-9a-f-]{1,128}$/;

/** A decimal string as a safe integer number, or undefined when it is not one. */
export function parseDecimal(s: string): number | undefined {
  if (!DECIMAL.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Writes a size or offset as the decimal string the wire wants. */
export function sizeToWire(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new XferError('InternalError', `Not a byte count: ${n}`);
  return String(n);
}

/** Byte-wise comparison of IDs, the order of the plugin's std::map (not localeCompare). */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------
// Schemas

/** Marks an issue with the Orthanc code it maps to; unmarked issues are BadFileFormat. */
function valueIssue(code: ErrorCode, message: string, input: unknown) {
  return { code: 'custom' as const, message, input, params: { xfer: code } };
}

const DecimalString = z.string().transform((s, ctx) => {
  const n = parseDecimal(s);
  if (n === undefined) {
    ctx.issues.push({ code: 'custom', message: 'expected a decimal string up to 2^53-1', input: s });
    return z.NEVER;
  }
  return n;
});

export const LevelSchema = z.string().transform((s, ctx): Level => {
  try {
    return parseLevel(s);
  } catch (e) {
    ctx.issues.push(valueIssue('ParameterOutOfRange', (e as XferError).details ?? 'bad level', s));
    return z.NEVER;
  }
});

export const CompressionSchema = z.string().transform((s, ctx): Compression => {
  try {
    return parseCompression(s);
  } catch (e) {
    ctx.issues.push(valueIssue('ParameterOutOfRange', (e as XferError).details ?? 'bad compression', s));
    return z.NEVER;
  }
});

// ID is listed before Level: the plugin checks that both are strings before it reads the level.
export const ResourceSchema = z.object({ ID: z.string(), Level: LevelSchema });

export const InstanceIdSchema = z.string().regex(INSTANCE_ID, 'expected an Orthanc ID (lowercase hex and dashes)');

export const InstanceInfoSchema = z.object({
  ID: InstanceIdSchema,
  Size: DecimalString,
  MD5: z.string().regex(MD5_HEX, 'expected 32 lowercase hex digits'),
});

export const ChunkSchema = z.object({ ID: InstanceIdSchema, Offset: DecimalString, Size: DecimalString });

export const BucketSchema = z.array(ChunkSchema);

export const PushCreateSchema = z.object({
  Instances: z.array(InstanceInfoSchema),
  Buckets: z.array(BucketSchema),
  Compression: CompressionSchema,
});

export const LookupRequestSchema = z.array(ResourceSchema);

const OptionalCount = z.number().int().nonnegative().optional().catch(undefined);

export const LookupAnswerSchema = z.object({
  Instances: z.array(InstanceInfoSchema),
  Originator: z.string(),
  // Informative fields: kept when well-formed, dropped otherwise, as the plugin never reads them.
  CountInstances: OptionalCount,
  TotalSize: DecimalString.optional().catch(undefined),
  TotalSizeMB: OptionalCount,
});

// Resources is checked as an array here and item by item afterwards, after the plugin's own checks.
export const TransferQuerySchema = z.object({
  Resources: z.array(z.unknown()),
  Peer: z.string(),
  Compression: CompressionSchema,
  Originator: z.string().optional(),
  Priority: z.number().int().optional(),
  SenderTransferID: z.string().optional(),
});

export const JobHandleSchema = z.object({ ID: z.string(), Path: z.string() });
export const PushHandleSchema = z.object({ ID: z.string().optional().catch(undefined), Path: z.string() });
export const RemoteJobHandleSchema = z.object({ Peer: z.string(), RemoteJob: z.string(), URL: z.string() });

// Answers of the extensions (docs/protocol-extensions.md), as a sender reads them.

/** Answer of `POST /transfers/have` (dedupe): the IDs the receiver holds with the same MD5. */
export const HaveAnswerSchema = z.object({ Count: OptionalCount, Instances: z.array(InstanceIdSchema) });

/** Answer of `GET /transfers/push/{tx}/buckets` (resume): the indexes of the buckets the transaction holds. */
export const HeldBucketsSchema = z.object({ Buckets: z.array(z.number().int().nonnegative()), Count: OptionalCount });

/**
 * Answer of an asynchronous commit and of `GET /transfers/push/{tx}/state` (async-commit): where the
 * transaction stands; an Open one that a commit found with a full disk carries LastCommitStatus 507.
 */
export const CommitStateSchema = z.object({
  State: z.enum(['Open', 'Committing', 'Success', 'Failure']),
  Details: z.string().optional(),
  LastCommitStatus: z.number().int().optional(),
  LastCommitDetails: z.string().optional(),
});
export type CommitState = z.output<typeof CommitStateSchema>;

/**
 * A job as Orthanc's `GET /jobs/{id}` answers it (a peer running a pull for a send in pull mode): State is
 * required; the rest is informative and dropped when malformed.
 */
export const RemoteJobSchema = z.object({
  State: z.string(),
  Progress: z.number().optional().catch(undefined),
  Content: z.record(z.string(), z.unknown()).optional().catch(undefined),
  ErrorCode: z.number().int().optional().catch(undefined),
  ErrorDescription: z.string().optional().catch(undefined),
  ErrorDetails: z.string().optional().catch(undefined),
});
export type RemoteJob = z.output<typeof RemoteJobSchema>;

/** An instance's MD5 as Orthanc's `/instances/{id}/attachments/dicom/md5` answers it (bare text). */
export const Md5TextSchema = z.string().trim().regex(MD5_HEX, 'expected 32 lowercase hex digits');

/**
 * The first issue of a failed parse: where it is (`Instances[0].MD5`, or "" for the document itself) and
 * what is wrong, for messages that name the field.
 */
export function firstIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  return { field: issue ? formatPath(issue.path) : '', message: issue?.message ?? 'invalid' };
}

/**
 * Parses `input` with `schema`; on failure throws the XferError of the first issue: the code an issue
 * carries in params.xfer, else BadFileFormat. `what` names the document in the error details.
 */
export function parseWire<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const params = issue && issue.code === 'custom' ? (issue.params as { xfer?: ErrorCode } | undefined) : undefined;
  const code: ErrorCode = params?.xfer ?? 'BadFileFormat';
  const where = issue && issue.path.length > 0 ? ` at ${formatPath(issue.path)}` : '';
  throw new XferError(code, `${what}${where}: ${issue?.message ?? 'invalid'}`, { cause: r.error });
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

// ---------------------------------------------------------------------------------------------------
// Parsers of whole documents (input: the value JSON.parse gave)

/**
 * Body of /transfers/send or /transfers/pull. Throws BadFileFormat for a wrong shape (missing Resources,
 * Peer or Compression; Originator, SenderTransferID not strings; Priority not an integer), and
 * ParameterOutOfRange for a Compression other than "gzip"/"none" or a Priority outside 32-bit.
 *
 * `rawBody`, the request text, lets this refuse `"Priority": 1.0` as the plugin does: JSON.parse turns
 * 1.0 into 1, so the raw token is looked up with jsonMemberRawText. Without it, 1.0 passes as 1.
 *
 * Unlike the plugin, which copies Resources unchecked and lets the expansion fail later, each resource
 * is checked here too, after the plugin's checks: BadFileFormat for a non-object or non-string Level/ID,
 * ParameterOutOfRange for an unknown Level. Levels come out normalised (e.g. "studies" -> "Study").
 */
export function parseTransferQuery(body: unknown, rawBody?: string): TransferQuery {
  const q = parseWire(TransferQuerySchema, body, 'transfer query');
  if (q.Priority !== undefined) {
    const token = rawBody === undefined ? undefined : jsonMemberRawText(rawBody, 'Priority');
    if (token !== undefined && isJsonRealToken(token)) {
      throw new XferError('BadFileFormat', `transfer query: Priority must be an integer, not ${token}`);
    }
    if (q.Priority < -2147483648 || q.Priority > 2147483647) {
      throw new XferError('ParameterOutOfRange', `transfer query: Priority out of range: ${q.Priority}`);
    }
  }
  const Resources = parseWire(LookupRequestSchema, q.Resources, 'transfer query Resources');
  const out: TransferQuery = { Resources, Peer: q.Peer, Compression: q.Compression, Priority: q.Priority ?? 0 };
  if (q.SenderTransferID !== undefined) out.SenderTransferID = q.SenderTransferID;
  if (q.Originator !== undefined) out.Originator = q.Originator;
  return out;
}

/** Body of POST /transfers/lookup: a bare array of resources. BadFileFormat / ParameterOutOfRange. */
export function parseLookupRequest(body: unknown): Resource[] {
  return parseWire(LookupRequestSchema, body, 'lookup request');
}

/** Answer of POST /transfers/lookup, as read by a puller. BadFileFormat when unusable. */
export function parseLookupAnswer(body: unknown): LookupAnswer {
  const a = parseWire(LookupAnswerSchema, body, 'lookup answer');
  const out: LookupAnswer = { Instances: a.Instances, Originator: a.Originator };
  if (a.CountInstances !== undefined) out.CountInstances = a.CountInstances;
  if (a.TotalSize !== undefined) out.TotalSize = a.TotalSize;
  if (a.TotalSizeMB !== undefined) out.TotalSizeMB = a.TotalSizeMB;
  return out;
}

/** One `{ID, Size, MD5}`. BadFileFormat when malformed (Size a JSON number, uppercase MD5, ...). */
export function parseInstanceInfo(body: unknown): InstanceInfo {
  return parseWire(InstanceInfoSchema, body, 'instance');
}

/** One bucket `[{ID, Offset, Size}, ...]`. BadFileFormat when malformed. */
export function parseBucket(body: unknown): Bucket {
  return parseWire(BucketSchema, body, 'bucket');
}

/**
 * Body of POST /transfers/push. BadFileFormat for any shape problem (including in instances and
 * buckets), then ParameterOutOfRange for an unknown Compression, as the plugin checks them. Like the
 * plugin, it does not check that buckets fit the declared instances: that surfaces at PUT time.
 */
export function parsePushCreate(body: unknown): PushCreateBody {
  return parseWire(PushCreateSchema, body, 'push transaction');
}

/** Answer of /transfers/send (push) or /transfers/pull: `{ID, Path}` both strings. */
export function parseJobHandle(body: unknown): JobHandle {
  return parseWire(JobHandleSchema, body, 'job handle');
}

/** Answer of POST /transfers/push: `Path` must be a string; `ID` is kept when it is one. */
export function parsePushHandle(body: unknown): PushHandle {
  const h = parseWire(PushHandleSchema, body, 'push transaction handle');
  return h.ID === undefined ? { Path: h.Path } : { ID: h.ID, Path: h.Path };
}

/** Answer of /transfers/send in pull mode: `{Peer, RemoteJob, URL}`. */
export function parseRemoteJobHandle(body: unknown): RemoteJobHandle {
  return parseWire(RemoteJobHandleSchema, body, 'remote job handle');
}

// ---------------------------------------------------------------------------------------------------
// Raw JSON scan (for Priority: 1.0)

/**
 * The raw text of the value of member `key` of the top-level JSON object in `text` (the last one when
 * the key is repeated, as jsoncpp keeps the last), or undefined when there is none or the text is not a
 * JSON object. A tolerant scanner: it only tracks strings and nesting, and does not validate the JSON.
 */
export function jsonMemberRawText(text: string, key: string): string | undefined {
  let i = skipWs(text, 0);
  if (text[i] !== '{') return undefined;
  i++;
  let found: string | undefined;
  for (let guard = 0; guard <= text.length; guard++) {
    i = skipWs(text, i);
    if (text[i] === '}') return found;
    if (text[i] !== '"') return found;
    const keyEnd = endOfString(text, i);
    if (keyEnd < 0) return found;
    let name: unknown;
    try {
      name = JSON.parse(text.slice(i, keyEnd));
    } catch {
      return found;
    }
    i = skipWs(text, keyEnd);
    if (text[i] !== ':') return found;
    i = skipWs(text, i + 1);
    const valueEnd = endOfValue(text, i);
    if (valueEnd <= i) return found;
    if (name === key) found = text.slice(i, valueEnd);
    i = skipWs(text, valueEnd);
    if (text[i] === ',') {
      i++;
      continue;
    }
    return found;
  }
  return found;
}

/** True when a JSON number token is one jsoncpp reads as a real: it has a fraction or an exponent. */
export function isJsonRealToken(token: string): boolean {
  return /^-?[0-9]/.test(token) && /[.eE]/.test(token);
}

function skipWs(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  return i;
}

/** Index just past the closing quote of the string starting at i, or -1. */
function endOfString(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    if (s[j] === '\\') j++;
    else if (s[j] === '"') return j + 1;
  }
  return -1;
}

/** Index just past the value starting at i (scalar, string, or nested object/array). */
function endOfValue(s: string, i: number): number {
  const c = s[i];
  if (c === '"') return endOfString(s, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let j = i; j < s.length; j++) {
      const d = s[j];
      if (d === '"') {
        const e = endOfString(s, j);
        if (e < 0) return -1;
        j = e - 1;
      } else if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  while (j < s.length && !/[\s,}\]]/.test(s[j] ?? '')) j++;
  return j;
}

// ---------------------------------------------------------------------------------------------------
// Serializers: plain objects whose keys are in jsoncpp's (alphabetical) order, sizes as strings.
// JSON.stringify keeps insertion order, so JSON.stringify(toWireX(...)) is what the plugin writes.

export interface WireInstanceInfo {
  ID: string;
  MD5: string;
  Size: string;
}
export interface WireChunk {
  ID: string;
  Offset: string;
  Size: string;
}

export function toWireInstanceInfo(i: InstanceInfo): WireInstanceInfo {
  return { ID: i.ID, MD5: i.MD5, Size: sizeToWire(i.Size) };
}

export function toWireChunk(c: Chunk): WireChunk {
  return { ID: c.ID, Offset: sizeToWire(c.Offset), Size: sizeToWire(c.Size) };
}

export function toWireBucket(b: readonly Chunk[]): WireChunk[] {
  return b.map(toWireChunk);
}

export function toWireResource(r: Resource): { ID: string; Level: Level } {
  return { ID: r.ID, Level: r.Level };
}

/** Body of POST /transfers/push. Instances are written in the order given (the plugin sorts by ID). */
export function toWirePushCreate(body: PushCreateBody) {
  return {
    Buckets: body.Buckets.map(toWireBucket),
    Compression: body.Compression,
    Instances: body.Instances.map(toWireInstanceInfo),
  };
}

/** Body of POST /transfers/lookup: the bare resources array. */
export function toWireLookupRequest(resources: readonly Resource[]) {
  return resources.map(toWireResource);
}

/**
 * The lookup answer for a set of instances: de-duplicated by ID (the last wins), sorted by ID, with
 * CountInstances, TotalSize (string) and TotalSizeMB (rounded MiB, as the plugin rounds).
 */
export function toWireLookupAnswer(instances: readonly InstanceInfo[], originator: string) {
  const sorted = sortUniqueInstances(instances);
  const total = sorted.reduce((sum, i) => sum + i.Size, 0);
  return {
    CountInstances: sorted.length,
    Instances: sorted.map(toWireInstanceInfo),
    Originator: originator,
    TotalSize: sizeToWire(total),
    TotalSizeMB: toMegabytes(total),
  };
}

/** Instances sorted by ID with duplicates collapsed (the last occurrence wins, like a std::map store). */
export function sortUniqueInstances<T extends { ID: string }>(instances: readonly T[]): T[] {
  const byId = new Map<string, T>();
  for (const i of instances) byId.set(i.ID, i);
  return [...byId.values()].sort((a, b) => compareIds(a.ID, b.ID));
}

/** A transfer query as our client posts it to /transfers/send or /transfers/pull (Priority 0 omitted). */
export function toWireTransferQuery(q: TransferQuery) {
  // Spreads keep the keys alphabetical whichever optional fields are present.
  return {
    Compression: q.Compression,
    ...(q.Originator !== undefined ? { Originator: q.Originator } : {}),
    Peer: q.Peer,
    ...(q.Priority !== 0 ? { Priority: q.Priority } : {}),
    Resources: q.Resources.map(toWireResource),
    ...(q.SenderTransferID !== undefined ? { SenderTransferID: q.SenderTransferID } : {}),
  };
}

/**
 * Body that send-in-pull-mode posts to the receiver's /transfers/pull: exactly Compression, Originator
 * (our own UUID), Peer (the RemoteSelf name) and Resources. Priority and SenderTransferID are not sent.
 */
export function toWirePullTrigger(p: { Compression: Compression; Originator: string; Peer: string; Resources: readonly Resource[] }) {
  return { Compression: p.Compression, Originator: p.Originator, Peer: p.Peer, Resources: p.Resources.map(toWireResource) };
}

/** `{ID, Path: "/jobs/<ID>"}`. */
export function toWireJobHandle(jobId: string): JobHandle {
  return { ID: jobId, Path: `/jobs/${jobId}` };
}

/** `{ID, Path}` for a push transaction; Path defaults to Orthanc's `/transfers/push/<ID>`. */
export function toWirePushHandle(transactionId: string, path = pushTransactionPath(transactionId)): JobHandle {
  return { ID: transactionId, Path: path };
}

/** `{Peer, RemoteJob, URL}`; URL is the peer URL followed by the remote Path (hence Orthanc's `//`). */
export function toWireRemoteJobHandle(peer: string, remoteJob: string, url: string): RemoteJobHandle {
  return { Peer: peer, RemoteJob: remoteJob, URL: url };
}
