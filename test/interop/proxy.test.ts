// dicom-xfer beside a real Orthanc 1.10.1 with --proxy: Orthanc's REST API through the node's port (uploads,
// listings, file downloads byte for byte, deletes, Orthanc-only routes, Orthanc's errors and redirects),
// Orthanc's authentication passed through or replaced by the node's, a 200 MB upload and download with the
// node's peak memory printed, and /jobs merging Orthanc's jobs with dicom-xfer's.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { writeMultiframe } from '../../src/generate/index.ts';
import { mapLimit } from '../../src/util/concurrency.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { ORTHANC_BINARY, orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { describe, needs, REAL_DICOM, listFiles } from '../helpers/data.ts';
import { type Answer, basic, CALL_TIMEOUT_MS, call, getJson, json } from '../helpers/proxy-calls.ts';

const REAL = REAL_DICOM;
const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

/** GET `path` and hash the answer as it streams in (a large file is never held whole by the test). */
function hashGet(base: string, path: string): Promise<{ status: number; headers: IncomingHttpHeaders; md5: string; size: number }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: Number(u.port), method: 'GET', path, agent: false, timeout: CALL_TIMEOUT_MS },
      (res) => {
        const h = createHash('md5');
        let size = 0;
        res.on('data', (d: Buffer) => {
          h.update(d);
          size += d.length;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, md5: h.digest('hex'), size }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within ${CALL_TIMEOUT_MS} ms`)));
    req.end();
  });
}
/** Peak resident memory of a process (VmHWM), in MB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  assert.ok(m, `no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

/** Polls a job until it ends (at most 5 minutes); its final JSON. */
async function waitJob(base: string, id: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 300_000;
  for (let i = 0; i < 3000 && Date.now() < deadline; i++) {
    const job = await getJson(base, `/jobs/${id}`);
    if (job['State'] === 'Success' || job['State'] === 'Failure') return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} on ${base} did not end in time`);
}

/**
 * A real Orthanc that requires Basic credentials (test/helpers/orthanc.ts waits for an anonymous 200 from
 * /system, which such an Orthanc never gives); stopped by its pid.
 */
async function startOrthancWithUsers(users: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-proxy-orthanc-'));
  const port = await freePort();
  const configPath = join(dir, 'orthanc.json');
  await writeFile(
    configPath,
    JSON.stringify({
      Name: 'orthanc-with-users',
      HttpPort: port,
      DicomServerEnabled: false,
      StorageDirectory: join(dir, 'storage'),
      IndexDirectory: join(dir, 'index'),
      RemoteAccessAllowed: false,
      AuthenticationEnabled: true,
      RegisteredUsers: users,
      Plugins: [],
    }),
  );
  const child = spawn(ORTHANC_BINARY, [configPath], { cwd: dir, stdio: 'ignore' });
  let exited = false;
  const gone = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (!exited && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      const t = setTimeout(() => {
        if (!exited && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      }, 10_000);
      await gone;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('the Orthanc with users', async () => {
      if (exited) throw new Error('Orthanc exited during start');
      return (await fetch(`${url}/system`)).status === 401;
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { url, stop };
}

describe('dicom-xfer --proxy in front of a real Orthanc', {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let work: string;
  let orthanc: OrthancServer;
  let proxy: XferNode;
  let peerB: XferNode;
  /** Instance ID -> MD5 of the real files Orthanc accepted through the proxy. */
  const stored = new Map<string, string>();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'dx-proxy-'));
    orthanc = await startOrthanc({ name: 'orthanc-behind-proxy' });
    peerB = await startXferNode();
    proxy = await startXferNode({
      config: { OrthancPeers: { B: [peerB.url] } },
      extraArgs: ['--orthanc', orthanc.url, '--proxy'],
    });
  });

  after(async () => {
    await proxy?.stop();
    await peerB?.stop();
    await orthanc?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('POST /instances of every real file goes to Orthanc, answers as Orthanc does', async () => {
    const files = await listFiles(REAL);
    assert.ok(files.length > 200);
    let accepted = 0;
    await mapLimit(files, 4, async (file) => {
      const bytes = await readFile(file);
      const a = await call(proxy.url, 'POST', '/instances', bytes);
      if (a.status === 200) {
        const body = json<{ ID: string; Status: string }>(a);
        assert.ok(body.Status === 'Success' || body.Status === 'AlreadyStored', `${file}: ${a.body.toString()}`);
        // Some files share their UIDs: the one Orthanc kept is the one it answered Success for.
        if (body.Status === 'Success') {
          accepted++;
          stored.set(body.ID, md5(bytes));
        }
      } else {
        // Orthanc's own refusal (e.g. a file without a required tag), passed through as is.
        assert.ok(a.status >= 400 && a.status < 500, `${file}: ${a.status} ${a.body.toString()}`);
        assert.equal(json(a)['Uri'], '/instances');
        assert.equal(typeof json(a)['OrthancStatus'], 'number');
      }
    });
    assert.ok(accepted > 150, `only ${accepted} files were accepted`);
    const ids = await getJson<string[]>(orthanc.url, '/instances');
    assert.deepEqual(ids.sort(), [...stored.keys()].sort());
  });

  test("listings and resources are Orthanc's own answers, query strings included", async () => {
    for (const path of ['/patients', '/studies', '/series?expand', '/patients?expand&since=0&limit=2', '/statistics']) {
      const direct = await call(orthanc.url, 'GET', path);
      const through = await call(proxy.url, 'GET', path);
      assert.equal(through.status, 200, path);
      assert.deepEqual(json(through), json(direct), path);
    }
    assert.equal((await getJson<unknown[]>(proxy.url, '/patients?expand&since=0&limit=2')).length, 2);
    const study = (await getJson<string[]>(orthanc.url, '/studies'))[0] as string;
    assert.deepEqual(await getJson(proxy.url, `/studies/${study}`), await getJson(orthanc.url, `/studies/${study}`));
    // Duplicate slashes reach Orthanc as sent, as the plugin's peers send them.
    assert.deepEqual(await getJson(proxy.url, `//studies/${study}`), await getJson(orthanc.url, `/studies/${study}`));
  });

  test('GET /instances/{id}/file gives the stored bytes with the right Content-Length', async () => {
    let n = 0;
    await mapLimit([...stored], 4, async ([id, sum]) => {
      const a = await call(proxy.url, 'GET', `/instances/${id}/file`);
      assert.equal(a.status, 200);
      assert.equal(md5(a.body), sum, id);
      assert.equal(a.headers['content-length'], String(a.body.length));
      assert.equal(a.headers['transfer-encoding'], undefined);
      n++;
    });
    assert.equal(n, stored.size);
  });

  test('POST /tools/find, PUT and chunked uploads reach Orthanc', async () => {
    const query = JSON.stringify({ Level: 'Study', Query: {}, Expand: false });
    const direct = await call(orthanc.url, 'POST', '/tools/find', query);
    const through = await call(proxy.url, 'POST', '/tools/find', query);
    assert.equal(through.status, 200);
    assert.deepEqual(json<string[]>(through).sort(), json<string[]>(direct).sort());
    assert.ok(json<string[]>(through).length > 0);

    const patient = (await getJson<string[]>(proxy.url, '/patients'))[0] as string;
    const put = await call(proxy.url, 'PUT', `/patients/${patient}/protected`, '1');
    assert.equal(put.status, 200, put.body.toString());
    assert.equal((await call(orthanc.url, 'GET', `/patients/${patient}/protected`)).body.toString().trim(), '1');
    assert.equal((await call(proxy.url, 'PUT', `/patients/${patient}/protected`, '0')).status, 200);

    // A body without Content-Length (chunked) is streamed on as it comes.
    const [id, sum] = [...stored][0] as [string, string];
    const bytes = (await call(orthanc.url, 'GET', `/instances/${id}/file`)).body;
    assert.equal(md5(bytes), sum);
    const chunked = await new Promise<Answer>((resolve, reject) => {
      const u = new URL(proxy.url);
      const req = httpRequest({ host: u.hostname, port: Number(u.port), method: 'POST', path: '/instances', agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      });
      req.on('error', reject);
      for (let off = 0; off < bytes.length; off += 10_000) req.write(bytes.subarray(off, off + 10_000));
      req.end();
    });
    assert.equal(chunked.status, 200, chunked.body.toString());
    assert.equal(json(chunked)['ID'], id);
  });

  test("Orthanc's errors, 404s and redirects pass through unchanged", async () => {
    const missing = await call(proxy.url, 'GET', '/instances/00000000-00000000-00000000-00000000-00000000');
    const direct = await call(orthanc.url, 'GET', '/instances/00000000-00000000-00000000-00000000-00000000');
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, direct.body);
    const bad = await call(proxy.url, 'POST', '/tools/find', '{not json');
    assert.equal(bad.status, 400);
    assert.equal(json(bad)['Uri'], '/tools/find');
    const root = await call(proxy.url, 'GET', '/');
    assert.equal(root.status, 301);
    assert.equal(root.headers['location'], 'app/explorer.html');
    const page = await call(proxy.url, 'GET', '/app/explorer.html');
    assert.equal(page.status, 200);
    assert.match(page.body.toString(), /<script src="\.\.\/plugins\/explorer\.js"><\/script>/);
  });

  test("dicom-xfer's own routes stay its own, with Orthanc's plugins and system beside them", async () => {
    const plugins = await getJson<string[]>(proxy.url, '/plugins');
    assert.ok(plugins.includes('transfers'));
    assert.ok(plugins.includes('explorer.js'), "Orthanc's own plugin list is merged");
    assert.equal((await getJson(proxy.url, '/plugins/transfers'))['ExtendsOrthancExplorer'], true);
    const system = await getJson(proxy.url, '/system');
    assert.equal(system['Name'], 'orthanc-behind-proxy');
    assert.equal(system['HttpPort'], proxy.port);
    assert.equal(typeof system['DicomXferVersion'], 'string');
    const script = await call(proxy.url, 'GET', '/plugins/explorer.js');
    assert.equal(script.status, 200);
    assert.match(String(script.headers['content-type']), /javascript/);
    assert.match(script.body.toString(), /Extensions to Orthanc Explorer/);
    assert.match(script.body.toString(), /Transfers accelerator/);
    assert.deepEqual(await getJson(proxy.url, '/transfers/peers'), { B: 'installed' });
  });

  test("GET /tools/metrics-prometheus gives the node's metrics, then Orthanc's own", async () => {
    const direct = await call(orthanc.url, 'GET', '/tools/metrics-prometheus');
    assert.equal(direct.status, 200);
    const samples = (text: string) =>
      new Set(
        text
          .split('\n')
          .filter((l) => /^[a-zA-Z_]/.test(l))
          .map((l) => (/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l) as RegExpExecArray)[0]),
      );
    const orthancOwn = samples(direct.body.toString());
    assert.ok(orthancOwn.has('orthanc_count_instances'), [...orthancOwn].join(' '));
    const via = await call(proxy.url, 'GET', '/tools/metrics-prometheus');
    assert.equal(via.status, 200);
    assert.match(String(via.headers['content-type']), /^text\/plain/);
    const text = via.body.toString();
    const both = samples(text);
    assert.ok(both.has('dicom_xfer_jobs'), "the node's own metrics");
    for (const name of orthancOwn) assert.ok(both.has(name), `Orthanc's ${name}`);
    // Each family is described once, even one both write.
    const types = text
      .split('\n')
      .filter((l) => l.startsWith('# TYPE '))
      .map((l) => l.split(' ')[2]);
    assert.equal(new Set(types).size, types.length, 'a family described twice');
  });

  test('DELETE removes the resource in Orthanc', async () => {
    const [id, sum] = [...stored][1] as [string, string];
    const bytes = (await call(orthanc.url, 'GET', `/instances/${id}/file`)).body;
    const del = await call(proxy.url, 'DELETE', `/instances/${id}`);
    assert.equal(del.status, 200, del.body.toString());
    assert.equal((await call(orthanc.url, 'GET', `/instances/${id}`)).status, 404);
    assert.equal((await call(proxy.url, 'GET', `/instances/${id}`)).status, 404);
    const again = await call(proxy.url, 'POST', '/instances', bytes);
    assert.equal(again.status, 200);
    assert.equal(md5(bytes), sum);
  });

  test("/jobs merges Orthanc's jobs with dicom-xfer's; each ID goes to its owner", async () => {
    const study = (await getJson<string[]>(orthanc.url, '/studies'))[0] as string;
    const archive = await call(proxy.url, 'POST', `/studies/${study}/archive`, JSON.stringify({ Asynchronous: true }));
    assert.equal(archive.status, 200, archive.body.toString());
    const orthancJob = json<{ ID: string }>(archive).ID;
    const send = await call(
      proxy.url,
      'POST',
      '/transfers/send',
      JSON.stringify({ Resources: [{ Level: 'Study', ID: study }], Compression: 'gzip', Peer: 'B' }),
    );
    assert.equal(send.status, 200, send.body.toString());
    const ourJob = json<{ ID: string }>(send).ID;

    const ids = await getJson<string[]>(proxy.url, '/jobs');
    assert.ok(ids.includes(orthancJob) && ids.includes(ourJob), JSON.stringify(ids));
    const expanded = await getJson<{ ID: string; Type: string }[]>(proxy.url, '/jobs?expand');
    assert.equal(expanded.find((j) => j.ID === orthancJob)?.Type, 'Archive');
    assert.equal(expanded.find((j) => j.ID === ourJob)?.Type, 'PushTransfer');

    assert.equal((await waitJob(proxy.url, orthancJob))['State'], 'Success');
    assert.equal((await waitJob(proxy.url, ourJob))['State'], 'Success');
    // The archive job's output, an Orthanc-only route under /jobs/{id}.
    const zip = await call(proxy.url, 'GET', `/jobs/${orthancJob}/archive`);
    assert.equal(zip.status, 200);
    assert.equal(zip.body.subarray(0, 2).toString('latin1'), 'PK');
    // Controls go to the owner: Orthanc answers for its job, the engine for ours (Orthanc knows it not).
    const viaProxy = await call(proxy.url, 'POST', `/jobs/${orthancJob}/pause`, '');
    const direct = await call(orthanc.url, 'POST', `/jobs/${orthancJob}/pause`, '');
    assert.equal(viaProxy.status, direct.status);
    assert.deepEqual(viaProxy.body, direct.body);
    assert.equal((await call(orthanc.url, 'GET', `/jobs/${ourJob}`)).status, 404);
    const ours = await call(proxy.url, 'POST', `/jobs/${ourJob}/pause`, '');
    assert.equal(ours.status, 400);
    assert.match(String(json(ours)['Details']), /state Success/);
    assert.equal((await call(proxy.url, 'GET', '/jobs/00000000-0000-0000-0000-000000000000')).status, 404);
    // B holds the study's instances with the same bytes.
    const instances = await getJson<{ ID: string }[]>(orthanc.url, `/studies/${study}/instances`);
    for (const { ID } of instances) {
      const b = await call(peerB.url, 'GET', `/instances/${ID}/file`);
      assert.equal(b.status, 200);
      assert.equal(md5(b.body), stored.get(ID));
    }
  });

  test('a 200 MB upload and download stream through with a low peak RSS', async () => {
    const file = join(work, 'big.dcm');
    await writeMultiframe(file, { seed: 4242, megabytes: 200 });
    const size = (await stat(file)).size;
    const sum = await new Promise<string>((resolve, reject) => {
      const h = createHash('md5');
      createReadStream(file)
        .on('data', (d) => h.update(d))
        .on('end', () => resolve(h.digest('hex')))
        .on('error', reject);
    });
    const before = await peakRssMb(proxy.pid);
    const up = await call(proxy.url, 'POST', '/instances', { file, size });
    assert.equal(up.status, 200, up.body.toString());
    const id = json<{ ID: string }>(up).ID;
    const down = await hashGet(proxy.url, `/instances/${id}/file`);
    assert.equal(down.status, 200);
    assert.equal(down.size, size);
    assert.equal(down.md5, sum);
    assert.equal(down.headers['content-length'], String(size));
    const peak = await peakRssMb(proxy.pid);
    console.log(
      `proxy: ${(size / 1e6).toFixed(0)} MB up and down through the node; its peak RSS (VmHWM) was ${before.toFixed(0)} MB before, ` +
        `${peak.toFixed(0)} MB after`,
    );
    assert.ok(peak < 400, `peak RSS ${peak.toFixed(0)} MB`);
    assert.equal((await call(proxy.url, 'DELETE', `/instances/${id}`)).status, 200);
  });
});

