// Orthanc identifiers: SHA-1 of the identifying UIDs in Orthanc's 5x8 hex shape, checked by hand and against
// the identifiers that a real Orthanc 1.10.1 gave the Knee study in the captured traffic (CAPTURES.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isOrthancId, orthancHash, orthancIds } from '../../src/dicom/ids.ts';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import { CAPTURES, describe, needs, REAL_DICOM } from '../helpers/data.ts';

const KNEE = join(REAL_DICOM, 'Knee');
const CAPTURE = join(CAPTURES, '18142-0002-POST-resp.bin');

function sha1Grouped(s: string): string {
  const hex = createHash('sha1').update(Buffer.from(s, 'utf8')).digest('hex');
  return hex.match(/.{8}/g)!.join('-');
}

describe('orthancIds', { skip: needs(REAL_DICOM, CAPTURES) }, () => {
  test('hashes PatientID, then each UID appended with "|", as 5 groups of 8 lowercase hex digits', () => {
    const header = {
      patientId: 'ozp00SjY2xG',
      studyInstanceUid: '1.2.840.113619.2.176.2025.1499492.7391.1171285944.390',
      seriesInstanceUid: '1.2.840.113619.2.176.2025.1499492.7391.1171285944.394',
      sopInstanceUid: '1.2.840.113619.2.176.2025.1499492.7040.1171286242.109',
    };
    const ids = orthancIds(header);
    const p = header.patientId;
    const st = `${p}|${header.studyInstanceUid}`;
    const se = `${st}|${header.seriesInstanceUid}`;
    assert.deepEqual(ids, {
      patient: sha1Grouped(p),
      study: sha1Grouped(st),
      series: sha1Grouped(se),
      instance: sha1Grouped(`${se}|${header.sopInstanceUid}`),
    });
    // The values Orthanc 1.10.1 answered for 2017-06-27-XSSInjection.dcm, which has these UIDs.
    assert.equal(ids.patient, '6816cb19-844d5aee-85245eba-28e841e6-2414fae2');
    assert.equal(ids.study, 'b9c08539-26f93bde-c81ab0d7-bffaf2cb-a4d0bdd0');
    assert.equal(ids.series, 'f2635388-f01d497a-15f7c06b-ad7dba06-c4c599fe');
    assert.equal(ids.instance, '66a662ce-7430e543-bad44d47-0dc5a943-ec7a538d');
  });

  test('an absent PatientID hashes as the empty string; non-ASCII is hashed as UTF-8', () => {
    assert.equal(orthancHash(''), 'da39a3ee-5e6b4b0d-3255bfef-95601890-afd80709');
    assert.equal(orthancHash('Jérôme'), sha1Grouped('Jérôme'));
    assert.notEqual(orthancHash('Jérôme'), sha1Grouped(Buffer.from('Jérôme', 'utf8').toString('latin1')));
  });

  test('gives the IDs that Orthanc gave the 50 Knee instances in the captured lookup', () => {
    const capture = JSON.parse(readFileSync(CAPTURE, 'utf8')) as { Instances: { ID: string; MD5: string }[] };
    assert.equal(capture.Instances.length, 50);
    const byMd5 = new Map<string, Buffer>();
    for (const series of readdirSync(KNEE)) {
      for (const name of readdirSync(join(KNEE, series))) {
        const bytes = readFileSync(join(KNEE, series, name));
        byMd5.set(createHash('md5').update(bytes).digest('hex'), bytes);
      }
    }
    const studies = new Set<string>();
    for (const { ID, MD5 } of capture.Instances) {
      const bytes = byMd5.get(MD5);
      assert.ok(bytes, `no Knee file has MD5 ${MD5}`);
      const ids = orthancIds(parseDicomHeader(bytes));
      assert.equal(ids.instance, ID);
      studies.add(ids.study);
    }
    // The lookup was asked for this study (CAPTURES.md, section 2).
    assert.deepEqual([...studies], ['0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd83918']);
  });
});

describe('isOrthancId', () => {
  test('accepts exactly 44 characters: 5 groups of 8 lowercase hex digits joined by "-"', () => {
    assert.equal(isOrthancId('0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd83918'), true);
    assert.equal(isOrthancId(orthancHash('x')), true);
    for (const bad of [
      '0A9B3153-2512774B-2D9580DE-1FC3DCF6-3BD83918',
      '0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd8391',
      '0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd839188',
      '0a9b31532-512774b-2d9580de-1fc3dcf6-3bd83918',
      '0a9b3153_2512774b_2d9580de_1fc3dcf6_3bd83918',
      '0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd8391g',
      ' 0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd8391',
      '0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd83918\n',
      '',
    ]) {
      assert.equal(isOrthancId(bad), false, bad);
    }
    assert.equal(isOrthancId(42), false);
    assert.equal(isOrthancId(undefined), false);
  });
});
