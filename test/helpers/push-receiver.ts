// Shared plumbing of the push receiver tests: raw requests to a node, PUTs held in flight, real DICOM
// instances loaded as a transfer declares them, and the node's staging folder of push transactions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { join } from 'node:path';
import { orthancIds } from '../../src/dicom/ids.ts';
import { parseDicomHeader } from '../../src/dicom/parse.ts';
import { toWirePushCreate, type Bucket, type Compression, type InstanceInfo } from '../../src/protocol/wire.ts';
import type { XferNode } from './node.ts';
import { waitFor } from './ports.ts';
import { REAL_DICOM } from './data.ts';

const DATA = REAL_DICOM;
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function collect(req: ClientRequest): Promise<Answer> {
  return new Promise((resolve, reject) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** One request, the path sent exactly as written. */
export function raw(
  node: XferNode,
  method: string,
  path: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const req = httpRequest({ host: '127.0.0.1', port: node.port, method, path, headers, agent: false });
  const answer = collect(req);
  req.end(body);
  return answer;
}

/**
 * A PUT whose body is sent in two steps: the headers and `first` now, the rest when `finish` is called.
 * Lets a test hold a request in flight on the server.
 */
export function slowPut(node: XferNode, path: string, first: Buffer, rest: Buffer) {
  const req = httpRequest({
    host: '127.0.0.1',
    port: node.port,
    method: 'PUT',
    path,
    agent: false,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(first.length + rest.length) },
  });
  const answer = collect(req);
  req.write(first);
  return {
    answer,
    finish(): Promise<Answer> {
      req.end(rest);
      return answer;
    },
  };
}

export function json(a: Answer): Record<string, unknown> {
  return JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
}

export interface TestInstance extends InstanceInfo {
  data: Buffer;
}

export async function loadInstances(folder: string, count: number): Promise<TestInstance[]> {
  const dir = join(DATA, folder);
  const names = (await readdir(dir))
    .filter((n) => n.endsWith('.dcm'))
    .sort()
    .slice(0, count);
  const out: TestInstance[] = [];
  for (const n of names) {
    const data = await readFile(join(dir, n));
    out.push({ ID: orthancIds(parseDicomHeader(data)).instance, Size: data.length, MD5: md5(data), data });
  }
  return out.sort((a, b) => (a.ID < b.ID ? -1 : 1));
}

export function payload(instances: readonly TestInstance[], bucket: Bucket): Buffer {
  const byId = new Map(instances.map((i) => [i.ID, i.data]));
  return Buffer.concat(bucket.map((c) => (byId.get(c.ID) as Buffer).subarray(c.Offset, c.Offset + c.Size)));
}

export function createBody(instances: readonly TestInstance[], buckets: Bucket[], compression: Compression): string {
  return JSON.stringify(
    toWirePushCreate({ Instances: instances.map(({ ID, Size, MD5 }) => ({ ID, Size, MD5 })), Buckets: buckets, Compression: compression }),
  );
}

export async function create(node: XferNode, body: string): Promise<{ ID: string; Path: string }> {
  const r = await raw(node, 'POST', '/transfers/push', body, { 'Content-Type': 'application/json' });
  assert.equal(r.status, 200, r.body.toString());
  return json(r) as { ID: string; Path: string };
}

export function pushDir(node: XferNode, tx?: string): string {
  return tx ? join(node.dataDir, 'staging', 'push', tx) : join(node.dataDir, 'staging', 'push');
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Waits until the staged file of `id` in `tx` starts with `bytes`: the server is writing that PUT. */
export async function waitStaged(node: XferNode, tx: string, id: string, at: number, bytes: Buffer): Promise<void> {
  await waitFor(
    `the first bytes of a bucket of ${tx} on disk`,
    async () => {
      const f = await readFile(join(pushDir(node, tx), `${id}.dcm`));
      return f.subarray(at, at + bytes.length).equals(bytes);
    },
    20_000,
    20,
  );
}

export async function instanceMd5(node: XferNode, id: string): Promise<Answer> {
  return raw(node, 'GET', `/instances/${id}/attachments/dicom/md5`);
}
