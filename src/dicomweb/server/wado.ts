// WADO-RS on the node: a study, series or instance as multipart/related of the DICOM files exactly as
// stored, and their metadata as DICOM JSON; both streamed instance by instance, never held whole.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { DataSet, Element } from 'dicom-parser';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { parsedHeader, type ParsedDicom } from '../../dicom/parse.ts';
import { valueBytes } from '../../dicom/values.ts';
import { XferError } from '../../errors.ts';
import type { EmbeddedStore } from '../../store/embedded/store.ts';
import { multipartContentType, newBoundary, parseMediaType, writeMultipart, type OutgoingPart } from '../multipart.ts';
import { headerJson, instanceHeader, instancesOfPath, publicRoot, uidPath } from './resources.ts';

/** What an Accept header allows of a WADO-RS retrieval of DICOM files. */
export interface DicomAccept {
  /** The transfer syntaxes asked for; undefined when any will do ("*", none named, or no Accept). */
  syntaxes: Set<string> | undefined;
}

function notAcceptable(details: string): XferError {
  return new XferError('BadRequest', details, { httpStatus: 406 });
}

/** Splits an Accept header at the commas outside quotes. */
function acceptRanges(accept: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const c of accept) {
    if (c === '"') quoted = !quoted;
    if (c === ',' && !quoted) {
      out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  out.push(cur.trim());
  return out.filter((r) => r !== '');
}

/**
 * Reads the Accept header of a retrieval of DICOM files: multipart/related of application/dicom (or a
 * wildcard), with a transfer-syntax or "*". The node sends files as stored: anything else is 406.
 */
export function dicomAccept(accept: string | undefined): DicomAccept {
  if (accept === undefined || accept.trim() === '') return { syntaxes: undefined };
  const syntaxes = new Set<string>();
  let any = false;
  let matched = false;
  for (const range of acceptRanges(accept)) {
    const { type, params } = parseMediaType(range);
    const partType = params.type?.toLowerCase();
    const ok =
      type === '*/*' ||
      type === 'multipart/*' ||
      (type === 'multipart/related' && (partType === undefined || partType === 'application/dicom' || partType === '*/*'));
    if (!ok) continue;
    matched = true;
    const ts = params['transfer-syntax'];
    if (ts === undefined || ts === '*') any = true;
    else syntaxes.add(ts);
  }
  if (!matched) throw notAcceptable(`this server sends DICOM files as multipart/related; type="application/dicom", not "${accept}"`);
  return { syntaxes: any ? undefined : syntaxes };
}

/** GET studies/{study}[/series/{series}[/instances/{instance}]]: the files as stored, one part each. */
export function retrieveFiles(store: EmbeddedStore) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const { syntaxes } = dicomAccept(req.headers.accept);
    const ids = await instancesOfPath(store, uidPath(req));
    if (syntaxes) {
      // Checked before the first byte goes: a file the node cannot give in a syntax asked for refuses all.
      for (const id of ids) {
        const h = await instanceHeader(store, id);
        if (h && !syntaxes.has(h.header.transferSyntaxUid)) {
          throw notAcceptable(`an instance is stored in ${h.header.transferSyntaxUid}; this server does not transcode`);
        }
      }
    }
    const boundary = newBoundary();
    async function* parts(): AsyncGenerator<OutgoingPart> {
      for (const id of ids) {
        const f = await store.instanceFile(id);
        if (!f) continue;
        yield {
          headers: { 'Content-Type': 'application/dicom', 'Content-Length': String(f.size) },
          body: createReadStream(f.path, { highWaterMark: 256 * 1024 }),
        };
      }
    }
    reply.header('Content-Type', multipartContentType('application/dicom', boundary));
    return reply.send(Readable.from(writeMultipart(parts(), boundary)));
  };
}

