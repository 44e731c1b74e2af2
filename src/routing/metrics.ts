// The routing rules' Prometheus metrics, per rule and destination: instances matched, sent (every
// destination confirmed) and failed, and what waits now (instances queued, groups waiting to be stable).
// Made before the node's registry exists (the route engine counts from its start), registered into it later.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { RouteObserver } from './engine.ts';
import type { RouteFigures } from './figures.ts';

export class RouteMetrics implements RouteObserver {
  readonly #matched = new Counter({
    name: 'dicom_xfer_route_matched_instances_total',
    help: 'Instances a routing rule matched (once per instance and rule).',
    labelNames: ['rule'],
    registers: [],
  });
  readonly #sent = new Counter({
    name: 'dicom_xfer_route_sent_instances_total',
    help: 'Instances a routing rule sent that the destination confirmed, per rule and destination.',
    labelNames: ['rule', 'destination'],
    registers: [],
  });
  readonly #failed = new Counter({
    name: 'dicom_xfer_route_failed_instances_total',
    help: 'Instances whose send by a routing rule failed, per rule and destination.',
    labelNames: ['rule', 'destination'],
    registers: [],
  });
  readonly #gauges: Gauge[];

  /** `figures` answers each rule's figures now (the route engine's), read at each scrape. */
  constructor(figures: () => ReadonlyMap<string, RouteFigures>) {
    const waiting = (name: string, help: string, pick: (f: RouteFigures) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['rule'],
        registers: [],
        collect() {
          this.reset();
          for (const [rule, f] of figures()) this.set({ rule }, pick(f));
        },
      });
    this.#gauges = [
      waiting('dicom_xfer_route_waiting_batches', 'Groups (studies, series) a routing rule waits to see stable.', (f) => f.WaitingBatches),
      waiting('dicom_xfer_route_queued_instances', 'Instances a routing rule matched that wait for their group.', (f) => f.QueuedInstances),
      waiting('dicom_xfer_route_sending_batches', 'Batches a routing rule is sending now.', (f) => f.SendingBatches),
    ];
  }

  registerIn(registry: Registry): void {
    for (const m of [this.#matched, this.#sent, this.#failed, ...this.#gauges]) registry.registerMetric(m);
  }

  matched(rule: string, count: number): void {
    this.#matched.inc({ rule }, count);
  }

  sent(rule: string, destination: string, instances: number): void {
    this.#sent.inc({ rule, destination }, instances);
  }

  failed(rule: string, destination: string, instances: number): void {
    this.#failed.inc({ rule, destination }, instances);
  }
}
