// Every default of dicom-xfer's configuration, in the units the configuration file uses (Orthanc's units),
// plus the unit constants that code uses to turn those values into bytes and milliseconds.
import type { RateScheduleEntry } from './types.ts';

/** Bytes in a kibibyte; the plugin's "KB" (Transfers.BucketSize) means this. */
export const KiB = 1024;
/** Bytes in a mebibyte; Orthanc's "MB" (MaximumStorageSize, Transfers.CacheSize) means this. */
export const MiB = 1024 * KiB;
/** Bytes in a gibibyte. */
export const GiB = 1024 * MiB;

/** Milliseconds in a second: configuration durations are in seconds, timers in milliseconds. */
export const SECOND = 1000;
/** Milliseconds in a minute. */
export const MINUTE = 60 * SECOND;
/** Milliseconds in an hour. */
export const HOUR = 60 * MINUTE;

/** HTTP host to bind when remote access is not allowed: loopback only. */
export const LOOPBACK_HOST = '127.0.0.1';
/** HTTP host to bind when remote access is allowed: every interface. */
export const ANY_HOST = '0.0.0.0';

/**
 * Defaults of the top-level keys, in configuration units. Keys whose default depends on another key
 * (AuthenticationEnabled, HttpHost) are absent here; their rule lives next to them in schema.ts.
 */
export const DEFAULTS = {
  Name: 'dicom-xfer',
  HttpPort: 8042,
  StorageDirectory: './dicom-xfer-data',
  RemoteAccessAllowed: false,
  RegisteredUsers: {} as Record<string, string>,
  SslEnabled: false,
  /** Seconds; 0 means no timeout. */
  HttpTimeout: 60,
  /** Host names served without authentication beside loopback names and IP addresses. */
  HttpAllowedHosts: [] as string[],
  /** Connections served at once; 0 means no bound. */
  HttpMaxConnections: 512,
  /**
   * Bytes per second, averaged over each HttpTimeout of waiting; 0 means none. Far below what one stream
   * of a real link gets (a 64 kbit/s link shared by 6 buckets gives each over 1 KB/s), so that only a
   * body that trickles on purpose is cut.
   */
  HttpRequestMinimumRate: 100,
  HttpsVerifyPeers: true,
  /** Seconds without a new instance before a patient, study or series counts as stable. */
  StableAge: 60,
  OverwriteInstances: false,
  /** MB; 0 means unlimited. */
  MaximumStorageSize: 0,
  /** Entries of a ZIP uploaded to POST /instances; 0 means unlimited. */
  MaximumZipEntries: 20_000,
  /** MB of a ZIP uploaded to POST /instances, once uncompressed; 0 means unlimited. */
  MaximumZipUncompressedSize: 4096,
  /** Inflated bytes per byte of a gzip-encoded POST /instances body (past 16 MiB); 0 means unlimited. */
  MaximumInflationRatio: 200,
  ConcurrentJobs: 2,
  /** Orthanc opens its DICOM port by default; dicom-xfer only when asked. */
  DicomServerEnabled: false,
  DicomAet: 'DICOMXFER',
  DicomPort: 4242,
  DicomCheckCalledAet: false,
  DicomCheckModalityHost: false,
  DicomAlwaysAllowEcho: true,
  DicomAlwaysAllowStore: true,
  DicomAlwaysAllowFind: false,
  DicomAlwaysAllowMove: false,
  /** Seconds. */
  DicomScuTimeout: 10,
  /** Seconds. */
  DicomScpTimeout: 30,
  /** Seconds. */
  DicomStorageCommitmentTimeout: 600,
  JobsHistorySize: 10,
  SaveJobs: true,
  HttpDescribeErrors: true,
  LogLevel: 'info',
} as const;

/** Defaults of the `Transfers` section: the plugin's own defaults, then dicom-xfer's extensions. */
export const TRANSFERS_DEFAULTS = {
  Threads: 4,
  /** KB (×1024). */
  BucketSize: 4096,
  /** MB (×1,048,576). */
  CacheSize: 512,
  /** The plugin's default is 4; dicom-xfer holds more, their memory bounded by PushTransactionsMemory. */
  MaxPushTransactions: 32,
  MaxHttpRetries: 0,
  /** Seconds. */
  PeerConnectivityTimeout: 2,
  /** Seconds. */
  PeerCommitTimeout: 600,
  CommitThreadsCount: 1,
  // dicom-xfer extensions (the plugin ignores these keys):
  /** Upper bound of workers per job; the effective default is never below Threads. */
  MaxThreads: 64,
  /** Seconds; 0 means never. */
  IdleTransactionTimeout: 3600,
  /** Seconds; 0 means no retries beyond MaxHttpRetries. */
  RetryBudget: 120,
  /** Seconds without a request before a push transaction may be evicted; 0 means as soon as it is idle. */
  IdleBeforeEviction: 60,
  /** MB (×1,048,576) the held push transactions may take in memory together; 0 means no bound. */
  PushTransactionsMemory: 64,
  /** Seconds a push create waits, in turn, for room among MaxPushTransactions; 0 means a 503 at once. */
  PushAdmissionWait: 20,
  /** Whether the node lists and uses the protocol extensions (src/transfer/capabilities.ts). */
  Extensions: true,
  /** Whether transfers between dicom-xfer nodes use small buckets joined into spans (extension bucket-span). */
  BucketSpans: true,
  /** Whether compressed transfers between dicom-xfer nodes use zstd rather than gzip (extension zstd). */
  Zstd: true,
  /** Most instances in one push transaction a receiver accepts (its create body is sized from it). */
  MaxPushInstances: 100_000,
  /** Requests in flight across all transfers of the node; 0 means no cap. */
  MaxRequestsInFlight: 0,
  /** MB (×1,048,576) in flight across all transfers of the node; 0 means no cap. */
  MaxInFlightSize: 0,
  /** Mbit/s (×1,000,000 bits) of all the node's transfers together, in each direction; 0 means no limit. */
  RateLimit: 0,
  /** Limits by day and time; none by default. */
  RateSchedule: [] as RateScheduleEntry[],
} as const;

/** Defaults of the `OrthancStore` section (used only when it is present). */
export const ORTHANC_STORE_DEFAULTS = {
  /** Seconds to wait for an answer of Orthanc; 0 means none. */
  Timeout: 60,
  /** MB of local disk for copies of large instances read in ranges. */
  RangeCacheSize: 1024,
  /** Whether the node forwards the requests it does not answer to Orthanc. */
  Proxy: false,
} as const;

/** Defaults of the `PostgreSQL` section (those of Orthanc's PostgreSQL plugin). */
export const POSTGRES_DEFAULTS = {
  EnableIndex: false,
  Host: 'localhost',
  Port: 5432,
  Database: 'orthanc',
  EnableSsl: false,
  MaximumConnectionRetries: 10,
  /** Seconds between two attempts to connect at start. */
  ConnectionRetryInterval: 5,
  Lock: true,
} as const;
