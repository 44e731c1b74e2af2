// The DICOM header parser on real files and on hostile bytes: every real file parses or is refused with
// BadFileFormat, prefixes and truncations behave, nothing but XferError ever escapes, pixel data is not read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  DicomTruncatedError,
  isDicomTruncated,
  parseDicomHeader,
  readDicomHeaderFromFile,
  readDicomHeaderPrefix,
  simplifiedTags,
} from '../../src/dicom/parse.ts';
import { encodeDataSet, encodePart10, latin1, uint16s, type RawElement } from '../../src/dicom/write.ts';
import { isXferError, XferError } from '../../src/errors.ts';
import type { DicomHeader } from '../../src/dicom/types.ts';
import { describe, needs, REAL_DICOM, listFilesSync } from '../helpers/data.ts';

const ROOT = REAL_DICOM;

// Empty without the shared data (the suites that need it are skipped then).
const FILES = existsSync(ROOT) ? listFilesSync(ROOT) : [];
const file = (name: string) => readFileSync(join(ROOT, name));

/** Parses, and turns any failure into its error so that tests can check what kind it is. */
function attempt(bytes: Uint8Array, prefix = false): DicomHeader | unknown {
  try {
    return parseDicomHeader(bytes, { prefix });
  } catch (e) {
    return e;
  }
}

function isHeader(x: unknown): x is DicomHeader {
  return typeof x === 'object' && x !== null && 'sopInstanceUid' in x;
}

