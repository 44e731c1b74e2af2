// The node's DICOM server: a TCP listener on HttpHost (loopback unless RemoteAccessAllowed, as HTTP) and
// DicomPort, one NodeScp per association, a bound on associations at once, and a clean close with the node.
import { createServer, type Server, type Socket } from 'node:net';
import dimse from 'dcmjs-dimse';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { IGNORE_ARRIVALS, type ArrivalSink } from '../routing/arrivals.ts';
import type { Store } from '../store/types.ts';
import { storeFinder } from './find-scp.ts';
import { NodeScp, newCounters, type ScpCounters } from './scp.ts';
import type { CommitmentSink, MoveSender } from './services.ts';
import { openIncomingDir } from './store-scp.ts';

/**
 * Associations served at once. Beyond, an association is refused as "local limit exceeded" (transient), so
 * the SCU tries again later; the bound keeps file handles and memory of a burst of modalities in check.
 */
export const MAX_ASSOCIATIONS = 64;

export interface DicomServerOptions {
  config: Config;
  store: Store;
  logger: Logger;
  /** Where stored instances are announced (the routing rules); none by default. */
  arrivals?: ArrivalSink;
  /** Sends the instances of a C-MOVE; without one, C-MOVE is refused as "move destination unknown". */
  move?: MoveSender;
  /** Takes storage commitment reports (N-EVENT-REPORT); without one, they are answered "processing failure". */
  commitments?: CommitmentSink;
  maxAssociations?: number;
}

/** A listen failure in plain words, as the HTTP server says it. */
function listenError(e: unknown, host: string, port: number): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return new Error(
      `DICOM port ${port} on ${host} is already in use (another DICOM server, an Orthanc?): stop it, or choose another DicomPort`,
    );
  }
  if (code === 'EACCES')
    return new Error(`DICOM port ${port} on ${host} needs privileges this user does not have: choose a DicomPort above 1023`);
  return e instanceof Error ? e : new Error(String(e));
}

export class DicomServer {
  readonly counters: ScpCounters = newCounters();
  readonly #opts: DicomServerOptions;
  readonly #sockets = new Set<Socket>();
  readonly #work = new Set<Promise<unknown>>();
  #server: Server | undefined;
  #port = 0;

  constructor(opts: DicomServerOptions) {
    this.#opts = opts;
  }

  /** The bound TCP port (0 before listen). */
  get port(): number {
    return this.#port;
  }

  /** Associations open now. */
  get open(): number {
    return this.#sockets.size;
  }

  async listen(): Promise<void> {
    const { config, store, logger } = this.#opts;
    // The library logs through its own logger at "info": the node logs what matters through pino instead.
    dimse.log.setLevel('silent');
    const incomingDir = await openIncomingDir(store);
    const max = this.#opts.maxAssociations ?? MAX_ASSOCIATIONS;
    const deps = {
      config,
      store,
      incomingDir,
      arrivals: this.#opts.arrivals ?? IGNORE_ARRIVALS,
      find: storeFinder(store),
      move: this.#opts.move,
      commitments: this.#opts.commitments,
      logger: logger.child({ part: 'dicom' }),
      counters: this.counters,
      full: () => this.#sockets.size > max,
      track: (work: Promise<unknown>) => {
        this.#work.add(work);
        void work.finally(() => this.#work.delete(work));
      },
    };
    const server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
      new NodeScp(socket, deps);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(listenError(e, config.HttpHost, config.DicomPort)));
      server.listen({ port: config.DicomPort, host: config.HttpHost }, () => resolve());
    });
    server.on('error', (e) => logger.error({ err: e.message }, 'DICOM server error'));
    this.#server = server;
    const addr = server.address();
    this.#port = addr && typeof addr === 'object' ? addr.port : config.DicomPort;
    logger.info({ aet: config.DicomAet, host: config.HttpHost, port: this.#port }, 'DICOM server listening');
  }

  /**
   * Stops listening, ends every open association, and waits for the work they had begun (an instance being
   * stored, a C-MOVE's sender being stopped) so the store is not closed under it.
   */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await Promise.allSettled([...this.#work]);
    await closed;
  }
}
