// Text values decoded according to SpecificCharacterSet as Orthanc 1.10.1 decodes them, on the real files of
// the Encodings folder (expected strings are what the real Orthanc showed) and on single values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { charsetFor, decodeDicomText, removeIso2022EscapeSequences } from '../../src/dicom/charset.ts';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import { latin1 } from '../../src/dicom/write.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

const ENC = join(REAL_DICOM, 'Encodings');

describe('PatientName of the real files, as Orthanc shows it', { skip: needs(REAL_DICOM) }, () => {
  const expected: Record<string, string> = {
    'DavidClunie/SCSARAB': 'قباني^لنزار',
    'DavidClunie/SCSFREN': 'Buc^Jérôme',
    'DavidClunie/SCSGERM': 'Äneas^Rüdiger',
    'DavidClunie/SCSGREEK': 'Διονυσιος',
    'DavidClunie/SCSH31': 'Yamada^Tarou=山田^太郎=やまだ^たろう',
    // Orthanc decodes the whole value with the first character set (ISO_IR 13, as Shift_JIS) and then
    // drops the escape sequences: the JIS X 0208 part comes out as ASCII. dicom-xfer shows the same.
    'DavidClunie/SCSH32': 'ﾔﾏﾀﾞ^ﾀﾛｳ=;3ED^B@O:=$d$^$@^$?$m$&',
    'DavidClunie/SCSHBRW': 'שרון^דבורה',
    'DavidClunie/SCSI2': 'Hong^Gildong=洪^吉洞=홍^길동',
    'DavidClunie/SCSRUSS': 'Люкceмбypг',
    'DavidClunie/SCSX1': 'Wang^XiaoDong=王^小東=',
    'DavidClunie/SCSX2': 'Wang^XiaoDong=王^小东=',
    'Lena-arabic.dcm': 'Test-ص',
    'Lena-ascii.dcm': 'Test-',
    'Lena-cyrillic.dcm': 'Test-Дћ',
    'Lena-greek.dcm': 'Test-Θ',
    'Lena-hebrew.dcm': 'Test-ד',
    'Lena-latin1.dcm': 'Test-éüäöò',
    'Lena-latin2.dcm': 'Test-éüäö',
    'Lena-latin3.dcm': 'Test-éüäöòĝİ',
    'Lena-latin4.dcm': 'Test-éüäöķ',
    'Lena-latin5.dcm': 'Test-éüäöòİ',
    'Lena-shift-jis.dcm': 'Test-ДΘﾈ',
    'Lena-tis-620.dcm': 'Test-๛',
    'Lena-utf8.dcm': 'Test-éüäöòДΘĝדصķћ๛ﾈİ',
  };
  for (const [name, want] of Object.entries(expected)) {
    test(name, () => {
      assert.equal(parseDicomHeader(readFileSync(join(ENC, name))).mainTags.Patient.PatientName, want);
    });
  }

  test('ISO_IR 13 turns the backslash between values into a yen sign, as Orthanc does', () => {
    const h = parseDicomHeader(readFileSync(join(ENC, 'ISO_IR13.dcm')));
    assert.equal(h.mainTags.Instance.ImagePositionPatient, '-3.1238788846299¥-99.021923065871¥144.46381405098');
  });
});

describe('charsetFor', () => {
  test('without SpecificCharacterSet, values are Latin-1 (C1 bytes included)', () => {
    assert.equal(decodeDicomText(latin1('J\xe9r\xf4me\x85'), undefined), 'Jérôme\u0085');
  });

  test('the first non-empty value selects the decoder; several values mean code extensions', () => {
    const c = charsetFor('\\ISO 2022 IR 87');
    assert.equal(c.term, 'ISO 2022 IR 87');
    assert.equal(c.codeExtensions, true);
    assert.equal(charsetFor('ISO_IR 100').codeExtensions, false);
    assert.equal(charsetFor(' ISO_IR 192 ').term, 'ISO_IR 192');
  });

  test('an unknown character set keeps printable ASCII only', () => {
    const c = charsetFor('ISO_IR 999');
    assert.equal(c.known, false);
    assert.equal(c.decode(latin1('Ab\xe9\tc\x1b$B')), 'Abc$B');
  });

  test('UTF-8 drops invalid sequences; single-byte sets drop unmapped bytes', () => {
    assert.equal(decodeDicomText(Uint8Array.of(0x41, 0xff, 0x42), 'ISO_IR 192'), 'AB');
    // 0xA5 has no character in ISO 8859-3.
    assert.equal(decodeDicomText(Uint8Array.of(0x41, 0xa5, 0x42), 'ISO_IR 109'), 'AB');
    assert.equal(decodeDicomText(Uint8Array.of(0xd0), 'ISO_IR 148'), 'Ğ');
  });

  test('escape sequences are removed only with code extensions', () => {
    assert.equal(removeIso2022EscapeSequences('a\x1b$)Cb\x1b(Bc'), 'abc');
    assert.equal(removeIso2022EscapeSequences('a\x1b'), 'a\x1b');
    assert.equal(decodeDicomText(latin1('a\x1b(Bb'), 'ISO_IR 100'), 'a\x1b(Bb');
    assert.equal(decodeDicomText(latin1('a\x1b(Bb'), 'ISO_IR 100\\ISO 2022 IR 87'), 'ab');
  });
});
