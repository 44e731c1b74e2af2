// The shape of dicom-xfer's configuration once loaded and validated: Orthanc's key names, values in
// configuration units (seconds, KB, MB; see defaults.ts for the constants), every default filled in.

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** One entry of OrthancPeers, normalised from the short or the long form. */
export interface PeerConfig {
  /** The key under OrthancPeers. */
  name: string;
  /** http:// or https:// base URL, always ending with '/'. */
  url: string;
  username?: string;
  password?: string;
  /** Extra headers sent with every request to this peer. */
  httpHeaders: Record<string, string>;
  /** Absolute path of the PEM client certificate. */
  certificateFile?: string;
  /** Absolute path of the PEM private key of the client certificate. */
  certificateKeyFile?: string;
  certificateKeyPassword?: string;
  /** Per-peer HTTP timeout in seconds (Orthanc >= 1.9.1 `Timeout`), overriding HttpTimeout. */
  timeout?: number;
  /** dicom-xfer: `RateLimit`, Mbit/s the transfers with this peer may use in each direction; absent = none. */
  rateLimit?: number;
  /**
   * Every key that Orthanc does not reserve, as a string (booleans become "1"/"0" and integers their
   * decimal text, as Orthanc does). `RemoteSelf` lives here.
   */
  userProperties: Record<string, string>;
}

/** A DICOM modality of `DicomModalities` (Orthanc's short or object form), with Orthanc's defaults filled in. */
export interface ModalityConfig {
  /** The key under DicomModalities. */
  name: string;
  aet: string;
  host: string;
  port: number;
  manufacturer: string;
  allowEcho: boolean;
  allowFind: boolean;
  allowMove: boolean;
  allowGet: boolean;
  allowStore: boolean;
  /** Storage commitment (N-ACTION, N-EVENT-REPORT): false when any of Orthanc's three switches is false. */
  allowStorageCommitment: boolean;
  /** The calling AET used towards this modality, instead of DicomAet. */
  localAet?: string;
  /** Seconds, instead of DicomScuTimeout. */
  timeout?: number;
  /** Associations opened at once to send to it (dicom-xfer's own key); undefined = the default. */
  maximumAssociations?: number;
}

/** One DICOMweb server of `DicomWeb.Servers` (the Orthanc DICOMweb plugin's two forms), normalised. */
export interface DicomWebServerConfig {
  /** The key under DicomWeb.Servers. */
  name: string;
  /** http:// or https:// base URL of the DICOMweb service, always ending with '/'. */
  url: string;
  username?: string;
  password?: string;
  /** Extra headers sent with every request to this server. */
  httpHeaders: Record<string, string>;
  certificateFile?: string;
  certificateKeyFile?: string;
  certificateKeyPassword?: string;
  /** Seconds without an answer, overriding HttpTimeout. */
  timeout?: number;
  /** dicom-xfer: a file holding a bearer token, read again when it changes. */
  bearerTokenFile?: string;
  /** dicom-xfer: a program and its arguments whose standard output is a bearer token. */
  bearerTokenCommand?: string[];
  /** dicom-xfer: seconds a token of the command is used when it says no expiry. */
  tokenLifetime?: number;
  /** dicom-xfer: MB of the largest STOW-RS request; 0 = no cap. */
  maxRequestSize: number;
}

/** The `DicomWeb` section: the node's own DICOMweb server (Enable, Root) and the servers it is a client of. */
export interface DicomWebConfig {
  Enable: boolean;
  /** Path prefix of the node's DICOMweb server, starting and ending with '/'. */
  Root: string;
  Servers: Record<string, DicomWebServerConfig>;
}

/** One routing rule of `Routes` (src/config/routes-schema.ts), defaults filled in. */
export interface RouteRuleConfig {
  Name: string;
  When: 'StableStudy' | 'StableSeries' | 'Instance';
  /** Main DICOM tag name, `CallingAet` or `Origin` → pattern with * and ?. */
  Match: Record<string, string>;
  /** Names of OrthancPeers or DicomModalities entries. */
  Send: string[];
  /** Where to send instead when a destination of Send fails for good. */
  Alternate: string[];
  Compression: 'gzip' | 'none' | 'zstd';
  Priority: number;
  DeleteAfterSend: boolean;
  StorageCommitment: boolean;
}

/** `OrthancStore`: the Orthanc server whose REST API holds the DICOM instead of the embedded store. */
export interface OrthancStoreConfig {
  /** http:// or https:// base URL of Orthanc's REST API, always ending with '/'. */
  url: string;
  username?: string;
  password?: string;
  /** Seconds to wait for an answer of Orthanc (and the longest silence inside one); 0 = none. */
  timeout: number;
  /** MB of local disk for copies of large instances read in ranges (Orthanc sends whole files). */
  rangeCacheSize: number;
  /** Forward every request that dicom-xfer does not answer itself to this Orthanc (src/proxy/). */
  proxy: boolean;
}

