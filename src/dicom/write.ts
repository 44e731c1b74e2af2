// A small DICOM writer for tests and data generation: encodes elements given as raw bytes into a data set or
// a Part 10 file, in explicit or implicit VR, little or big endian. It writes what it is told, byte for
// byte, so that tests can build unusual files (odd padding, nested sequences, wrong lengths) on purpose.

export interface RawElement {
  group: number;
  element: number;
  /** Two letters; ignored (but used for the length field size) in implicit VR. */
  vr: string;
  /** The value bytes as they go in the file (no padding added), or the items of a sequence. */
  value: Uint8Array | string | RawElement[][];
  /** Write the sequence (or element) with undefined length and delimiters. */
  undefinedLength?: boolean;
}

export interface WriteOptions {
  explicitVr?: boolean;
  littleEndian?: boolean;
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UR', 'UT', 'UN', 'SV', 'UV']);
const UNDEFINED = 0xffffffff;

class Sink {
  readonly chunks: Uint8Array[] = [];
  size = 0;
  constructor(readonly little: boolean) {}
  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  u16(v: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, this.little);
    this.bytes(b);
  }
  u32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, this.little);
    this.bytes(b);
  }
  ascii(s: string): void {
    this.bytes(Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff));
  }
  concat(): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** Latin-1 bytes of a string (each char code below 256 becomes one byte). */
export function latin1(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
}

/** Encodes unsigned 16-bit numbers. */
export function uint16s(values: number[], littleEndian = true): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(values.length * 2);
  const v = new DataView(b.buffer);
  for (const [i, x] of values.entries()) v.setUint16(i * 2, x, littleEndian);
  return b;
}

function writeElements(sink: Sink, elements: RawElement[], explicit: boolean): void {
  for (const el of elements) {
    sink.u16(el.group);
    sink.u16(el.element);
    const items = Array.isArray(el.value) ? el.value : undefined;
    let body: Uint8Array | undefined;
    if (items) {
      const inner = new Sink(sink.little);
      for (const item of items) {
        inner.u16(0xfffe);
        inner.u16(0xe000);
        const itemSink = new Sink(sink.little);
        writeElements(itemSink, item, explicit);
        const itemBytes = itemSink.concat();
        inner.u32(el.undefinedLength ? UNDEFINED : itemBytes.length);
        inner.bytes(itemBytes);
        if (el.undefinedLength) {
          inner.u16(0xfffe);
          inner.u16(0xe00d);
          inner.u32(0);
        }
      }
      body = inner.concat();
    } else {
      body = typeof el.value === 'string' ? latin1(el.value) : (el.value as Uint8Array);
    }
    const length = el.undefinedLength ? UNDEFINED : body.length;
    if (explicit) {
      sink.ascii(el.vr);
      if (LONG_VRS.has(el.vr)) {
        sink.u16(0);
        sink.u32(length);
      } else {
        sink.u16(length);
      }
    } else {
      sink.u32(length);
    }
    sink.bytes(body);
    if (el.undefinedLength) {
      sink.u16(0xfffe);
      sink.u16(0xe0dd);
      sink.u32(0);
    }
  }
}

/** Encodes a data set (no preamble, no meta information). */
export function encodeDataSet(elements: RawElement[], options: WriteOptions = {}): Uint8Array<ArrayBuffer> {
  const sink = new Sink(options.littleEndian ?? true);
  writeElements(sink, elements, options.explicitVr ?? true);
  return sink.concat();
}

function padUid(uid: string): Uint8Array {
  return latin1(uid.length % 2 ? `${uid}\0` : uid);
}

/**
 * A Part 10 file: 128-byte preamble, "DICM", file meta information (explicit VR little endian, with group
 * length) and the data set encoded as `transferSyntaxUid` says (explicit/implicit VR, endianness taken
 * from it; deflate is not applied here).
 */
export function encodePart10(
  elements: RawElement[],
  transferSyntaxUid: string,
  sopClassUid = '1.2.840.10008.5.1.4.1.1.7',
  sopInstanceUid = '1.2.3',
): Uint8Array<ArrayBuffer> {
  const meta = encodeDataSet([
    { group: 0x0002, element: 0x0001, vr: 'OB', value: Uint8Array.of(0, 1) },
    { group: 0x0002, element: 0x0002, vr: 'UI', value: padUid(sopClassUid) },
    { group: 0x0002, element: 0x0003, vr: 'UI', value: padUid(sopInstanceUid) },
    { group: 0x0002, element: 0x0010, vr: 'UI', value: padUid(transferSyntaxUid) },
    { group: 0x0002, element: 0x0012, vr: 'UI', value: padUid('1.2.826.0.1.3680043.10.1') },
  ]);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, meta.length, true);
  const groupLength = encodeDataSet([{ group: 0x0002, element: 0x0000, vr: 'UL', value: length }]);
  const body = encodeDataSet(elements, {
    explicitVr: transferSyntaxUid !== '1.2.840.10008.1.2',
    littleEndian: transferSyntaxUid !== '1.2.840.10008.1.2.2',
  });
  const out = new Uint8Array(132 + groupLength.length + meta.length + body.length);
  out.set(latin1('DICM'), 128);
  out.set(groupLength, 132);
  out.set(meta, 132 + groupLength.length);
  out.set(body, 132 + groupLength.length + meta.length);
  return out;
}
