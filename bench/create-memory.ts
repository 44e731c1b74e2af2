// node --import tsx bench/create-memory.ts [--instances N] [--size BYTES] [--bucket-kb KB] [--cap N] [--parallel N]
// The cost of one push create on a receiver: a create body of N synthetic instances (100,000 by default)
// is posted to a fresh dicom-xfer node (by N senders at once with --parallel); prints the body size, the
// answer and its time, the node's peak RSS (VmHWM from /proc/<pid>/status) before and after, and the
// staging files 5 s later. No assertion.
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { scheduleBuckets } from '../src/protocol/buckets.ts';
import { toWirePushCreate } from '../src/protocol/wire.ts';
import { startXferNode } from '../test/helpers/node.ts';
import { call } from '../test/helpers/transfer-nodes.ts';

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '100000' },
    size: { type: 'string', default: '1000' },
    'bucket-kb': { type: 'string', default: '4096' },
    cap: { type: 'string' },
    parallel: { type: 'string', default: '1' },
  },
});
const n = Number(values.instances);
const size = Number(values.size);
const hex = (k: number): string => randomBytes(k).toString('hex');
const id = (): string => [hex(4), hex(4), hex(4), hex(4), hex(4)].join('-');

const node = await startXferNode({ config: values.cap ? { Transfers: { MaxPushInstances: Number(values.cap) } } : {} });
const peak = async (): Promise<string> =>
  `${Math.round(Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${node.pid}/status`, 'utf8'))?.[1]) / 1024)} MiB`;
try {
  const instances = Array.from({ length: n }, () => ({ ID: id(), Size: size, MD5: hex(16) }));
  const buckets = scheduleBuckets(instances, { bucketSize: Number(values['bucket-kb']) * 1024 });
  const body = JSON.stringify(toWirePushCreate({ Instances: instances, Buckets: buckets, Compression: 'none' }));
  console.log(`${n} instances, body ${(body.length / 1048576).toFixed(1)} MiB; node peak RSS before: ${await peak()}`);
  const t = Date.now();
  const all = await Promise.all(
    Array.from({ length: Number(values.parallel) }, () =>
      call(node.url, 'POST', '/transfers/push', body).catch((e: unknown) => ({ status: 0, body: Buffer.from(String(e)) })),
    ),
  );
  const a = all[0] as { status: number; body: Buffer };
  if (all.length > 1) console.log(`answers: ${all.map((x) => x.status).join(', ')}`);
  console.log(`create: ${a.status} in ${Date.now() - t} ms; node peak RSS: ${await peak()}`);
  if (a.status !== 200) console.log(a.body.toString().slice(0, 400));
  const tx = a.status === 200 ? (JSON.parse(a.body.toString()) as { Path: string }).Path.split('/').pop() : undefined;
  await new Promise((r) => setTimeout(r, 5000));
  if (tx)
    console.log(
      `staging files 5 s later: ${(await readdir(join(node.dataDir, 'staging', 'push', tx))).length}; node peak RSS: ${await peak()}`,
    );
} finally {
  await node.stop();
}