describe('dicom-xfer --proxy and authentication', { skip: !orthancInstalled() && 'Orthanc is not installed' }, () => {
  let orthanc: { url: string; stop(): Promise<void> };
  let open: XferNode;
  let guarded: XferNode;
  let misconfigured: XferNode;
  const orthancUser = basic('alice', 'wonderland');

  before(async () => {
    orthanc = await startOrthancWithUsers({ alice: 'wonderland' });
    const creds = ['--orthanc-username', 'alice', '--orthanc-password', 'wonderland'];
    open = await startXferNode({ extraArgs: ['--orthanc', orthanc.url, ...creds, '--proxy'] });
    guarded = await startXferNode({
      config: { AuthenticationEnabled: true, RegisteredUsers: { bob: 'builder' } },
      extraArgs: ['--orthanc', orthanc.url, ...creds, '--proxy'],
      auth: { username: 'bob', password: 'builder' },
    });
    misconfigured = await startXferNode({
      config: { AuthenticationEnabled: true, RegisteredUsers: { bob: 'builder' } },
      extraArgs: ['--orthanc', orthanc.url, '--orthanc-username', 'alice', '--orthanc-password', 'wrong', '--proxy'],
      auth: { username: 'bob', password: 'builder' },
    });
  });

  after(async () => {
    await misconfigured?.stop();
    await guarded?.stop();
    await open?.stop();
    await orthanc?.stop();
  });

  test("without authentication of its own, the node hands the client's credentials to Orthanc as they are", async () => {
    const none = await call(open.url, 'GET', '/patients');
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /^Basic/i);
    assert.equal((await call(open.url, 'GET', '/patients', undefined, { authorization: basic('alice', 'wrong') })).status, 401);
    const ok = await call(open.url, 'GET', '/patients', undefined, { authorization: orthancUser });
    assert.equal(ok.status, 200);
    assert.deepEqual(json(ok), []);
    // The browser's prompt then carries on to Orthanc Explorer.
    assert.equal((await call(open.url, 'GET', '/app/explorer.html', undefined, { authorization: orthancUser })).status, 200);
  });

  test('with AuthenticationEnabled, the node checks first and uses its configured credentials towards Orthanc', async () => {
    const none = await call(guarded.url, 'GET', '/patients');
    assert.equal(none.status, 401);
    assert.equal(json(none)['OrthancStatus'], 29, "the node's own refusal");
    assert.equal((await call(guarded.url, 'GET', '/patients', undefined, { authorization: orthancUser })).status, 401);
    const ok = await call(guarded.url, 'GET', '/patients', undefined, { authorization: basic('bob', 'builder') });
    assert.equal(ok.status, 200, ok.body.toString());
    assert.deepEqual(json(ok), []);
    const system = await getJson(guarded.url, '/system', { authorization: basic('bob', 'builder') });
    assert.equal(system['IsHttpServerSecure'], true);
    // Orthanc refusing the node's own credentials is the node's configuration error, not a prompt for the client.
    const refused = await call(misconfigured.url, 'GET', '/patients', undefined, { authorization: basic('bob', 'builder') });
    assert.equal(refused.status, 502);
    assert.equal(refused.headers['www-authenticate'], undefined);
    assert.match(String(json(refused)['Details']), /refused the credentials of OrthancStore/);
  });
});
