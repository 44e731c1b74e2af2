// How values are shown: DCMTK's padding rules as Orthanc exposes them, numbers in binary VRs, the 256-byte
// limit, the main tags of each level, and the tags in Orthanc's `?simplify` and full shapes.
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { formatG } from '../../src/dicom/values.ts';
import { parseDicomHeader, readDicomTagsFromFile, simplifiedTags, type FullTags, type SimplifiedTags } from '../../src/dicom/parse.ts';
import { lookupTag, MAIN_DICOM_TAGS, parseTag, formatTag, tagOfName } from '../../src/dicom/tags.ts';
import { encodePart10, uint16s, type RawElement } from '../../src/dicom/write.ts';
import { isXferError } from '../../src/errors.ts';
import { LEVELS } from '../../src/dicom/types.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

const E = (group: number, element: number, vr: string, value: RawElement['value']): RawElement => ({
  group,
  element,
  vr,
  value,
});

describe('values as Orthanc 1.10.1 shows them', () => {
  // Each expectation was observed on the real Orthanc with this very file (see the interop test).
  const elements: RawElement[] = [
    E(0x0008, 0x0016, 'UI', '1.2.840.10008.5.1.4.1.1.7\0'),
    E(0x0008, 0x0018, 'UI', '1.2.3.4.5.6'),
    E(0x0008, 0x0020, 'DA', '20200101'),
    E(0x0008, 0x0031, 'TM', '120000 '),
    E(0x0008, 0x0050, 'SH', '\0\0'),
    E(0x0008, 0x0080, 'LO', 'I'.repeat(256)),
    E(0x0008, 0x1030, 'LO', 'D'.repeat(300)),
    E(0x0008, 0x1111, 'SQ', [[E(0x0008, 0x0070, 'LO', 'InSeq ')]]),
    E(0x0010, 0x0010, 'PN', '  Doe^J\xe9r\xf4me '),
    E(0x0010, 0x0020, 'LO', 'PID  '),
    E(0x0010, 0x0030, 'DA', ''),
    E(0x0010, 0x0040, 'CS', 'M \0'),
    E(0x0010, 0x1000, 'LO', 'A\\B '),
    E(0x0020, 0x000d, 'UI', ' 1.2. 3\t'),
    E(0x0020, 0x000e, 'UI', '1.2.3.4.5\0'),
    E(0x0020, 0x0010, 'SH', 'ab\0 '),
    E(0x0020, 0x0011, 'IS', ' 12 '),
    E(0x0020, 0x0013, 'IS', '1\t'),
    E(0x0020, 0x0100, 'IS', '3\0'),
    E(0x0020, 0x4000, 'LT', 'text  \r\n  '),
    E(0x0032, 0x1032, 'PN', 'X\0Y '),
    E(0x0054, 0x0081, 'US', uint16s([1, 2])),
    E(0x0054, 0x0101, 'US', Uint8Array.of(5, 0, 9)),
    E(0x0054, 0x1330, 'US', new Uint8Array(0)),
  ];
  const h = parseDicomHeader(encodePart10(elements, '1.2.840.10008.1.2.1'));

  test('an even-length value loses its trailing spaces; an odd-length one keeps them', () => {
    // DCMTK pads an odd-length value with a NUL on reading, which hides the trailing spaces.
    assert.equal(h.mainTags.Series.SeriesTime, '120000 ');
    assert.equal(h.mainTags.Patient.PatientName, '  Doe^Jérôme ');
    assert.equal(h.mainTags.Patient.PatientID, 'PID  ');
    assert.equal(h.patientId, 'PID  ');
    assert.equal(h.mainTags.Patient.OtherPatientIDs, 'A\\B');
    assert.equal(h.mainTags.Series.SeriesNumber, ' 12');
    assert.equal(h.mainTags.Instance.ImageComments, 'text  \r\n');
    assert.equal(h.mainTags.Instance.InstanceNumber, '1\t');
  });

  test('a value ends at its first NUL; UIDs lose every white-space character', () => {
    assert.equal(h.mainTags.Patient.PatientSex, 'M ');
    assert.equal(h.mainTags.Study.AccessionNumber, '');
    assert.equal(h.mainTags.Study.StudyID, 'ab');
    assert.equal(h.mainTags.Study.RequestingPhysician, 'X');
    assert.equal(h.mainTags.Instance.TemporalPositionIdentifier, '3');
    assert.equal(h.studyInstanceUid, '1.2.3');
    assert.equal(h.seriesInstanceUid, '1.2.3.4.5');
    assert.equal(h.mainTags.Patient.PatientBirthDate, '');
  });

  test('binary numbers are printed, all of them, and an odd length counts its padding', () => {
    assert.equal(h.mainTags.Series.NumberOfSlices, '1\\2');
    assert.equal(h.mainTags.Series.NumberOfTimeSlices, '5\\9');
    // An empty binary value is not shown at all.
    assert.equal('ImageIndex' in h.mainTags.Instance, false);
  });

  test('values longer than 256 bytes and tags inside sequences are not main tags', () => {
    assert.equal(h.mainTags.Study.InstitutionName, 'I'.repeat(256));
    assert.equal('StudyDescription' in h.mainTags.Study, false);
    assert.equal('Manufacturer' in h.mainTags.Series, false);
  });

  test('a PatientID or UID longer than 256 bytes is refused, as Orthanc refuses it', () => {
    const withPid = (pid: string) => [
      E(0x0008, 0x0018, 'UI', '1.2.3'),
      E(0x0010, 0x0020, 'LO', pid),
      E(0x0020, 0x000d, 'UI', '1.2.3'),
      E(0x0020, 0x000e, 'UI', '1.2.3'),
    ];
    assert.throws(
      () => parseDicomHeader(encodePart10(withPid('P'.repeat(300)), '1.2.840.10008.1.2.1')),
      (e: unknown) => isXferError(e, 'BadFileFormat'),
    );
    assert.equal(parseDicomHeader(encodePart10(withPid('\0\0'), '1.2.840.10008.1.2.1')).patientId, '');
  });

  test('floating-point numbers print like C++ with 17 significant digits, ties to even', () => {
    assert.equal(formatG(Math.fround(0.679), 17), '0.67900002002716064');
    // biome-ignore lint/correctness/noPrecisionLoss: the exact value of a float32, written out in full on purpose
    assert.equal(formatG(-180.535797119140625, 17), '-180.53579711914062');
    assert.equal(formatG(0.1, 17), '0.10000000000000001');
    assert.equal(formatG(100, 17), '100');
    assert.equal(formatG(1e-5, 17), '1.0000000000000001e-05');
    assert.equal(formatG(1e21, 17), '1e+21');
    assert.equal(formatG(2.5, 1), '2');
    assert.equal(formatG(1234567, 6), '1.23457e+06');
    assert.equal(formatG(Number.NaN, 17), 'nan');
    assert.equal(formatG(-Infinity, 17), '-inf');
  });
});

