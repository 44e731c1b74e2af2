// Free TCP ports on loopback for servers that the tests start.
import { createServer } from 'node:net';

/** Ports this process handed out: the kernel may pick a closed port again, and two servers of one test must differ. */
const handedOut = new Set<number>();

/** A port that was free on 127.0.0.1 a moment ago (the kernel picked it), never one this process handed out before. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await kernelPort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no new free port after 50 tries');
}

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('no port'));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

/** Polls `probe` every `intervalMs` until it resolves true, at most `timeoutMs`. */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; Date.now() < deadline && i < 100_000; i++) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
