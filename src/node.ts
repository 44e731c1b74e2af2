// The composition root of a dicom-xfer node: it loads the configuration, opens the store, builds every part
// (peers, transfers server, jobs engine, metrics, dashboard, Orthanc proxy) as a plain object, hands each
// what it needs, registers the routes, and stops them in the reverse order. No part finds another by itself.
import { randomUUID, X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { registerModalityRoutes } from './api/modalities.ts';
import { embeddedApiOf, registerStoreApi, uploadLimitsOf } from './api/orthanc-api.ts';
import { registerDicomWebServer } from './dicomweb/server/index.ts';
import { registerArrivalMetadata } from './api/routes-metadata.ts';
import { registerRoutesApi } from './api/routes.ts';
import type { ArrivalSink } from './routing/arrivals.ts';
import type { RouteEngine } from './routing/engine.ts';
import { RouteMetrics } from './routing/metrics.ts';
import { openRouting } from './routing/module.ts';
import { senderPeer, type RequestSender } from './routing/origin.ts';
import { registerSystemRoutes } from './api/system.ts';
import { loadConfig } from './config/load.ts';
import type { Config, ConfigOverrides } from './config/types.ts';
import { openPgDatabase, type PgDatabase } from './db/postgres/database.ts';
import { openJobsDb } from './jobs/db.ts';
import { JobsEngine, type JobType } from './jobs/engine.ts';
import type { JobStore } from './jobs/store.ts';
import { registerJobRoutes } from './jobs/routes.ts';
import { BucketLatency, serverBucketHook } from './metrics/buckets.ts';
import { NodeMetrics, registerMetricsRoutes } from './metrics/metrics.ts';
import { registerOpenApi } from './openapi/openapi.ts';
import { Peers } from './peers/peers.ts';
import { registerPeerRoutes } from './peers/routes.ts';
import { openOrthancProxy } from './proxy/module.ts';
import { createHttpApp, type HttpApp } from './server/app.ts';
import { createNodeLogger, logFormat } from './server/log.ts';
import { EmbeddedStore } from './store/embedded/store.ts';
import { OrthancStore } from './store/orthanc/store.ts';
import type { Store } from './store/types.ts';
import { registerTransfersClientRoutes } from './transfer/client-routes.ts';
import { transferRunners, type TransferDeps } from './transfer/jobs.ts';
import { RemotePullFollower } from './transfer/remote-job.ts';
import type { LinkProfileStore } from './transfer/adaptive/link-profile.ts';
import type { PushTransactionState } from './transfer/push-state/types.ts';
import { SqliteLinkProfiles } from './transfer/adaptive/link-profile-sqlite.ts';
import { InFlight } from './transfer/in-flight.ts';
import { BandwidthPolicy, policyClock } from './transfer/bandwidth/policy.ts';
import { openTransfersServer, registerTransfersServerRoutes, type TransfersServer } from './transfer/server-routes.ts';
import { registerUi } from './ui/module.ts';
import { TransfersPeerDirectory } from './transfer/peer-directory.ts';
import { XferError } from './errors.ts';
import { CommitmentTracker } from './dimse/commitment.ts';
import { ModalityDirectory, combinedListing } from './dimse/modality-destination.ts';
import { createModalitySender } from './dimse/move-sender.ts';
import type { CommitmentSink, MoveSender } from './dimse/services.ts';
import { DicomStoreJob } from './dimse/store-job.ts';
import { DicomServer } from './dimse/server.ts';
import { registerDicomMetrics } from './dimse/server-metrics.ts';
import { DicomWebServers } from './dicomweb/client/servers.ts';
import { DicomWebDirectory } from './dicomweb/client/stow-destination.ts';
import { DicomWebStowJob } from './dicomweb/client/stow-job.ts';
import { DicomWebRetrieveJob } from './dicomweb/client/retrieve-job.ts';
import { registerDicomWebClientRoutes } from './dicomweb/client/routes.ts';

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
    return new Error(
      `port ${port} on ${host} is already in use (another dicom-xfer node, an Orthanc?): stop that program, or choose another port with ` +
        `--port (or HttpPort)`,
    );
  }
  if (code === 'EACCES') {
    return new Error(
      `port ${port} on ${host} needs privileges this user does not have: choose a port above 1023 with --port (or HttpPort)`,
    );
  }
  if (code === 'EADDRNOTAVAIL') {
    return new Error(`cannot listen on ${host}: no network interface of this machine has that address (--host or HttpHost)`);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** What a node is built from: its configuration, its open store, its logger. */
export interface NodeBase {
  config: Config;
  store: Store;
  logger: Logger;
  /** This node's random UUID (the plugin's "Originator"); a new one when absent. */
  originator?: string;
  /** The clock whose local time picks the RateSchedule entry in force; Date.now when absent. */
  now?: () => number;
  /** State kept in a database rather than in StorageDirectory's SQLite files (PostgreSQL); the caller closes it. */
  state?: { jobs: JobStore; linkProfiles: LinkProfileStore; pushState: PushTransactionState };
}

/** The parts of a built node, for the tests that watch them. */
export interface NodeParts {
  peers: Peers;
  transfers: TransfersServer;
  engine: JobsEngine;
  metrics: NodeMetrics;
  inFlight: InFlight;
  routing: RouteEngine;
  /** Where the DICOM server hands the storage commitment reports it receives (N-EVENT-REPORT). */
  commitments: CommitmentSink;
  /** What the DICOM server's C-MOVE sends with: the SCU towards the modalities of DicomModalities. */
  moveSender: MoveSender;
  /** The DICOM server, when DicomServerEnabled. */
  dicom?: DicomServer;
}

/** A node built but not listening yet (the store stays the caller's to close). */
export interface NodeApp extends HttpApp {
  parts: NodeParts;
  /** Closes the HTTP server (letting in-flight requests finish), then every part in the reverse order. */
  close(): Promise<void>;
}

/** Closers run in the reverse order of their adding, each once. */
class Closers {
  readonly #closers: (() => unknown)[] = [];

  add(close: () => unknown): void {
    this.#closers.push(close);
  }

  async run(): Promise<void> {
    for (let c = this.#closers.pop(); c; c = this.#closers.pop()) await c();
  }
}

/** Seconds without a byte after which a request body is abandoned (HttpTimeout, 0 = an hour). */
function httpTimeoutOf(config: Config): number {
  return config.HttpTimeout > 0 ? config.HttpTimeout : 3600;
}

function sqliteLinkProfiles(config: Config, logger: Logger, closers: Closers): LinkProfileStore {
  const profiles = SqliteLinkProfiles.open(join(config.StorageDirectory, 'link-profiles.sqlite'), logger);
  closers.add(() => profiles.close());
  return profiles;
}

function sqliteJobs(config: Config, closers: Closers): ReturnType<typeof openJobsDb> {
  const db = openJobsDb(join(config.StorageDirectory, 'jobs.sqlite'));
  closers.add(() => db.close());
  return db;
}

/**
 * The jobs engine (persistent in <StorageDirectory>/jobs.sqlite) with the runners of the transfer jobs,
 * each handed the peers, the store, the bucket observer and the node's in-flight budget. Not started.
 */
function openJobs(
  base: NodeBase,
  peers: Peers,
  latency: BucketLatency,
  inFlight: InFlight,
  closers: Closers,
  arrivals: ArrivalSink,
  dicomWeb: DicomWebServers,
): { engine: JobsEngine; destinations: TransfersPeerDirectory; commitments: CommitmentTracker; dicomWebDestinations: DicomWebDirectory } {
  const { config, store, logger } = base;
  // What the links to the peers taught earlier transfers, so that the next one starts there.
  const linkProfiles = base.state?.linkProfiles ?? sqliteLinkProfiles(config, logger, closers);
  const deps: TransferDeps = {
    inFlight,
    linkProfiles,
    arrivals,
    config,
    store,
    peer(name) {
      const p = peers.get(name);
      if (!p) throw new XferError('UnknownResource', `peer "${name}" is not configured`);
      return { client: peers.client(name), url: p.url };
    },
    observeBucket: (side, seconds) => latency.observeBucket(side, seconds),
  };
  // Where push jobs send, and what the dashboard lists: the transfers peers.
  const destinations = new TransfersPeerDirectory(deps, peers, config);
  const runners = transferRunners(deps, destinations);
  const follower = new RemotePullFollower(deps);
  // The DICOM side: C-STORE jobs to the modalities of DicomModalities, and the storage commitment reports
  // they wait for (the DICOM server hands those to `commitments`, its CommitmentSink).
  const commitments = new CommitmentTracker(config);
  const dicomStore = new DicomStoreJob({ config, store, commitment: commitments });
  // The DICOMweb client: STOW-RS jobs to the servers of DicomWeb.Servers (as destinations), and retrieves from them.
  const dicomWebDestinations = new DicomWebDirectory({ config, store, inFlight, servers: dicomWeb });
  const stow = new DicomWebStowJob(store, dicomWebDestinations);
  const wadoRetrieve = new DicomWebRetrieveJob({ config, store, servers: dicomWeb, arrivals });
  const otherRunners = (type: JobType) =>
    type === 'RemotePullTransfer'
      ? follower
      : type === 'DicomModalityStore'
        ? dicomStore
        : type === 'DicomWebStow'
          ? stow
          : type === 'DicomWebRetrieve'
            ? wadoRetrieve
            : runners(type);
  const engine = new JobsEngine(base.state?.jobs ?? sqliteJobs(config, closers), {
    concurrentJobs: config.ConcurrentJobs,
    historySize: config.JobsHistorySize,
    runners: otherRunners,
    logger,
  });
  closers.add(() => engine.close());
  return { engine, destinations, commitments, dicomWebDestinations };
}

/**
 * The node's own API over its store: Orthanc's resource API and uploads, the routing rules, and on the embedded
 * store the arrivals' metadata and the DICOMweb server (DicomWeb.Enable, under DicomWeb.Root), whose STOW-RS
 * ingests as POST /instances does. Every path announces what it stores to the route engine.
 */
function registerStoreApis(http: HttpApp, base: NodeBase, routing: RouteEngine, httpTimeoutSeconds: number): void {
  const { config, store } = base;
  const { fastify, routes } = http;
  registerStoreApi(fastify, store, config, httpTimeoutSeconds, routes, routing);
  registerRoutesApi(fastify, routing, routes);
  const embedded = embeddedApiOf(store);
  if (!embedded) return;
  registerArrivalMetadata(fastify, embedded, (id) => routing.metadata(id), routes);
  if (config.DicomWeb.Enable) {
    const opts = {
      root: config.DicomWeb.Root,
      store: embedded,
      httpTimeoutSeconds,
      uploadLimits: uploadLimitsOf(config),
      arrivals: routing,
    };
    registerDicomWebServer(fastify, opts, routes);
  }
}

/** Builds the parts of a node and registers their routes on `http`; `closers` gets what to stop. */
async function assemble(http: HttpApp, base: NodeBase, originator: string, closers: Closers): Promise<NodeParts> {
  const { config, store, logger } = base;
  const { fastify, routes } = http;
  const httpTimeoutSeconds = httpTimeoutOf(config);
  let dicom: DicomServer | undefined;
  registerSystemRoutes(http, config, () => dicom?.port ?? config.DicomPort);

  // The bandwidth policy (the node's limit on its clock, each peer's own), which every peer's client meets.
  const bandwidth = new BandwidthPolicy({ config, now: base.now, peerLimit: (name) => peers.get(name)?.rateLimit });
  closers.add(() => bandwidth.close(new XferError('BadSequenceOfCalls', 'the node is stopping')));
  const peers = await Peers.open(config, logger, (name) => bandwidth.gate(name));
  closers.add(() => peers.close());
  registerPeerRoutes(fastify, peers, logger, routes);

  // Routing rules: every ingest path announces what it stores to the route engine (src/routing/).
  const routeMetrics = new RouteMetrics(() => new Map(routing.engine.rules.all().map((r) => [r.Name, routing.engine.figures(r.Name)])));
  const routing = openRouting({ config, store, logger, peers, observer: routeMetrics });
  closers.add(() => routing.close());
  const arrivals = routing.engine;
  registerStoreApis(http, base, routing.engine, httpTimeoutSeconds);
  const peerOfSender = (s: RequestSender) =>
    senderPeer(
      s,
      peers.names().flatMap((n) => peers.get(n) ?? []),
      config.AuthenticationEnabled,
    );

  // One budget of requests and bytes in flight for the whole node: the chunk answers and the jobs' buckets.
  const inFlight = InFlight.fromConfig(config.Transfers);
  const served = { config, store, logger, inFlight, arrivals, senderPeer: peerOfSender };
  const transfers = await openTransfersServer(base.state ? { ...served, pushState: base.state.pushState } : served);
  closers.add(() => transfers.close());
  const paceServed = (body: Readable, signal: AbortSignal) => bandwidth.paceServed(body, signal);
  registerTransfersServerRoutes(fastify, { config, store, server: transfers, originator, httpTimeoutSeconds, paceServed }, routes);
  // Bucket latencies: the jobs report theirs, the HTTP server those of the buckets it received or served.
  const latency = new BucketLatency();
  fastify.addHook('onResponse', serverBucketHook(latency));

  const dicomWeb = new DicomWebServers(config);
  closers.add(() => dicomWeb.close());
  const { engine, destinations, commitments, dicomWebDestinations } = openJobs(base, peers, latency, inFlight, closers, arrivals, dicomWeb);
  const proxy = openOrthancProxy(config, httpTimeoutSeconds);
  registerJobRoutes(fastify, engine, routes, proxy?.foreignJobs);
  registerTransfersClientRoutes(fastify, { config, store, peers, engine, originator, httpTimeoutSeconds }, routes);
  // In front of an Orthanc (Proxy), /modalities stays Orthanc's unless this node has modalities of its own.
  if (!config.OrthancStore?.proxy || Object.keys(config.DicomModalities).length > 0) {
    registerModalityRoutes(fastify, { config, store, engine, httpTimeoutSeconds }, routes);
  }
  registerDicomWebClientRoutes(fastify, { config, store, engine, servers: dicomWeb, httpTimeoutSeconds }, routes);

  const metrics = new NodeMetrics({ peers, server: transfers, engine, latency, inFlight });
  closers.add(() => metrics.close());
  routeMetrics.registerIn(metrics.registry);
  bandwidth.registerIn(metrics.registry);
  registerMetricsRoutes(fastify, metrics, routes, proxy?.foreignMetrics);
  // The dashboard lists every destination: the transfers peers, then the DICOM modalities.
  const listing = combinedListing(destinations, new ModalityDirectory({ config, store }), dicomWebDestinations);
  const bandwidthView = {
    nodeLimitMbps: () => bandwidth.nodeLimitMbps(),
    limitMbps: (p: string) => bandwidth.limitMbps(p),
    now: base.now ?? Date.now,
  };
  closers.add(
    registerUi(
      fastify,
      { config, store, peers, destinations: listing, engine, throughput: metrics.throughput, originator, bandwidth: bandwidthView },
      routes,
    ),
  );
  registerOpenApi(fastify, routes, `dicom-xfer node "${config.Name}"`);
  if (proxy) {
    closers.add(() => proxy.close());
    await proxy.install(http);
  }
  const moveSender = createModalitySender({ config, store });
  // The DICOM server (DicomServerEnabled): C-STORE into the store, C-FIND, C-MOVE, commitment reports.
  if (config.DicomServerEnabled) {
    const server = new DicomServer({ config, store, logger, arrivals, move: moveSender, commitments });
    await server.listen();
    closers.add(() => server.close());
    registerDicomMetrics(metrics.registry, server);
    dicom = server;
  }
  await engine.start();
  routing.engine.start(engine);
  return { peers, transfers, engine, metrics, inFlight, routing: routing.engine, commitments, moveSender, dicom };
}

/** Builds a node on an open store: every part made and its routes registered, not listening yet. */
export async function buildNode(base: NodeBase, sslPem?: string): Promise<NodeApp> {
  const http = createHttpApp({ config: base.config, logger: base.logger, httpTimeoutSeconds: httpTimeoutOf(base.config), sslPem });
  const closers = new Closers();
  let parts: NodeParts;
  try {
    parts = await assemble(http, base, base.originator ?? randomUUID(), closers);
  } catch (e) {
    await closers.run();
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    ...http,
    parts,
    close() {
      closing ??= (async () => {
        await http.fastify.close();
        await closers.run();
      })();
      return closing;
    },
  };
}

/**
 * The store of a configuration: the Orthanc of OrthancStore, or the embedded store in StorageDirectory (its
 * index in PostgreSQL when `pg` is given).
 */
async function openStore(config: Config, logger: Logger, pg?: PgDatabase): Promise<Store> {
  const orthanc = config.OrthancStore;
  if (!orthanc) {
    return EmbeddedStore.open(config.StorageDirectory, {
      ...(pg ? { index: pg.index } : {}),
      overwriteInstances: config.OverwriteInstances,
      stableAgeSeconds: config.StableAge,
      commitThreads: config.Transfers.CommitThreadsCount,
    });
  }
  return OrthancStore.open({
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
  });
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
  // PostgreSQL.EnableIndex: the node's state in PostgreSQL (src/db/postgres/), opened before the store.
  const pg: PgDatabase | undefined = config.PostgreSQL?.enableIndex ? await openPgDatabase(config.PostgreSQL, logger) : undefined;
  const store = await openStore(config, logger, pg).catch(async (e: unknown) => {
    await pg?.close();
    throw e;
  });
  let node: NodeApp | undefined;
  try {
    node = await buildNode({ config, store, logger, now: policyClock(process.env), ...(pg ? { state: pg } : {}) }, sslPem);
    await node.fastify.listen({ port: config.HttpPort, host: config.HttpHost }).catch((e: unknown) => {
      throw listenError(e, config.HttpHost, config.HttpPort);
    });
  } catch (e) {
    await node?.close().catch(() => undefined);
    await store.close();
    await pg?.close();
    throw e;
  }
  const started = node;
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
        await started.close();
        await store.close();
        await pg?.close();
        logger.info('dicom-xfer node stopped');
      })();
      return stopping;
    },
  };
}