/** Deterministic pseudo-random numbers (a linear congruential generator), for reproducible fuzzing. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const E = (group: number, element: number, vr: string, value: RawElement['value']): RawElement => ({
  group,
  element,
  vr,
  value,
});

const UIDS: RawElement[] = [
  E(0x0008, 0x0016, 'UI', '1.2.840.10008.5.1.4.1.1.7\0'),
  E(0x0008, 0x0018, 'UI', '1.2.3.4.5.6'),
  E(0x0010, 0x0020, 'LO', 'PAT1'),
  E(0x0020, 0x000d, 'UI', '1.2.3.4'),
  E(0x0020, 0x000e, 'UI', '1.2.3.4.5\0'),
];

describe('parseDicomHeader on the real files', { skip: needs(REAL_DICOM) }, () => {
  test('parses every real file or refuses it with BadFileFormat, and refuses only Issue196', () => {
    assert.equal(FILES.length, 239);
    const refused: string[] = [];
    for (const f of FILES) {
      const r = attempt(readFileSync(f));
      if (isHeader(r)) {
        assert.ok(r.studyInstanceUid && r.seriesInstanceUid && r.sopInstanceUid, f);
        assert.equal(r.mainTags.Instance.SOPInstanceUID, r.sopInstanceUid, f);
        assert.equal(r.mainTags.Study.StudyInstanceUID, r.studyInstanceUid, f);
        assert.equal(r.mainTags.Series.SeriesInstanceUID, r.seriesInstanceUid, f);
      } else {
        assert.ok(isXferError(r, 'BadFileFormat'), `${f}: ${String(r)}`);
        refused.push(relative(ROOT, f));
      }
    }
    // Issue196.dcm has a SOPInstanceUID but neither StudyInstanceUID nor SeriesInstanceUID.
    assert.deepEqual(refused, ['Issue196.dcm']);
    assert.match(String(attempt(file('Issue196.dcm'))), /missing StudyInstanceUID/);
  });

  test('reads a file cut right after the Pixel Data element header: the pixel data is never needed', () => {
    let checked = 0;
    for (const f of FILES) {
      const bytes = readFileSync(f);
      const whole = attempt(bytes);
      if (!isHeader(whole) || whole.pixelDataOffset === undefined) continue;
      // The element header is at most 12 bytes: tag, VR, reserved, 4-byte length.
      const cut = bytes.subarray(0, whole.pixelDataOffset + 12);
      assert.deepEqual(parseDicomHeader(cut), whole, f);
      assert.deepEqual(parseDicomHeader(cut, { prefix: true }), whole, f);
      checked++;
    }
    assert.ok(checked > 200, `only ${checked} files have a Pixel Data offset`);
  });

  test('explicit big endian, implicit VR and deflated files give the values Orthanc shows', () => {
    const be = parseDicomHeader(file('TransferSyntaxes/1.2.840.10008.1.2.2.dcm'));
    assert.equal(be.transferSyntaxUid, '1.2.840.10008.1.2.2');
    assert.equal(be.sopInstanceUid, '1.2.840.1136190195280574824680000700.3.0.1.19970424140438');
    const implicit = parseDicomHeader(file('Issue94.dcm'));
    assert.equal(implicit.transferSyntaxUid, '1.2.840.10008.1.2');
    assert.equal(implicit.sopInstanceUid, '1.2.276.0.7230010.3.1.4.8323329.18093.1530276171.425084');
    // The deflated file is Phenix/IM-0001-0001.dcm re-encoded: same header, no meaningful pixel offset.
    const deflated = parseDicomHeader(file('TransferSyntaxes/1.2.840.10008.1.2.1.99.dcm'));
    const plain = parseDicomHeader(file('Phenix/IM-0001-0001.dcm'));
    assert.equal(deflated.transferSyntaxUid, '1.2.840.10008.1.2.1.99');
    assert.equal(deflated.pixelDataOffset, undefined);
    assert.deepEqual(deflated.mainTags, plain.mainTags);
  });

  test('a file without preamble, without DICM, or without meta information parses to the same header', () => {
    for (const name of ['Phenix/IM-0001-0001.dcm', 'Issue94.dcm', 'TransferSyntaxes/1.2.840.10008.1.2.2.dcm']) {
      const bytes = file(name);
      const whole = parseDicomHeader(bytes);
      const shifted = (h: DicomHeader, by: number) => ({
        ...h,
        pixelDataOffset: h.pixelDataOffset === undefined ? undefined : h.pixelDataOffset - by,
      });
      // "DICM" and the meta information at offset 0.
      assert.deepEqual(parseDicomHeader(bytes.subarray(128)), shifted(whole, 128), name);
      // Meta information without "DICM".
      assert.deepEqual(parseDicomHeader(bytes.subarray(132)), shifted(whole, 132), name);
      // A raw data set: the encoding is detected from its first element.
      const metaLength = bytes.readUInt32LE(132 + 8);
      const dataStart = 132 + 12 + metaLength;
      const raw = parseDicomHeader(bytes.subarray(dataStart));
      assert.deepEqual(raw.mainTags, whole.mainTags, name);
      assert.equal(raw.pixelDataOffset, whole.pixelDataOffset === undefined ? undefined : whole.pixelDataOffset - dataStart);
    }
  });
});

describe('parseDicomHeader on bad bytes', { skip: needs(REAL_DICOM) }, () => {
  test('truncated files at every KiB of their first 16 KiB throw nothing but XferError', () => {
    const names = [
      'Phenix/IM-0001-0001.dcm',
      'Issue94.dcm',
      'TransferSyntaxes/1.2.840.10008.1.2.2.dcm',
      'TransferSyntaxes/1.2.840.10008.1.2.1.99.dcm',
      'TransferSyntaxes/1.2.840.10008.1.2.4.91.dcm',
      'Encodings/DavidClunie/SCSH32',
      '2019-06-17-VedranZdesic.dcm',
      'HierarchicalAnonymization/StructuredReports/IM0',
    ];
    let cuts = 0;
    for (const name of names) {
      const bytes = file(name);
      const whole = parseDicomHeader(bytes);
      for (let cut = 0; cut < Math.min(16 * 1024, bytes.length); cut += 1024) {
        for (const prefix of [false, true]) {
          const r = attempt(bytes.subarray(0, cut), prefix);
          cuts++;
          if (isHeader(r)) continue;
          assert.ok(r instanceof XferError && r.code === 'BadFileFormat', `${name} cut at ${cut}: ${String(r)}`);
          // A prefix that ends before Pixel Data asks for more bytes rather than calling the file bad.
          if (prefix && whole.pixelDataOffset !== undefined && cut < whole.pixelDataOffset) {
            assert.ok(isDicomTruncated(r), `${name} cut at ${cut}: ${String(r)}`);
          }
        }
      }
    }
    assert.ok(cuts > 200);
  });

  test('random bytes, with or without a DICM prefix, throw BadFileFormat', () => {
    const next = rng(42);
    for (let i = 0; i < 500; i++) {
      const bytes = new Uint8Array(Math.floor(next() * 5000));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(next() * 256);
      if (i % 2 === 1 && bytes.length > 140) bytes.set([0x44, 0x49, 0x43, 0x4d], 128);
      for (const prefix of [false, true]) {
        const r = attempt(bytes, prefix);
        assert.ok(isHeader(r) || isXferError(r, 'BadFileFormat'), `random input ${i}: ${String(r)}`);
      }
    }
  });

  test('real files with random bytes overwritten throw nothing but XferError', () => {
    const next = rng(7);
    for (const f of FILES.filter((_, i) => i % 4 === 0)) {
      const original = readFileSync(f).subarray(0, 12 * 1024);
      for (let k = 0; k < 10; k++) {
        const bytes = Uint8Array.from(original);
        for (let j = 0; j < 6; j++) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
        const r = attempt(bytes);
        assert.ok(isHeader(r) || r instanceof XferError, `${f} mutation ${k}: ${String(r)}`);
      }
    }
  });

  /** 10,000 nested sequences of undefined length, written byte by byte after the UIDs. */
  function deeplyNested(depth: number, explicit: boolean): Uint8Array {
    // (0040,A730) ContentSequence, undefined length, then an item of undefined length.
    const open = explicit
      ? [0x40, 0, 0x30, 0xa7, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0, 0xe0, 0xff, 0xff, 0xff, 0xff]
      : [0x40, 0, 0x30, 0xa7, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0, 0xe0, 0xff, 0xff, 0xff, 0xff];
    // Item delimitation, then sequence delimitation.
    const close = [0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0, 0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0];
    const head = encodePart10(UIDS, explicit ? '1.2.840.10008.1.2.1' : '1.2.840.10008.1.2');
    const out = new Uint8Array(head.length + depth * (open.length + close.length));
    out.set(head);
    for (let i = 0; i < depth; i++) out.set(open, head.length + i * open.length);
    for (let i = 0; i < depth; i++) out.set(close, head.length + depth * open.length + i * close.length);
    return out;
  }

  test('10,000 nested undefined-length sequences are refused, not a stack overflow crash', () => {
    for (const explicit of [true, false]) {
      const r = attempt(deeplyNested(10_000, explicit));
      assert.ok(isHeader(r) || isXferError(r, 'BadFileFormat'), String(r));
      // A reasonable nesting parses.
      const ok = parseDicomHeader(deeplyNested(50, explicit));
      assert.equal(ok.sopInstanceUid, '1.2.3.4.5.6');
    }
  });

  test('missing UIDs are refused with a clear reason', () => {
    const without = (tag: number) => UIDS.filter((e) => e.group * 0x10000 + e.element !== tag);
    assert.throws(
      () => parseDicomHeader(encodePart10(without(0x0020000e), '1.2.840.10008.1.2.1')),
      (e: unknown) => isXferError(e, 'BadFileFormat') && /missing SeriesInstanceUID/.test(e.message),
    );
    assert.throws(
      () => parseDicomHeader(encodePart10(without(0x00080018), '1.2.840.10008.1.2.1')),
      (e: unknown) => isXferError(e, 'BadFileFormat') && /missing SOPInstanceUID/.test(e.message),
    );
    // An empty UID is missing too; an absent PatientID is "".
    const emptyStudy = UIDS.map((e) => (e.element === 0x000d ? { ...e, value: '' } : e));
    assert.throws(() => parseDicomHeader(encodePart10(emptyStudy, '1.2.840.10008.1.2.1')), /missing StudyInstanceUID/);
    assert.equal(parseDicomHeader(encodePart10(without(0x00100020), '1.2.840.10008.1.2.1')).patientId, '');
    assert.throws(
      () => parseDicomHeader(new TextEncoder().encode('hello, world')),
      (e: unknown) => isXferError(e, 'BadFileFormat'),
    );
  });

  test('a prefix without Pixel Data asks for more bytes; the whole file without Pixel Data parses', () => {
    const bytes = encodePart10(UIDS, '1.2.840.10008.1.2.1');
    assert.throws(
      () => parseDicomHeader(bytes, { prefix: true }),
      (e: unknown) => e instanceof DicomTruncatedError,
    );
    assert.equal(parseDicomHeader(bytes).sopInstanceUid, '1.2.3.4.5.6');
  });
});

