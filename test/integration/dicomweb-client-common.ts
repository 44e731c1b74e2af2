// What the DICOMweb client tests share: a real Orthanc with Debian's DICOMweb plugin as the remote archive,
// a node built in this process with that Orthanc under DicomWeb.Servers, uploads and MD5s.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import type { ConfigOverrides } from '../../src/config/types.ts';
import { buildNode, type NodeApp } from '../../src/node.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { orthancInstalled, startOrthanc, type OrthancOptions, type OrthancServer } from '../helpers/orthanc.ts';

export const DICOMWEB_PLUGIN = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

/** Why the DICOMweb tests cannot run here, or false. */
export function needsDicomWebOrthanc(): string | false {
  if (!orthancInstalled()) return 'needs Orthanc';
  if (!existsSync(DICOMWEB_PLUGIN)) return "needs Debian's orthanc-dicomweb";
  return false;
}

/** An Orthanc with the DICOMweb plugin; its DICOMweb root is `${url}/dicom-web/`. */
export function startDicomWebOrthanc(opts: OrthancOptions = {}): Promise<OrthancServer> {
  return startOrthanc({ ...opts, config: { Plugins: [DICOMWEB_PLUGIN], ...opts.config } });
}

export interface TestNode {
  app: NodeApp;
  url: string;
  dir: string;
  close(opts?: { keep?: boolean }): Promise<void>;
}

/** A node on loopback over an embedded store in `dir` (a new one when absent). */
export async function startNode(overrides: ConfigOverrides, dir?: string): Promise<TestNode> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'dx-dweb-')));
  const { config } = await loadConfig({ overrides: { StorageDirectory: d, HttpPort: 0, ...overrides } });
  const store = await EmbeddedStore.open(d, { commitThreads: 1 });
  const app = await buildNode({ config, store, logger: pino({ level: 'silent' }) });
  await app.fastify.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.fastify.server.address();
  const url = `http://127.0.0.1:${addr && typeof addr === 'object' ? addr.port : 0}`;
  return {
    app,
    url,
    dir: d,
    async close(o) {
      await app.close();
      await store.close();
      if (!o?.keep) await rm(d, { recursive: true, force: true });
    },
  };
}

export const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

/** Uploads files to a node; answers the ID and MD5 of each file it took (files it refuses are left out). */
export async function uploadAll(nodeUrl: string, paths: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const p of paths) {
    const bytes = await readFile(p);
    const r = await fetch(`${nodeUrl}/instances`, { method: 'POST', body: bytes });
    const text = await r.text();
    if (!r.ok) continue;
    out.set((JSON.parse(text) as { ID: string }).ID, md5(bytes));
  }
  return out;
}

/** The MD5 of an instance's file as Orthanc (or a node) serves it. */
export async function fileMd5(base: string, id: string): Promise<string | undefined> {
  const r = await fetch(`${base}/instances/${id}/file`);
  if (!r.ok) return undefined;
  return md5(new Uint8Array(await r.arrayBuffer()));
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try {
    json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    json = { text };
  }
  return { status: r.status, json };
}
