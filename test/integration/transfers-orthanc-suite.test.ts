// The four scenarios of Orthanc's own integration tests of the Transfers Accelerator
// (docs/protocol.md#orthanc-tests, Plugins/Transfers/Run.py), run against one dicom-xfer node configured as
// that suite configures Orthanc: Basic auth alice/orthanctest, HttpTimeout 2, and the peers "peer" (nothing
// listens there), "transfers-bidirectional" (itself, RemoteSelf naming itself), "transfers-simple" (itself)
// and "self". They run twice: with "Transfers": {"Extensions": false} (exactly the plugin) and with the
// defaults (extensions on), where dedupe finds the instance already there, so a send to itself moves nothing
// and only the counts of what moved differ. Every job Content key the plugin writes
// (docs/protocol.md#job-content) is checked with its type in both.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { REAL_DICOM, call, json, type Answer, type JobJson } from '../helpers/transfer-nodes.ts';
import { describe, needs } from '../helpers/data.ts';

const USER = { username: 'alice', password: 'orthanctest' };
/** Headers of every request of the suite (its toolbox sends the same on every call). */
const HEADERS: Record<string, string> = {
  // httplib2, the suite's HTTP client, sends an empty Expect on every call; Orthanc ignores it.
  expect: '',
  authorization: `Basic ${Buffer.from(`${USER.username}:${USER.password}`).toString('base64')}`,
};

/**
 * Content keys the plugin writes in every job of a transfer that moved instances, with their type
 * (docs/protocol.md#job-content).
 */
const COMMON_KEYS = {
  Resources: 'array',
  Peer: 'string',
  Compression: 'string',
  TotalInstances: 'integer',
  TotalSizeMB: 'integer',
  CompletedHttpQueries: 'integer',
  NetworkSpeedKBs: 'integer',
} as const;
const PUSH_KEYS = { ...COMMON_KEYS, UploadedSizeMB: 'integer' } as const;
const PULL_KEYS = { ...COMMON_KEYS, DownloadedSizeMB: 'integer' } as const;

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (Number.isInteger(v)) return 'integer';
  return typeof v;
}

/** Every key of `keys` is in the Content with its type; `absent` keys are not. */
function assertKeys(content: Record<string, unknown>, keys: Record<string, string>, absent: readonly string[]): void {
  for (const [k, type] of Object.entries(keys)) {
    assert.ok(k in content, `Content lacks ${k}: ${JSON.stringify(content)}`);
    assert.equal(typeOf(content[k]), type, `Content.${k} is ${JSON.stringify(content[k])}, not of type ${type}`);
  }
  for (const k of absent) assert.ok(!(k in content), `Content has ${k}: ${JSON.stringify(content)}`);
}

const MODES = [
  { name: '"Extensions": false (exactly the plugin)', extensions: false },
  { name: 'the defaults (extensions on)', extensions: true },
] as const;