describe('synthetic files in every encoding', () => {
  const elements: RawElement[] = [
    ...UIDS,
    E(0x0010, 0x0010, 'PN', 'Doe^John'),
    E(0x0020, 0x0037, 'DS', '1\\0\\0\\0\\1\\0 '),
    E(0x0054, 0x0081, 'US', uint16s([7, 300])),
  ];
  for (const [ts, label] of [
    ['1.2.840.10008.1.2.1', 'explicit little endian'],
    ['1.2.840.10008.1.2', 'implicit little endian'],
    ['1.2.840.10008.1.2.2', 'explicit big endian'],
  ] as const) {
    test(`reads ${label}, including binary numbers`, () => {
      const els =
        ts === '1.2.840.10008.1.2.2' ? elements.map((e) => (e.vr === 'US' ? { ...e, value: uint16s([7, 300], false) } : e)) : elements;
      const h = parseDicomHeader(encodePart10(els, ts));
      assert.equal(h.transferSyntaxUid, ts);
      assert.equal(h.patientId, 'PAT1');
      assert.equal(h.seriesInstanceUid, '1.2.3.4.5');
      assert.equal(h.sopClassUid, '1.2.840.10008.5.1.4.1.1.7');
      assert.deepEqual(h.mainTags.Patient, { PatientName: 'Doe^John', PatientID: 'PAT1' });
      assert.equal(h.mainTags.Series.NumberOfSlices, '7\\300');
      assert.equal(h.mainTags.Series.ImageOrientationPatient, '1\\0\\0\\0\\1\\0');
      assert.equal(h.mainTags.Instance.ImageOrientationPatient, '1\\0\\0\\0\\1\\0');
    });
  }

  test('a raw implicit VR data set without any meta information', () => {
    const h = parseDicomHeader(encodeDataSet(elements, { explicitVr: false }));
    assert.equal(h.transferSyntaxUid, '1.2.840.10008.1.2');
    assert.equal(h.mainTags.Series.NumberOfSlices, '7\\300');
  });
});

