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

/** What a counting proxy saw of the STOW-RS requests it passed on. */
export interface StowProxy {
  url: string;
  /** SOP Instance UIDs of every ReferencedSOPSequence answered to the client, one entry per acknowledgement. */
  acknowledged: string[];
  /** Paths of the GET requests the archive answered with success (QIDO-RS, WADO-RS). */
  fetched: string[];
  /** Parts sent in requests that the archive answered with success. */
  partsAnswered: number;
  /** Requests refused by the proxy itself (a wrong token, the archive down). */
  refused: number;
  /** The token the proxy accepts now (undefined: no check). */
  token: string | undefined;
  /** Calls after which the proxy holds each request this long before passing it on (to catch a job mid-way). */
  delayMs: number;
  close(): Promise<void>;
}

/**
 * A reverse proxy on loopback in front of an archive: checks a bearer token when one is set (401 otherwise),
 * answers 502 while the archive is down, and records what each STOW-RS answer acknowledged.
 */
export async function startStowProxy(target: () => string): Promise<StowProxy> {
  const { createServer } = await import('node:http');
  const state: StowProxy = {
    url: '',
    acknowledged: [],
    fetched: [],
    partsAnswered: 0,
    refused: 0,
    token: undefined,
    delayMs: 0,
    close: async () => {},
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        if (state.token !== undefined && req.headers.authorization !== `Bearer ${state.token}`) {
          state.refused++;
          res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
          return;
        }
        if (state.delayMs > 0) await new Promise((r) => setTimeout(r, state.delayMs));
        const body = Buffer.concat(chunks);
        const headers: Record<string, string> = {};
        // Hop-by-hop headers and the length stay here: fetch sets its own.
        const skip = new Set(['host', 'authorization', 'connection', 'keep-alive', 'content-length', 'transfer-encoding']);
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !skip.has(k)) headers[k] = v;
        let answer: Response;
        try {
          answer = await fetch(`${target()}${req.url ?? '/'}`, {
            method: req.method ?? 'GET',
            headers,
            ...(req.method === 'POST' ? { body } : {}),
          });
        } catch (e) {
          if (process.env['DX_PROXY_DEBUG']) console.error('proxy:', e);
          state.refused++;
          res.writeHead(502).end();
          return;
        }
        const out = Buffer.from(await answer.arrayBuffer());
        if (req.method === 'GET' && answer.ok) state.fetched.push(req.url ?? '');
        if (req.method === 'POST' && answer.ok) {
          state.partsAnswered += body.toString('latin1').split('Content-Type: application/dicom\r\n').length - 1;
          const doc = JSON.parse(out.toString('utf8')) as Record<string, { Value?: Record<string, { Value?: string[] }>[] }>;
          for (const item of doc['00081199']?.Value ?? []) state.acknowledged.push(String(item['00081155']?.Value?.[0]));
        }
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/octet-stream' }).end(out);
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  state.url = `http://127.0.0.1:${addr && typeof addr === 'object' ? addr.port : 0}`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
