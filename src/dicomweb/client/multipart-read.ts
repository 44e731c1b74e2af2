// The client's minimal reading of a WADO-RS multipart/related answer held in memory: the bytes of its first
// part. The node's DICOMweb server has the streaming parser (src/dicomweb/multipart.ts); the lead merges the two.
import { XferError } from '../../errors.ts';

/** The boundary of a multipart Content-Type, quoted or not. */
export function boundaryOf(contentType: string): string | undefined {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m?.[1] ?? m?.[2];
}

/** The body of the first part of a multipart answer; a plain application/dicom answer is taken whole. */
export function firstPart(contentType: string, body: Buffer): Buffer {
  if (/^application\/dicom\b/i.test(contentType)) return body;
  const boundary = boundaryOf(contentType);
  if (!boundary) throw new XferError('NetworkProtocol', `a WADO-RS answer is not multipart/related (Content-Type "${contentType}")`);
  const delim = Buffer.from(`--${boundary}`);
  const start = body.indexOf(delim);
  const headEnd = start < 0 ? -1 : body.indexOf('\r\n\r\n', start);
  if (headEnd < 0) throw new XferError('NetworkProtocol', 'a WADO-RS answer holds no part');
  const from = headEnd + 4;
  const end = body.indexOf(Buffer.from(`\r\n--${boundary}`), from);
  if (end < 0) throw new XferError('NetworkProtocol', 'a WADO-RS answer ends inside its first part');
  return body.subarray(from, end);
}