/**
 * An explicit VR element whose header form is given (`long`: 2 reserved bytes and a 4-byte length), for VRs
 * that the writer does not know; an item or delimitation when `vr` is undefined.
 */
function explicit(
  group: number,
  element: number,
  vr: string | undefined,
  long: boolean,
  value: Uint8Array,
  length = value.length,
  little = true,
): Buffer {
  const head = Buffer.alloc(long && vr !== undefined ? 12 : 8);
  const v = new DataView(head.buffer);
  v.setUint16(0, group, little);
  v.setUint16(2, element, little);
  if (vr === undefined) v.setUint32(4, length, little);
  else {
    head.write(vr, 4, 'latin1');
    if (long) v.setUint32(8, length, little);
    else v.setUint16(6, length, little);
  }
  return Buffer.concat([head, value]);
}

describe('VRs with a 4-byte length that dicom-parser reads with a 2-byte one', () => {
  const EXPLICIT_LE = '1.2.840.10008.1.2.1';
  const EXPLICIT_BE = '1.2.840.10008.1.2.2';
  const head = (ts: string = EXPLICIT_LE) => Buffer.from(encodePart10(UIDS, ts));
  const after = (little = true) => explicit(0x0020, 0x0013, 'IS', false, latin1('42'), 2, little);

  test('OV, SV, UV and unknown VRs of two capital letters, little and big endian: the elements after them are read', () => {
    for (const little of [true, false]) {
      for (const vr of ['OV', 'SV', 'UV', 'QQ', 'ZZ']) {
        const label = `${vr} ${little ? 'little' : 'big'} endian`;
        const bytes = Buffer.concat([
          head(little ? EXPLICIT_LE : EXPLICIT_BE),
          explicit(0x0009, 0x1010, vr, true, Buffer.alloc(70_000, 1), 70_000, little),
          after(little),
        ]);
        const h = parseDicomHeader(bytes);
        assert.equal(h.sopInstanceUid, '1.2.3.4.5.6', label);
        assert.equal(h.mainTags.Instance.InstanceNumber, '42', label);
        const tags = simplifiedTags(bytes, 'full');
        assert.equal(tags['0020,0013']?.Value, '42', label);
        assert.deepEqual(tags['0009,1010'], { Name: 'Unknown Tag & Data', Type: 'Null', Value: null }, label);
      }
    }
  });

  test('SV and UV on their own tags, written by the writer, are binary values as in Orthanc', () => {
    const bytes = encodePart10(
      [...UIDS, E(0x0018, 0x9219, 'SV', new Uint8Array(8)), E(0x0018, 0x9220, 'UV', new Uint8Array(8)), E(0x0020, 0x0013, 'IS', '42')],
      EXPLICIT_LE,
    );
    const tags = simplifiedTags(bytes, 'full');
    assert.equal(tags['0018,9219']?.Type, 'Null');
    assert.equal(tags['0018,9220']?.Type, 'Null');
    assert.equal(tags['0020,0013']?.Value, '42');
  });

  test('an unknown VR inside items of defined and undefined length', () => {
    const inner = Buffer.concat([
      explicit(0x0008, 0x1150, 'UI', false, latin1('1.2.3\0')),
      explicit(0x0040, 0x1001, 'QQ', true, latin1('ABCD')),
      explicit(0x0040, 0x1002, 'LO', false, latin1('why ')),
    ]);
    const ITEM_END = explicit(0xfffe, 0xe00d, undefined, false, new Uint8Array(0));
    const SEQ_END = explicit(0xfffe, 0xe0dd, undefined, false, new Uint8Array(0));
    const defined = Buffer.concat([explicit(0xfffe, 0xe000, undefined, false, inner)]);
    const undef = Buffer.concat([explicit(0xfffe, 0xe000, undefined, false, new Uint8Array(0), 0xffffffff), inner, ITEM_END]);
    for (const [label, seq] of [
      ['defined lengths', explicit(0x0040, 0x0275, 'SQ', true, defined)],
      ['undefined lengths', Buffer.concat([explicit(0x0040, 0x0275, 'SQ', true, new Uint8Array(0), 0xffffffff), undef, SEQ_END])],
    ] as const) {
      const tags = simplifiedTags(Buffer.concat([head(), seq, after()]), 'simplify');
      assert.deepEqual(
        tags.RequestAttributesSequence,
        [{ ReferencedSOPClassUID: '1.2.3', RequestedProcedureID: null, ReasonForTheRequestedProcedure: 'why' }],
        label,
      );
      assert.equal(tags.InstanceNumber, '42', label);
    }
  });

  test('an unknown VR of undefined length holds implicit VR items, as UN does', () => {
    const implicitUid = Buffer.concat([Buffer.from([0x08, 0, 0x50, 0x11, 6, 0, 0, 0]), latin1('1.2.3\0')]);
    const bytes = Buffer.concat([
      head(),
      explicit(0x0009, 0x1010, 'QQ', true, new Uint8Array(0), 0xffffffff),
      explicit(0xfffe, 0xe000, undefined, false, implicitUid),
      explicit(0xfffe, 0xe0dd, undefined, false, new Uint8Array(0)),
      after(),
    ]);
    const tags = simplifiedTags(bytes, 'full');
    assert.deepEqual(tags['0009,1010'], {
      Name: 'Unknown Tag & Data',
      Type: 'Sequence',
      Value: [{ '0008,1150': { Name: 'ReferencedSOPClassUID', Type: 'String', Value: '1.2.3' } }],
    });
    assert.equal(tags['0020,0013']?.Value, '42');
  });

  test('an unknown VR in the file meta information', () => {
    const bytes = head();
    const groupLength = bytes.readUInt32LE(140);
    const metaEnd = 144 + groupLength;
    const extra = explicit(0x0002, 0x0102, 'QQ', true, latin1('ABCD'));
    const withExtra = Buffer.concat([bytes.subarray(0, metaEnd), extra, bytes.subarray(metaEnd), after()]);
    withExtra.writeUInt32LE(groupLength + extra.length, 140);
    const h = parseDicomHeader(withExtra);
    assert.equal(h.transferSyntaxUid, EXPLICIT_LE);
    assert.equal(h.mainTags.Instance.InstanceNumber, '42');
  });

  test('the offset of Pixel Data after an unknown VR, read from a prefix that ends with its header', () => {
    const before = Buffer.concat([head(), explicit(0x0009, 0x1010, 'QQ', true, latin1('ABCD')), after()]);
    const pixel = explicit(0x7fe0, 0x0010, 'OW', true, new Uint8Array(0), 1_000_000);
    const h = parseDicomHeader(Buffer.concat([before, pixel]), { prefix: true });
    assert.equal(h.pixelDataOffset, before.length);
    assert.equal(h.mainTags.Instance.InstanceNumber, '42');
  });

  test('other unknown VRs (lower case, digits, spaces) keep a 2-byte length, as in DCMTK', () => {
    for (const vr of ['qq', 'Qq', 'Q1', '  ']) {
      const bytes = Buffer.concat([head(), explicit(0x0009, 0x1010, vr, false, latin1('ABCD')), after()]);
      assert.equal(parseDicomHeader(bytes).mainTags.Instance.InstanceNumber, '42', vr);
    }
  });
});

