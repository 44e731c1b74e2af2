// What an operator sees of `dicom-xfer serve` and its peers: names outside the allowed set refused (at start
// and over REST), credentials of peer URLs never shown, warnings about risky or misspelt settings, plain
// messages for a port in use or a certificate file without its key, and --version.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { writeCtSlice, makePatient, makeSeries, makeStudy } from '../../src/generate/index.ts';
import { selfSigned } from '../helpers/pki.ts';
import { serveFails } from '../helpers/cli.ts';
import { BIN, REPO, startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { call, importFiles, json, waitJob, type JobJson } from '../helpers/transfer-nodes.ts';

const run = promisify(execFile);

describe('serve: peers and start-time checks', () => {
  const dirs: string[] = [];
  const nodes: XferNode[] = [];
  after(async () => {
    for (const n of nodes) await n.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function tempDir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'dx-serve-ops-'));
    dirs.push(d);
    return d;
  }

  test('a peer name outside the allowed set is refused at start, naming it', async () => {
    for (const name of ['__proto__', 'a b', '..']) {
      const dir = await tempDir();
      const cfg = join(dir, 'c.json');
      // Written as text: "__proto__" must reach the loader as a key, as it would from a file.
      await writeFile(cfg, `{ "OrthancPeers": { ${JSON.stringify(name)}: ["http://127.0.0.1:1/"] } }`);
      const r = await serveFails(['--config', cfg, '--data', join(dir, 'data'), '--port', String(await freePort())]);
      assert.equal(r.code, 1, r.stderr);
      // "__proto__" is refused as a key of any object by the loader already; the others by the name rule.
      if (name === '__proto__') assert.match(r.stderr, /OrthancPeers\.__proto__: "__proto__" is not allowed/);
      else assert.ok(r.stderr.includes(`the peer name ${JSON.stringify(name)} is not allowed: use letters, digits`), r.stderr);
    }
  });

  test('risky and misspelt settings are warned about at start', async () => {
    const node = await startXferNode({
      config: {
        HttpsVerifyPeers: false,
        HttpTimout: 5,
        OrthancPeers: { b: { Url: 'http://127.0.0.1:1/', Usrname: 'alice', Passwrd: 'x', RemoteSelf: 'a' } },
      },
    });
    nodes.push(node);
    const log = node.log();
    assert.match(log, /HttpsVerifyPeers is false/);
    assert.match(log, /OrthancPeers\.b\.Usrname is not a setting of a peer.*did you mean Username\?/);
    assert.match(log, /OrthancPeers\.b\.Passwrd is not a setting of a peer.*did you mean Password\?/);
    assert.doesNotMatch(log, /RemoteSelf is not a setting/, 'a real user property is not warned about');
    assert.match(log, /unknown key HttpTimout, ignored \(did you mean HttpTimeout\?\)/);
  });

  test('an SslCertificate without its private key is refused with a message that says so', async () => {
    const dir = await tempDir();
    const { key, crt } = selfSigned(dir);
    const cfg = join(dir, 'c.json');
    await writeFile(cfg, JSON.stringify({ SslEnabled: true, SslCertificate: crt }));
    const r = await serveFails(['--config', cfg, '--data', join(dir, 'data'), '--port', String(await freePort())]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /SslCertificate: .*crt\.pem holds no private key/);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'a message, not a stack');
    // the key alone: no certificate
    await writeFile(cfg, JSON.stringify({ SslEnabled: true, SslCertificate: key }));
    const k = await serveFails(['--config', cfg, '--data', join(dir, 'data2'), '--port', String(await freePort())]);
    assert.equal(k.code, 1);
    assert.match(k.stderr, /key\.pem holds no certificate/);
  });

  test('a port in use says so and suggests --port, without a stack', async () => {
    const node = await startXferNode();
    nodes.push(node);
    const dir = await tempDir();
    const r = await serveFails(['--data', join(dir, 'data'), '--port', String(node.port)]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`port ${node.port} on 127\\.0\\.0\\.1 is already in use.*--port`));
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  });

  test('--version prints the version of package.json', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
    const { stdout } = await run(process.execPath, [BIN, '--version']);
    assert.equal(stdout.trim(), pkg.version);
  });
});

