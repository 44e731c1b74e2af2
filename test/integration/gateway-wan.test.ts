// The site gateway end to end over the emulated WAN (goodloss: 40 ms RTT, 100 Mbit/s, 0.5% loss): a scanner
// (storescu) → node A over DICOM → A's rule pushes to node B → B's rule stores into a real Orthanc PACS over
// DICOM with storage commitment. Every instance arrives once with the data set as sent; then the same with
// A killed (-9) after half the files arrived, and with the PACS down for 60 s. The scenario runs inside the
// emulated namespace (test/helpers/gateway-scenario.ts) and reports its facts; this file checks them.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { wanDown, wanUnavailable, wanUp } from '../../bench/wan/netns.ts';
import { dataSetLayout } from '../../src/dicom/dataset.ts';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { SCANNER_SYNTAXES } from '../helpers/gateway-data.ts';
import { REPO } from '../helpers/node.ts';
import { orthancInstalled } from '../helpers/orthanc.ts';

const SCENARIO_BOUND_MS = 10 * 60_000;
const dcmtk = spawnSync('storescu', ['--version'], { encoding: 'utf8' }).status === 0;
const why =
  wanUnavailable(REPO) || (!orthancInstalled() && 'Orthanc is not installed') || (!dcmtk && 'dcmtk is not installed') || needs(REAL_DICOM);

interface Facts {
  storescuExit: number | null;
  sent: { file: string; md5: string }[];
  atPacs: string[];
  jobsA: { Type: string; State: string; Content: Record<string, unknown> }[];
  jobsB: { Type: string; State: string; Content: Record<string, unknown> }[];
  waitingWhilePacsDown?: unknown[];
}

/** SOP Class and Instance UIDs stored as UI (storescu does not read them as UN, as one real file has them). */
function uidsReadable(file: string): boolean {
  const dump = spawnSync('dcmdump', ['-q', '+P', '0008,0016', '+P', '0008,0018', file], { encoding: 'utf8', timeout: 30_000 });
  return (dump.stdout.match(/^\(0008,001[68]\) UI /gm) ?? []).length === 2;
}

/** Real files in the transfer syntaxes a scanner sends in, one per data set, up to 60. */
async function pickFiles(): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of (await listFiles(REAL_DICOM)).sort()) {
    if ((await stat(f)).size > 8 * 1024 * 1024) continue;
    try {
      const bytes = await readFile(f);
      const layout = dataSetLayout(bytes);
      if (!(layout.transferSyntaxUid in SCANNER_SYNTAXES)) continue;
      // A scanner sends what has its SOP class and instance (storescu refuses the rest before it starts).
      const header = parseDicomHeader(bytes);
      if (!header.sopClassUid || !header.sopInstanceUid || !uidsReadable(f)) continue;
      const key = bytes.subarray(layout.start).toString('base64').slice(0, 4096);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(f);
    } catch {
      // not a Part 10 file: the scanner would not send it either
    }
    if (out.length >= 60) break;
  }
  return out;
}

function scenario(ns: string, name: string, files: string[]): Promise<Facts> {
  const args = ['netns', 'exec', ns, process.execPath, '--import', 'tsx', join(REPO, 'test', 'helpers', 'gateway-scenario.ts'), name];
  const child = spawn('ip', [...args, ...files], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-8000)));
  const t = setTimeout(() => child.kill('SIGKILL'), SCENARIO_BOUND_MS);
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => {
      clearTimeout(t);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) reject(new Error(`scenario ${name} exited with ${code}:\n${err}`));
      else resolve(JSON.parse(last) as Facts);
    }),
  );
}

/** The checks every case shares: all arrived once, as sent; every send confirmed; nothing sent twice. */
function checkDelivery(f: Facts): void {
  assert.equal(f.storescuExit, 0, 'the scanner finished its (last) send');
  const sent = [...new Set(f.sent.map((s) => s.md5))].sort();
  assert.deepEqual([...f.atPacs].sort(), sent, 'the PACS holds every data set as sent, once each');
  const pushes = f.jobsA.filter((j) => j.Type === 'PushTransfer');
  assert.ok(pushes.length > 0 && pushes.every((j) => j.State === 'Success'), JSON.stringify(pushes.map((j) => j.State)));
  // What crossed the link: each job's instances but those the peer already held (a job resumed after A's
  // kill, or made again for a batch whose first job ended unrecorded, skips what B committed before).
  const carried = pushes.reduce((n, j) => n + Number(j.Content['TotalInstances'] ?? 0) - Number(j.Content['SkippedInstances'] ?? 0), 0);
  assert.ok(carried <= sent.length, `A pushed ${carried} instances across the link for ${sent.length}: none twice`);
  const stores = f.jobsB.filter((j) => j.Type === 'DicomModalityStore');
  assert.ok(stores.length > 0 && stores.every((j) => j.State === 'Success'), JSON.stringify(stores.map((j) => [j.State, j.Content])));
  const stored = stores.reduce((n, j) => n + Number(j.Content['InstancesCount'] ?? 0), 0);
  assert.equal(stored, sent.length, 'B stored each instance once into the PACS');
  for (const j of stores) assert.equal(j.Content['StorageCommitment'], 'Committed', 'the PACS took responsibility');
}

describe('the site gateway over the emulated WAN', { skip: why || false }, () => {
  const ns = `dxgw-${process.pid}`;
  let files: string[] = [];
  before(async () => {
    files = await pickFiles();
    await wanUp(REPO, ns, 'goodloss', 'cubic', 3 * SCENARIO_BOUND_MS);
  });
  after(async () => {
    await wanDown(REPO, ns).catch(() => undefined);
  });

  test('scanner → A → WAN → B → PACS: every instance arrives once, as sent', async () => {
    assert.ok(files.length >= 20, `${files.length} files picked`);
    checkDelivery(await scenario(ns, 'plain', files));
  });

  test('A killed with -9 after half the files arrived: after its restart, still each once', async () => {
    checkDelivery(await scenario(ns, 'kill-a', files));
  });

  test("the PACS down for 60 s: B's sends wait and say why, then deliver each once", async () => {
    const f = await scenario(ns, 'pacs-down', files);
    assert.ok(
      (f.waitingWhilePacsDown ?? []).some((w) => typeof w === 'string' && w.length > 0),
      JSON.stringify(f.waitingWhilePacsDown),
    );
    checkDelivery(f);
  });
});
