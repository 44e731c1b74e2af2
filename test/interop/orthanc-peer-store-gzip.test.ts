// A real Orthanc 1.10.1 stores real DICOM files into a dicom-xfer node through its own peer store
// (POST /peers/{name}/store), with and without "Compress" (gzip-encoded bodies), through a recording proxy:
// every instance arrives with Orthanc's MD5.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, needs, REAL_DICOM, listFiles } from '../helpers/data.ts';
import { after, before, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { orthancInstalled, startOrthanc, type OrthancServer } from '../helpers/orthanc.ts';
import { startProxy, type FaultProxy } from '../helpers/proxy.ts';

const DATA = REAL_DICOM;

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  const r = await fetch(url, init);
  const text = await r.text();
  assert.equal(r.status, 200, `${init?.method ?? 'GET'} ${url}: ${text}`);
  return JSON.parse(text) as T;
}

describe("Orthanc's peer store into a node, with and without Compress", {
  skip: (!orthancInstalled() && 'Orthanc is not installed') || needs(REAL_DICOM),
}, () => {
  let node: XferNode;
  let proxy: FaultProxy;
  let orthanc: OrthancServer;
  /** Instance ID -> MD5 of its file in Orthanc. */
  const md5s = new Map<string, string>();

  before(async () => {
    node = await startXferNode();
    proxy = await startProxy({ target: node.port });
    orthanc = await startOrthanc({
      config: {
        OrthancPeers: {
          // "Compress" in the peer entry: Orthanc 1.10.1 keeps it as a user property only (see below).
          xfer: { Url: `${proxy.url}/`, Compress: true },
        },
      },
    });
    // A spread of real files: a whole series, plus every 12th file of the set (other encodings and syntaxes).
    const all = await listFiles(DATA);
    const chosen = all.filter((f, i) => f.includes('/Brainix/Flair/') || i % 12 === 0);
    for (const f of chosen) {
      const r = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: (await readFile(f)) as BodyInit });
      const text = await r.text();
      if (r.status !== 200) continue; // a file Orthanc refuses is not part of this test
      const id = (JSON.parse(text) as { ID: string }).ID;
      if (!md5s.has(id)) md5s.set(id, await (await fetch(`${orthanc.url}/instances/${id}/attachments/dicom/md5`)).text());
    }
    assert.ok(md5s.size >= 30, `${md5s.size} instances in Orthanc`);
  });
  after(async () => {
    await Promise.all([orthanc?.stop(), proxy?.stop()]);
    await node?.stop();
  });

  async function storeAll(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    proxy.clearRecords();
    const answer = await json<Record<string, unknown>>(`${orthanc.url}/peers/xfer/store`, {
      method: 'POST',
      body: JSON.stringify({ Resources: [...md5s.keys()], ...body }),
    });
    assert.equal(answer.FailedInstancesCount, 0, JSON.stringify(answer));
    assert.equal(answer.InstancesCount, md5s.size);
    for (const [id, md5] of md5s) {
      assert.equal(await (await fetch(`${node.url}/instances/${id}/attachments/dicom/md5`)).text(), md5, id);
    }
    return answer;
  }

  async function emptyNode(): Promise<void> {
    for (const id of await json<string[]>(`${node.url}/instances`)) {
      await json(`${node.url}/instances/${id}`, { method: 'DELETE' });
    }
    assert.deepEqual(await json<string[]>(`${node.url}/instances`), []);
  }

  test('"Compress": true in the store request: gzip-encoded bodies, every instance stored with Orthanc\'s MD5', async () => {
    await emptyNode();
    assert.equal((await storeAll({ Compress: true })).Compress, true);
    const posts = proxy.records({ method: 'POST', path: /^\/instances$/ });
    assert.equal(posts.length, md5s.size);
    for (const p of posts) {
      assert.equal(p.headers['content-encoding'], 'gzip');
      assert.equal(p.headers['content-type'], 'application/x-www-form-urlencoded');
      assert.equal(p.status, 200);
    }
    assert.doesNotMatch(orthanc.log(), /network protocol/i);
  });

  test('"Compress": false: plain bodies, the same instances with the same MD5s', async () => {
    await emptyNode();
    await storeAll({ Compress: false });
    const posts = proxy.records({ method: 'POST', path: /^\/instances$/ });
    assert.equal(posts.length, md5s.size);
    assert.ok(posts.every((p) => p.headers['content-encoding'] === undefined && p.status === 200));
  });

  test('"Compress" only in the OrthancPeers entry: Orthanc 1.10.1 sends plain bodies (the key is a user property there)', async () => {
    await emptyNode();
    const answer = await storeAll({});
    // The job says it does not compress; the entry's key shows up as the user property "1".
    assert.equal(answer.Compress, false);
    assert.equal((answer.Peer as Record<string, unknown>).Compress, '1');
    const posts = proxy.records({ method: 'POST', path: /^\/instances$/ });
    assert.ok(posts.length > 0 && posts.every((p) => p.headers['content-encoding'] === undefined));
  });
});