/** The `PostgreSQL` section (src/config/postgres-schema.ts), defaults filled in. */
export interface PostgresConfig {
  /** The node's state (index, jobs, push transactions, link profiles) in PostgreSQL. */
  enableIndex: boolean;
  host: string;
  port: number;
  database: string;
  username?: string;
  /** Never logged. */
  password?: string;
  /** postgres:// URI; given, it replaces host, port, database, username and password. */
  connectionUri?: string;
  enableSsl: boolean;
  /** Absolute path of the CA bundle that checks the server's certificate. */
  sslRootCertificate?: string;
  /** Attempts to connect at start after the first. */
  maximumConnectionRetries: number;
  /** Seconds between two of them. */
  connectionRetryInterval: number;
  /** Hold an advisory lock: one node per database. */
  lock: boolean;
}

/** The `Transfers` section: the plugin's keys, then dicom-xfer's extensions. */
export interface TransfersConfig {
  /** HTTP workers per push or pull job; also the bound on concurrently served chunks. */
  Threads: number;
  /** KB: instances smaller than this are grouped into buckets; twice this splits an instance. */
  BucketSize: number;
  /** MB of raw DICOM cached in memory on the sending side. */
  CacheSize: number;
  /** Push transactions held at once by a receiver. */
  MaxPushTransactions: number;
  /** Retries of each outgoing HTTP call. */
  MaxHttpRetries: number;
  /** Seconds allowed for `GET /plugins` when detecting a peer. */
  PeerConnectivityTimeout: number;
  /** Seconds allowed for creating and committing a push transaction. */
  PeerCommitTimeout: number;
  /** Commit workers on the receiving side. */
  CommitThreadsCount: number;
  /** dicom-xfer extension: most workers one job may use (never below Threads). */
  MaxThreads: number;
  /** dicom-xfer extension: seconds of inactivity after which a push transaction is dropped; 0 = never. */
  IdleTransactionTimeout: number;
  /** dicom-xfer extension: seconds one outgoing call may spend being retried; 0 = MaxHttpRetries only. */
  RetryBudget: number;
  /** dicom-xfer extension: seconds without a request before a push transaction may be evicted to make room. */
  IdleBeforeEviction: number;
  /** dicom-xfer extension: seconds a push create waits its turn for room before a 503; 0 = none. */
  PushAdmissionWait: number;
  /** dicom-xfer extension: MB the held push transactions may take in memory together; 0 = no bound. */
  PushTransactionsMemory: number;
  /** dicom-xfer extension: list and use the protocol extensions with peers that list them. */
  Extensions: boolean;
  /** dicom-xfer extension: with Extensions, list and use bucket-span (small buckets joined into spans). */
  BucketSpans: boolean;
  /** dicom-xfer extension: with Extensions, list and use zstd (compressed transfers between dicom-xfer nodes). */
  Zstd: boolean;
  /** dicom-xfer: most instances a receiver accepts in one push transaction (413 beyond). */
  MaxPushInstances: number;
  /** dicom-xfer: most requests in flight across all transfers of the node (jobs and chunk answers); 0 = no cap. */
  MaxRequestsInFlight: number;
  /** dicom-xfer: MB in flight across all transfers of the node (jobs and chunk answers); 0 = no cap. */
  MaxInFlightSize: number;
  /** dicom-xfer: Mbit/s all the node's transfers together may use in each direction, outside RateSchedule; 0 = none. */
  RateLimit: number;
  /** dicom-xfer: limits by day and time of day (local time); the first entry that matches wins. */
  RateSchedule: RateScheduleEntry[];
}

/** One entry of `Transfers.RateSchedule`, as loaded. */
export interface RateScheduleEntry {
  /** Days of the week it applies to, 0 = Sunday … 6 = Saturday (Date.getDay). */
  days: number[];
  /** Minutes after midnight, local time, where it starts (inclusive) and ends (exclusive, up to 1440). */
  from: number;
  to: number;
  /** Mbit/s; 0 = no limit during the entry. */
  rateLimit: number;
}

