// The node's DICOMweb server on a real node process and real DICOM files: WADO-RS gives the stored bytes,
// STOW-RS stores through the ingest path (and refuses, part by part or whole, what it must), QIDO-RS refuses
// bad queries, and every route is behind the node's authentication.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { filesUnder, md5, multipartParts, stowBody, value } from '../helpers/dicomweb.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';

const FLAIR = join(REAL_DICOM, 'Brainix', 'Flair');
const DICOM_JSON = 'application/dicom+json';

type Json = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string }>;

async function stow(node: XferNode, files: Uint8Array[], path = '/dicom-web/studies') {
  const { body, contentType } = stowBody(files);
  const r = await fetch(`${node.url}${path}`, { method: 'POST', body: body as BodyInit, headers: { 'content-type': contentType } });
  return { status: r.status, type: r.headers.get('content-type'), json: (await r.json()) as Json };
}

async function instanceCount(node: XferNode): Promise<number> {
  return ((await (await fetch(`${node.url}/instances`)).json()) as string[]).length;
}

function assertOrthancError(json: unknown, status: number) {
  const e = json as Record<string, unknown>;
  assert.equal(e.HttpStatus, status);
  for (const k of ['HttpError', 'Message', 'Method', 'Uri', 'OrthancError', 'OrthancStatus'])
    assert.ok(k in e, `${k} in ${JSON.stringify(e)}`);
}

