// C-FIND against the node's DICOM server and against a real Orthanc 1.10.1 holding the same real files,
// asked by dcmtk's findscu with the same keys at the four levels: the answers must be the same; and a node
// whose store is an Orthanc, for C-FIND and C-STORE.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { orthancIds } from '../../src/dicom/ids.ts';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { dcmsend, findscu, needsDcmtk, type FindAnswer, type Peer } from '../helpers/dcmtk.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort } from '../helpers/ports.ts';
import { startScp, startScpOnOrthanc, type ScpHarness } from './dimse-scp-common.ts';

const FOLDERS = ['Brainix', 'Knix', 'PatientWith2studies', 'Encodings'].map((f) => join(REAL_DICOM, f));

/**
 * Answers in an order that does not depend on the server (each as sorted JSON), their values decoded with
 * each answer's own character set. The one deliberate difference: the node answers in UTF-8 (ISO_IR 192),
 * Orthanc in its DefaultEncoding (Latin-1, ISO_IR 100), which drops every character outside Latin-1; so the
 * node's answers are compared with those characters taken out (`latin1`), its character set set aside.
 */
function canonical(answers: FindAnswer[], latin1 = false): string[] {
  return answers
    .map((a) => {
      const { SpecificCharacterSet: _charset, ...rest } = a;
      const values = Object.entries(rest).map(([k, v]) => [
        k,
        latin1 && typeof v === 'string' ? [...v].filter((c) => (c.codePointAt(0) ?? 0) <= 0xff).join('') : v,
      ]);
      return JSON.stringify(Object.fromEntries(values.sort(([x], [y]) => String(x).localeCompare(String(y)))));
    })
    .sort();
}

