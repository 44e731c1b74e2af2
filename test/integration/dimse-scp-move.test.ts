// C-MOVE to the node's DICOM server with dcmtk's movescu: refused as "move destination unknown" without a
// C-MOVE sender; with one (here a small sender that hands each instance file to dcmsend, towards a real
// storescp), the instances the identifier matches reach the destination and the pending answers count them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import type { MoveProgress, MoveSender } from '../../src/dimse/services.ts';
import { XferError } from '../../src/errors.ts';
import type { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { dcmsend, movescu, needsDcmtk, startStorescp, type Storescp } from '../helpers/dcmtk.ts';
import { freePort } from '../helpers/ports.ts';
import { startScp, type ScpHarness } from './dimse-scp-common.ts';

const SERIES = join(REAL_DICOM, 'Brainix', 'Flair');

/** A C-MOVE sender for the test: one dcmsend per instance file to the storescp whose AET is asked. */
function dcmsendSender(store: () => EmbeddedStore, scp: () => Storescp, calls: string[][]): MoveSender {
  return {
    async sendTo(destinationAet, ids, progress, signal): Promise<MoveProgress> {
      if (destinationAet !== scp().aet) throw new XferError('UnknownResource', `no modality has the AET ${destinationAet}`);
      calls.push([...ids]);
      const p: MoveProgress = { remaining: ids.length, completed: 0, failed: 0, warning: 0 };
      for (const id of ids) {
        if (signal.aborted) break;
        const file = await store().instanceFile(id);
        const run = file ? await dcmsend({ port: scp().port, aet: scp().aet }, [file.path], { callingAet: 'DICOMXFER' }) : undefined;
        p.remaining--;
        if (run?.code === 0) p.completed++;
        else p.failed++;
        progress({ ...p });
      }
      return p;
    },
  };
}

describe('DICOM server: C-MOVE', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  let h: ScpHarness;
  let scp: Storescp;
  const calls: string[][] = [];
  let studyUid: string;
  before(async () => {
    scp = await startStorescp(await freePort(), 'DEST');
    h = await startScp(
      { DicomAlwaysAllowMove: true },
      {
        move: dcmsendSender(
          () => h.store,
          () => scp,
          calls,
        ),
      },
    );
    const files = await listFiles(SERIES);
    for (const f of files) {
      const bytes = await readFile(f);
      const copy = join(h.store.stagingRoot(), `test-${randomUUID()}`);
      await copyFile(f, copy);
      await h.store.ingestFile(copy, bytes.length, createHash('md5').update(bytes).digest('hex'));
    }
    studyUid = parseDicomHeader(await readFile(files[0] as string)).studyInstanceUid;
  });
  after(async () => {
    await h?.close();
    await scp?.stop();
  });

  test('a study moved to a known destination: every instance arrives, the final answer is success', async () => {
    const run = await movescu(h.peer, '-S', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${studyUid}`], 'DEST');
    assert.equal(run.code, 0, run.stderr.slice(-2000));
    const sent = await listFiles(SERIES);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.length, sent.length);
    const received = await scp.files();
    assert.equal(received.length, sent.length);
    const uids = new Set(await Promise.all(received.map(async (f) => parseDicomHeader(await readFile(f)).sopInstanceUid)));
    const expected = new Set(await Promise.all(sent.map(async (f) => parseDicomHeader(await readFile(f)).sopInstanceUid)));
    assert.deepEqual(uids, expected);
    // One pending answer per instance sent, then the final one.
    const pending = run.stderr.match(/Received Move Response \d+ \(Pending\)/g) ?? [];
    assert.equal(pending.length, sent.length, run.stderr.slice(-2000));
    assert.match(run.stderr, /Received Final Move Response \(Success\)/);
  });

  test('an unknown destination is answered "move destination unknown" (0xA801)', async () => {
    const run = await movescu(h.peer, '-S', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${studyUid}`], 'NOWHERE', 'MOVESCU');
    assert.match(run.stderr + run.stdout, /Move ?Destination ?Unknown|0xa801/i);
  });
});

describe('DICOM server: C-MOVE without a sender', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  test('is refused as "move destination unknown" (0xA801)', async () => {
    const h = await startScp({ DicomAlwaysAllowMove: true });
    try {
      const run = await movescu(h.peer, '-S', ['QueryRetrieveLevel=STUDY', 'StudyInstanceUID=1.2.3'], 'DEST');
      assert.match(run.stderr + run.stdout, /Move ?Destination ?Unknown|0xa801/i);
    } finally {
      await h.close();
    }
  });
});
