// Smoke run of `npm run bench:wan` over the emulated link: the small data set (about 150 MB), the good profile, a push,
// a pull and the sequential POST baseline; the JSON report is complete, every run verified, and the
// benchmark's namespace is gone afterwards. Needs root and ../shared/wan (skipped otherwise).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { DatasetManifest, ProfileResult } from '../../bench/wan/common.ts';
import { wanUnavailable } from '../../bench/wan/netns.ts';
import { REPO } from '../helpers/node.ts';
import { describe } from '../helpers/data.ts';

const why = wanUnavailable(REPO);
const METHODS = ['push-gzip', 'pull-none', 'post-sequential'];
const BOUND_MS = 480_000;

interface Report {
  dataset: DatasetManifest;
  cc: string | null;
  profiles: ProfileResult[];
}

describe('bench:wan smoke run (small set, good profile)', { skip: why ? `skipped: ${why}` : false }, () => {
  let dir: string;
  let report: Report;
  let stdout = '';
  let stderr = '';
  let code: number | null = null;
  let pid = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-bench-wan-'));
    const args = ['--import', 'tsx', join(REPO, 'bench', 'wan.ts'), '--set', 'small', '--profiles', 'good', '--methods', METHODS.join(',')];
    args.push('--json', join(dir, 'report.json'), '--data-dir', dir, '--run-timeout', '120', '--repeat', '2');
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    pid = child.pid ?? 0;
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    // SIGTERM makes the benchmark clean up its namespace; it is bounded by its own run timeouts anyway.
    const kill = setTimeout(() => child.kill('SIGTERM'), BOUND_MS);
    code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    clearTimeout(kill);
    report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as Report;
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('exits 0 and prints the Markdown table', () => {
    assert.equal(code, 0, stderr.slice(-4000));
    assert.match(stdout, /\| method \| result \| wall s \|/);
    for (const m of METHODS) assert.match(stdout, new RegExp(`\\| ${m} \\| ok \\|`));
  });

  test('the report holds one good-profile result with every method, all verified', () => {
    assert.equal(report.cc, 'cubic');
    assert.equal(report.dataset.set, 'small');
    assert.equal(report.profiles.length, 1);
    const p = report.profiles[0] as ProfileResult;
    assert.equal(p.profile.name, 'good');
    assert.equal(p.profile.rateMbit, 100);
    assert.deepEqual(p.skipped, []);
    assert.deepEqual(
      p.runs.map((r) => r.method),
      METHODS,
    );
    for (const r of p.runs) {
      assert.equal(r.ok, true, `${r.method}: ${r.error ?? ''}`);
      assert.equal(r.error, undefined);
      assert.deepEqual(r.verify, {
        expected: report.dataset.files.length,
        atDestination: report.dataset.files.length,
        missing: 0,
        extra: 0,
        md5Mismatches: 0,
        ok: true,
      });
      assert.equal(r.instances, report.dataset.files.length);
      assert.equal(r.dicomBytes, report.dataset.totalBytes);
      assert.ok(r.wallSeconds > 0 && r.dicomMBps > 0);
      assert.ok(r.sender && r.sender.cpuSeconds >= 0 && r.sender.peakRssMB > 0, `${r.method}: sender usage`);
      assert.ok(r.receiver && r.receiver.cpuSeconds >= 0 && r.receiver.peakRssMB > 0, `${r.method}: receiver usage`);
      assert.ok(r.linkUtilisation !== null && r.ratioToLimit !== null && r.limitSeconds !== null);
    }
    const post = p.runs.find((r) => r.method === 'post-sequential');
    assert.ok(post?.client && post.client.peakRssMB > 0, 'the POST client process is measured');
    for (const r of p.runs.filter((x) => x.method !== 'post-sequential')) {
      assert.ok(r.speedup['post-sequential'], `${r.method} is compared with the baseline`);
      // --repeat 2: two runs, the row is the slower of the two middle ones (the median of two), both shown.
      assert.equal(r.repeatedWallSeconds?.length, 2, `${r.method}: ${JSON.stringify(r.repeatedWallSeconds)}`);
      assert.equal(r.wallSeconds, Math.max(...(r.repeatedWallSeconds as number[])));
      assert.match(stdout, new RegExp(`\\| ${r.method} \\| ok \\| [0-9.]+ \\([0-9.]+–[0-9.]+\\) \\|`));
    }
    // The baseline runs once.
    assert.equal(post?.repeatedWallSeconds, undefined);
  });

  test('the data crossed the emulated link: wire bytes and round-trip time', () => {
    const p = report.profiles[0] as ProfileResult;
    // The profile delays each direction by 20 ms, so no round trip over it can be shorter than 40 ms.
    assert.ok(p.measuredRttMs !== null && p.measuredRttMs >= 40, `measured RTT ${p.measuredRttMs}`);
    const total = report.dataset.totalBytes;
    for (const r of p.runs) {
      assert.ok(r.wire, `${r.method}: wire bytes`);
      if (r.method.endsWith('-gzip')) assert.ok(r.wire.busierBytes < total, `${r.method}: gzip sent less than the raw data`);
      else assert.ok(r.wire.busierBytes >= total, `${r.method}: every raw byte crossed the link`);
    }
  });

  test('the namespace and its processes are gone', () => {
    const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.ok(!names.split('\n').some((l) => l.split(' ')[0] === `dxbench${pid}`), names);
  });
});