/** GET .../metadata: the DICOM JSON of each instance, as one JSON array written instance by instance. */
export function retrieveMetadata(store: EmbeddedStore, root: string) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const accept = req.headers.accept;
    if (accept !== undefined && !/application\/dicom\+json|application\/json|\*\/\*|application\/\*/i.test(accept)) {
      throw notAcceptable(`metadata is sent as application/dicom+json, not "${accept}"`);
    }
    const ids = await instancesOfPath(store, uidPath(req));
    const base = publicRoot(req, root);
    async function* json(): AsyncGenerator<string> {
      yield '[';
      let first = true;
      for (const id of ids) {
        const h = await instanceHeader(store, id);
        if (!h) continue;
        yield `${first ? '' : ','}\n${JSON.stringify(headerJson(h.header, base))}`;
        first = false;
      }
      yield '\n]\n';
    }
    reply.header('Content-Type', 'application/dicom+json');
    return reply.send(Readable.from(json()));
  };
}

/** The bytes of an attribute named by a bulk data path ("7fe00010", "00081140/1/00500004") in a parsed header. */
function bulkValue(parsed: ParsedDicom, path: string[]): Uint8Array | undefined {
  let ds: DataSet | undefined = parsed.dataSet;
  // Bounded by the path, which the URL bounds.
  for (let i = 0; ds && i < path.length; i += 2) {
    const el: Element | undefined = ds.elements[`x${(path[i] ?? '').toLowerCase()}`];
    if (!el) return undefined;
    if (i + 1 >= path.length) return el.items === undefined ? valueBytes(ds, el) : undefined;
    ds = el.items?.[Number(path[i + 1]) - 1]?.dataSet;
  }
  return undefined;
}

/** Where the value of Pixel Data lies in the file: after its element header, to its length or the file's end. */
async function pixelDataRange(file: string, size: number, parsed: ParsedDicom): Promise<{ start: number; end: number } | undefined> {
  const at = parsed.pixelDataOffset;
  if (at === undefined) return undefined;
  const head = Buffer.alloc(12);
  const fh = await open(file, 'r');
  try {
    await fh.read(head, 0, 12, at);
  } finally {
    await fh.close();
  }
  const headerSize = parsed.explicitVr ? 12 : 8;
  const length = parsed.explicitVr ? head.readUInt32LE(8) : head.readUInt32LE(4);
  const start = at + headerSize;
  // Encapsulated pixel data has no length of its own: its items run to the end of the file.
  const end = length === 0xffffffff || !parsed.littleEndian ? size : Math.min(size, start + length);
  return { start, end };
}

/** GET .../instances/{instance}/bulk/{path}: one attribute's value, as one application/octet-stream part. */
export function retrieveBulk(store: EmbeddedStore) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const [id] = await instancesOfPath(store, uidPath(req));
    const h = id === undefined ? undefined : await instanceHeader(store, id);
    const path = ((req.params as Record<string, string | undefined>)['*'] ?? '').split('/').filter((p) => p !== '');
    if (
      !h ||
      path.length === 0 ||
      path.length % 2 === 0 ||
      path.some((p, i) => (i % 2 === 0 ? !/^[0-9a-fA-F]{8}$/.test(p) : !/^\d{1,6}$/.test(p)))
    ) {
      throw new XferError('InexistentItem', `no bulk data at ${path.join('/')}`);
    }
    const parsed = parsedHeader(h.header);
    let body: Uint8Array | AsyncIterable<Uint8Array> | undefined;
    if (path.length === 1 && path[0]?.toLowerCase() === '7fe00010') {
      const range = await pixelDataRange(h.path, h.size, parsed);
      if (range && !parsed.deflated) body = createReadStream(h.path, { start: range.start, end: range.end - 1 });
    } else {
      body = bulkValue(parsed, path);
    }
    if (body === undefined) throw new XferError('InexistentItem', `no bulk data at ${path.join('/')}`);
    const boundary = newBoundary();
    reply.header('Content-Type', multipartContentType('application/octet-stream', boundary));
    return reply.send(Readable.from(writeMultipart([{ headers: { 'Content-Type': 'application/octet-stream' }, body }], boundary)));
  };
}
