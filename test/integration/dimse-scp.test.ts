// The node's DICOM server against real SCUs on loopback: dcmtk's echoscu and dcmsend with the real files
// (every transfer syntax they hold, stored byte for byte), dcmjs-dimse's client for what dcmtk never sends
// (a truncated data set, a data set of another instance, storage commitment reports), and refusals.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import dimse from 'dcmjs-dimse';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import { orthancIds } from '../../src/dicom/ids.ts';
import type { CommitmentReport } from '../../src/dimse/services.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { dcmsend, echoscu, needsDcmtk, startStorescp, storescu } from '../helpers/dcmtk.ts';
import { freePort } from '../helpers/ports.ts';
import { RawDataset, dataSetOf, sendRequests, startScp, syntaxOf, type ScpHarness } from './dimse-scp-common.ts';

const { CStoreRequest, NEventReportRequest } = dimse.requests;
const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const IMPLICIT_LE = '1.2.840.10008.1.2';
const COMMITMENT = '1.2.840.10008.1.20.1';

/** The ID the store gives a file, or undefined when the file has no parsable header. */
function idOf(bytes: Buffer): string | undefined {
  try {
    return orthancIds(parseDicomHeader(bytes)).instance;
  } catch {
    return undefined;
  }
}

async function instanceCount(h: ScpHarness): Promise<number> {
  return ((await h.store.statistics()) as { CountInstances: number }).CountInstances;
}

describe('DICOM server: C-STORE of the real files', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  let h: ScpHarness;
  before(async () => {
    h = await startScp();
  });
  after(async () => h?.close());

  test('dcmsend of every real file: each stored data set is byte for byte the one sent, in every transfer syntax', async () => {
    // What dcmsend puts on the wire (it re-encodes some files: group lengths, padding) is what a
    // bit-preserving storescp writes: the reference, sent the same way.
    const scp = await startStorescp(await freePort());
    let sent: Map<string, Buffer>;
    try {
      const toScp = await dcmsend({ port: scp.port, aet: scp.aet }, [REAL_DICOM]);
      assert.equal(toScp.timedOut, false);
      sent = new Map();
      for (const f of await scp.files()) {
        const bytes = await readFile(f);
        const id = idOf(bytes);
        if (id !== undefined) sent.set(id, bytes);
      }
    } finally {
      await scp.stop();
    }
    const run = await dcmsend(h.peer, [REAL_DICOM]);
    assert.equal(run.timedOut, false);
    const files = await listFiles(REAL_DICOM);
    // Some real files are the same instance (same UIDs) with other content: the first one sent is kept.
    const byId = new Map<string, Buffer[]>();
    for (const file of files) {
      const bytes = await readFile(file);
      const id = idOf(bytes);
      if (id !== undefined) byId.set(id, [...(byId.get(id) ?? []), bytes]);
    }
    const syntaxes = new Set<string>();
    const stored = new Set<string>();
    const differ: string[] = [];
    for (const [id, candidates] of byId) {
      const where = await h.store.instanceFile(id);
      if (!where) continue;
      stored.add(id);
      const kept = await readFile(where.path);
      syntaxes.add(syntaxOf(kept));
      const wire = sent.get(id);
      // storescp keeps the last file of an instance sent twice with other content, the node the first.
      if (candidates.length > 1) continue;
      // A transfer syntax storescp does not take (JPEG lossless process 14): compared with the file itself.
      if (!wire && dataSetOf(candidates[0] as Buffer).equals(dataSetOf(kept))) continue;
      if (!wire || !dataSetOf(wire).equals(dataSetOf(kept)) || syntaxOf(wire) !== syntaxOf(kept)) differ.push(id);
    }
    assert.deepEqual(differ, [], 'stored data sets that differ from every file of their instance');
    // The few files dcmsend cannot send (no SOP class in their meta group, a private SOP class) or whose
    // SOP instance UID is not readable as one (encoded as UN) stay out; everything else is in.
    // What reached storescp reached the node, but for the two files whose SOPInstanceUID is encoded as UN:
    // dcmsend names no readable instance in their command (it sends "31"), and the node refuses the mismatch.
    const unUid = new Set<string>();
    for (const name of ['2022-03-08-RicSmi.dcm', '2021-02-19-MalaterreCP246.dcm']) {
      const id = idOf(await readFile(join(REAL_DICOM, name)));
      if (id !== undefined) unUid.add(id);
    }
    const missing = [...sent.keys()].filter((id) => !stored.has(id));
    assert.deepEqual(new Set(missing), unUid, `instances that reached storescp but not the node\n${run.stderr.slice(-3000)}`);
    assert.equal(await instanceCount(h), stored.size);
    // dcmsend sends the uncompressed files (implicit, big endian, deflated) in explicit VR little endian, as
    // it proposes; the implicit and deflated syntaxes are sent by storescu below.
    for (const ts of [
      EXPLICIT_LE,
      '1.2.840.10008.1.2.4.50',
      '1.2.840.10008.1.2.4.57',
      '1.2.840.10008.1.2.4.70',
      '1.2.840.10008.1.2.4.80',
      '1.2.840.10008.1.2.4.90',
      '1.2.840.10008.1.2.4.91',
      '1.2.840.10008.1.2.5',
    ]) {
      assert.ok(syntaxes.has(ts), `no instance stored in ${ts}`);
    }
    // One new arrival per stored instance (a repeat of an instance announced as such), from the DICOM server,
    // with the calling AET, the called one and where the association came from.
    const fresh = h.arrivals.filter((a) => !a.alreadyStored).map((a) => a.instanceId);
    assert.equal(fresh.length, stored.size);
    assert.deepEqual(new Set(fresh), stored);
    for (const a of h.arrivals) {
      assert.equal(a.origin.kind, 'dicom');
      if (a.origin.kind !== 'dicom') continue;
      assert.deepEqual({ ...a.origin, remoteIp: '' }, { kind: 'dicom', callingAet: 'DCMSEND', calledAet: 'DICOMXFER', remoteIp: '' });
      assert.match(a.origin.remoteIp, /^(::ffff:)?127\.0\.0\.1$/);
      if (a.alreadyStored) assert.ok((byId.get(a.instanceId)?.length ?? 0) > 1, `${a.instanceId} announced as a repeat`);
    }
  });

  test('the same instance again is a success, announced as already stored', async () => {
    const file = (await listFiles(REAL_DICOM)).find((f) => f.includes('Brainix')) as string;
    const before = h.arrivals.length;
    const run = await dcmsend(h.peer, [file]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(h.arrivals.length, before + 1);
    assert.equal(h.arrivals.at(-1)?.alreadyStored, true);
    assert.equal(h.arrivals.at(-1)?.instanceId, idOf(await readFile(file)));
  });
});

