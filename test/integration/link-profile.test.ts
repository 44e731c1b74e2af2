// The link profile of a peer, end to end on real DICOM between two nodes: a push records where its link
// settled, the next push to the same peer starts there (its first BucketsInFlight), the profile survives a
// restart of the sender in its database, and a damaged row is ignored with a warning, not a crash. Each profile
// carries the link's round-trip time as the transfer measured it on its small calls (loopback: present, > 0).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { describe, needs } from '../helpers/data.ts';
import {
  REAL_DICOM,
  assertSameInstances,
  emptyNode,
  getJson,
  importFiles,
  listFiles,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type JobJson,
  type Pair,
} from '../helpers/transfer-nodes.ts';

interface Start {
  BucketsInFlight: number;
  Source: string;
  ProfileRateMBs?: number;
  RttMs?: number;
}

/** A round-trip time as recorded: present, finite and positive (no bound on its value: the machine is shared). */
function assertRtt(ms: unknown, what: string): void {
  assert.ok(typeof ms === 'number' && Number.isFinite(ms) && ms > 0, `${what}: ${JSON.stringify(ms)}`);
}

interface Row {
  peer: string;
  url: string;
  direction: string;
  profile: string;
}

describe('link profiles between two nodes', { skip: needs(REAL_DICOM), timeout: 240_000 }, () => {
  let pair: Pair;
  let source: Map<string, string>;
  let patients: string[];

  before(async () => {
    pair = await startPair();
    await importFiles(pair.a.url, await listFiles(REAL_DICOM));
    source = await storedMd5s(pair.a.url);
    patients = await getJson<string[]>(pair.a.url, '/patients');
  });
  after(async () => {
    await pair?.stop();
  });

  /** Pushes every patient of A to an emptied B; answers the finished job. */
  async function push(): Promise<JobJson> {
    await emptyNode(pair.b.url);
    const resources = patients.map((ID) => ({ Level: 'Patient', ID }));
    const h = await startTransfer(pair.a.url, 'send', { Resources: resources, Compression: 'gzip', Peer: 'b' });
    const job = await waitJob(pair.a.url, h.ID as string, 120_000);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    await assertSameInstances(pair.b.url, source);
    return job;
  }

  const profilesDb = () => join(pair.a.dataDir, 'link-profiles.sqlite');

  /** The rows of a node's link profiles (A's by default; stopped, or read beside it: SQLite in WAL mode allows that). */
  function rows(path = profilesDb()): Row[] {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare('SELECT peer, url, direction, profile FROM link_profiles').all() as Row[];
    } finally {
      db.close();
    }
  }

  /** Rewrites the profile column of A's row for peer b (A stopped). */
  function rewrite(edit: (profile: string) => string): void {
    const db = new Database(profilesDb());
    try {
      const row = db.prepare("SELECT profile FROM link_profiles WHERE peer = 'b'").get() as { profile: string };
      db.prepare("UPDATE link_profiles SET profile = ? WHERE peer = 'b'").run(edit(row.profile));
    } finally {
      db.close();
    }
  }

  test('the second push to a peer starts where the first ended; the profile survives a restart; a damaged one is ignored', async () => {
    // The first push knows nothing of the link: it starts from the configuration and records a profile.
    const first = await push();
    const start1 = first.Content.AdaptiveStart as Start;
    assert.equal(start1.Source, 'configuration');
    const recorded = first.Content.LinkProfile as { BucketsInFlight: number; RateMBs: number; RttMs?: number };
    assert.ok(recorded && recorded.BucketsInFlight >= 1 && recorded.RateMBs > 0, JSON.stringify(first.Content));
    assertRtt(recorded.RttMs, 'the RTT the first push recorded');
    // Measured on the push's first calls (its create), before its buckets: the controller started with it.
    assertRtt(start1.RttMs, 'the RTT the first push started with');

    // The second starts at the level the first settled on, from the profile.
    const second = await push();
    const start2 = second.Content.AdaptiveStart as Start;
    assert.equal(start2.Source, 'profile');
    assert.equal(start2.BucketsInFlight, recorded.BucketsInFlight);
    assert.equal(start2.ProfileRateMBs, recorded.RateMBs);

    // In A's database, under the peer's name and URL, after A stopped.
    await pair.down('a');
    const saved = rows();
    assert.equal(saved.length, 1);
    const row = saved[0] as Row;
    assert.equal(row.peer, 'b');
    assert.equal(row.url, `${pair.toB.url}/`);
    assert.equal(row.direction, 'push');
    const profile = JSON.parse(row.profile) as {
      version: number;
      requestsInFlight: number;
      windows: number;
      compression: { codec: string; level?: number };
      rttMs: number | null;
    };
    assert.equal(profile.version, 2);
    assertRtt(profile.rttMs, 'the RTT in the saved profile');
    // Content gives the RTT to a tenth of a millisecond; the row keeps it whole.
    const shown = (second.Content.LinkProfile as { RttMs: number }).RttMs;
    assert.ok(Math.abs((profile.rttMs as number) - shown) <= 0.05 + 1e-9, `saved ${profile.rttMs} ms, shown ${shown} ms`);
    // What the second push recorded, as its Content says.
    assert.equal(profile.requestsInFlight, (second.Content.LinkProfile as { BucketsInFlight: number }).BucketsInFlight);
    assert.ok(Number.isInteger(profile.windows) && profile.windows >= 0);
    assert.equal(profile.compression.codec, 'gzip');
    assert.ok(Number.isInteger(profile.compression.level));

    // A profile that says 13 requests (edited while A is down): after the restart, the push starts at 13.
    rewrite((p) => JSON.stringify({ ...JSON.parse(p), requestsInFlight: 13 }));
    await pair.up('a');
    const third = await push();
    assertRtt((third.Content.AdaptiveStart as Start).RttMs, 'the RTT the third push started with');
    assert.deepEqual(
      { ...(third.Content.AdaptiveStart as Start), ProfileRateMBs: undefined, RttMs: undefined },
      {
        BucketsInFlight: 13,
        Source: 'profile',
        ProfileRateMBs: undefined,
        RttMs: undefined,
        ProfileAgeSeconds: (third.Content.AdaptiveStart as { ProfileAgeSeconds: number }).ProfileAgeSeconds,
      },
    );

    // A damaged row: ignored with a warning, the push starts from the configuration and succeeds.
    await pair.down('a');
    rewrite(() => '{"peer": "b", "requestsInFlight": "many"');
    await pair.up('a');
    const fourth = await push();
    assert.equal((fourth.Content.AdaptiveStart as Start).Source, 'configuration');
    assert.match(pair.a.log(), /link profile ignored/);
    // And the push wrote a good profile in its place.
    await pair.down('a');
    const again = JSON.parse((rows()[0] as Row).profile) as { requestsInFlight: number };
    assert.ok(Number.isInteger(again.requestsInFlight) && again.requestsInFlight >= 1);
    await pair.up('a');
  });

  test('a pull records the profile of its direction on the node that pulls, and the next pull starts there', async () => {
    const pull = async (): Promise<JobJson> => {
      await emptyNode(pair.b.url);
      const resources = patients.map((ID) => ({ Level: 'Patient', ID }));
      const h = await startTransfer(pair.b.url, 'pull', { Resources: resources, Compression: 'gzip', Peer: 'a' });
      const job = await waitJob(pair.b.url, h.ID as string, 120_000);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      await assertSameInstances(pair.b.url, source);
      return job;
    };
    const first = await pull();
    assert.equal((first.Content.AdaptiveStart as Start).Source, 'configuration');
    const pulled = rows(join(pair.b.dataDir, 'link-profiles.sqlite')).filter((r) => r.direction === 'pull');
    assert.equal(pulled.length, 1);
    assert.equal((pulled[0] as Row).peer, 'a');
    // The peer compresses its answers at a level of its own choosing: the profile names the codec only.
    const saved = JSON.parse((pulled[0] as Row).profile) as { compression: unknown; rttMs: unknown };
    assert.deepEqual(saved.compression, { codec: 'gzip' });
    // The pull's RTT: its lookup and chunk requests.
    assertRtt(saved.rttMs, 'the RTT of the pull in the saved profile');
    const second = await pull();
    const start = second.Content.AdaptiveStart as Start;
    assert.equal(start.Source, 'profile');
    assert.equal(start.BucketsInFlight, (first.Content.LinkProfile as { BucketsInFlight: number }).BucketsInFlight);
  });
});