describe('main DICOM tags', () => {
  test('every main tag is in the dictionary under the name Orthanc uses', () => {
    for (const level of LEVELS) {
      for (const { tag, name } of MAIN_DICOM_TAGS[level]) {
        assert.equal(lookupTag(tag)?.name, name, `${level} ${formatTag(tag)}`);
        assert.equal(tagOfName(name), tag);
      }
    }
    assert.deepEqual(
      MAIN_DICOM_TAGS.Series.filter((t) => MAIN_DICOM_TAGS.Instance.includes(t)).map((t) => t.name),
      [],
    );
    assert.equal(MAIN_DICOM_TAGS.Patient.length + MAIN_DICOM_TAGS.Study.length, 15);
    assert.equal(MAIN_DICOM_TAGS.Series.length, 22);
    assert.equal(MAIN_DICOM_TAGS.Instance.length, 11);
  });

  test('tags parse and format in Orthanc notation', () => {
    assert.equal(parseTag('0010,0020'), 0x00100020);
    assert.equal(parseTag('7FE00010'), 0x7fe00010);
    assert.equal(parseTag('(0008,103E)'), 0x0008103e);
    assert.equal(parseTag('x0020000d'), 0x0020000d);
    assert.equal(parseTag('0010-0020'), undefined);
    assert.equal(formatTag(0x0008103e), '0008,103e');
    assert.equal(lookupTag(0x60023000)?.name, 'OverlayData');
    assert.equal(lookupTag(0x00091001), undefined);
  });
});