describe('peers over REST', () => {
  let node: XferNode;
  before(async () => {
    node = await startXferNode();
  });
  after(async () => {
    await node?.stop();
  });

  test("PUT of a peer whose name is outside the allowed set is 400 in Orthanc's shape, and changes nothing", async () => {
    for (const name of ['__proto__', 'a%20b', '..%2F', 'x'.repeat(65)]) {
      const a = await call(node.url, 'PUT', `/peers/${name}`, JSON.stringify(['http://127.0.0.1:1/']));
      assert.equal(a.status, 400, `${name}: ${a.body.toString()}`);
      const body = json(a);
      assert.equal(body.HttpStatus, 400);
      assert.equal(body.OrthancStatus, 15);
      assert.equal(body.Method, 'PUT');
      assert.match(String(body.Details), /is not allowed: use letters, digits/);
    }
    // A refused URL is named without its credentials.
    const bad = await call(node.url, 'PUT', '/peers/bad', JSON.stringify({ Url: 'ftp://alice:pw-Refused-7@127.0.0.1/' }));
    assert.equal(bad.status, 400);
    assert.match(String(json(bad).Details), /got "ftp:\/\/127\.0\.0\.1\/"/);
    assert.doesNotMatch(bad.body.toString(), /pw-Refused-7/);
    const ok = await call(node.url, 'PUT', '/peers/site-B_2.x', JSON.stringify(['http://127.0.0.1:1/']));
    assert.equal(ok.status, 200, ok.body.toString());
    assert.deepEqual(json<string[]>(await call(node.url, 'GET', '/peers')), ['site-B_2.x']);
  });
});

describe('credentials of peer URLs are never shown', () => {
  const SECRET = 'pw-Secret-42';
  let node: XferNode;
  let dir: string;
  let instance: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dx-serve-ops-cred-'));
    const closed = await freePort();
    node = await startXferNode({
      config: {
        OrthancPeers: { down: [`http://alice:${SECRET}@127.0.0.1:${closed}/`] },
        Transfers: { MaxHttpRetries: 0, RetryBudget: 0, PeerConnectivityTimeout: 1 },
      },
    });
    const patient = makePatient(3, 0);
    const study = makeStudy(3, patient, 0, 'CRED');
    const f = await writeCtSlice(join(dir, 'ct.dcm'), { seed: 3, index: 0, slices: 1, patient, study, series: makeSeries(study, 1, 'AX') });
    instance = [...(await importFiles(node.url, [f.path])).md5.keys()][0] as string;
    // A peer defined at run time, credentials in its URL.
    const put = await call(node.url, 'PUT', '/peers/rt', JSON.stringify({ Url: `https://bob:${SECRET}@127.0.0.1:${closed}/orthanc` }));
    assert.equal(put.status, 200);
  });
  after(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("not in REST answers, the dashboard's API, the CLI, job contents or the log", async () => {
    const seen: string[] = [];
    for (const path of [
      '/peers?expand',
      '/peers/down/configuration',
      '/peers/rt/configuration',
      '/ui/api/peers',
      '/transfers/peers',
      '/peers/down/system',
    ]) {
      const a = await call(node.url, 'GET', path);
      seen.push(`${path}: ${a.body.toString()}`);
    }
    const expand = json<Record<string, { Url: string }>>(await call(node.url, 'GET', '/peers?expand'));
    assert.match(expand['down']?.Url ?? '', /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.match(expand['rt']?.Url ?? '', /^https:\/\/127\.0\.0\.1:\d+\/orthanc\/$/);
    const cli = await run(process.execPath, [BIN, 'peers', '--url', node.url]);
    seen.push(cli.stdout);
    assert.match(cli.stdout, /down\s+http:\/\/127\.0\.0\.1:\d+\//);
    const send = await call(
      node.url,
      'POST',
      '/transfers/send',
      JSON.stringify({ Resources: [{ Level: 'Instance', ID: instance }], Compression: 'none', Peer: 'down' }),
    );
    assert.equal(send.status, 200, send.body.toString());
    const job: JobJson = await waitJob(node.url, json<{ ID: string }>(send).ID, 60_000, ['Failure', 'Success']);
    assert.equal(job.State, 'Failure');
    seen.push(JSON.stringify(job));
    seen.push(node.log());
    for (const text of seen) {
      assert.ok(!text.includes(SECRET), `the password is shown: ${text.slice(0, 400)}`);
      assert.ok(!text.includes('alice:') && !text.includes('bob:'), `a user name with its password is shown: ${text.slice(0, 400)}`);
    }
  });
});
