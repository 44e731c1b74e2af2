// The dashboard's files (web/ui/, shipped as written: no build step) served under /ui/ with their media
// type, an ETag so a browser revalidates cheaply, and headers that keep the pages same-origin only.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { extname, resolve, sep } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { XferError } from '../errors.ts';

/** The folder of the dashboard's files in the repository. */
export const UI_ROOT = resolve(import.meta.dirname, '..', '..', 'web', 'ui');

/** Media types of the files the dashboard ships; anything else is not served. */
export const MEDIA_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

/** The page may load and call only its own origin; no frame may embed it. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' data:",
  "style-src 'self'",
  "script-src 'self'",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'self'",
  "form-action 'self'",
].join('; ');

interface Cached {
  mtimeMs: number;
  size: number;
  body: Buffer;
  etag: string;
}

const cache = new Map<string, Cached>();

/** The absolute path of `rel` under UI_ROOT; UnknownResource for anything outside it or of an unknown type. */
export function uiFilePath(rel: string): string {
  const decoded = (() => {
    try {
      return decodeURIComponent(rel);
    } catch {
      throw new XferError('UnknownResource', `no dashboard file ${rel}`);
    }
  })();
  const clean = decoded === '' ? 'index.html' : decoded;
  const full = resolve(UI_ROOT, clean);
  if (!full.startsWith(UI_ROOT + sep) || clean.includes('\0') || MEDIA_TYPES[extname(full)] === undefined) {
    throw new XferError('UnknownResource', `no dashboard file ${rel}`);
  }
  return full;
}

/** Reads a file (again only when it changed on disk, so an edited file shows without a restart). */
async function load(path: string, rel: string): Promise<Cached> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch {
    throw new XferError('UnknownResource', `no dashboard file ${rel}`);
  }
  if (!st.isFile()) throw new XferError('UnknownResource', `no dashboard file ${rel}`);
  const hit = cache.get(path);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit;
  const body = await readFile(path);
  const entry: Cached = {
    mtimeMs: st.mtimeMs,
    size: st.size,
    body,
    etag: `"${createHash('sha1').update(body).digest('base64url').slice(0, 20)}"`,
  };
  cache.set(path, entry);
  return entry;
}

/** Headers every dashboard answer carries. */
export function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('X-Content-Type-Options', 'nosniff')
    .header('Referrer-Policy', 'same-origin')
    .header('X-Frame-Options', 'DENY')
    .header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
}

/**
 * Sends the dashboard file `rel` (relative to web/ui/, '' meaning index.html). The names carry no content
 * hash, so the browser keeps a copy but asks again each time (no-cache + ETag: a 304 costs no body).
 */
export async function sendUiFile(req: FastifyRequest, reply: FastifyReply, rel: string): Promise<FastifyReply> {
  const path = uiFilePath(rel);
  const f = await load(path, rel);
  securityHeaders(reply).header('ETag', f.etag).header('Cache-Control', 'no-cache');
  const inm = req.headers['if-none-match'];
  if (typeof inm === 'string' && inm.split(',').some((t) => t.trim() === f.etag || t.trim() === `W/${f.etag}`)) {
    return reply.code(304).send();
  }
  return reply
    .code(200)
    .header('Content-Type', MEDIA_TYPES[extname(path)] as string)
    .header('Content-Length', String(f.body.length))
    .send(f.body);
}
