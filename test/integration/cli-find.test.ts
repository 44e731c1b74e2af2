// `dicom-xfer find`, and `send`/`pull` given a StudyInstanceUID or an accession number, run as the real
// command against real nodes holding the 239 real files (and against a plain Orthanc holding them too).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { FoundRow } from '../../src/cli/find.ts';
import { runCli, type CliRun } from '../helpers/cli.ts';
import { describe, needs, REAL_DICOM, listFiles } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort } from '../helpers/ports.ts';

const KNEE_ACCESSION = 'A10003245599';
const PHENIX_UID = '2.16.840.1.113669.632.20.1211.10000098591';
const BEAUFIX_ACCESSION = '1990801';
/** The accession number of two studies (two COMUNIX patients). */
const SHARED_ACCESSION = '1657271';

type Run = CliRun;

/** Runs `dicom-xfer ARGS` (killed after 60 s). */
function cli(...args: string[]): Promise<Run> {
  return runCli(args);
}

async function findIds(base: string, body: unknown): Promise<string[]> {
  const res = await fetch(`${base}/tools/find`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  return ((await res.json()) as string[]).sort();
}

async function instancesOf(base: string, studyId: string): Promise<string[]> {
  const res = await fetch(`${base}/studies/${studyId}/instances`);
  if (res.status === 404) return [];
  return ((await res.json()) as { ID: string }[]).map((i) => i.ID).sort();
}

type Row = FoundRow;

describe('dicom-xfer find, and send/pull by StudyInstanceUID or accession number', {
  concurrency: 1,
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let A: XferNode;
  let B: XferNode;
  let O: OrthancServer;

  before(async () => {
    const [pa, pb] = [await freePort(), await freePort()];
    [A, B, O] = await Promise.all([
      startXferNode({ port: pa, config: { OrthancPeers: { b: { Url: `http://127.0.0.1:${pb}/` } } } }),
      startXferNode({ port: pb, config: { OrthancPeers: { a: { Url: `http://127.0.0.1:${pa}/` } } } }),
      startOrthanc(),
    ]);
    for (const f of await listFiles(REAL_DICOM)) {
      const body = await readFile(f);
      const answers = await Promise.all([A.url, O.url].map((u) => fetch(`${u}/instances`, { method: 'POST', body })));
      await Promise.all(answers.map((a) => a.arrayBuffer()));
    }
  });

  after(async () => {
    await Promise.all([A?.stop(), B?.stop(), O?.stop()]);
  });

  test('find prints a table: patient, date, description, modality, instances, Orthanc ID; the same on a plain Orthanc', async () => {
    const want = await findIds(A.url, { Level: 'Study', Query: { PatientName: 'knee' } });
    assert.equal(want.length, 1);
    for (const url of [A.url, O.url]) {
      const r = await cli('find', '--url', url, '--patient-name', 'knee');
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.match(lines[0] ?? '', /^PATIENT +PATIENT ID +DATE +DESCRIPTION +MODALITY +INSTANCES +ORTHANC ID$/);
      assert.equal(lines.length, 2, r.stdout);
      assert.match(lines[1] ?? '', new RegExp(`^KNEE +887 +2008-08-19 +IRM DU GENOU +MR +\\d+ +${want[0]}$`));
      assert.match(r.stderr, /1 study\./);
    }
  });

  test('find --json with a date range and a modality: the studies /tools/find gives, on the node and on Orthanc', async () => {
    const want = await findIds(O.url, { Level: 'Study', Query: { StudyDate: '20040101-20041231', ModalitiesInStudy: 'PT' } });
    assert.ok(want.length >= 1);
    for (const url of [A.url, O.url]) {
      const r = await cli('find', '--url', url, '--date', '2004-01-01..2004-12-31', '--modality', 'pt', '--json');
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout) as Row[];
      assert.deepEqual(rows.map((x) => x.ID).sort(), want);
      for (const row of rows) {
        assert.ok(row.Modalities.includes('PT'), JSON.stringify(row));
        assert.ok(row.StudyDate >= '20040101' && row.StudyDate <= '20041231');
        assert.ok(row.Instances >= 1);
      }
    }
  });

  test('find at series level by accession, by StudyInstanceUID, single dates and open ranges', async () => {
    const series = await cli('find', '--url', A.url, '--level', 'series', '--accession', KNEE_ACCESSION, '--json');
    assert.equal(series.code, 0, series.stderr);
    const rows = JSON.parse(series.stdout) as Row[];
    const [knee] = await findIds(A.url, { Level: 'Study', Query: { AccessionNumber: KNEE_ACCESSION } });
    assert.equal(
      rows.reduce((n, x) => n + x.Instances, 0),
      (await instancesOf(A.url, knee ?? '')).length,
    );
    assert.ok(rows.every((x) => x.PatientName === 'KNEE' && x.Modalities[0] === 'MR'));

    const byUid = await cli('find', '--url', A.url, '--study-uid', PHENIX_UID, '--json');
    assert.deepEqual(
      (JSON.parse(byUid.stdout) as Row[]).map((x) => x.PatientName),
      ['PHENIX'],
    );

    for (const [date, query] of [
      ['20050927', '20050927'],
      ['-20040101', '-20040101'],
      ['20200101-', '20200101-'],
    ] as const) {
      const r = await cli('find', '--url', A.url, '--date', date, '--limit', '0', '--json');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        (JSON.parse(r.stdout) as Row[]).map((x) => x.ID).sort(),
        await findIds(A.url, { Level: 'Study', Query: { StudyDate: query } }),
      );
    }
  });

  test('find: usage errors exit 2 with what to give', async () => {
    const [date, level, patientModality] = await Promise.all([
      cli('find', '--url', A.url, '--date', '2020x'),
      cli('find', '--url', A.url, '--level', 'visit'),
      cli('find', '--url', A.url, '--level', 'patient', '--modality', 'CT'),
    ]);
    assert.equal(date.code, 2);
    assert.match(date.stderr, /--date "2020x" is not a date or a range/);
    assert.equal(level.code, 2);
    assert.match(level.stderr, /--level must be patient, study, series or instance/);
    assert.equal(patientModality.code, 2);
    assert.match(patientModality.stderr, /describe studies/);
  });

  test('send --study with a StudyInstanceUID, then with an accession number: the peer holds the studies', async () => {
    const [phenix] = await findIds(A.url, { Level: 'Study', Query: { StudyInstanceUID: PHENIX_UID } });
    const [knee] = await findIds(A.url, { Level: 'Study', Query: { AccessionNumber: KNEE_ACCESSION } });
    for (const [value, id] of [
      [PHENIX_UID, phenix],
      [KNEE_ACCESSION, knee],
    ] as const) {
      const r = await cli('send', '--url', A.url, '--peer', 'b', '--study', value, '--quiet');
      assert.equal(r.code, 0, r.stderr);
      const sent = await instancesOf(A.url, id ?? '');
      assert.ok(sent.length > 0);
      assert.deepEqual(await instancesOf(B.url, id ?? ''), sent);
    }
  });

  test('send --study with an accession number of two studies: exit 2, both listed; an unknown one: exit 2', async () => {
    const both = await findIds(A.url, { Level: 'Study', Query: { AccessionNumber: SHARED_ACCESSION } });
    assert.equal(both.length, 2);
    const r = await cli('send', '--url', A.url, '--peer', 'b', '--study', SHARED_ACCESSION);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /is the StudyInstanceUID of 2 studies|is the accession number of 2 studies/);
    for (const id of both) assert.ok(r.stderr.includes(id), r.stderr);
    assert.match(r.stderr, /COMUNIX/);
    for (const id of both) assert.deepEqual(await instancesOf(B.url, id), []);

    const unknown = await cli('send', '--url', A.url, '--peer', 'b', '--study', 'NO-SUCH-ACCESSION');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /--study "NO-SUCH-ACCESSION" is not an Orthanc ID, and no study on the node at .* has it/);
  });

  test('pull --study with an accession number looks it up on the peer', async () => {
    const [beaufix] = await findIds(A.url, { Level: 'Study', Query: { AccessionNumber: BEAUFIX_ACCESSION } });
    assert.deepEqual(await instancesOf(B.url, beaufix ?? ''), []);
    const r = await cli('pull', '--url', B.url, '--peer', 'a', '--study', BEAUFIX_ACCESSION, '--quiet');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await instancesOf(B.url, beaufix ?? ''), await instancesOf(A.url, beaufix ?? ''));
    // A send looks on its own node: B does not hold that study (A does).
    const local = await cli('send', '--url', B.url, '--peer', 'a', '--study', 'CT16000988');
    assert.equal(local.code, 2);
    assert.match(local.stderr, /no study on the node at/);
  });
});
