// The "one request per instance" baseline client of the WAN benchmark: reads every instance of a source
// node (GET /instances/{id}/file, from the control address: the client sits at the source's site) and
// posts it to the destination's POST /instances over one keep-alive connection, one at a time.
// Protocol with the benchmark: prints {"ready":N} once it has the list, waits for "go" on stdin,
// prints {"done":...} or {"error":...}, then waits for stdin to close so its /proc usage can be read.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Client, Pool } from 'undici';

const { values } = parseArgs({
  options: {
    source: { type: 'string' },
    dest: { type: 'string' },
    'control-address': { type: 'string' },
  },
});
if (!values.source || !values.dest) {
  process.stderr.write('usage: post-client --source URL --dest URL [--control-address IP]\n');
  process.exit(2);
}
const sourceUrl = values.source;
const destUrl = values.dest;
const HOUR = 3_600_000;

const source = new Pool(sourceUrl, {
  connections: 2,
  headersTimeout: HOUR,
  bodyTimeout: HOUR,
  ...(values['control-address'] ? { localAddress: values['control-address'] } : {}),
});
// One connection, kept alive between instances: the way a simple upload script talks to a server.
const dest = new Client(destUrl, { headersTimeout: HOUR, bodyTimeout: HOUR, keepAliveTimeout: 60_000 });

const say = (o: unknown): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

async function listInstances(): Promise<string[]> {
  const res = await source.request({ method: 'GET', path: '/instances' });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /instances: HTTP ${res.statusCode} ${text}`);
  return JSON.parse(text) as string[];
}

/** Streams one instance from the source into a POST at the destination; returns its size. */
async function copy(id: string): Promise<number> {
  const src = await source.request({ method: 'GET', path: `/instances/${id}/file` });
  if (src.statusCode !== 200) throw new Error(`GET /instances/${id}/file: HTTP ${src.statusCode} ${await src.body.text()}`);
  const size = Number(src.headers['content-length']);
  if (!Number.isSafeInteger(size)) throw new Error(`GET /instances/${id}/file: no content-length`);
  const res = await dest.request({
    method: 'POST',
    path: '/instances',
    body: src.body,
    headers: { 'content-type': 'application/dicom', 'content-length': String(size) },
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`POST /instances (${id}): HTTP ${res.statusCode} ${text.slice(0, 300)}`);
  return size;
}

async function main(): Promise<void> {
  const ids = await listInstances();
  say({ ready: ids.length });
  const lines = createInterface({ input: process.stdin });
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value.trim() !== 'go') return;
  try {
    let bytes = 0;
    for (const id of ids) bytes += await copy(id);
    say({ done: { instances: ids.length, bytes } });
  } catch (e) {
    say({ error: e instanceof Error ? e.message : String(e) });
  }
  // Stay alive (bounded) until the benchmark has read our CPU time and closes stdin.
  const closed = it.next();
  await Promise.race([closed, new Promise((r) => setTimeout(r, 60_000))]);
  lines.close();
}

main()
  .catch((e: unknown) => say({ error: e instanceof Error ? e.message : String(e) }))
  .finally(async () => {
    await Promise.all([source.close(), dest.close()]).catch(() => undefined);
    process.exit(0);
  });
