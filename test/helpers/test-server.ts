// A loopback HTTP or HTTPS server for client tests: it records each request (method, URL, headers, body),
// counts its connections (TLS: handshakes completed), answers through a handler, and closes its sockets.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export type TestHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

export interface TestServer {
  url: string;
  seen: Seen[];
  /** Connections accepted (TLS: handshakes completed). */
  connections: number;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 (a free port) with `server`; each request is answered once its body is read. */
export async function listen(server: Server, handler: TestHandler, scheme: 'http' | 'https', seen: Seen[] = []): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const out: TestServer = {
    url: '',
    seen,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  server.on(scheme === 'https' ? 'secureConnection' : 'connection', (s: Socket) => {
    out.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  out.url = `${scheme}://127.0.0.1:${addr.port}`;
  return out;
}
