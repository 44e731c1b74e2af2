// dicom-xfer's DICOM parser against the real Orthanc 1.10.1: every real file and a set of files with unusual
// values are posted to Orthanc, and its answer (accepted or not, the four IDs, the main DICOM tags of every
// level, the `?simplify` tags) must be what dicom-xfer computes from the same bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { orthancIds } from '../../src/dicom/ids.ts';
import { parseDicomHeader, simplifiedTags, type FullTags, type SimplifiedTags } from '../../src/dicom/parse.ts';
import { MAIN_DICOM_TAGS } from '../../src/dicom/tags.ts';
import { LEVELS, type DicomHeader, type Level, type MainTags } from '../../src/dicom/types.ts';
import { encodePart10, uint16s, type RawElement } from '../../src/dicom/write.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { describe, needs, REAL_DICOM, listFilesSync } from '../helpers/data.ts';

const ROOT = REAL_DICOM;

interface PostAnswer {
  ID?: string;
  ParentPatient?: string;
  ParentStudy?: string;
  ParentSeries?: string;
  Status?: string;
}

interface Resource {
  MainDicomTags: MainTags;
  PatientMainDicomTags?: MainTags;
}

const URL_OF: Record<Level, string> = { Patient: 'patients', Study: 'studies', Series: 'series', Instance: 'instances' };

/** The tags every simplified answer must agree on: main tags of all levels and a few more. */
const REQUIRED_SIMPLIFIED = new Set([
  ...LEVELS.flatMap((l) => MAIN_DICOM_TAGS[l].map((t) => t.name)),
  'SOPClassUID',
  'SpecificCharacterSet',
]);

function parseOrError(bytes: Uint8Array): DicomHeader | Error {
  try {
    return parseDicomHeader(bytes);
  } catch (e) {
    return e as Error;
  }
}