describe('DICOM server: C-FIND answers as Orthanc answers them', {
  skip: needs(REAL_DICOM) || needsDcmtk() || (orthancInstalled() ? false : 'needs Orthanc'),
}, () => {
  let h: ScpHarness;
  let orthanc: OrthancServer;
  let orthancPeer: Peer;
  /** A node whose store is that Orthanc: its C-FIND is Orthanc's /tools/find. */
  let front: Awaited<ReturnType<typeof startScpOnOrthanc>>;
  let studyUid: string;
  let seriesUid: string;
  before(async () => {
    const dicomPort = await freePort();
    orthanc = await startOrthanc({
      config: { DicomServerEnabled: true, DicomPort: dicomPort, DicomAet: 'ORTHANC', DicomAlwaysAllowFind: true },
    });
    orthancPeer = { port: dicomPort, aet: 'ORTHANC' };
    h = await startScp({ DicomAet: 'ORTHANC', DicomAlwaysAllowFind: true });
    const files = (await Promise.all(FOLDERS.map((f) => listFiles(f)))).flat();
    for (const f of files) {
      const bytes = await readFile(f);
      const r = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: bytes });
      assert.equal(r.status, 200, await r.text());
      const copy = join(h.store.stagingRoot(), `test-${randomUUID()}`);
      await copyFile(f, copy);
      await h.store.ingestFile(copy, bytes.length, createHash('md5').update(bytes).digest('hex'));
    }
    front = await startScpOnOrthanc(orthanc.url, { DicomAet: 'ORTHANC', DicomAlwaysAllowFind: true });
    const knix = parseDicomHeader(await readFile((await listFiles(join(REAL_DICOM, 'Knix')))[0] as string));
    studyUid = knix.studyInstanceUid;
    seriesUid = knix.seriesInstanceUid;
  });
  after(async () => {
    await h?.close();
    await front?.close();
    await orthanc?.stop();
  });

  const queries: { name: string; model: '-P' | '-S'; keys: () => string[] }[] = [
    {
      name: 'patients, every key universal',
      model: '-P',
      keys: () => ['QueryRetrieveLevel=PATIENT', 'PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex'],
    },
    {
      name: 'patients by a wildcard name, with their counts',
      model: '-P',
      keys: () => [
        'QueryRetrieveLevel=PATIENT',
        'PatientName=B*',
        'PatientID',
        'NumberOfPatientRelatedStudies',
        'NumberOfPatientRelatedSeries',
      ],
    },
    {
      name: 'studies with their modalities and counts',
      model: '-S',
      keys: () => [
        'QueryRetrieveLevel=STUDY',
        'StudyInstanceUID',
        'PatientName',
        'PatientID',
        'StudyDate',
        'StudyDescription',
        'AccessionNumber',
        'ModalitiesInStudy',
        'NumberOfStudyRelatedSeries',
        'NumberOfStudyRelatedInstances',
      ],
    },
    {
      name: 'studies in a date range',
      model: '-S',
      keys: () => ['QueryRetrieveLevel=STUDY', 'StudyInstanceUID', 'StudyDate=20000101-20101231', 'PatientID'],
    },
    {
      name: 'series of a study',
      model: '-S',
      keys: () => [
        'QueryRetrieveLevel=SERIES',
        `StudyInstanceUID=${studyUid}`,
        'SeriesInstanceUID',
        'Modality',
        'SeriesNumber',
        'SeriesDescription',
        'NumberOfSeriesRelatedInstances',
      ],
    },
    {
      name: 'series by a list of modalities',
      model: '-S',
      keys: () => ['QueryRetrieveLevel=SERIES', 'StudyInstanceUID', 'SeriesInstanceUID', 'Modality=MR\\CT'],
    },
    {
      name: 'images of a series',
      model: '-S',
      keys: () => [
        'QueryRetrieveLevel=IMAGE',
        `StudyInstanceUID=${studyUid}`,
        `SeriesInstanceUID=${seriesUid}`,
        'SOPInstanceUID',
        'InstanceNumber',
      ],
    },
    {
      name: 'images, patient root, by patient and instance number',
      model: '-P',
      keys: () => ['QueryRetrieveLevel=IMAGE', 'PatientID', 'SOPInstanceUID', 'InstanceNumber=1', 'SOPClassUID'],
    },
  ];
  test('findscu, patients of every character set: the node keeps the names whole where Orthanc keeps Latin-1 only', async () => {
    const keys = ['QueryRetrieveLevel=PATIENT', 'PatientID', 'PatientName'];
    const ours = await findscu(h.peer, '-P', keys);
    const names = new Map(ours.answers.map((a) => [a.PatientID, a.PatientName]));
    assert.equal(names.get('utf8'), 'Test-éüäöòДΘĝדصķћ๛ﾈİ');
    assert.equal(names.get('SCSGREEK'), 'Διονυσιος');
    assert.equal(names.get('H31EXAMPLE'), 'Yamada^Tarou=山田^太郎=やまだ^たろう');
    const theirs = await findscu(orthancPeer, '-P', keys);
    assert.equal(new Map(theirs.answers.map((a) => [a.PatientID, a.PatientName])).get('SCSGREEK'), '');
  });

  for (const q of queries) {
    test(`findscu, ${q.name}: the node answers what Orthanc answers`, async () => {
      const ours = await findscu(h.peer, q.model, q.keys());
      const theirs = await findscu(orthancPeer, q.model, q.keys());
      assert.equal(ours.run.code, 0, ours.run.stderr.slice(-2000));
      assert.equal(theirs.run.code, 0, theirs.run.stderr.slice(-2000));
      assert.ok(theirs.answers.length > 0, 'Orthanc found nothing: the query tests nothing');
      assert.deepEqual(canonical(ours.answers, true), canonical(theirs.answers));
      // The same through a node whose store is that Orthanc.
      const fronted = await findscu(front.peer, q.model, q.keys());
      assert.equal(fronted.run.code, 0, fronted.run.stderr.slice(-2000));
      assert.deepEqual(canonical(fronted.answers, true), canonical(theirs.answers));
      for (const a of ours.answers) assert.equal(a.SpecificCharacterSet, 'ISO_IR 192');
    });
  }
});

describe('DICOM server in front of an Orthanc store: C-STORE', {
  skip: needs(REAL_DICOM) || needsDcmtk() || (orthancInstalled() ? false : 'needs Orthanc'),
}, () => {
  test('a series sent by dcmsend lands in the Orthanc, under the IDs Orthanc gives the files', async () => {
    const orthanc = await startOrthanc();
    const front = await startScpOnOrthanc(orthanc.url);
    try {
      const series = join(REAL_DICOM, 'Knix', 'Loc');
      const run = await dcmsend(front.peer, [series]);
      assert.equal(run.code, 0, run.stderr.slice(-2000));
      const ids = ((await (await fetch(`${orthanc.url}/instances`)).json()) as string[]).sort();
      const files = await listFiles(series);
      assert.equal(ids.length, files.length);
      for (const f of files) {
        const id = orthancIds(parseDicomHeader(await readFile(f))).instance;
        assert.ok(ids.includes(id), `${f} is not in Orthanc as ${id}`);
      }
    } finally {
      await front.close();
      await orthanc.stop();
    }
  });
});
