// HTTP calls of the proxy tests: any method and path sent as written, bodies from memory or streamed
// from a file, answers read whole, JSON answers parsed, Basic credentials built.
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

export const CALL_TIMEOUT_MS = 120_000;

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** One HTTP call with the path sent as written; `body` may be a file streamed with its size. */
export function call(
  base: string,
  method: string,
  path: string,
  body?: string | Buffer | { file: string; size: number },
  headers: Record<string, string> = {},
): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const h: Record<string, string> = { ...headers };
    if (body !== undefined && typeof body === 'object' && !Buffer.isBuffer(body)) h['content-length'] = String(body.size);
    const req = httpRequest(
      { host: u.hostname, port: Number(u.port), method, path, headers: h, agent: false, timeout: CALL_TIMEOUT_MS },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${CALL_TIMEOUT_MS} ms`)));
    if (body !== undefined && typeof body === 'object' && !Buffer.isBuffer(body)) {
      const src = createReadStream(body.file);
      src.on('error', (e) => req.destroy(e));
      src.pipe(req);
    } else req.end(body);
  });
}

export function json<T = Record<string, unknown>>(a: Answer): T {
  return JSON.parse(a.body.toString('utf8')) as T;
}

export async function getJson<T = Record<string, unknown>>(base: string, path: string, headers: Record<string, string> = {}): Promise<T> {
  const a = await call(base, 'GET', path, undefined, headers);
  assert.equal(a.status, 200, `GET ${base}${path}: ${a.status} ${a.body.toString()}`);
  return json<T>(a);
}
