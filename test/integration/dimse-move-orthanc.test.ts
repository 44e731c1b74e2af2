// C-MOVE compared with Orthanc: the same real studies loaded into a node (the real command, its own C-MOVE
// sender) and into Orthanc 1.10.1, dcmtk's movescu asking each to send to its own storescp: the same data
// sets must arrive (MD5 of each data set, file meta aside) and movescu must hear the same final status and counts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { needsDcmtk, runTool, startStorescp, type Peer, type Storescp } from '../helpers/dcmtk.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort } from '../helpers/ports.ts';
import { dataSetOf } from './dimse-scp-common.ts';

const FOLDERS = ['Knix', 'PatientWith2studies', 'Comunix'].map((f) => join(REAL_DICOM, f));

const md5 = (b: Uint8Array | string): string => createHash('md5').update(b).digest('hex');

/** What movescu reports of one C-MOVE: its exit code, the final status, the counts of the last response. */
interface MoveOutcome {
  code: number | null;
  status: string;
  pending: number;
  remaining: string;
  completed: string;
  failed: string;
  warning: string;
}

/** movescu with its debug output, which shows each response's counts. */
function move(p: Peer, model: '-P' | '-S', keys: string[], destination: string) {
  const args = ['-d', '-to', '20', '-ta', '20', '-td', '120', model, '-aem', destination, '-aet', 'MOVESCU', '-aec', p.aet];
  return runTool('movescu', [...args, ...keys.flatMap((k) => ['-k', k]), '127.0.0.1', String(p.port)], { timeoutMs: 300_000 });
}

/** A count of the final response as movescu's debug dump shows it ("Completed Suboperations : 3", "none" when absent). */
function finalCount(text: string, name: string): string {
  const final = text.slice(text.lastIndexOf('Received Final Move Response'));
  return new RegExp(`${name} Suboperations\\s*:\\s*(\\w+)`).exec(final)?.[1] ?? 'no final response';
}

function outcomeOf(run: { code: number | null; stdout: string; stderr: string }): MoveOutcome {
  const text = run.stdout + run.stderr;
  return {
    code: run.code,
    status: /DIMSE Status\s*:\s*(0x[0-9a-f]{4})/.exec(text.slice(text.lastIndexOf('Received Final Move Response')))?.[1] ?? 'none',
    pending: (text.match(/Received Move Response \d+$/gm) ?? []).length,
    remaining: finalCount(text, 'Remaining'),
    completed: finalCount(text, 'Completed'),
    failed: finalCount(text, 'Failed'),
    warning: finalCount(text, 'Warning'),
  };
}

/**
 * A data set element by element, as dcmdump lists it (every value whole), the file meta group aside, and with
 * nothing of how sequences and items are delimited: Orthanc sends a sequence of undefined length with an
 * explicit one (DCMTK re-encodes the data set it sends), the same elements in other bytes.
 */
