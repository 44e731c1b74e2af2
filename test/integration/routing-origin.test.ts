// The peer a push came from, with authentication on: node B names the sender by the HTTP user of its commit
// (here two of B's peers share A's address, so the address alone names none), and keeps it in the
// instance's reception metadata; a rule on that origin takes the instances.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { call, importFiles, json, listFiles } from '../helpers/transfer-nodes.ts';

const AUTH = { authorization: `Basic ${Buffer.from('site-a:pw-a').toString('base64')}` };

describe('the origin peer:NAME of a push, by the HTTP user', { skip: needs(REAL_DICOM), timeout: 120_000 }, () => {
  let a: XferNode;
  let b: XferNode;

  before(async () => {
    const portA = await freePort();
    b = await startXferNode({
      auth: { username: 'site-a', password: 'pw-a' },
      config: {
        AuthenticationEnabled: true,
        RegisteredUsers: { 'site-a': 'pw-a' },
        // Both at A's address: only the user tells them apart.
        OrthancPeers: {
          a: { Url: `http://127.0.0.1:${portA}/`, Username: 'site-a', Password: 'unused' },
          mirror: [`http://127.0.0.1:${portA}/`],
        },
        Routes: [{ Name: 'from-a', When: 'Instance', Match: { Origin: 'peer:a' }, Send: ['mirror'] }],
      },
    });
    a = await startXferNode({
      port: portA,
      config: {
        OrthancPeers: { b: [`${b.url}/`, 'site-a', 'pw-a'] },
        Routes: [{ Name: 'to-b', When: 'Instance', Send: ['b'] }],
      },
    });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  test('B names the sender "a" and routes what it sent', async () => {
    const imported = await importFiles(a.url, await listFiles(join(REAL_DICOM, 'Phenix')));
    const [id] = [...imported.md5.keys()];
    await waitFor('B to route the instance from a', async () => {
      const r = json(await call(b.url, 'GET', '/routes/from-a', undefined, AUTH));
      return Number(r['QueuedInstances']) + Number(r['SendingBatches']) + Number(r['SentInstances']) + Number(r['FailedInstances']) > 0;
    });
    const meta = json(await call(b.url, 'GET', `/instances/${id}/metadata?expand`, undefined, AUTH));
    assert.equal(meta['TransfersPeer'], 'a');
    assert.equal(meta['Origin'], 'Plugins');
  });
});