describe('DICOM server: the syntaxes dcmsend does not propose', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  for (const [flag, ts, name] of [
    ['-xi', IMPLICIT_LE, 'implicit VR little endian'],
    ['-xd', '1.2.840.10008.1.2.1.99', 'deflated explicit VR little endian'],
  ] as const) {
    test(`storescu ${flag}: a real series stored in ${name}, as sent`, async () => {
      const h = await startScp();
      try {
        const series = join(REAL_DICOM, 'Brainix', 'Flair');
        const run = await storescu(h.peer, [series], { extra: [flag] });
        assert.equal(run.code, 0, run.stderr.slice(-2000));
        const files = await listFiles(series);
        assert.equal(h.arrivals.length, files.length);
        for (const a of h.arrivals) {
          const kept = await readFile((await h.store.instanceFile(a.instanceId))?.path as string);
          assert.equal(syntaxOf(kept), ts);
        }
      } finally {
        await h.close();
      }
    });
  }
});

describe('DICOM server: bad input over DIMSE', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  let h: ScpHarness;
  let file: Buffer;
  before(async () => {
    h = await startScp({
      DicomCheckCalledAet: true,
      DicomAlwaysAllowStore: false,
      DicomAlwaysAllowEcho: false,
      DicomModalities: { scanner: { AET: 'SCANNER', Host: '127.0.0.1', Port: 104 } },
    });
    // An implicit VR file: dcmjs-dimse's client proposes implicit VR first, and would convert anything else.
    for (const f of await listFiles(REAL_DICOM)) {
      const b = await readFile(f);
      if (syntaxOf(b) === IMPLICIT_LE && b.length > 100_000 && idOf(b) && b.length > (file?.length ?? 0)) file = b;
    }
  });
  after(async () => h?.close());

  const storeOf = (bytes: Buffer, sopInstanceUid = parseDicomHeader(file).sopInstanceUid) =>
    new CStoreRequest(new RawDataset(bytes, parseDicomHeader(file).sopClassUid ?? CT, sopInstanceUid, IMPLICIT_LE));

  test('an unknown calling AET is refused (no AlwaysAllow), nothing stored', async () => {
    const run = await sendRequests(h.peer, 'STRANGER', [storeOf(dataSetOf(file))]);
    assert.equal(run.rejected, true);
    const echo = await echoscu(h.peer, 'STRANGER');
    assert.notEqual(echo.code, 0);
    assert.match(echo.stderr, /Calling AE Title Not Recognized/i);
    assert.equal(await instanceCount(h), 0);
  });

  test('a wrong called AET is refused when DicomCheckCalledAet', async () => {
    const echo = await echoscu({ ...h.peer, aet: 'SOMEONE' }, 'SCANNER');
    assert.notEqual(echo.code, 0);
    assert.match(echo.stderr, /Called AE Title Not Recognized/i);
  });

  test('a truncated data set fails with "cannot understand", nothing stored, the server still answers', async () => {
    const data = dataSetOf(file);
    const run = await sendRequests(h.peer, 'SCANNER', [storeOf(data.subarray(0, Math.floor(data.length / 2)))]);
    assert.equal(run.rejected, false, run.error);
    assert.deepEqual(run.statuses, [[0xc000]]);
    assert.equal(await instanceCount(h), 0);
    assert.equal(h.arrivals.length, 0);
    const echo = await echoscu(h.peer, 'SCANNER');
    assert.equal(echo.code, 0, echo.stderr);
  });

  test('2 MB of bytes that are not DICOM: refused from their first bytes, the rest dropped, the association still serves', async () => {
    const junk = Buffer.alloc(2 * 1024 * 1024, 0x41);
    const run = await sendRequests(h.peer, 'SCANNER', [storeOf(junk), storeOf(dataSetOf(file))]);
    assert.equal(run.rejected, false, run.error);
    // The junk fails; the real data set after it, on the same association, is stored.
    assert.deepEqual(run.statuses, [[0xc000], [0x0000]]);
    assert.equal(await instanceCount(h), 1);
    const id = idOf(file) as string;
    await h.store.deleteResource('Instance', id);
    assert.equal(await instanceCount(h), 0);
  });

  test('a data set of another instance than the command names fails, nothing stored', async () => {
    const run = await sendRequests(h.peer, 'SCANNER', [storeOf(dataSetOf(file), '1.2.3.4.5.6.7')]);
    assert.deepEqual(run.statuses, [[0xc000]]);
    assert.equal(await instanceCount(h), 0);
  });

  test('a SOP class the node does not take: its presentation context refused, nothing stored', async () => {
    const bytes = dataSetOf(file);
    const run = await sendRequests(h.peer, 'SCANNER', [
      new CStoreRequest(new RawDataset(bytes, '1.2.276.0.19.55.1.5.1.1.1', '1.2.3', IMPLICIT_LE)),
    ]);
    // The only context proposed is refused: the association is refused with it.
    assert.equal(run.rejected, true);
    assert.equal(await instanceCount(h), 0);
  });

  test('the same data set whole is stored, from the known modality; the server is still up', async () => {
    const run = await sendRequests(h.peer, 'SCANNER', [storeOf(dataSetOf(file))]);
    assert.deepEqual(run.statuses, [[0x0000]]);
    assert.equal(await instanceCount(h), 1);
    const id = idOf(file) as string;
    const kept = await readFile((await h.store.instanceFile(id))?.path as string);
    assert.deepEqual(dataSetOf(kept), dataSetOf(file));
  });
});