for (const mode of MODES) {
  describe(`Orthanc's transfers integration tests (Plugins/Transfers/Run.py), ${mode.name}`, {
    skip: needs(REAL_DICOM),
    timeout: 60_000,
  }, () => {
    let node: XferNode;
    let dummyCt: Buffer;
    /** What a send of one instance to the node itself moves: with dedupe, nothing (it is there already). */
    const moved = mode.extensions ? 0 : 1;

    const req = (method: string, path: string, body?: Buffer | string): Promise<Answer> => call(node.url, method, path, body, HEADERS);
    const getJson = async <T = Record<string, unknown>>(path: string): Promise<T> => {
      const a = await req('GET', path);
      assert.equal(a.status, 200, `GET ${path}: ${a.status} ${a.body.toString()}`);
      return json<T>(a);
    };
    /** DoPost of the suite: accepts 200, 201 and 302. */
    const doPost = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
      const a = await req('POST', path, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
      assert.ok([200, 201, 302].includes(a.status), `POST ${path}: ${a.status} ${a.body.toString()}`);
      return json(a);
    };
    /** WaitJobDone of the suite: polls every 0.1 s until Success or Failure (bounded here). */
    const waitJobDone = async (id: string): Promise<JobJson> => {
      for (let i = 0; i < 600; i++) {
        const j = await getJson<JobJson>(`/jobs/${id}`);
        if (j.State === 'Success' || j.State === 'Failure') return j;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`job ${id} did not finish within 60 s`);
    };
    const uploadInstance = async (): Promise<string> => (await doPost('/instances', dummyCt)).ID as string;
    /** The counts that dedupe changes: nothing moved when the instance was found at the destination. */
    const assertMoved = (content: Record<string, unknown>, sizeKey: 'UploadedSizeMB' | 'DownloadedSizeMB'): void => {
      assert.equal(content.CompletedHttpQueries, moved);
      assert.equal(content[sizeKey], 0); // DummyCT is far below half a MB
      if (mode.extensions) {
        assert.equal(content.SkippedInstances, 1);
        assert.equal(content.NetworkSpeedKBs, 0);
      } else assert.ok(!('SkippedInstances' in content));
    };

    before(async () => {
      dummyCt = await readFile(join(REAL_DICOM, 'DummyCT.dcm'));
      const port = await freePort();
      const closed = await freePort(); // nothing listens there: the suite's "peer" has no Orthanc at all
      const cred = { Username: USER.username, Password: USER.password };
      node = await startXferNode({
        port,
        auth: USER,
        config: {
          AuthenticationEnabled: true,
          RegisteredUsers: { [USER.username]: USER.password },
          HttpTimeout: 2,
          OverwriteInstances: true,
          JobsHistorySize: 1000,
          Transfers: { Extensions: mode.extensions },
          RemoteAccessAllowed: true,
          OrthancPeers: {
            peer: [`http://127.0.0.1:${closed}/`, USER.username, USER.password],
            'transfers-bidirectional': { Url: `http://localhost:${port}/`, RemoteSelf: 'transfers-bidirectional', ...cred },
            'transfers-simple': { Url: `http://localhost:${port}/`, ...cred },
            self: { Url: `http://127.0.0.1:${port}/`, ...cred },
          },
        },
      });
    });
    after(async () => {
      await node?.stop();
    });

    beforeEach(async () => {
      // setUp of the suite: delete every patient.
      for (const p of await getJson<string[]>('/patients')) assert.equal((await req('DELETE', `/patients/${p}`)).status, 200);
    });

    test('test_list_peers', async () => {
      const peers = await getJson<Record<string, string>>('/transfers/peers');
      assert.equal(Object.keys(peers).length, 4);
      assert.equal(peers.peer, 'disabled');
      assert.equal(peers['transfers-simple'], 'installed');
      assert.equal(peers['transfers-bidirectional'], 'bidirectional');
      assert.equal(peers.self, 'installed');
    });

    test('test_pull', async () => {
      const i = await uploadInstance();
      const a = await doPost('/transfers/pull', {
        Compression: 'gzip',
        Peer: 'transfers-simple',
        Resources: [{ Level: 'Instance', ID: i }],
        Priority: 10,
      });
      const job = await waitJobDone(a.ID as string);
      const b = await getJson<JobJson>(`/jobs/${a.ID}`);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(b.Type, 'PullTransfer');
      assert.equal(b.State, 'Success');
      assert.equal(b.ID, a.ID);
      assert.equal(b.Priority, 10);
      assert.equal(b.Content.Compression, 'gzip');
      assert.equal(b.Content.Peer, 'transfers-simple');
      assert.equal(b.Content.TotalInstances, 1);
      assert.equal(b.Content.TotalSizeMB, 0);
      assert.deepEqual(b.Content.Resources, [{ Level: 'Instance', ID: i }]);
      // A direct pull carries no Originator (only a pull asked for by a send in pull mode does).
      assertKeys(b.Content, PULL_KEYS, ['UploadedSizeMB', 'Originator']);
      assertMoved(b.Content, 'DownloadedSizeMB');
    });

    test('test_send_push', async () => {
      const i = await uploadInstance();
      const a = await doPost('/transfers/send', {
        Compression: 'gzip',
        Peer: 'transfers-simple',
        Resources: [{ Level: 'Instance', ID: i }],
        Priority: -10,
      });
      const job = await waitJobDone(a.ID as string);
      const b = await getJson<JobJson>(`/jobs/${a.ID}`);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(b.Type, 'PushTransfer');
      assert.equal(b.State, 'Success');
      assert.equal(b.ID, a.ID);
      assert.equal(b.Priority, -10);
      assert.equal(b.Content.Compression, 'gzip');
      assert.equal(b.Content.Peer, 'transfers-simple');
      assert.equal(b.Content.TotalInstances, 1);
      assert.equal(b.Content.TotalSizeMB, 0);
      assert.deepEqual(b.Content.Resources, [{ Level: 'Instance', ID: i }]);
      assertKeys(b.Content, PUSH_KEYS, ['DownloadedSizeMB', 'Originator']);
      assertMoved(b.Content, 'UploadedSizeMB');
    });

    test('test_send_bidirectional', async () => {
      const i = await uploadInstance();
      const a = await doPost('/transfers/send', {
        Compression: 'gzip',
        Peer: 'transfers-bidirectional',
        Resources: [{ Level: 'Instance', ID: i }],
        Priority: 42,
      });
      assert.equal(Object.keys(a).length, 3);
      assert.equal(a.Peer, 'transfers-bidirectional');
      assert.ok('RemoteJob' in a);
      assert.ok('URL' in a);
      assert.equal(a.URL, `http://localhost:${node.port}//jobs/${a.RemoteJob}`);
      const job = await waitJobDone(a.RemoteJob as string);
      const b = await getJson<JobJson>(`/jobs/${a.RemoteJob}`);
      assert.equal(job.State, 'Success', JSON.stringify(job));
      assert.equal(b.Type, 'PullTransfer');
      assert.equal(b.State, 'Success');
      assert.equal(b.ID, a.RemoteJob);
      assert.equal(b.Priority, 0);
      assert.equal(b.Content.Compression, 'gzip');
      assert.equal(b.Content.Peer, 'transfers-bidirectional');
      assert.equal(b.Content.TotalInstances, 1);
      assert.equal(b.Content.TotalSizeMB, 0);
      assert.deepEqual(b.Content.Resources, [{ Level: 'Instance', ID: i }]);
      // The pull asked for by a send in pull mode names the node that asked (its Originator).
      assertKeys(b.Content, { ...PULL_KEYS, Originator: 'string' }, ['UploadedSizeMB']);
      assertMoved(b.Content, 'DownloadedSizeMB');
    });
  });
}