describe('simplifiedTags', { skip: needs(REAL_DICOM) }, () => {
  const bytes = readFileSync(join(REAL_DICOM, 'Brainix/Flair/IM-0001-0001.dcm'));

  test('gives the ?simplify shape: names to strings, null for binary, arrays of items for sequences', () => {
    const s = simplifiedTags(bytes) as SimplifiedTags;
    assert.equal(s.PatientName, 'BRAINIX');
    assert.equal(s.SOPClassUID, '1.2.840.10008.5.1.4.1.1.4');
    assert.equal(s.SpecificCharacterSet, 'ISO_IR 100');
    assert.equal(s.StudyDescription, 'IRM cérébrale, neuro-crâne');
    assert.equal(s.AcquisitionMatrix, '0\\256\\191\\0');
    assert.equal(s.PixelData, null);
    assert.deepEqual(s.ReferencedStudySequence, [
      {
        ReferencedSOPClassUID: '1.2.840.10008.3.1.2.3.1',
        ReferencedSOPInstanceUID: '2.16.840.1.113669.632.20.1211.10000357775',
      },
    ]);
    assert.deepEqual(s.FilmConsumptionSequence, []);
    assert.equal('TransferSyntaxUID' in s, false);
    const withMeta = simplifiedTags(bytes, 'simplify', { includeMeta: true }) as SimplifiedTags;
    assert.equal(withMeta.TransferSyntaxUID, '1.2.840.10008.1.2.1');
    // Every main tag of the header is there with the same value.
    const h = parseDicomHeader(bytes);
    for (const level of LEVELS) for (const [k, v] of Object.entries(h.mainTags[level])) assert.equal(s[k], v, k);
  });

  test('gives the full shape keyed by tag, from the bytes or from a parsed header', () => {
    const full = simplifiedTags(bytes, 'full') as FullTags;
    assert.deepEqual(full['0010,0010'], { Name: 'PatientName', Type: 'String', Value: 'BRAINIX' });
    assert.deepEqual(full['7fe0,0010'], { Name: 'PixelData', Type: 'Null', Value: null });
    assert.equal(full['0008,1110']?.Type, 'Sequence');
    const header = parseDicomHeader(bytes);
    assert.deepEqual(simplifiedTags(header, 'full'), full);
    assert.deepEqual(simplifiedTags(header), simplifiedTags(bytes));
    assert.throws(
      () => simplifiedTags({ ...header }),
      (e: unknown) => isXferError(e, 'BadRequest'),
    );
  });

  test('reads the tags of a file from its header only', async () => {
    const path = join(REAL_DICOM, 'Brainix/Flair/IM-0001-0001.dcm');
    assert.deepEqual(await readDicomTagsFromFile(path), simplifiedTags(bytes));
    assert.deepEqual(
      await readDicomTagsFromFile(path, 'full', { includeMeta: true }),
      simplifiedTags(bytes, 'full', { includeMeta: true }),
    );
  });

  test('names private elements as Orthanc does when it does not know them', () => {
    const file = encodePart10(
      [
        E(0x0008, 0x0018, 'UI', '1.2.3'),
        E(0x0009, 0x0010, 'LO', 'ACME 1.0'),
        E(0x0009, 0x1001, 'LO', 'secret'),
        E(0x0020, 0x000d, 'UI', '1.2.3'),
        E(0x0020, 0x000e, 'UI', '1.2.3'),
      ],
      '1.2.840.10008.1.2.1',
    );
    const full = simplifiedTags(file, 'full') as FullTags;
    assert.deepEqual(full['0009,0010'], { Name: 'PrivateCreator', Type: 'String', Value: 'ACME 1.0' });
    assert.deepEqual(full['0009,1001'], {
      Name: 'Unknown Tag & Data',
      PrivateCreator: 'ACME 1.0',
      Type: 'String',
      Value: 'secret',
    });
  });
});
