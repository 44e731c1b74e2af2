// The latency of buckets, fed by whoever sees a bucket done: the transfer jobs (send, fetch) through the
// BucketObserver they are given, and the HTTP server (receive, serve) through an onResponse hook.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Histogram } from 'prom-client';

/** Where a bucket's latency was measured. */
export type BucketSide =
  /** This node PUT a bucket to a peer (push sender): from the request to the end of the answer. */
  | 'send'
  /** This node GET a chunk from a peer (pull receiver): from the request to the last byte. */
  | 'fetch'
  /** A peer PUT a bucket here (push receiver): from the request to the answer sent. */
  | 'receive'
  /** A peer GET a chunk here (data source): from the request to the last byte sent. */
  | 'serve';

/** Told each time a bucket was done. */
export interface BucketObserver {
  observeBucket(side: BucketSide, seconds: number): void;
}

/** Seconds: a bucket is typically 4 MiB, from a LAN (tens of ms) to a slow WAN (a minute). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The histogram of bucket latencies by side; registered by the node's metrics (made before the jobs). */
export class BucketLatency implements BucketObserver {
  readonly histogram = new Histogram({
    name: 'dicom_xfer_bucket_duration_seconds',
    help: 'Time to move one bucket, by side: send (PUT to a peer), fetch (GET from a peer), receive (PUT here), serve (GET here).',
    labelNames: ['side'],
    buckets: LATENCY_BUCKETS,
    registers: [],
  });

  observeBucket(side: BucketSide, seconds: number): void {
    this.histogram.observe({ side }, seconds);
  }
}

/** A fastify onResponse hook telling `observer` of every bucket PUT here and every chunk answer sent. */
export function serverBucketHook(observer: BucketObserver): (req: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return async (req, reply) => {
    if (reply.statusCode !== 200) return;
    const url = req.routeOptions.url;
    if (req.method === 'PUT' && url === '/transfers/push/:tx/:index') observer.observeBucket('receive', reply.elapsedTime / 1000);
    else if (req.method === 'GET' && url === '/transfers/chunks/:ids') observer.observeBucket('serve', reply.elapsedTime / 1000);
  };
}