export interface Config {
  Name: string;
  HttpPort: number;
  /** Address the HTTP server binds. */
  HttpHost: string;
  /** Absolute path. */
  StorageDirectory: string;
  RemoteAccessAllowed: boolean;
  AuthenticationEnabled: boolean;
  /** user -> password */
  RegisteredUsers: Record<string, string>;
  SslEnabled: boolean;
  /** Absolute path of a PEM holding the server certificate and its key; set whenever SslEnabled. */
  SslCertificate?: string;
  /** Seconds; 0 = no timeout. */
  HttpTimeout: number;
  /** Host names accepted in `Host` without authentication, beside loopback names and IP addresses; "*" = any. */
  HttpAllowedHosts: string[];
  /** Connections served at once; 0 = no bound. */
  HttpMaxConnections: number;
  /** Bytes/s a request body must average over each HttpTimeout of waiting; 0 = none. */
  HttpRequestMinimumRate: number;
  HttpsVerifyPeers: boolean;
  /** Absolute path of a PEM bundle of CA certificates for outgoing HTTPS. */
  HttpsCACertificates?: string;
  /** Seconds. */
  StableAge: number;
  OverwriteInstances: boolean;
  /** MB; 0 = unlimited. */
  MaximumStorageSize: number;
  /** Entries of an uploaded ZIP; 0 = unlimited. */
  MaximumZipEntries: number;
  /** MB of an uploaded ZIP once uncompressed; 0 = unlimited. */
  MaximumZipUncompressedSize: number;
  /** Inflated bytes per compressed byte of a gzip-encoded upload; 0 = unlimited. */
  MaximumInflationRatio: number;
  /** 0 = one per CPU core, as in Orthanc. */
  ConcurrentJobs: number;
  JobsHistorySize: number;
  SaveJobs: boolean;
  HttpDescribeErrors: boolean;
  /** Peer name -> peer. */
  OrthancPeers: Record<string, PeerConfig>;
  /** The DICOM server (SCP) is opened. */
  DicomServerEnabled: boolean;
  DicomAet: string;
  /** TCP port of the DICOM server. */
  DicomPort: number;
  DicomCheckCalledAet: boolean;
  DicomCheckModalityHost: boolean;
  DicomAlwaysAllowEcho: boolean;
  DicomAlwaysAllowStore: boolean;
  DicomAlwaysAllowFind: boolean;
  DicomAlwaysAllowMove: boolean;
  /** Seconds the node waits for a modality when it is the SCU. */
  DicomScuTimeout: number;
  /** Seconds of silence after which the DICOM server closes an association. */
  DicomScpTimeout: number;
  /** Seconds a C-STORE job waits for the storage commitment report of a modality. */
  DicomStorageCommitmentTimeout: number;
  /** Modality name -> modality. */
  DicomModalities: Record<string, ModalityConfig>;
  /** Routing rules of the file (the API's changes are kept in routes.sqlite). */
  Routes: RouteRuleConfig[];
  /** The Orthanc DICOMweb plugin's section: the node's DICOMweb server and the DICOMweb servers it sends to. */
  DicomWeb: DicomWebConfig;
  /** When set, the DICOM lives in this Orthanc instead of the embedded store. */
  OrthancStore?: OrthancStoreConfig;
  /** When set with enableIndex, the node's state lives in PostgreSQL. */
  PostgreSQL?: PostgresConfig;
  Transfers: TransfersConfig;
  LogLevel: LogLevel;
}

/** A peer as written in a configuration file: `[url]`, `[url, user, password]` or the long object form. */
export type PeerInput = readonly string[] | Readonly<Record<string, unknown>>;

/**
 * Values given on the command line (or by code), in configuration-file form. An `undefined` value means
 * "not given". Top-level keys replace the file's; `Transfers`, `OrthancPeers` and `RegisteredUsers` merge
 * with the file's entry by entry.
 */
export interface ConfigOverrides {
  Name?: string;
  HttpPort?: number;
  HttpHost?: string;
  StorageDirectory?: string;
  RemoteAccessAllowed?: boolean;
  AuthenticationEnabled?: boolean;
  RegisteredUsers?: Record<string, string>;
  SslEnabled?: boolean;
  SslCertificate?: string;
  HttpTimeout?: number;
  HttpAllowedHosts?: string[];
  HttpMaxConnections?: number;
  HttpRequestMinimumRate?: number;
  HttpsVerifyPeers?: boolean;
  HttpsCACertificates?: string;
  StableAge?: number;
  OverwriteInstances?: boolean;
  MaximumStorageSize?: number;
  MaximumZipEntries?: number;
  MaximumZipUncompressedSize?: number;
  MaximumInflationRatio?: number;
  ConcurrentJobs?: number;
  JobsHistorySize?: number;
  SaveJobs?: boolean;
  HttpDescribeErrors?: boolean;
  OrthancPeers?: Record<string, PeerInput>;
  DicomServerEnabled?: boolean;
  DicomAet?: string;
  DicomPort?: number;
  DicomCheckCalledAet?: boolean;
  DicomCheckModalityHost?: boolean;
  DicomAlwaysAllowEcho?: boolean;
  DicomAlwaysAllowStore?: boolean;
  DicomAlwaysAllowFind?: boolean;
  DicomAlwaysAllowMove?: boolean;
  DicomScuTimeout?: number;
  DicomScpTimeout?: number;
  DicomStorageCommitmentTimeout?: number;
  DicomModalities?: Record<string, unknown>;
  Routes?: unknown[];
  DicomWeb?: Readonly<Record<string, unknown>>;
  /** As in the file: `{ "Url": ..., "Username": ..., "Password": ... }`; replaces the file's whole. */
  OrthancStore?: Readonly<Record<string, unknown>>;
  /** As in the file; replaces the file's whole. */
  PostgreSQL?: Readonly<Record<string, unknown>>;
  Transfers?: Partial<TransfersConfig>;
  LogLevel?: LogLevel;
}