async function elementsOf(file: string): Promise<string> {
  const run = await runTool('dcmdump', ['-q', '+L', file], { timeoutMs: 60_000 });
  assert.equal(run.code, 0, run.stderr);
  return run.stdout
    .split('\n')
    .filter((l) => /^\s*\(/.test(l) && !/^\s*\(0002,|^\s*\(fffe,e0[0d]d\)/.test(l))
    .map((l) => l.replace(/\s*#.*$/, '').replace(/(Sequence|Item) with (explicit|undefined) length/, '$1'))
    .join('\n');
}

/** What a storescp received (each sorted, duplicates kept), its folder emptied for the next move. */
async function received(scp: Storescp): Promise<{ dataSets: string[]; elements: string[] }> {
  const files = await scp.files();
  const dataSets = await Promise.all(files.map(async (f) => md5(dataSetOf(await readFile(f)))));
  const elements = [];
  for (const f of files) elements.push(md5(await elementsOf(f)));
  await Promise.all(files.map((f) => rm(f)));
  return { dataSets: dataSets.sort(), elements: elements.sort() };
}

describe('DICOM server: C-MOVE sends what Orthanc sends', {
  skip: needs(REAL_DICOM) || needsDcmtk() || (orthancInstalled() ? false : 'needs Orthanc'),
}, () => {
  let orthanc: OrthancServer;
  let node: XferNode;
  let orthancPeer: Peer;
  let nodePeer: Peer;
  /** One destination each, both called DEST, so that each server's sends are told apart. */
  let toOrthanc: Storescp;
  let toNode: Storescp;
  /** The data sets of the files loaded, to check that what arrives is what was loaded. */
  const loaded = new Set<string>();
  const uids = { patient: '', study: '', otherStudy: '', series: '', study2: '', sop: '', comunix: '', sop1: '', sop2: '' };

  before(async () => {
    toOrthanc = await startStorescp(await freePort(), 'DEST');
    toNode = await startStorescp(await freePort(), 'DEST');
    const movescuPort = await freePort();
    const modalities = (dest: Storescp) => ({ dest: ['DEST', '127.0.0.1', dest.port], movescu: ['MOVESCU', '127.0.0.1', movescuPort] });
    orthancPeer = { port: await freePort(), aet: 'ORTHANC' };
    orthanc = await startOrthanc({
      config: { DicomServerEnabled: true, DicomAet: 'ORTHANC', DicomPort: orthancPeer.port, DicomModalities: modalities(toOrthanc) },
    });
    nodePeer = { port: await freePort(), aet: 'DICOMXFER' };
    node = await startXferNode({
      config: { DicomServerEnabled: true, DicomAet: 'DICOMXFER', DicomPort: nodePeer.port, DicomModalities: modalities(toNode) },
    });
    const files = (await Promise.all(FOLDERS.map((f) => listFiles(f)))).flat();
    for (const f of files) {
      const bytes = await readFile(f);
      loaded.add(md5(dataSetOf(bytes)));
      for (const url of [orthanc.url, node.url]) {
        const r = await fetch(`${url}/instances`, { method: 'POST', body: bytes });
        assert.equal(r.status, 200, await r.text());
      }
    }
    const headers = async (folder: string) =>
      Promise.all((await listFiles(join(REAL_DICOM, folder))).map(async (f) => parseDicomHeader(await readFile(f))));
    const [knix, two, comunix] = await Promise.all(['Knix', 'PatientWith2studies', 'Comunix'].map(headers));
    const [first, other, c1] = [knix?.[0], two?.[0], comunix?.[0]];
    assert.ok(first && other && c1);
    uids.study = first.studyInstanceUid;
    uids.series = first.seriesInstanceUid;
    uids.sop = first.sopInstanceUid;
    uids.otherStudy = other.studyInstanceUid;
    uids.patient = other.patientId;
    uids.study2 = two?.find((h) => h.studyInstanceUid !== other.studyInstanceUid)?.studyInstanceUid ?? '';
    uids.comunix = c1.studyInstanceUid;
    uids.sop1 = c1.sopInstanceUid;
    uids.sop2 = comunix?.find((h) => h.seriesInstanceUid !== c1.seriesInstanceUid)?.sopInstanceUid ?? '';
    assert.ok(uids.sop2 && uids.study2, 'the data has a second series in Comunix and a second study in PatientWith2studies');
  });
  after(async () => {
    await node?.stop();
    await orthanc?.stop();
    await toOrthanc?.stop();
    await toNode?.stop();
  });

  /** The same movescu against Orthanc then the node: what each destination received and what movescu heard. */
  async function both(model: '-P' | '-S', keys: string[], destination = 'DEST') {
    const theirs = outcomeOf(await move(orthancPeer, model, keys, destination));
    const theirSets = await received(toOrthanc);
    const ours = outcomeOf(await move(nodePeer, model, keys, destination));
    const ourSets = await received(toNode);
    return { theirs, theirSets, ours, ourSets };
  }

  const queries: { name: string; model: '-P' | '-S'; keys: () => string[] }[] = [
    { name: 'a study, study root', model: '-S', keys: () => ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${uids.study}`] },
    {
      name: 'two studies by a list of UIDs, study root',
      model: '-S',
      keys: () => ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${uids.otherStudy}\\${uids.study2}`],
    },
    {
      name: 'a series, study root',
      model: '-S',
      keys: () => ['QueryRetrieveLevel=SERIES', `StudyInstanceUID=${uids.study}`, `SeriesInstanceUID=${uids.series}`],
    },
    {
      name: 'two images of two series, study root',
      model: '-S',
      keys: () => [
        'QueryRetrieveLevel=IMAGE',
        `StudyInstanceUID=${uids.comunix}`,
        'SeriesInstanceUID=',
        `SOPInstanceUID=${uids.sop1}\\${uids.sop2}`,
      ],
    },
    { name: 'a patient, patient root', model: '-P', keys: () => ['QueryRetrieveLevel=PATIENT', `PatientID=${uids.patient}`] },
    {
      name: 'a study, patient root',
      model: '-P',
      keys: () => ['QueryRetrieveLevel=STUDY', `PatientID=${uids.patient}`, `StudyInstanceUID=${uids.otherStudy}`],
    },
    {
      name: 'an image, patient root',
      model: '-P',
      keys: () => [
        'QueryRetrieveLevel=IMAGE',
        'PatientID=',
        `StudyInstanceUID=${uids.study}`,
        `SeriesInstanceUID=${uids.series}`,
        `SOPInstanceUID=${uids.sop}`,
      ],
    },
  ];

  for (const q of queries) {
    test(`movescu, ${q.name}: the node sends the data sets Orthanc sends and answers as Orthanc`, async () => {
      const { theirs, theirSets, ours, ourSets } = await both(q.model, q.keys());
      assert.equal(theirs.code, 0, JSON.stringify(theirs));
      const sent = theirSets.elements.length;
      assert.ok(sent > 0, 'Orthanc sent nothing: the query tests nothing');
      // The same elements as Orthanc sends; and the node's bytes are those loaded, unchanged.
      assert.deepEqual(ourSets.elements, theirSets.elements);
      for (const s of ourSets.dataSets) assert.ok(loaded.has(s), 'a data set arrived in other bytes than those loaded');
      assert.deepEqual({ ...ours, pending: 0 }, { ...theirs, pending: 0 });
      assert.equal(ours.completed, String(sent));
      // The documented difference: Orthanc answers pending after each sub-operation but the last, the node
      // once before the first (the total to come) and after each.
      assert.deepEqual([theirs.pending, ours.pending], [sent - 1, sent + 1]);
    });
  }

  test('movescu of a study that is not there: nothing sent; Orthanc fails (0xC000), the node succeeds with no sub-operation', async () => {
    const { theirs, theirSets, ours, ourSets } = await both('-S', ['QueryRetrieveLevel=STUDY', 'StudyInstanceUID=1.2.3.4.5.6.7']);
    assert.deepEqual([theirSets.elements, ourSets.elements], [[], []]);
    assert.equal(theirs.status, '0xc000', JSON.stringify(theirs));
    const none = { pending: 0, remaining: 'none', completed: '0', failed: '0', warning: '0' };
    assert.deepEqual(ours, { code: 0, status: '0x0000', ...none });
    assert.deepEqual({ ...theirs, code: 0, status: '' }, { code: 0, status: '', ...none });
  });

  test('movescu to a destination AET no modality has: nothing sent; Orthanc fails (0xC000), the node answers 0xA801', async () => {
    const { theirs, theirSets, ours, ourSets } = await both(
      '-S',
      ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${uids.study}`],
      'NOWHERE',
    );
    assert.deepEqual([theirSets.elements, ourSets.elements], [[], []]);
    assert.equal(theirs.status, '0xc000', JSON.stringify(theirs));
    assert.equal(ours.status, '0xa801', JSON.stringify(ours));
    assert.deepEqual({ ...ours, code: 0, status: '' }, { ...theirs, code: 0, status: '' });
  });
});