describe('DICOM server: echo', { skip: needsDcmtk() }, () => {
  test('C-ECHO answers success from any AET by default', async () => {
    const h = await startScp();
    try {
      const echo = await echoscu(h.peer, 'ANYONE');
      assert.equal(echo.code, 0, echo.stderr);
    } finally {
      await h.close();
    }
  });

  test('C-ECHO is refused to an unknown AET when DicomAlwaysAllowEcho is false; allowed to a known modality', async () => {
    const h = await startScp({
      DicomAlwaysAllowEcho: false,
      DicomModalities: { pacs: { AET: 'PACS', Host: '127.0.0.1', Port: 104, AllowEcho: true } },
    });
    try {
      const refused = await echoscu(h.peer, 'ANYONE');
      assert.notEqual(refused.code, 0);
      const known = await echoscu(h.peer, 'PACS');
      assert.equal(known.code, 0, known.stderr);
    } finally {
      await h.close();
    }
  });
});

describe('DICOM server: the modality host and the arrival record', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  test('with DicomCheckModalityHost, a known AET from another host than its modality is unknown', async () => {
    const only = {
      DicomAlwaysAllowEcho: false,
      DicomAlwaysAllowStore: false,
      DicomModalities: { far: { AET: 'FAR', Host: '192.0.2.7', Port: 104, AllowEcho: true } },
    };
    const checked = await startScp({ ...only, DicomCheckModalityHost: true });
    try {
      const echo = await echoscu(checked.peer, 'FAR');
      assert.notEqual(echo.code, 0);
      assert.match(echo.stderr, /Calling AE Title Not Recognized/i);
    } finally {
      await checked.close();
    }
    const unchecked = await startScp({ ...only, DicomCheckModalityHost: false });
    try {
      const echo = await echoscu(unchecked.peer, 'FAR');
      assert.equal(echo.code, 0, echo.stderr);
    } finally {
      await unchecked.close();
    }
  });

  test('an arrival that cannot be recorded fails the C-STORE (the SCU sends again); the instance stays stored', async () => {
    const h = await startScp({}, { arrivals: { arrived: async () => Promise.reject(new Error('the route queue is not writable')) } });
    try {
      const file = join(REAL_DICOM, 'Knix', 'Loc');
      const first = (await listFiles(file))[0] as string;
      const run = await dcmsend(h.peer, [first], { extra: ['-v'] });
      // 0x0110, "processing failure" (PS3.7 C.4): dcmtk names it an unknown status, a failure all the same.
      assert.match(run.stderr, /Received C-STORE Response \(Unknown Status: 0x110\)/);
      assert.equal(await instanceCount(h), 1);
    } finally {
      await h.close();
    }
  });
});

