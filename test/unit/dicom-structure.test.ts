// The structure check of DICOM files: every real file passes it, in memory and from disk; files cut short,
// or with garbage after their first elements, are refused with a reason; sequences and items of undefined
// length, encapsulated pixel data, implicit VR, big endian and deflated files are walked (or taken) right.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, needs, REAL_DICOM, listFilesSync } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { dataSetLayout } from '../../src/dicom/dataset.ts';
import { checkDicomBytes, checkDicomFile } from '../../src/dicom/structure.ts';
import { encodePart10, latin1, type RawElement } from '../../src/dicom/write.ts';
import { isXferError } from '../../src/errors.ts';

const ROOT = REAL_DICOM;

/** The real files; none without them (their suite is then skipped). */
const FILES = needs(ROOT) ? [] : listFilesSync(ROOT);

/** The refusal of `bytes`, or undefined when they pass. */
async function refusal(bytes: Uint8Array): Promise<string | undefined> {
  try {
    await checkDicomBytes(bytes);
    return undefined;
  } catch (e) {
    assert.ok(isXferError(e, 'BadFileFormat'), `a BadFileFormat error, not ${String(e)}`);
    return e.details ?? e.message;
  }
}

const E = (group: number, element: number, vr: string, value: RawElement['value'], undefinedLength = false): RawElement => ({
  group,
  element,
  vr,
  value,
  undefinedLength,
});

const UIDS: RawElement[] = [
  E(0x0008, 0x0016, 'UI', '1.2.840.10008.5.1.4.1.1.7\0'),
  E(0x0008, 0x0018, 'UI', '1.2.3.4.5.6'),
  E(0x0010, 0x0020, 'LO', 'PAT1'),
  E(0x0020, 0x000d, 'UI', '1.2.3.4'),
  E(0x0020, 0x000e, 'UI', '1.2.3.4.5\0'),
];

/** Raw bytes of an element header and value, little endian, explicit VR when `vr` is given. */
function raw(group: number, element: number, vr: string | undefined, length: number, value = new Uint8Array(0)): Uint8Array {
  const long = vr === undefined || ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
  const head = new Uint8Array(vr === undefined ? 8 : long ? 12 : 8);
  const v = new DataView(head.buffer);
  v.setUint16(0, group, true);
  v.setUint16(2, element, true);
  if (vr === undefined) v.setUint32(4, length, true);
  else {
    head.set(latin1(vr), 4);
    if (long) v.setUint32(8, length, true);
    else v.setUint16(6, length, true);
  }
  return Buffer.concat([head, value]);
}

const item = (length: number, value = new Uint8Array(0)) => raw(0xfffe, 0xe000, undefined, length, value);
const SEQ_END = raw(0xfffe, 0xe0dd, undefined, 0);
const ITEM_END = raw(0xfffe, 0xe00d, undefined, 0);

