// What one STOW-RS request is made of and answers: the multipart/related body of stored instances, written
// part by part from the store by the shared writer (src/dicomweb/multipart.ts; each instance whole, as
// stored, never the whole request in memory), and the server's answer read instance by instance
// (ReferencedSOPSequence, FailedSOPSequence with its reasons).
import { Readable } from 'node:stream';
import type { Store } from '../../store/types.ts';
import { multipartContentType, multipartLength, newBoundary, writeMultipart, type OutgoingPart } from '../multipart.ts';

export interface StowPart {
  ID: string;
  Size: number;
}

const partHeaders = (p: StowPart): Record<string, string> => ({ 'Content-Type': 'application/dicom', 'Content-Length': String(p.Size) });

/** The pieces as they are, `onBytes` told of each on its way out. */
async function* counted(pieces: AsyncIterable<Uint8Array>, onBytes: ((n: number) => void) | undefined): AsyncGenerator<Uint8Array> {
  for await (const p of pieces) {
    onBytes?.(p.length);
    yield p;
  }
}

/**
 * A multipart/related body of `parts`, with its Content-Type and exact length; `open` streams it afresh,
 * telling `onBytes` of each piece as it goes out (what the requests-in-flight controller measures).
 */
export function stowBody(
  store: Store,
  parts: readonly StowPart[],
): { contentType: string; length: number; open: (onBytes?: (n: number) => void) => Readable } {
  const boundary = newBoundary();
  const length = multipartLength(
    parts.map((p) => ({ headers: partHeaders(p), length: p.Size })),
    boundary,
  );
  async function* outgoing(): AsyncGenerator<OutgoingPart> {
    for (const p of parts) {
      const range = (await store.readRange(p.ID, 0, p.Size)) as AsyncIterable<Uint8Array>;
      yield { headers: partHeaders(p), body: range };
    }
  }
  return {
    contentType: multipartContentType('application/dicom', boundary),
    length,
    open: (onBytes) => Readable.from(counted(writeMultipart(outgoing(), boundary), onBytes), { objectMode: false }),
  };
}

/** What the server said of one instance. */
export interface StowOutcome {
  sopInstanceUid: string;
  stored: boolean;
  /** For a refused instance: the Failure Reason (0008,1197), when given. */
  reason?: number;
}

/** The text of the common Failure Reason codes (PS3.18's STOW-RS and PS3.4's C-STORE statuses). */
const REASONS = new Map<number, string>([
  [0x0110, 'processing failure'],
  [0x0112, 'no such object instance'],
  [0x0117, 'invalid object instance'],
  [0x0119, 'class-instance conflict'],
  [0x0122, 'SOP class not supported'],
  [0x0124, 'not authorized'],
  [0x0211, 'unrecognized operation'],
  [0x0212, 'mistyped argument'],
  [0xa700, 'out of resources'],
  [0xa770, 'out of resources (storage)'],
  [0xa900, 'data set does not match SOP class'],
  [0xc000, 'cannot understand'],
  [0xc122, 'referenced transfer syntax not supported'],
  [0xc409, 'study instance UID mismatch'],
]);

export function reasonText(code: number | undefined): string {
  if (code === undefined) return 'refused (no reason given)';
  const hex = `0x${code.toString(16).toUpperCase().padStart(4, '0')}`;
  const words = REASONS.get(code);
  return words ? `${hex} ${words}` : hex;
}

/** The first value of a DICOM JSON attribute. */
function firstValue(item: unknown, tag: string): unknown {
  if (typeof item !== 'object' || item === null) return undefined;
  const a = (item as Record<string, unknown>)[tag];
  if (typeof a !== 'object' || a === null) return undefined;
  const v = (a as { Value?: unknown }).Value;
  return Array.isArray(v) ? v[0] : undefined;
}

function items(doc: unknown, tag: string): unknown[] {
  if (typeof doc !== 'object' || doc === null) return [];
  const a = (doc as Record<string, unknown>)[tag];
  const v = typeof a === 'object' && a !== null ? (a as { Value?: unknown }).Value : undefined;
  return Array.isArray(v) ? v : [];
}

/**
 * The outcomes a STOW-RS answer (DICOM JSON: an object, or a list of one) gives, by SOP Instance UID: the
 * instances of ReferencedSOPSequence stored, those of FailedSOPSequence refused with their reason.
 */
export function parseStowAnswer(body: unknown): StowOutcome[] {
  const doc = Array.isArray(body) ? body[0] : body;
  const out: StowOutcome[] = [];
  for (const it of items(doc, '00081199')) {
    const uid = firstValue(it, '00081155');
    if (typeof uid === 'string') out.push({ sopInstanceUid: uid, stored: true });
  }
  for (const it of items(doc, '00081198')) {
    const uid = firstValue(it, '00081155');
    const reason = firstValue(it, '00081197');
    if (typeof uid !== 'string') continue;
    const o: StowOutcome = { sopInstanceUid: uid, stored: false };
    if (typeof reason === 'number') o.reason = reason;
    else if (typeof reason === 'string' && /^\d+$/.test(reason)) o.reason = Number(reason);
    out.push(o);
  }
  return out;
}
