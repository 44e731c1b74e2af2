// The DICOM server's figures in the node's Prometheus registry: associations (accepted, refused, open now)
// and C-STOREs per calling AET (instances, data set bytes, failures), read from the server's counters at
// each scrape.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ScpCounters } from './scp.ts';

/** What the metrics read of the DICOM server. */
export interface DicomServerFigures {
  counters: ScpCounters;
  /** Associations open now. */
  readonly open: number;
}

function total(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function perAet(
  registry: Registry,
  name: string,
  help: string,
  pick: (c: { count: number; bytes: number; failures: number }) => number,
  server: DicomServerFigures,
): void {
  new Counter({
    name,
    help,
    labelNames: ['calling_aet'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [aet, c] of server.counters.stores) this.inc({ calling_aet: aet }, pick(c));
    },
  });
}

export function registerDicomMetrics(registry: Registry, server: DicomServerFigures): void {
  total(
    registry,
    'dicom_xfer_dicom_associations_total',
    'DICOM associations accepted by the DICOM server.',
    () => server.counters.associations,
  );
  total(
    registry,
    'dicom_xfer_dicom_associations_rejected_total',
    'DICOM associations refused (called or calling AET, no acceptable context, too many at once).',
    () => server.counters.associationsRejected,
  );
  new Gauge({
    name: 'dicom_xfer_dicom_associations_open',
    help: 'Connections to the DICOM server open now.',
    registers: [registry],
    collect() {
      this.set(server.open);
    },
  });
  perAet(registry, 'dicom_xfer_dicom_store_instances_total', 'C-STORE requests answered, per calling AET.', (c) => c.count, server);
  perAet(registry, 'dicom_xfer_dicom_store_bytes_total', 'Data set bytes received by C-STORE, per calling AET.', (c) => c.bytes, server);
  perAet(
    registry,
    'dicom_xfer_dicom_store_failures_total',
    'C-STORE requests answered with a failure status, per calling AET.',
    (c) => c.failures,
    server,
  );
}
