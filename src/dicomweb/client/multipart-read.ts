// The client's minimal reading of a WADO-RS answer of one instance: the bytes of its first part, streamed as
// they come (the headers of the part dropped, the closing delimiter held back), so an instance goes to the
// spool without being held whole in memory. The node's DICOMweb server has the general streaming parser
// (src/dicomweb/multipart.ts); the lead merges the two.
import { XferError } from '../../errors.ts';

/** Most bytes before the first part's body starts (its delimiter and headers). */
const HEAD_LIMIT = 64 * 1024;

/** The boundary of a multipart Content-Type, quoted or not. */
export function boundaryOf(contentType: string): string | undefined {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m?.[1] ?? m?.[2];
}

/** Where the first part's body starts in `head`, or -1 when its headers have not all come. */
function bodyStart(head: Buffer, boundary: string): number {
  const at = head.indexOf(`--${boundary}`);
  const end = at < 0 ? -1 : head.indexOf('\r\n\r\n', at);
  return end < 0 ? -1 : end + 4;
}

/** The body of the first part of a multipart answer, as it streams; a plain application/dicom answer passes whole. */
export async function* firstPart(contentType: string, body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  if (/^application\/dicom\b/i.test(contentType)) {
    yield* body;
    return;
  }
  const boundary = boundaryOf(contentType);
  if (!boundary) throw new XferError('NetworkProtocol', `a WADO-RS answer is not multipart/related (Content-Type "${contentType}")`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // The last bytes that may be the start of the delimiter are held back until the next chunk says.
  const keep = delimiter.length - 1;
  let head: Buffer | undefined = Buffer.alloc(0) as Buffer;
  let held: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    let data = chunk;
    if (head !== undefined) {
      head = Buffer.concat([head, chunk]);
      const start = bodyStart(head, boundary);
      if (start < 0) {
        if (head.length > HEAD_LIMIT) throw new XferError('NetworkProtocol', 'a WADO-RS answer holds no part');
        continue;
      }
      data = head.subarray(start);
      head = undefined;
    }
    held = held.length === 0 ? data : Buffer.concat([held, data]);
    const end = held.indexOf(delimiter);
    if (end >= 0) {
      if (end > 0) yield held.subarray(0, end);
      return;
    }
    if (held.length > keep) {
      yield held.subarray(0, held.length - keep);
      held = held.subarray(held.length - keep);
    }
  }
  throw new XferError(
    'NetworkProtocol',
    head !== undefined ? 'a WADO-RS answer holds no part' : 'a WADO-RS answer ends inside its first part',
  );
}