describe('the DICOM parser agrees with Orthanc 1.10.1', {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let orthanc: OrthancServer;
  /** What Orthanc should show for each resource: the main tags of the file that created it. */
  const expected = new Map<string, { level: Level; tags: MainTags; patientTags?: MainTags }>();
  /** The real file that created each instance (Orthanc keeps the first file of a SOPInstanceUID). */
  const firstFile = new Map<string, { label: string; bytes: Uint8Array }>();

  before(async () => {
    orthanc = await startOrthanc({ name: 'dicom-interop' });
  });
  after(async () => {
    await orthanc?.stop();
  });

  async function getJson<T>(path: string): Promise<T> {
    const r = await fetch(orthanc.url + path);
    assert.equal(r.status, 200, `GET ${path}`);
    return (await r.json()) as T;
  }

  /**
   * Posts one file and checks Orthanc's answer and resources against dicom-xfer's parse of the same bytes.
   * Returns Orthanc's HTTP status.
   */
  async function postAndCompare(label: string, bytes: Uint8Array<ArrayBuffer>, simplifiedToo: boolean): Promise<number> {
    const ours = parseOrError(bytes);
    const r = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: bytes });
    const answer = (await r.json()) as PostAnswer;
    if (ours instanceof Error) {
      assert.notEqual(r.status, 200, `${label}: dicom-xfer refuses it (${ours.message}), Orthanc accepted it`);
      assert.ok(r.status >= 400 && r.status < 500, `${label}: Orthanc answered ${r.status}`);
      return r.status;
    }
    assert.equal(r.status, 200, `${label}: dicom-xfer accepts it, Orthanc answered ${r.status} ${JSON.stringify(answer)}`);
    const ids = orthancIds(ours);
    assert.deepEqual(
      { instance: answer.ID, series: answer.ParentSeries, study: answer.ParentStudy, patient: answer.ParentPatient },
      { instance: ids.instance, series: ids.series, study: ids.study, patient: ids.patient },
      `${label}: IDs`,
    );
    const idOf: Record<Level, string> = { Patient: ids.patient, Study: ids.study, Series: ids.series, Instance: ids.instance };
    for (const level of LEVELS) {
      if (!expected.has(idOf[level])) {
        expected.set(idOf[level], {
          level,
          tags: ours.mainTags[level],
          patientTags: level === 'Study' ? ours.mainTags.Patient : undefined,
        });
      }
      const want = expected.get(idOf[level])!;
      const got = await getJson<Resource>(`/${URL_OF[level]}/${idOf[level]}`);
      assert.deepEqual(got.MainDicomTags, want.tags, `${label}: MainDicomTags of the ${level}`);
      if (level === 'Study') assert.deepEqual(got.PatientMainDicomTags, want.patientTags, `${label}: PatientMainDicomTags`);
    }
    if (!firstFile.has(ids.instance)) firstFile.set(ids.instance, { label, bytes });
    if (simplifiedToo) {
      const first = firstFile.get(ids.instance)!.bytes;
      const want = simplifiedTags(first) as SimplifiedTags;
      const wantFull = simplifiedTags(first, 'full') as FullTags;
      const got = await getJson<SimplifiedTags>(`/instances/${ids.instance}/tags?simplify`);
      const gotFull = await getJson<FullTags>(`/instances/${ids.instance}/tags`);
      // Orthanc names some private tags after DCMTK's private dictionary, sometimes with the name of a
      // public tag (GE's "SeriesType"), which then wins in ?simplify; compare those by tag only.
      const privateNames = new Set(
        Object.entries(gotFull)
          .filter(([tag]) => parseInt(tag.slice(0, 4), 16) % 2 === 1)
          .map(([, e]) => e.Name),
      );
      for (const [tag, entry] of Object.entries(gotFull)) {
        if (!REQUIRED_SIMPLIFIED.has(entry.Name) || parseInt(tag.slice(0, 4), 16) % 2 === 1) continue;
        assert.deepEqual(wantFull[tag], entry, `${label}: /tags ${tag}`);
      }
      for (const name of REQUIRED_SIMPLIFIED) {
        if (!privateNames.has(name)) assert.deepEqual(want[name], got[name], `${label}: ?simplify ${name}`);
      }
    }
    return r.status;
  }

  test('every real file: accepted or refused alike, same IDs, same main tags at every level, same ?simplify', async () => {
    const files = listFilesSync(ROOT);
    assert.equal(files.length, 239);
    const statuses: Record<number, number> = {};
    for (const f of files) {
      const status = await postAndCompare(relative(ROOT, f), readFileSync(f), true);
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
    // Orthanc refuses Issue196.dcm (no StudyInstanceUID) with "Inexistent tag".
    assert.deepEqual(statuses, { 200: 238, 404: 1 });
  });

  /**
   * The full tags with the names that may legitimately differ made comparable: Orthanc names private tags
   * from DCMTK's private dictionary (dicom-xfer has none), and DCMTK's dictionary is of an edition of the
   * standard where a few keywords carry "RETIRED_".
   */
  function comparable(tags: FullTags): FullTags {
    const out: FullTags = {};
    for (const [tag, entry] of Object.entries(tags)) {
      const isPrivate = parseInt(tag.slice(0, 4), 16) % 2 === 1;
      const e = { ...entry, Name: isPrivate ? '(private)' : entry.Name.replace(/^RETIRED_/, '') };
      if (e.Type === 'Sequence' && Array.isArray(e.Value)) e.Value = e.Value.map(comparable);
      out[tag] = e;
    }
    return out;
  }

  test('the full /tags of every real file agree with Orthanc, down to the sequences', async () => {
    let compared = 0;
    const differing: string[] = [];
    for (const [id, { label, bytes }] of firstFile) {
      const got = comparable(await getJson<FullTags>(`/instances/${id}/tags`));
      const mine = comparable(simplifiedTags(bytes, 'full') as FullTags);
      for (const [tag, entry] of Object.entries(got)) {
        compared++;
        if (!isDeepStrictEqual(mine[tag], entry)) differing.push(`${label} ${tag} ${entry.Name}`);
      }
      // dicom-xfer shows nothing more, except one group length that Orthanc drops from this one file.
      const dropped = label === 'TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm' ? '0008,0000' : undefined;
      for (const tag of Object.keys(mine)) {
        if (!(tag in got) && tag !== dropped) differing.push(`${label} ${tag} only in dicom-xfer`);
      }
    }
    assert.ok(compared > 19_000, `compared ${compared}`);
    assert.deepEqual(differing, []);
  });

  describe('files with unusual values', () => {
    const E = (group: number, element: number, vr: string, value: RawElement['value']): RawElement => ({
      group,
      element,
      vr,
      value,
    });
    const uids = (n: number, extra: RawElement[] = []): RawElement[] => [
      E(0x0008, 0x0016, 'UI', '1.2.840.10008.5.1.4.1.1.7\0'),
      E(0x0008, 0x0018, 'UI', `1.2.826.0.1.3680043.10.999.${n}.3\0`.slice(0, 40)),
      E(0x0010, 0x0020, 'LO', `XFER-${n}`),
      E(0x0020, 0x000d, 'UI', `1.2.826.0.1.3680043.10.999.${n}.1`),
      E(0x0020, 0x000e, 'UI', `1.2.826.0.1.3680043.10.999.${n}.2`),
      ...extra,
    ];
    const sorted = (els: RawElement[]) => [...els].sort((a, b) => a.group * 0x10000 + a.element - (b.group * 0x10000 + b.element));
    const replace = (els: RawElement[], extra: RawElement[]) => {
      const keys = new Set(extra.map((e) => e.group * 0x10000 + e.element));
      return sorted([...els.filter((e) => !keys.has(e.group * 0x10000 + e.element)), ...extra]);
    };

    const padding: RawElement[] = [
      E(0x0008, 0x0020, 'DA', '20200101'),
      E(0x0008, 0x0031, 'TM', '120000 '),
      E(0x0008, 0x0050, 'SH', '\0\0'),
      E(0x0008, 0x0080, 'LO', 'I'.repeat(256)),
      E(0x0008, 0x1030, 'LO', 'D'.repeat(300)),
      E(0x0008, 0x1111, 'SQ', [[E(0x0008, 0x0070, 'LO', 'InSeq ')]]),
      E(0x0010, 0x0010, 'PN', '  Doe^J\xe9r\xf4me '),
      E(0x0010, 0x0030, 'DA', ''),
      E(0x0010, 0x0040, 'CS', 'M \0'),
      E(0x0010, 0x1000, 'LO', 'A\\B '),
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
    /** Every main tag of every level, with a value. */
    const everyMainTag: RawElement[] = LEVELS.flatMap((level) =>
      MAIN_DICOM_TAGS[level]
        .filter((t) => ![0x00100020, 0x0020000d, 0x0020000e, 0x00080018].includes(t.tag))
        .map((t) => {
          const us = [0x00540081, 0x00540101, 0x00541330].includes(t.tag);
          return E(t.tag >>> 16, t.tag & 0xffff, us ? 'US' : 'LO', us ? uint16s([3]) : `${t.name.slice(0, 10)} `);
        }),
    ).filter((e, i, all) => all.findIndex((o) => o.group === e.group && o.element === e.element) === i);

    const cases: [string, Uint8Array<ArrayBuffer>][] = [
      ['padding, NULs, long and binary values', encodePart10(replace(uids(1), padding), '1.2.840.10008.1.2.1')],
      ['the same in implicit VR', encodePart10(replace(uids(2), padding), '1.2.840.10008.1.2')],
      [
        'the same in explicit big endian',
        encodePart10(
          replace(
            uids(3),
            padding.map((e) =>
              e.vr === 'US' && e.value instanceof Uint8Array && e.value.length === 4 ? { ...e, value: uint16s([1, 2], false) } : e,
            ),
          ),
          '1.2.840.10008.1.2.2',
        ),
      ],
      ['every main tag present', encodePart10(replace(uids(4), everyMainTag), '1.2.840.10008.1.2.1')],
      [
        'white space inside UIDs and a NUL PatientID',
        encodePart10(
          replace(uids(5), [
            E(0x0010, 0x0020, 'LO', '\0\0'),
            E(0x0020, 0x000d, 'UI', ' 1.2.826.0.1. 3680043.10.999.5\t'),
            E(0x0020, 0x000e, 'UI', '1.2.826.0.1.3680043.10.999.5.2 '),
          ]),
          '1.2.840.10008.1.2.1',
        ),
      ],
      [
        'Latin-1 text without SpecificCharacterSet',
        encodePart10(replace(uids(6), [E(0x0010, 0x0010, 'PN', 'M\xfcller^J\x85')]), '1.2.840.10008.1.2.1'),
      ],
      [
        'UTF-8 with SpecificCharacterSet',
        encodePart10(
          replace(uids(7), [E(0x0008, 0x0005, 'CS', 'ISO_IR 192'), E(0x0010, 0x0010, 'PN', Buffer.from('Ærø^Zoë', 'utf8'))]),
          '1.2.840.10008.1.2.1',
        ),
      ],
      [
        'a PatientID longer than 256 bytes',
        encodePart10(replace(uids(8), [E(0x0010, 0x0020, 'LO', 'P'.repeat(300))]), '1.2.840.10008.1.2.1'),
      ],
      ['an empty StudyInstanceUID', encodePart10(replace(uids(9), [E(0x0020, 0x000d, 'UI', '')]), '1.2.840.10008.1.2.1')],
      [
        'no SeriesInstanceUID',
        encodePart10(
          uids(10).filter((e) => e.element !== 0x000e),
          '1.2.840.10008.1.2.1',
        ),
      ],
    ];
    for (const [label, bytes] of cases) {
      test(label, async () => {
        await postAndCompare(label, bytes, true);
      });
    }

    test('the file with every main tag shows every one of them, and nothing else', () => {
      const h = parseDicomHeader(cases[3]![1]);
      for (const level of LEVELS) {
        assert.deepEqual(Object.keys(h.mainTags[level]).sort(), MAIN_DICOM_TAGS[level].map((t) => t.name).sort(), level);
      }
    });
  });
});