describe('DICOM server: storage commitment reports (N-EVENT-REPORT)', () => {
  test('a report from a known modality reaches the sink parsed: committed and failed instances, transaction', async () => {
    const reports: CommitmentReport[] = [];
    const h = await startScp(
      { DicomModalities: { pacs: { AET: 'PACS', Host: '127.0.0.1', Port: 104 } } },
      { commitments: { report: async (r) => void reports.push(r) } },
    );
    try {
      const report = new NEventReportRequest(COMMITMENT, '1.2.840.10008.1.20.1.1', 2);
      report.setDataset(
        new dimse.Dataset({
          TransactionUID: '1.2.3.99',
          ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.1' }],
          FailedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3.2', FailureReason: 0x0112 }],
        }),
      );
      const run = await sendRequests(h.peer, 'PACS', [report]);
      assert.deepEqual(run.statuses, [[0x0000]], run.error);
      assert.deepEqual(reports, [
        { callingAet: 'PACS', transactionUid: '1.2.3.99', committed: ['1.2.3.1'], failed: [{ sopInstanceUid: '1.2.3.2', reason: 0x0112 }] },
      ]);
      // From an AET that is no modality of the node, the context is refused: nothing reaches the sink.
      const stranger = new NEventReportRequest(COMMITMENT, '1.2.840.10008.1.20.1.1', 1);
      stranger.setDataset(new dimse.Dataset({ TransactionUID: '1.2.3.100', ReferencedSOPSequence: [] }));
      const refused = await sendRequests(h.peer, 'STRANGER', [stranger]);
      assert.equal(refused.rejected, true);
      assert.equal(reports.length, 1);
    } finally {
      await h.close();
    }
  });
});
