// Another server's Prometheus text appended to this node's: the families this node writes itself are left
// out of the other's, so that the whole stays valid.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { foreignFamilies } from '../../src/metrics/metrics.ts';

test('families of the other text that this node writes too are left out, the others kept whole', async () => {
  const registry = new Registry();
  new Counter({ name: 'orthanc_transfers_pushes', help: 'ours', registers: [registry] }).inc();
  new Histogram({ name: 'dicom_xfer_bucket_seconds', help: 'ours', registers: [registry] }).observe(1);
  const theirs = [
    '# HELP orthanc_count_instances Number of instances',
    '# TYPE orthanc_count_instances gauge',
    'orthanc_count_instances 42 1764400000000',
    '# a comment of theirs',
    '# TYPE orthanc_transfers_pushes counter',
    'orthanc_transfers_pushes 7',
    'dicom_xfer_bucket_seconds_bucket{le="1"} 3',
    'dicom_xfer_bucket_seconds_count 3',
    '',
    'orthanc_jobs_pending 0',
  ].join('\n');
  const ours = new Set(registry.getMetricsAsArray().map((m) => m.name));
  const kept = foreignFamilies(theirs, ours);
  assert.equal(
    kept,
    [
      '# HELP orthanc_count_instances Number of instances',
      '# TYPE orthanc_count_instances gauge',
      'orthanc_count_instances 42 1764400000000',
      'orthanc_jobs_pending 0',
      '',
    ].join('\n'),
  );
  // Together they parse as one exposition: each family described once.
  const text = `${await registry.metrics()}\n${kept}`;
  const types = text
    .split('\n')
    .filter((l) => l.startsWith('# TYPE '))
    .map((l) => l.split(' ')[2]);
  assert.equal(new Set(types).size, types.length);
  assert.equal(foreignFamilies('', ours), '');
});
