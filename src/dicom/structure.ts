// The structure check of a DICOM file: walks its elements from the data set to the end of the file, reading
// only element headers and skipping over values, so that a file whose elements run past its end (pixel data
// cut short) or whose bytes stop making sense after a few elements is refused, as Orthanc refuses it.
import { open, type FileHandle } from 'node:fs/promises';
import { XferError } from '../errors.ts';
import { dataSetLayout, type Encoding, hasLongLength, isFutureVr } from './dataset.ts';

/** Bytes read at a time from a file; values larger than this are skipped over, never read. */
const WINDOW = 256 * 1024;
/** Deepest nesting of undefined-length sequences and items accepted (DCMTK itself recurses). */
const MAX_DEPTH = 256;
const UNDEFINED = 0xffffffff;

/** Random access to the bytes of a file (or of a buffer), a window at a time. */
interface Bytes {
  readonly size: number;
  /** At least `n` bytes from `at` (the caller checked that they exist). */
  get(at: number, n: number): Promise<Uint8Array>;
}

function bufferBytes(b: Uint8Array): Bytes {
  return { size: b.length, get: async (at, n) => b.subarray(at, at + n) };
}

function fileBytes(fh: FileHandle, size: number): Bytes {
  let start = 0;
  let window = new Uint8Array(0);
  return {
    size,
    async get(at, n) {
      if (at >= start && at + n <= start + window.length) return window.subarray(at - start, at - start + n);
      const want = Math.min(Math.max(n, WINDOW), size - at);
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      // Bounded: each read advances `got`, and a read of 0 bytes (the file shrank) stops it.
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, at + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got < n) throw new XferError('BadFileFormat', `the file ended while it was read (${at + got} of ${size} bytes)`);
      start = at;
      window = buf.subarray(0, got);
      return window.subarray(0, n);
    },
  };
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

function bad(details: string): XferError {
  return new XferError('BadFileFormat', details);
}

interface Container {
  /** 'sequence': holds items up to a sequence delimitation; 'item': holds elements up to an item delimitation. */
  kind: 'sequence' | 'item';
  enc: Encoding;
  /** Tag of the element that opened it, for messages. */
  tag: string;
}

/** The VR (explicit VR only), value length and header length of the element whose first 8 bytes are `h`. */
async function elementHeader(
  bytes: Bytes,
  pos: number,
  h: Uint8Array,
  enc: Encoding,
  tag: string,
): Promise<{ vr: string | undefined; length: number; headerLength: number }> {
  const view = new DataView(h.buffer, h.byteOffset, 8);
  if (!enc.explicitVr) return { vr: undefined, length: view.getUint32(4, enc.littleEndian), headerLength: 8 };
  const vr = String.fromCharCode(h[4] ?? 0, h[5] ?? 0);
  // The same rule as the header parser's (DCMTK's): an unknown VR of two capital letters has a 4-byte length.
  if (!hasLongLength(vr)) return { vr, length: view.getUint16(6, enc.littleEndian), headerLength: 8 };
  if (pos + 12 > bytes.size) throw bad(`the file ends inside the header of ${tag} (offset ${pos})`);
  const l = await bytes.get(pos + 8, 4);
  return { vr, length: new DataView(l.buffer, l.byteOffset, 4).getUint32(0, enc.littleEndian), headerLength: 12 };
}

/**
 * Walks the data set from `start` to the end: each element's header must be whole, each defined length must
 * end within the file, and each undefined-length sequence or item must be closed by its delimitation before
 * the end. Values are skipped, never read; sequences and items of defined length are skipped whole.
 */
