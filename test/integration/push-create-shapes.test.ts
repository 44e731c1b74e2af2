// Bad push creates sent to a real node: each gets the answer the zod schema's error makes (status, Orthanc
// code, details), whether the create was read by hand or by the schema, and none of them leaves anything.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { errorBody, isXferError } from '../../src/errors.ts';
import { parsePushCreate } from '../../src/protocol/wire.ts';
import { REAL_DICOM, describe, listFiles, needs } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { realCreate, variants } from '../helpers/push-create-shapes.ts';
import { call, getJson, json, postJson } from '../helpers/transfer-nodes.ts';

describe('push creates over HTTP', { skip: needs(REAL_DICOM), timeout: 120_000 }, () => {
  let node: XferNode;
  const staging = async () => (await readdir(join(node.dataDir, 'staging', 'push')).catch(() => [] as string[])).sort();

  before(async () => {
    node = await startXferNode({});
  });
  after(async () => {
    await node?.stop();
  });

  test('each create the schema refuses gets its error, and changes nothing', async () => {
    const body = await realCreate(REAL_DICOM, 4);
    const before = { staging: await staging(), jobs: await getJson<string[]>(node.url, '/jobs') };
    let sent = 0;
    for (const v of variants(body)) {
      // What goes on the wire (an array's dropped member is null there).
      const text = JSON.stringify(v.body);
      let expected: Record<string, unknown> | undefined;
      try {
        parsePushCreate(JSON.parse(text));
      } catch (e) {
        assert.ok(isXferError(e));
        expected = { ...errorBody(e, 'POST', '/transfers/push') };
      }
      if (!expected) continue;
      const a = await postJson(node.url, '/transfers/push', text);
      assert.equal(a.status, expected.HttpStatus, `${v.name}: ${a.body.toString()}`);
      assert.deepEqual(json(a), expected, v.name);
      sent++;
    }
    assert.ok(sent >= 100, `${sent} bad creates`);
    assert.deepEqual({ staging: await staging(), jobs: await getJson<string[]>(node.url, '/jobs') }, before);
  });

  test('a create of 3000 instances is taken, and its transaction removed', async () => {
    const one = await realCreate(REAL_DICOM, 30);
    // 100 copies of 30 real files, each copy under other IDs: the size of a large study's create.
    const Instances = [];
    const Buckets = [];
    for (let k = 0; k < 100; k++) {
      for (const i of one.Instances) {
        const ID = `${i.ID.slice(0, -4)}${k.toString(16).padStart(4, '0')}`;
        Instances.push({ ...i, ID });
        Buckets.push([{ ID, Offset: '0', Size: i.Size }]);
      }
    }
    const a = await postJson(node.url, '/transfers/push', { Instances, Buckets, Compression: 'none' });
    assert.equal(a.status, 200, a.body.toString());
    const path = json<{ Path: string }>(a).Path;
    // The declared sizes were read right: bucket 0, the first file whole, is taken; a byte more is not
    // (NetworkProtocol, 500, as the plugin answers).
    const first = await readFile((await listFiles(REAL_DICOM))[0] as string);
    assert.equal((await call(node.url, 'PUT', `${path}/0`, Buffer.concat([first, Buffer.from([0])]))).status, 500);
    const put = await call(node.url, 'PUT', `${path}/0`, first);
    assert.equal(put.status, 200, put.body.toString());
    const d = await call(node.url, 'DELETE', path);
    assert.equal(d.status, 200, d.body.toString());
  });
});
