// Raw HTTP/1.1 exchanges on loopback sockets, for what ordinary clients do not send: empty Expect
// headers, forged Host and Origin headers, malformed request lines, bodies that trickle.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';

/** Longest wait for one raw exchange; an exchange that must end by itself never gets near it. */
const EXCHANGE_MS = 60_000;

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection (rather than the test giving up). */
  closed: boolean;
}

export function parseAnswer(text: string, closed: boolean): RawAnswer {
  const end = text.indexOf('\r\n\r\n');
  const head = end >= 0 ? text.slice(0, end) : text;
  const [line = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const c = l.indexOf(':');
    if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
  }
  let body = end >= 0 ? text.slice(end + 4) : '';
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body);
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(line)?.[1] ?? 0), headers, body, closed };
}

/** The data of a chunked body (as far as it arrived). */
function dechunk(text: string): string {
  let out = '';
  let at = 0;
  for (let i = 0; i < 100_000 && at < text.length; i++) {
    const eol = text.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(text.slice(at, eol), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
  return out;
}

/** Opens a connection to the node (resolves once connected). */
export function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Writes `parts` on a new connection (each after `gapMs`, when given) and reads the answer until the
 * server closes the connection or (unless `untilClose`) one whole answer (Content-Length) has arrived.
 */
export function exchange(port: number, parts: (string | Buffer)[], gapMs = 0, untilClose = false): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(parseAnswer(text, closed));
    };
    const timer = setTimeout(() => {
      done = true;
      s.destroy();
      reject(new Error(`no whole answer within ${EXCHANGE_MS} ms; got: ${text.slice(0, 300)}`));
    }, EXCHANGE_MS);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const a = parseAnswer(text, false);
      const len = Number(a.headers['content-length'] ?? NaN);
      if (!untilClose && a.status && Number.isFinite(len) && Buffer.byteLength(a.body, 'latin1') >= len) finish(false);
    });
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    void (async () => {
      for (const p of parts) {
        if (done || s.destroyed) return;
        s.write(p);
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      }
    })().catch(reject);
  });
}

/** One request with a body, on a connection of its own (Host and Content-Length added unless given). */
export function request(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer | string = '',
): Promise<RawAnswer> {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const names = Object.keys(headers).map((k) => k.toLowerCase());
  const lines = [`${method} ${path} HTTP/1.1`];
  if (!names.includes('host')) lines.push(`Host: 127.0.0.1:${port}`);
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (!names.includes('content-length')) lines.push(`Content-Length: ${b.length}`);
  lines.push('Connection: close');
  return exchange(port, [Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), b])]);
}

/** Orthanc's JSON error shape, with the status it says. */
export function assertOrthancError(a: RawAnswer, status: number, method: string, uri: string): Record<string, unknown> {
  assert.equal(a.status, status, a.body);
  assert.match(a.headers['content-type'] ?? '', /^application\/json/);
  const body = JSON.parse(a.body) as Record<string, unknown>;
  assert.equal(body['HttpStatus'], status);
  assert.equal(typeof body['HttpError'], 'string');
  assert.equal(typeof body['Message'], 'string');
  assert.equal(typeof body['OrthancStatus'], 'number');
  assert.equal(typeof body['OrthancError'], 'string');
  assert.equal(body['Method'], method);
  assert.equal(body['Uri'], uri);
  return body;
}