describe('the bytes a header keeps', () => {
  test('are its own copy of the header, not a view of the whole buffer it was parsed from', () => {
    const pixels = new Uint8Array(1024 * 1024).fill(7);
    const bytes = Buffer.from(
      encodePart10([...UIDS, E(0x0010, 0x0010, 'PN', 'Doe^Jane'), E(0x7fe0, 0x0010, 'OW', pixels)], '1.2.840.10008.1.2.1'),
    );
    const header = parseDicomHeader(bytes);
    const before = simplifiedTags(header, 'simplify');
    assert.equal(before.PatientName, 'Doe^Jane');
    // Scribbling over the buffer the header came from does not reach the header: it holds a copy (of
    // the header only, so that a 64 KiB read or a whole instance is not kept alive by it).
    bytes.fill(0);
    assert.deepEqual(simplifiedTags(header, 'simplify'), before);
  });
});

describe('readDicomHeaderFromFile', { skip: needs(REAL_DICOM) }, () => {
  test('reads only a prefix of a large file, and grows it when the header is longer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-dicom-'));
    try {
      // A small header followed by 4 MiB of pixel data: one 64 KiB read is enough.
      const pixels = new Uint8Array(4 * 1024 * 1024).fill(7);
      const small = encodePart10([...UIDS, E(0x7fe0, 0x0010, 'OW', pixels)], '1.2.840.10008.1.2.1');
      await writeFile(join(dir, 'small.dcm'), small);
      const a = await readDicomHeaderPrefix(join(dir, 'small.dcm'));
      assert.equal(a.bytesRead, 64 * 1024);
      assert.equal(a.fileSize, small.length);
      assert.deepEqual(a.header, parseDicomHeader(small));

      // A 300 KB private element before Pixel Data: 64 KiB, 256 KiB, then 1 MiB.
      const big = encodePart10(
        [...UIDS, E(0x0009, 0x0010, 'LO', 'ACME'), E(0x0009, 0x1001, 'OB', new Uint8Array(300_000)), E(0x7fe0, 0x0010, 'OW', pixels)],
        '1.2.840.10008.1.2.1',
      );
      await writeFile(join(dir, 'big.dcm'), big);
      const b = await readDicomHeaderPrefix(join(dir, 'big.dcm'));
      assert.equal(b.bytesRead, 1024 * 1024);
      assert.deepEqual(b.header, parseDicomHeader(big));

      // A file without Pixel Data is read to its end; a truncated one is refused.
      const sr = readFileSync(join(ROOT, 'HierarchicalAnonymization/StructuredReports/IM0'));
      await writeFile(join(dir, 'sr.dcm'), sr);
      assert.deepEqual(await readDicomHeaderFromFile(join(dir, 'sr.dcm')), parseDicomHeader(sr));
      await writeFile(join(dir, 'cut.dcm'), small.subarray(0, 300));
      await assert.rejects(readDicomHeaderFromFile(join(dir, 'cut.dcm')), (e: unknown) => isXferError(e, 'BadFileFormat'));
      await assert.rejects(readDicomHeaderFromFile(join(dir, 'missing.dcm')), (e: unknown) => isXferError(e, 'InexistentFile'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('gives the same header as parsing the whole file, for every real file', async () => {
    for (const f of FILES) {
      const whole = attempt(readFileSync(f));
      const fromFile = await readDicomHeaderFromFile(f).catch((e: unknown) => e);
      if (isHeader(whole)) assert.deepEqual(fromFile, whole, f);
      else assert.ok(isXferError(fromFile, 'BadFileFormat'), f);
    }
  });
});