async function walk(bytes: Bytes, start: number, top: Encoding): Promise<void> {
  const size = bytes.size;
  const stack: Container[] = [];
  let pos = start;
  // Bounded: every round advances `pos` by at least 8 bytes, and the loop ends at the end of the file.
  while (pos < size) {
    const open = stack.at(-1);
    const enc = open?.enc ?? top;
    if (pos + 8 > size) throw bad(`the file ends inside the header of an element (offset ${pos}, ${size - pos} bytes left)`);
    const h = await bytes.get(pos, 8);
    const view = new DataView(h.buffer, h.byteOffset, 8);
    const group = view.getUint16(0, enc.littleEndian);
    const element = view.getUint16(2, enc.littleEndian);
    const tag = `(${hex4(group)},${hex4(element)})`;
    if (group === 0xfffe) {
      const length = view.getUint32(4, enc.littleEndian);
      if (element === 0xe0dd || element === 0xe00d) {
        // A delimitation closes the container it belongs to; one that closes nothing is refused, as Orthanc
        // (DCMTK) refuses it.
        const kind = element === 0xe0dd ? 'sequence' : 'item';
        if (open?.kind !== kind) throw bad(`${tag} at offset ${pos} ends no ${kind} of undefined length`);
        stack.pop();
        pos += 8;
        continue;
      }
      if (element === 0xe000) {
        if (length === UNDEFINED) {
          if (stack.length >= MAX_DEPTH) throw bad(`sequences nested more than ${MAX_DEPTH} deep at offset ${pos}`);
          stack.push({ kind: 'item', enc, tag });
          pos += 8;
          continue;
        }
        const end = pos + 8 + length;
        if (end > size) throw bad(`an item of ${length} bytes at offset ${pos} runs past the end of the file (${size} bytes)`);
        pos = end;
        continue;
      }
      throw bad(`unexpected ${tag} at offset ${pos}`);
    }
    if (open?.kind === 'sequence') {
      throw bad(`the sequence ${open.tag} holds ${tag} at offset ${pos} where an item or its end was expected`);
    }
    const { vr, length, headerLength } = await elementHeader(bytes, pos, h, enc, tag);
    if (length === UNDEFINED) {
      // A sequence, or encapsulated pixel data: items up to a sequence delimitation. The items of an
      // undefined-length UN element (or one of an unknown VR, which DCMTK reads as UN) are implicit VR
      // little endian whatever the transfer syntax.
      if (stack.length >= MAX_DEPTH) throw bad(`sequences nested more than ${MAX_DEPTH} deep at offset ${pos}`);
      const inner = vr === 'UN' || (vr !== undefined && isFutureVr(vr)) ? { explicitVr: false, littleEndian: true } : enc;
      stack.push({ kind: 'sequence', enc: inner, tag });
      pos += headerLength;
      continue;
    }
    const end = pos + headerLength + length;
    if (end > size) {
      throw bad(
        `the element ${tag} of ${length} bytes at offset ${pos} runs past the end of the file (${size} bytes): ` +
          'the file is cut short or damaged',
      );
    }
    pos = end;
  }
  const open = stack.at(-1);
  if (open) throw bad(`the file ends inside the ${open.kind === 'sequence' ? 'sequence' : 'item'} ${open.tag}`);
}

/**
 * Checks the structure of a whole DICOM file held in memory (see checkDicomFile). Throws
 * XferError('BadFileFormat') naming the first element that does not fit.
 */
export async function checkDicomBytes(bytes: Uint8Array): Promise<void> {
  const layout = dataSetLayout(bytes);
  // A deflated data set is not walked: its elements are only known once inflated, and it is taken as before.
  if (!layout.encoding) return;
  await walk(bufferBytes(bytes), layout.start, layout.encoding);
}

/**
 * Checks the structure of a DICOM file on disk, reading only element headers (a window of 256 KiB at a
 * time, values larger than that skipped over). `head`, the first bytes of the file when the caller has
 * them, spares a read. Throws XferError('BadFileFormat') naming the first element that does not fit, and
 * InexistentFile when the file cannot be read.
 */
export async function checkDicomFile(path: string, head?: Uint8Array): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new XferError('InexistentFile', path, { cause: e });
  }
  try {
    const size = (await fh.stat()).size;
    const bytes = fileBytes(fh, size);
    const first = head && head.length >= Math.min(size, WINDOW) ? head : await bytes.get(0, Math.min(size, WINDOW));
    // The layout is found in the first bytes: the meta information is small.
    const layout = dataSetLayout(first);
    if (!layout.encoding) return;
    await walk(bytes, layout.start, layout.encoding);
  } finally {
    await fh.close();
  }
}
