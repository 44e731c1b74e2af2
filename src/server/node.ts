// A running dicom-xfer node: configuration, store (embedded, or a real Orthanc), the HTTP application with
// its modules, and a clean stop.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { createNodeLogger, logFormat } from './log.ts';
import { loadConfig } from '../config/load.ts';
import type { Config, ConfigOverrides } from '../config/types.ts';
import { X509Certificate, createPrivateKey, randomUUID } from 'node:crypto';
import { buildApp, type NodeContext, type NodeModule } from './app.ts';
import { EmbeddedStore } from '../store/embedded/store.ts';
import { OrthancStore } from '../store/orthanc/store.ts';
import type { Store } from '../store/types.ts';
import { transfersClientModule } from '../transfer/client-routes.ts';
import { transfersServerModule } from '../transfer/server-routes.ts';
import { peersModule } from '../peers/routes.ts';
import { metricsModule } from '../metrics/metrics.ts';
import { uiModule } from '../ui/module.ts';
import { openapiModule } from '../openapi/openapi.ts';
import { orthancProxyModule } from '../proxy/module.ts';

export interface ServeFlags {
  port?: string;
  host?: string;
  data?: string;
  config?: string;
  logLevel?: string;
  orthanc?: string;
  orthancUsername?: string;
  orthancPassword?: string;
  /** Forward what the node does not answer to the Orthanc of the Orthanc store (OrthancStore.Proxy). */
  proxy?: boolean;
}

export interface RunningNode {
  config: Config;
  url: string;
  logger: Logger;
  /** Stops accepting requests, lets in-flight ones finish, closes the database. */
  stop(): Promise<void>;
}

/** The modules of a node, registered in this order after the core REST API. */
export const NODE_MODULES: NodeModule[] = [
  peersModule, // first: the other modules reach the peers through getPeers(ctx)
  transfersServerModule,
  transfersClientModule,
  metricsModule, // after the peers and transfers modules: it reads their counters
  uiModule, // after metricsModule: the dashboard shows its throughput
  openapiModule, // builds its document when asked, from the routes of every module
  orthancProxyModule, // last: Orthanc's jobs in /jobs, and (with Proxy) the fallback to Orthanc
];

function overridesFrom(flags: ServeFlags): ConfigOverrides {
  const o: ConfigOverrides = {};
  if (flags.port !== undefined) {
    const n = Number(flags.port);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--port: expected a port number, got "${flags.port}"`);
    o.HttpPort = n;
  }
  if (flags.host !== undefined) o.HttpHost = flags.host;
  if (flags.data !== undefined) o.StorageDirectory = flags.data;
  if (flags.logLevel !== undefined) o.LogLevel = flags.logLevel as ConfigOverrides['LogLevel'];
  if (flags.orthanc !== undefined) {
    o.OrthancStore = { Url: flags.orthanc, Username: flags.orthancUsername, Password: flags.orthancPassword };
  } else if (flags.orthancUsername !== undefined || flags.orthancPassword !== undefined) {
    throw new Error('--orthanc-username and --orthanc-password need --orthanc <url>');
  }
  return o;
}

/**
 * The PEM of SslCertificate, which must hold the certificate and its private key (as Orthanc's does):
 * a missing part is named here rather than left to a TLS error at listen time.
 */
async function readSslPem(file: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`SslCertificate: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const both = 'it must hold the server certificate and its private key (unencrypted), both in PEM, one after the other';
  try {
    new X509Certificate(pem);
  } catch {
    throw new Error(`SslCertificate: ${file} holds no certificate that can be read; ${both}`);
  }
  try {
    createPrivateKey(pem);
  } catch {
    throw new Error(`SslCertificate: ${file} holds no private key (or one that cannot be read without a passphrase); ${both}`);
  }
  return pem;
}

/** A listen failure in plain words: a port in use or not allowed says so, and what to do. */
function listenError(e: unknown, host: string, port: number): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return new Error(`port ${port} on ${host} is already in use (another dicom-xfer node, an Orthanc?): stop that program, or choose another port with --port (or HttpPort)`);
  }
  if (code === 'EACCES') {
    return new Error(`port ${port} on ${host} needs privileges this user does not have: choose a port above 1023 with --port (or HttpPort)`);
  }
  if (code === 'EADDRNOTAVAIL') {
    return new Error(`cannot listen on ${host}: no network interface of this machine has that address (--host or HttpHost)`);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** Starts a node from flags and the configuration file; resolves once it listens. */
export async function startNode(flags: ServeFlags): Promise<RunningNode> {
  const { config, warnings } = await loadConfig({ file: flags.config, overrides: overridesFrom(flags) });
  // Synchronous on stderr (see createNodeLogger); readable lines on a terminal, JSON otherwise.
  const logger = createNodeLogger({ level: config.LogLevel, name: config.Name, format: logFormat(process.stderr.isTTY === true) });
  for (const w of warnings) logger.warn(w);
  if (flags.proxy) {
    if (!config.OrthancStore) throw new Error('--proxy needs --orthanc <url> (or an OrthancStore key)');
    config.OrthancStore.proxy = true;
  }
  // Before the store opens: a bad certificate file must not leave the storage directory locked.
  let sslPem: string | undefined;
  if (config.SslEnabled) {
    if (!config.SslCertificate) throw new Error('SslEnabled is true but SslCertificate is not set');
    sslPem = await readSslPem(config.SslCertificate);
  }
  const orthanc = config.OrthancStore;
  const store: Store = orthanc
    ? await OrthancStore.open({
        url: orthanc.url,
        username: orthanc.username,
        password: orthanc.password,
        timeoutSeconds: orthanc.timeout,
        rangeCacheBytes: orthanc.rangeCacheSize * 1024 * 1024,
        storageDirectory: config.StorageDirectory,
        commitThreads: config.Transfers.CommitThreadsCount,
        verifyPeers: config.HttpsVerifyPeers,
        caFile: config.HttpsCACertificates,
        logger,
      })
    : await EmbeddedStore.open(config.StorageDirectory, {
        overwriteInstances: config.OverwriteInstances,
        stableAgeSeconds: config.StableAge,
        commitThreads: config.Transfers.CommitThreadsCount,
      });
  const ctx: NodeContext = {
    config,
    store,
    logger,
    originator: randomUUID(),
    httpTimeoutSeconds: config.HttpTimeout > 0 ? config.HttpTimeout : 3600,
  };
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  try {
    app = await buildApp({ ctx, sslPem, modules: NODE_MODULES });
    await app.fastify.listen({ port: config.HttpPort, host: config.HttpHost }).catch((e: unknown) => {
      throw listenError(e, config.HttpHost, config.HttpPort);
    });
  } catch (e) {
    await app?.closeModules().catch(() => undefined);
    await store.close();
    throw e;
  }
  const started = app;
  const addr = started.fastify.server.address();
  const port = addr && typeof addr === 'object' ? addr.port : config.HttpPort;
  const hostForUrl = config.HttpHost.includes(':') ? `[${config.HttpHost}]` : config.HttpHost;
  const url = `${config.SslEnabled ? 'https' : 'http'}://${hostForUrl === '0.0.0.0' ? '127.0.0.1' : hostForUrl}:${port}`;
  logger.info({ url, storage: config.StorageDirectory }, 'dicom-xfer node listening');
  let stopping: Promise<void> | undefined;
  return {
    config,
    url,
    logger,
    stop() {
      stopping ??= (async () => {
        await started.fastify.close();
        await started.closeModules();
        await store.close();
        logger.info('dicom-xfer node stopped');
      })();
      return stopping;
    },
  };
}

