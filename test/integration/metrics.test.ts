// GET /tools/metrics-prometheus of two real nodes after real transfers through the recording proxy: the
// counters and byte totals equal what moved (the proxy's byte counts, the job Content, the file sizes),
// a DELETE counts as aborted (not committed, unlike the plugin), and retries and skipped instances follow
// the jobs' Content; C-STORE jobs to a modality (dcmtk's storescp) are counted with the other job types.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  REAL_DICOM,
  call,
  emptyNode,
  getJson,
  importFiles,
  json,
  listFiles,
  postJson,
  startPair,
  startTransfer,
  storedMd5s,
  waitJob,
  type Imported,
  type Pair,
} from '../helpers/transfer-nodes.ts';
import { describe, generatedDicom, needs } from '../helpers/data.ts';
import { needsDcmtk } from '../helpers/dcmtk.ts';
import { startXferNode, type XferNode } from '../helpers/node.ts';
import { jobEnd, NOT_IN_STORESCP, onePerSyntax, startStoreScp, upload, type StoreScp } from './dimse-scu-common.ts';

/** Prometheus text -> value of each sample, keyed by `name{labels}` as written (labels sorted by the registry). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

async function metrics(base: string): Promise<Map<string, number>> {
  const a = await call(base, 'GET', '/tools/metrics-prometheus');
  assert.equal(a.status, 200);
  assert.match(String(a.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parseMetrics(a.body.toString('utf8'));
}

function value(m: Map<string, number>, key: string): number {
  const v = m.get(key);
  assert.ok(v !== undefined, `metric ${key} is published`);
  return v;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe('metrics after real transfers', { timeout: 180_000 }, () => {
  let pair: Pair;
  let imported: Imported;
  let study: string;
  let totalSize: number;

  before(async () => {
    // One retry allowed, so that an injected 503 is a retry and not a failure.
    pair = await startPair({ common: { Transfers: { BucketSize: 256, Threads: 2, MaxHttpRetries: 1 } } });
    // One study: Brainix, or without the real files the generated CT study (two series of three slices).
    const dir = needs(REAL_DICOM) ? join(await generatedDicom(), 'ct', 'study01') : join(REAL_DICOM, 'Brainix');
    imported = await importFiles(pair.a.url, await listFiles(dir));
    assert.equal(imported.refused.length, 0);
    const studies = await getJson<string[]>(pair.a.url, '/studies');
    assert.equal(studies.length, 1);
    study = studies[0] as string;
    totalSize = sum([...imported.size.values()]);
  });
  after(async () => {
    await pair?.stop();
  });

  test('a push: receiver counters, bytes per peer and bucket counts equal what went through the proxy', async () => {
    pair.toB.clearRecords();
    const h = await startTransfer(pair.a.url, 'send', { Resources: [{ Level: 'Study', ID: study }], Peer: 'b', Compression: 'none' });
    const job = await waitJob(pair.a.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const buckets = job.Content.TotalBuckets as number;
    const records = pair.toB.records();
    const puts = pair.toB.records({ method: 'PUT' });
    assert.equal(puts.length, buckets);
    const a = await metrics(pair.a.url);
    const b = await metrics(pair.b.url);

    // The receiver (B), the names of docs/protocol.md#metrics.
    assert.equal(value(b, 'orthanc_transfers_created_push_count'), 1);
    assert.equal(value(b, 'orthanc_transfers_committed_push_count'), 1);
    assert.equal(value(b, 'orthanc_transfers_aborted_push_count'), 0);
    assert.equal(value(b, 'orthanc_transfers_push_total_received_bytes_count'), totalSize);
    assert.equal(value(b, 'orthanc_transfers_available_push_count'), 32);
    // Without compression the buckets on the wire are the files' bytes.
    assert.equal(value(b, 'dicom_xfer_push_received_wire_bytes_total'), totalSize);
    assert.equal(value(b, 'dicom_xfer_push_received_wire_bytes_total'), sum(puts.map((r) => r.requestBytes)));
    assert.equal(value(b, 'dicom_xfer_push_received_bucket_bytes_total'), totalSize);
    assert.equal(value(b, 'dicom_xfer_push_received_buckets_total'), buckets);
    assert.equal(value(b, 'dicom_xfer_bucket_duration_seconds_count{side="receive"}'), buckets);

    // The sender (A): every byte of every call to B, as the proxy counted them.
    assert.equal(value(a, 'dicom_xfer_peer_sent_bytes_total{peer="b"}'), sum(records.map((r) => r.requestBytes)));
    assert.equal(value(a, 'dicom_xfer_peer_received_bytes_total{peer="b"}'), sum(records.map((r) => r.responseBytes)));
    assert.equal(value(a, 'dicom_xfer_peer_requests_total{peer="b"}'), records.length);
    assert.equal(value(a, 'dicom_xfer_peer_failures_total{peer="b"}'), 0);
    assert.equal(value(a, 'dicom_xfer_bucket_duration_seconds_count{side="send"}'), buckets);
    assert.equal(value(a, 'dicom_xfer_jobs_finished_total{type="PushTransfer",state="Success"}'), 1);
    assert.equal(value(a, 'dicom_xfer_jobs{type="PushTransfer",state="Success"}'), 1);
    assert.equal(value(a, 'dicom_xfer_jobs_active'), 0);
    assert.equal(value(a, 'dicom_xfer_retries_total'), 0);
    // Nothing was received by A's own receiver.
    assert.equal(value(a, 'orthanc_transfers_created_push_count'), 0);
  });

  test('a pull: the data source counts the chunks it served, the puller what it fetched', async () => {
    await emptyNode(pair.b.url);
    pair.toA.clearRecords();
    const before = await metrics(pair.a.url);
    const h = await startTransfer(pair.b.url, 'pull', { Resources: [{ Level: 'Study', ID: study }], Peer: 'a', Compression: 'none' });
    const job = await waitJob(pair.b.url, h.ID as string);
    assert.equal(job.State, 'Success', JSON.stringify(job));
    const buckets = job.Content.TotalBuckets as number;
    const records = pair.toA.records();
    const gets = pair.toA.records({ method: 'GET', path: '/transfers/chunks/' });
    assert.equal(gets.length, buckets);
    const a = await metrics(pair.a.url);
    const b = await metrics(pair.b.url);
    const delta = (key: string) => value(a, key) - (before.get(key) ?? 0);
    assert.equal(delta('dicom_xfer_chunk_served_bytes_total'), totalSize);
    assert.equal(delta('dicom_xfer_chunk_requests_total'), buckets);
    // No gzip answer yet: the level is where it starts, the fastest.
    assert.equal(value(a, 'dicom_xfer_chunk_gzip_level'), 1);
    assert.equal(value(a, 'dicom_xfer_bucket_duration_seconds_count{side="serve"}'), buckets);
    assert.equal(sum(gets.map((r) => r.responseBytes)), totalSize);
    assert.equal(value(b, 'dicom_xfer_peer_received_bytes_total{peer="a"}'), sum(records.map((r) => r.responseBytes)));
    assert.equal(value(b, 'dicom_xfer_peer_sent_bytes_total{peer="a"}'), sum(records.map((r) => r.requestBytes)));
    assert.equal(value(b, 'dicom_xfer_bucket_duration_seconds_count{side="fetch"}'), buckets);
    assert.equal(value(b, 'dicom_xfer_jobs_finished_total{type="PullTransfer",state="Success"}'), 1);
  });

  test('a transaction discarded by DELETE counts as aborted, not committed', async () => {
    const before = await metrics(pair.b.url);
    const [id, md5] = [...(await storedMd5s(pair.a.url)).entries()][0] as [string, string];
    const size = imported.size.get(id) as number;
    const create = await postJson(pair.b.url, '/transfers/push', {
      Instances: [{ ID: id, Size: String(size), MD5: md5 }],
      Buckets: [[{ ID: id, Offset: '0', Size: String(size) }]],
      Compression: 'none',
    });
    assert.equal(create.status, 200, create.body.toString());
    const path = (JSON.parse(create.body.toString()) as { Path: string }).Path;
    assert.equal((await call(pair.b.url, 'DELETE', path)).status, 200);
    const b = await metrics(pair.b.url);
    const delta = (key: string) => value(b, key) - (before.get(key) ?? 0);
    assert.equal(delta('orthanc_transfers_created_push_count'), 1);
    assert.equal(delta('orthanc_transfers_aborted_push_count'), 1);
    assert.equal(delta('orthanc_transfers_committed_push_count'), 0);
    assert.equal(value(b, 'orthanc_transfers_available_push_count'), 32);
  });

  test('retries and skipped instances follow the job Content', async () => {
    await emptyNode(pair.b.url);
    const before = await metrics(pair.a.url);
    // The first bucket PUT is refused once with 503: one retry.
    pair.toB.failWith(503, { method: 'PUT', times: 1 });
    const h = await startTransfer(pair.a.url, 'send', { Resources: [{ Level: 'Study', ID: study }], Peer: 'b', Compression: 'gzip' });
    const job = await waitJob(pair.a.url, h.ID as string);
    pair.toB.clearRules();
    assert.equal(job.State, 'Success', JSON.stringify(job));
    assert.equal(job.Content.Retries, 1);
    // The same study again: with the dedupe extension B says it has every instance; without it, nothing is skipped.
    const again = await waitJob(
      pair.a.url,
      (await startTransfer(pair.a.url, 'send', { Resources: [{ Level: 'Study', ID: study }], Peer: 'b', Compression: 'gzip' }))
        .ID as string,
    );
    assert.equal(again.State, 'Success', JSON.stringify(again));
    const a = await metrics(pair.a.url);
    const delta = (key: string) => value(a, key) - (before.get(key) ?? 0);
    assert.equal(delta('dicom_xfer_retries_total'), 1 + Number(again.Content.Retries ?? 0));
    const skipped = Number(job.Content.SkippedInstances ?? 0) + Number(again.Content.SkippedInstances ?? 0);
    assert.equal(delta('dicom_xfer_skipped_instances_total'), skipped);
    if (again.Content.SkippedInstances !== undefined) assert.equal(again.Content.SkippedInstances, imported.size.size);
  });

  test('the throughput gauge and the default process metrics are published', async () => {
    const a = await metrics(pair.a.url);
    assert.ok(value(a, 'dicom_xfer_throughput_bytes_per_second{direction="sent"}') >= 0);
    assert.ok(value(a, 'dicom_xfer_throughput_bytes_per_second{direction="received"}') >= 0);
    assert.ok(value(a, 'dicom_xfer_process_resident_memory_bytes') > 0);
    // The event loop's delay since the last scrape (0 when a scrape just before left no sample): what a
    // receiver's stalls during a transfer are read from.
    for (const stat of ['p99', 'max']) {
      const lag = value(a, `dicom_xfer_nodejs_eventloop_lag_${stat}_seconds`);
      assert.ok(Number.isFinite(lag) && lag >= 0, `${stat} ${lag}`);
    }
    assert.equal(value(a, 'orthanc_transfers_used_cache_size'), 0);
  });
});

describe('metrics of C-STORE jobs to a modality', { skip: needs(REAL_DICOM) || needsDcmtk(), timeout: 180_000 }, () => {
  let scp: StoreScp;
  let node: XferNode;
  before(async () => {
    scp = await startStoreScp();
    node = await startXferNode({ config: { DicomModalities: { scp: [scp.aet, '127.0.0.1', scp.port] } } });
  });
  after(async () => {
    await node?.stop();
    await scp?.stop();
  });

  test('DicomModalityStore jobs are counted by state and when they end, as the transfer jobs are', async () => {
    const type = 'type="DicomModalityStore"';
    const before = await metrics(node.url);
    for (const state of ['Pending', 'Running', 'Success', 'Failure'])
      assert.equal(value(before, `dicom_xfer_jobs{${type},state="${state}"}`), 0);
    const all = await onePerSyntax(100, []);
    const good = all.filter((f) => !NOT_IN_STORESCP.includes(f.ts)).slice(0, 3);
    const refused = all.find((f) => NOT_IN_STORESCP.includes(f.ts));
    assert.ok(refused && good.length === 3, 'the test data holds files storescp takes and one it refuses');
    const ids = await upload(
      node.url,
      good.map((f) => f.path),
    );
    const [refusedId] = await upload(node.url, [refused.path]);
    const ok = await postJson(node.url, '/modalities/scp/store', { Resources: ids, Asynchronous: true });
    assert.equal((await jobEnd(node.url, String(json(ok).ID))).State, 'Success');
    const bad = await postJson(node.url, '/modalities/scp/store', { Resources: [refusedId], Asynchronous: true });
    assert.equal((await jobEnd(node.url, String(json(bad).ID))).State, 'Failure');
    const after = await metrics(node.url);
    assert.equal(value(after, `dicom_xfer_jobs{${type},state="Success"}`), 1);
    assert.equal(value(after, `dicom_xfer_jobs{${type},state="Failure"}`), 1);
    assert.equal(value(after, `dicom_xfer_jobs_finished_total{${type},state="Success"}`), 1);
    assert.equal(value(after, `dicom_xfer_jobs_finished_total{${type},state="Failure"}`), 1);
    assert.equal(value(after, 'dicom_xfer_jobs_active'), 0);
    assert.equal((await scp.files()).length, ids.length);
  });
});
