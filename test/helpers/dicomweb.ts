// Helpers of the DICOMweb tests: multipart bodies made and read, the MD5 of files and parts, the DICOM files
// of a folder.
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readMultipart, parseMultipartType } from '../../src/dicomweb/multipart.ts';

export const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

/** Every file under `dir` (recursively), sorted. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out.sort();
}

/** A multipart/related body of application/dicom parts, and its Content-Type. */
export function stowBody(files: Uint8Array[], boundary = 'test-boundary-0123456789'): { body: Buffer; contentType: string } {
  const pieces: Buffer[] = [];
  for (const f of files) {
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), Buffer.from(f), Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(pieces), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

/** The parts of a multipart answer, whole, with their headers. */
export async function multipartParts(res: Response): Promise<{ headers: Record<string, string>; body: Buffer }[]> {
  const { boundary } = parseMultipartType(res.headers.get('content-type') ?? '');
  const body = Buffer.from(await res.arrayBuffer());
  const out: { headers: Record<string, string>; body: Buffer }[] = [];
  for await (const part of readMultipart([body], boundary)) {
    const pieces: Buffer[] = [];
    for await (const p of part.body) pieces.push(p);
    out.push({ headers: part.headers, body: Buffer.concat(pieces) });
  }
  return out;
}

/** The value of one attribute of a DICOM JSON object. */
export function value(json: Record<string, { Value?: unknown[] }>, tag: string): unknown {
  return json[tag]?.Value?.[0];
}