describe('the real files', { skip: needs(REAL_DICOM) }, () => {
  test('every real file passes, read from disk and in memory', async () => {
    assert.equal(FILES.length, 239);
    for (const f of FILES) {
      await checkDicomFile(f);
      assert.equal(await refusal(readFileSync(f)), undefined, relative(ROOT, f));
    }
  });

  test('every real file cut by one byte is refused, except deflated ones (taken as before)', async () => {
    let refused = 0;
    for (const f of FILES) {
      const bytes = readFileSync(f);
      let deflated = false;
      try {
        deflated = dataSetLayout(bytes).deflated;
      } catch {
        continue; // not DICOM at all (refused before this check)
      }
      const why = await refusal(bytes.subarray(0, bytes.length - 1));
      if (deflated) continue;
      assert.ok(why !== undefined, `${relative(ROOT, f)} cut by one byte passes`);
      assert.match(why, /runs past the end of the file|ends inside/);
      refused++;
    }
    assert.ok(refused >= 230, `${refused} refused`);
  });

  test('pixel data cut short names the element, its length and the file size', async () => {
    const bytes = readFileSync(join(ROOT, 'Brainix/Flair/IM-0001-0001.dcm'));
    const why = await refusal(bytes.subarray(0, bytes.length - 1000));
    assert.match(why ?? '', /the element \(7fe0,0010\) of \d+ bytes at offset \d+ runs past the end of the file \(\d+ bytes\)/);
  });

  test('garbage after the first elements is refused', async () => {
    let seed = 7;
    const next = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed >>> 24;
    };
    let refused = 0;
    const sample = FILES.filter((_, i) => i % 8 === 0);
    for (const f of sample) {
      const bytes = Buffer.from(readFileSync(f));
      let start: number;
      try {
        const layout = dataSetLayout(bytes);
        if (layout.deflated) continue;
        start = layout.start;
      } catch {
        continue;
      }
      for (let i = start + 64; i < bytes.length; i++) bytes[i] = next();
      if ((await refusal(bytes)) !== undefined) refused++;
    }
    assert.ok(refused >= sample.length - 4, `${refused} of ${sample.length} refused`);
  });

  test('a file on disk is read a window at a time: a 3 GB sparse file whose pixel data fits passes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-structure-'));
    try {
      const size = 3 * 1024 ** 3;
      const head = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
      const pixel = raw(0x7fe0, 0x0010, 'OW', size - head.length - 12);
      const path = join(dir, 'big.dcm');
      await writeFile(path, Buffer.concat([head, pixel]));
      await truncate(path, size);
      await checkDicomFile(path);
      await truncate(path, size - 2);
      await assert.rejects(checkDicomFile(path), /runs past the end of the file \(3221225470 bytes\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('synthetic files', () => {
  const dir = { path: '' };
  before(async () => {
    dir.path = await mkdtemp(join(tmpdir(), 'dx-structure-'));
  });
  after(async () => {
    await rm(dir.path, { recursive: true, force: true });
  });

  const nested: RawElement[] = [
    ...UIDS,
    E(0x0008, 0x1110, 'SQ', [[E(0x0008, 0x1150, 'UI', '1.2.5\0')]]),
    // Last, so that every cut in the last 40 bytes falls inside it.
    E(
      0x0008,
      0x1115,
      'SQ',
      [[E(0x0008, 0x1150, 'UI', '1.2.3\0'), E(0x0008, 0x114a, 'SQ', [[E(0x0008, 0x1155, 'UI', '1.2.4\0')], []], true)]],
      true,
    ),
  ];

  for (const [ts, label] of [
    ['1.2.840.10008.1.2.1', 'explicit little endian'],
    ['1.2.840.10008.1.2', 'implicit little endian'],
    ['1.2.840.10008.1.2.2', 'explicit big endian'],
  ] as const) {
    test(`${label}: nested sequences of undefined length pass; cut anywhere inside, refused`, async () => {
      const bytes = encodePart10(nested, ts);
      assert.equal(await refusal(bytes), undefined);
      const start = dataSetLayout(bytes).start;
      // Every cut inside the last sequences (past the first elements) leaves something open or cut.
      const lastSeq = bytes.length - 40;
      for (let cut = lastSeq; cut < bytes.length; cut++) {
        assert.ok((await refusal(bytes.subarray(0, cut))) !== undefined, `${label} cut at ${cut} (data set at ${start})`);
      }
      const path = join(dir.path, `${label}.dcm`);
      await writeFile(path, bytes);
      await checkDicomFile(path);
    });
  }

  test('encapsulated pixel data: fragments up to the sequence delimitation pass; without it, refused', async () => {
    const head = encodePart10([...UIDS], '1.2.840.10008.1.2.4.50');
    const pixel = Buffer.concat([raw(0x7fe0, 0x0010, 'OB', 0xffffffff), item(0), item(4, latin1('abcd')), item(2, latin1('ef')), SEQ_END]);
    assert.equal(await refusal(Buffer.concat([head, pixel])), undefined);
    assert.match(
      (await refusal(Buffer.concat([head, pixel.subarray(0, pixel.length - 8)]))) ?? '',
      /ends inside the sequence \(7fe0,0010\)/,
    );
    const long = Buffer.concat([raw(0x7fe0, 0x0010, 'OB', 0xffffffff), item(0), item(400, latin1('abcd')), SEQ_END]);
    assert.match((await refusal(Buffer.concat([head, long]))) ?? '', /an item of 400 bytes .* runs past the end/);
  });

  test('an undefined-length UN element holds implicit VR items, even in an explicit VR file', async () => {
    const head = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
    const inner = Buffer.concat([raw(0x0009, 0x0010, undefined, 4, latin1('ACME')), raw(0x0009, 0x1001, undefined, 2, latin1('xy'))]);
    const un = Buffer.concat([raw(0x0009, 0x1002, 'UN', 0xffffffff), item(0xffffffff), inner, ITEM_END, SEQ_END]);
    assert.equal(await refusal(Buffer.concat([head, un])), undefined);
  });

  test('an undefined-length element of an unknown VR (read as UN) holds implicit VR items too', async () => {
    const head = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
    const qq = raw(0x0009, 0x1002, 'UN', 0xffffffff);
    qq.set(latin1('QQ'), 4); // the header of a UN element: 2 reserved bytes and a 4-byte length
    const implicitItem = Buffer.concat([item(0xffffffff), raw(0x0008, 0x1150, undefined, 6, latin1('1.2.3\0')), ITEM_END]);
    assert.equal(await refusal(Buffer.concat([head, qq, implicitItem, SEQ_END, raw(0x0020, 0x0013, 'IS', 2, latin1('42'))])), undefined);
    // Explicit VR items do not fit (Orthanc refuses them too): the VR and length read as a 4-byte length.
    const explicitItem = Buffer.concat([item(0xffffffff), raw(0x0008, 0x1150, 'UI', 6, latin1('1.2.3\0')), ITEM_END]);
    assert.match((await refusal(Buffer.concat([head, qq, explicitItem, SEQ_END]))) ?? '', /runs past the end/);
  });

  test('OV, SV, UV and unknown VRs of two capital letters have a 4-byte length; other unknown VRs a 2-byte one', async () => {
    const head = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
    const after = raw(0x0020, 0x0013, 'IS', 2, latin1('42'));
    for (const vr of ['OV', 'SV', 'UV', 'QQ']) {
      const el = raw(0x0009, 0x1002, 'UN', 8, new Uint8Array(8));
      el.set(latin1(vr), 4);
      assert.equal(await refusal(Buffer.concat([head, el, after])), undefined, vr);
    }
    for (const vr of ['qq', 'Q1']) {
      const el = raw(0x0009, 0x1002, 'LO', 4, latin1('ABCD'));
      el.set(latin1(vr), 4);
      assert.equal(await refusal(Buffer.concat([head, el, after])), undefined, vr);
    }
  });

  test('a delimitation that closes nothing is refused, as Orthanc refuses it', async () => {
    const head = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
    assert.match((await refusal(Buffer.concat([head, SEQ_END]))) ?? '', /\(fffe,e0dd\) at offset \d+ ends no sequence/);
    assert.match((await refusal(Buffer.concat([head, ITEM_END]))) ?? '', /ends no item/);
    const seq = Buffer.concat([raw(0x0040, 0x0275, 'SQ', 0xffffffff), item(0xffffffff), ITEM_END, ITEM_END, SEQ_END]);
    assert.match((await refusal(Buffer.concat([head, seq]))) ?? '', /ends no item/);
  });

  test('an element inside a sequence where an item belongs is refused', async () => {
    const head = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
    const bad = Buffer.concat([raw(0x0008, 0x1115, 'SQ', 0xffffffff), raw(0x0008, 0x0060, 'CS', 2, latin1('MR')), SEQ_END]);
    assert.match((await refusal(Buffer.concat([head, bad]))) ?? '', /the sequence \(0008,1115\) holds \(0008,0060\)/);
  });

  test('a few bytes after the last element are refused; a deflated data set is taken as it is', async () => {
    const bytes = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
    assert.match((await refusal(Buffer.concat([bytes, new Uint8Array(3)]))) ?? '', /ends inside the header of an element/);
    const deflated = encodePart10([...UIDS], '1.2.840.10008.1.2.1.99');
    assert.equal(await refusal(deflated.subarray(0, deflated.length - 5)), undefined);
  });

  test('ten thousand nested sequences are refused, not a crash', async () => {
    const head = encodePart10([...UIDS], '1.2.840.10008.1.2.1');
    const open = Buffer.concat([raw(0x0008, 0x1115, 'SQ', 0xffffffff), item(0xffffffff)]);
    const deep = Buffer.concat([head, ...Array.from({ length: 10_000 }, () => open)]);
    assert.match((await refusal(deep)) ?? '', /nested more than/);
  });
});