describe('DICOMweb server on the node', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  let files: string[];
  let bytes: Buffer[];
  let studyUid: string;

  before(async () => {
    node = await startXferNode({ config: { HttpTimeout: 5 } });
    files = await filesUnder(FLAIR);
    bytes = await Promise.all(files.map((f) => readFile(f)));
    const r = await stow(node, bytes);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    studyUid = value(r.json, '00081190') as string;
    studyUid = studyUid.slice(studyUid.lastIndexOf('/') + 1);
  });
  after(async () => {
    await node?.stop();
  });

  test('STOW-RS of a real series stores every file; WADO-RS gives each back byte for byte', async () => {
    assert.equal(await instanceCount(node), files.length);
    const r = await fetch(`${node.url}/dicom-web/studies/${studyUid}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^multipart\/related; type="application\/dicom"; boundary=/);
    const parts = await multipartParts(r);
    assert.equal(parts.length, files.length);
    for (const p of parts) {
      assert.equal(p.headers['content-type'], 'application/dicom');
      assert.equal(Number(p.headers['content-length']), p.body.length);
    }
    assert.deepEqual(parts.map((p) => md5(p.body)).sort(), bytes.map(md5).sort());
    // Stored through the ingest path of POST /instances: routing recorded each arrival, origin REST.
    for (const id of (await (await fetch(`${node.url}/instances`)).json()) as string[]) {
      const meta = (await (await fetch(`${node.url}/instances/${id}/metadata?expand`)).json()) as Record<string, string>;
      assert.equal(meta.Origin, 'RestApi');
      assert.equal(meta.RemoteIP, '127.0.0.1');
    }
  });

  test('WADO-RS of a series and of one instance; transfer syntaxes: "*" and the stored one, 406 for another', async () => {
    const meta = (await (await fetch(`${node.url}/dicom-web/studies/${studyUid}/metadata`)).json()) as Json[];
    const first = meta[0] as Json;
    const series = value(first, '0020000E') as string;
    const sop = value(first, '00080018') as string;
    const url = `${node.url}/dicom-web/studies/${studyUid}/series/${series}`;
    assert.equal((await multipartParts(await fetch(url))).length, files.length);
    const one = await fetch(`${url}/instances/${sop}`, {
      headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
    });
    const [part] = await multipartParts(one);
    assert.ok(part && bytes.some((b) => md5(b) === md5(part.body)));
    const stored = (await readFile(files[0] as string)).toString('latin1').match(/1\.2\.840\.10008\.1\.2[.0-9]*/)?.[0];
    assert.ok(stored);
    const same = await fetch(`${url}/instances/${sop}`, {
      headers: { accept: `multipart/related; type="application/dicom"; transfer-syntax=${stored}` },
    });
    assert.equal(same.status, 200);
    await same.arrayBuffer();
    const other = await fetch(`${url}/instances/${sop}`, {
      headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50' },
    });
    assert.equal(other.status, 406);
    assertOrthancError(await other.json(), 406);
    const json = await fetch(`${url}/instances/${sop}`, { headers: { accept: DICOM_JSON } });
    assert.equal(json.status, 406);
    await json.arrayBuffer();
  });

  test('metadata: one DICOM JSON object per instance, bulk data by URI that names the instance', async () => {
    const r = await fetch(`${node.url}/dicom-web/studies/${studyUid}/metadata`, { headers: { accept: DICOM_JSON } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), DICOM_JSON);
    const meta = (await r.json()) as Json[];
    assert.equal(meta.length, files.length);
    for (const m of meta) {
      assert.equal(value(m, '0020000D'), studyUid);
      assert.deepEqual(m['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'BRAINIX' }] });
      assert.equal(m['00280010']?.vr, 'US');
      assert.equal(typeof value(m, '00280010'), 'number');
      const sop = value(m, '00080018') as string;
      assert.match(
        m['7FE00010']?.BulkDataURI ?? '',
        new RegExp(`/dicom-web/studies/${studyUid}/series/[0-9.]+/instances/${sop}/bulk/7fe00010$`),
      );
    }
  });

  test('bulk data: the BulkDataURI of Pixel Data gives the pixels of the file; an unknown path is 404', async () => {
    const meta = (await (await fetch(`${node.url}/dicom-web/studies/${studyUid}/metadata`)).json()) as Json[];
    const m = meta[0] as Json;
    const uri = m['7FE00010']?.BulkDataURI as string;
    const r = await fetch(uri);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^multipart\/related; type="application\/octet-stream"/);
    const [part] = await multipartParts(r);
    const rows = value(m, '00280010') as number;
    const columns = value(m, '00280011') as number;
    const bits = value(m, '00280100') as number;
    assert.equal(part?.body.length, (rows * columns * bits) / 8);
    const sop = value(m, '00080018') as string;
    const file = bytes.find((b) => b.includes(Buffer.from(sop))) as Buffer;
    assert.deepEqual(part?.body, file.subarray(file.length - part.body.length));
    const missing = await fetch(uri.replace(/7fe00010$/, '00191234'));
    assert.equal(missing.status, 404);
    assertOrthancError(await missing.json(), 404);
  });

  test('QIDO-RS finds the study by name (wildcards), date range and UID, with counts and its URL', async () => {
    const q = async (query: string) => (await (await fetch(`${node.url}/dicom-web/studies?${query}`)).json()) as Json[];
    for (const query of [
      'PatientName=BRAIN*',
      'PatientName=brainix',
      'StudyDate=20061201-20061231',
      `StudyInstanceUID=${studyUid}`,
      '00100010=B?AINIX',
    ]) {
      const found = await q(query);
      assert.equal(found.length, 1, query);
      const s = found[0] as Json;
      assert.equal(value(s, '00201208'), files.length);
      assert.equal(value(s, '00201206'), 1);
      assert.deepEqual(s['00080061']?.Value, ['MR']);
      assert.equal(value(s, '00081190'), `${node.url}/dicom-web/studies/${studyUid}`);
    }
    assert.deepEqual(await q('PatientName=NOBODY'), []);
    assert.deepEqual(await q('StudyDate=19000101-19001231'), []);
    const instances = (await (await fetch(`${node.url}/dicom-web/studies/${studyUid}/instances?limit=5&offset=20`)).json()) as Json[];
    assert.equal(instances.length, files.length - 20);
    const withField = (await q('includefield=00180087&includefield=SeriesDescription')) as Json[];
    assert.ok(withField[0]?.['00180087']);
    // "all" on instances: the whole data set but bulk data.
    const all = (await (await fetch(`${node.url}/dicom-web/instances?includefield=all&limit=1`)).json()) as Json[];
    const full = ((await (await fetch(`${node.url}/dicom-web/studies/${studyUid}/metadata`)).json()) as Json[]).find(
      (m) => value(m, '00080018') === value(all[0] as Json, '00080018'),
    ) as Json;
    for (const [tag, v] of Object.entries(full)) if (v.BulkDataURI === undefined) assert.deepEqual(all[0]?.[tag], v, tag);
  });

  test("bad queries and unknown resources: 400 and 404 in Orthanc's error shape", async () => {
    for (const query of ['limit=abc', 'offset=-1', 'includefield=NoSuchAttribute', 'StudyDate=2006*']) {
      const r = await fetch(`${node.url}/dicom-web/studies?${query}`);
      assert.equal(r.status, 400, query);
      assertOrthancError(await r.json(), 400);
    }
    for (const path of ['studies/1.2.3', 'studies/1.2.3/metadata', `studies/${studyUid}/series/1.2.3`, 'studies/not-a-uid/metadata']) {
      const r = await fetch(`${node.url}/dicom-web/${path}`);
      assert.equal(r.status, 404, path);
      assertOrthancError(await r.json(), 404);
    }
    assert.equal((await fetch(`${node.url}/dicom-web/studies/1.2.3`, { method: 'DELETE' })).status, 405);
  });
});

describe('STOW-RS refusals', { skip: needs(REAL_DICOM) }, () => {
  let node: XferNode;
  let flair: Buffer[];

  before(async () => {
    node = await startXferNode({ config: { HttpTimeout: 5, MaximumInflationRatio: 2 } });
    flair = await Promise.all((await filesUnder(FLAIR)).slice(0, 4).map((f) => readFile(f)));
  });
  after(async () => {
    await node?.stop();
  });

  test('one truncated part: 202, that instance in FailedSOPSequence (0xC000), the others stored', async () => {
    const broken = (flair[1] as Buffer).subarray(0, 40_000);
    const r = await stow(node, [flair[0] as Buffer, broken, flair[2] as Buffer]);
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const failed = r.json['00081198']?.Value as Json[];
    assert.equal(failed.length, 1);
    const brokenSop = (flair[1] as Buffer).toString('latin1').match(/1\.3\.46\.670589\.11\.0\.0\.11\.4\.2\.0\.8743\.5\.5396\.\d+/g);
    assert.ok(brokenSop?.includes(value(failed[0] as Json, '00081155') as string));
    assert.equal(value(failed[0] as Json, '00081197'), 0xc000);
    const stored = r.json['00081199']?.Value as Json[];
    assert.equal(stored.length, 2);
    for (const s of stored) {
      const parts = await multipartParts(await fetch(value(s, '00081190') as string));
      assert.ok([flair[0], flair[2]].some((b) => md5(b as Buffer) === md5(parts[0]?.body ?? Buffer.alloc(0))));
    }
    assert.equal(await instanceCount(node), 2);
  });

  test("instances of another study than the URL's: 409, each refused with 0xA900, nothing stored", async () => {
    const before = await instanceCount(node);
    const r = await stow(node, [flair[3] as Buffer], '/dicom-web/studies/1.2.3.4');
    assert.equal(r.status, 409);
    const refused = (r.json['00081198']?.Value ?? []) as Json[];
    assert.equal(refused.length, 1);
    assert.equal(value(refused[0] as Json, '00081197'), 0xa900);
    assert.equal(await instanceCount(node), before);
  });

  test('a body cut short, a broken multipart, another media type, a gzip bomb: refused whole, nothing stored', async () => {
    const before = await instanceCount(node);
    const { body, contentType } = stowBody([flair[3] as Buffer]);
    // No closing boundary: the body ends inside its part.
    const cut = await fetch(`${node.url}/dicom-web/studies`, {
      method: 'POST',
      body: body.subarray(0, body.length - 40) as BodyInit,
      headers: { 'content-type': contentType },
    });
    assert.equal(cut.status, 400);
    assertOrthancError(await cut.json(), 400);
    const notMultipart = await fetch(`${node.url}/dicom-web/studies`, {
      method: 'POST',
      body: flair[3] as BodyInit,
      headers: { 'content-type': 'application/dicom' },
    });
    assert.equal(notMultipart.status, 415);
    assertOrthancError(await notMultipart.json(), 415);
    // Inflates far beyond MaximumInflationRatio (2): a zero-filled part.
    const bomb = stowBody([flair[3] as Buffer, Buffer.alloc(20 * 1024 * 1024)]);
    const gz = await fetch(`${node.url}/dicom-web/studies`, {
      method: 'POST',
      body: gzipSync(bomb.body) as BodyInit,
      headers: { 'content-type': bomb.contentType, 'content-encoding': 'gzip' },
    });
    assert.equal(gz.status, 413);
    assertOrthancError(await gz.json(), 413);
    // The client goes away mid-body: the part already read is not stored.
    await new Promise<void>((resolve) => {
      const req = httpRequest({
        host: '127.0.0.1',
        port: node.port,
        method: 'POST',
        path: '/dicom-web/studies',
        headers: { 'content-type': contentType, 'content-length': body.length },
      });
      req.on('error', () => resolve());
      req.write(body.subarray(0, body.length - 100), () => setTimeout(() => req.destroy(), 200));
      req.on('close', () => resolve());
    });
    assert.equal(await instanceCount(node), before);
    assert.equal((await fetch(`${node.url}/system`)).status, 200);
  });

  test('a body that says it is larger than the room on disk: 507 before a byte is read, nothing stored', async () => {
    const before = await instanceCount(node);
    const { body, contentType } = stowBody([flair[3] as Buffer]);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port: node.port,
          method: 'POST',
          path: '/dicom-web/studies',
          headers: { 'content-type': contentType, 'content-length': String(2 ** 52) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, body: text });
            req.destroy();
          });
        },
      );
      req.on('error', reject);
      req.write(body);
    });
    assert.equal(answer.status, 507);
    assertOrthancError(JSON.parse(answer.body), 507);
    assert.equal(await instanceCount(node), before);
  });
});

describe("DICOMweb behind the node's authentication", () => {
  let node: XferNode;
  const auth = { username: 'alice', password: 'secret' };

  before(async () => {
    node = await startXferNode({ config: { AuthenticationEnabled: true, RegisteredUsers: { alice: 'secret' } }, auth });
  });
  after(async () => {
    await node?.stop();
  });

  test('QIDO-RS, WADO-RS and STOW-RS answer 401 without credentials, and work with them', async () => {
    for (const [method, path] of [
      ['GET', 'studies'],
      ['GET', 'studies/1.2.3/metadata'],
      ['GET', 'studies/1.2.3'],
      ['POST', 'studies'],
    ] as const) {
      const r = await fetch(`${node.url}/dicom-web/${path}`, { method, ...(method === 'POST' ? { body: 'x' } : {}) });
      assert.equal(r.status, 401, path);
      assertOrthancError(await r.json(), 401);
    }
    const headers = { authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` };
    const r = await fetch(`${node.url}/dicom-web/studies`, { headers });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), []);
  });
});
