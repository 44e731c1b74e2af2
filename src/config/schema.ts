// The configuration table: every key dicom-xfer reads, with its zod schema, default, unit and meaning.
// It is the single source for validation, defaults, docs/configuration.md and the API's description.
import { z } from 'zod';
import { RATE_LIMIT_SETTING, RATE_SCHEDULE_SETTING } from './bandwidth-schema.ts';
import { ANY_HOST, DEFAULTS, LOOPBACK_HOST, TRANSFERS_DEFAULTS } from './defaults.ts';
import { isDerived, type Derived, type Setting, type SettingSource } from './setting.ts';
import { LOG_LEVELS, type Config, type TransfersConfig } from './types.ts';
import { DICOM_SETTINGS } from './dicom-settings.ts';
import { POSTGRES_SETTING } from './postgres-schema.ts';
import { ROUTES_SETTING } from './routes-schema.ts';
import { DICOMWEB_SETTING } from './dicomweb-schema.ts';
import { bool, intIn, nonEmpty, onOff, optionalPath, orthancStore, peers, positive, stringMap, uint } from './value-schemas.ts';

// The peer names' rule and reserved keys are part of the configuration's public face.
export { badPeerName, isValidPeerName, PEER_NAME_RULE, RESERVED_PEER_KEYS } from './value-schemas.ts';

export { isDerived, type Derived, type Setting, type SettingSource } from './setting.ts';

// ---- the table --------------------------------------------------------------------------------------------

type TopKey = Exclude<keyof Config, 'Transfers'>;

/** Top-level keys, in the order the docs list them. `Transfers` has its own table below. */
export const SETTINGS: { readonly [K in TopKey]-?: Setting<Config[K]> } = {
  Name: {
    schema: nonEmpty(),
    type: 'string',
    default: DEFAULTS.Name,
    meaning: 'Name of this node, shown by `GET /system`.',
    source: 'orthanc',
  },
  HttpPort: {
    schema: intIn(1, 65535),
    overrideSchema: intIn(0, 65535),
    type: 'integer 1–65535',
    default: DEFAULTS.HttpPort,
    meaning: 'TCP port of the HTTP server (REST API, transfers protocol, dashboard). On the command line, 0 picks a free port.',
    source: 'orthanc',
  },
  HttpHost: {
    schema: nonEmpty('a host name or IP address'),
    type: 'string',
    default: {
      derive: (c) => (c.RemoteAccessAllowed ? ANY_HOST : LOOPBACK_HOST),
      text: `"${ANY_HOST}" if RemoteAccessAllowed, else "${LOOPBACK_HOST}"`,
    },
    meaning: 'Address the HTTP server listens on. Orthanc has no such key; it always listens on every interface.',
    source: 'dicom-xfer',
  },
  StorageDirectory: {
    schema: nonEmpty('a path (non-empty string)'),
    type: 'path',
    default: DEFAULTS.StorageDirectory,
    meaning:
      'Folder of the embedded store (DICOM files and the SQLite index). A relative path is relative to the folder of the configuration ' +
      'file, as in Orthanc.',
    source: 'orthanc',
    path: true,
  },
  RemoteAccessAllowed: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.RemoteAccessAllowed,
    meaning: 'Accept HTTP requests from hosts other than this one.',
    source: 'orthanc',
  },
  AuthenticationEnabled: {
    schema: bool(),
    type: 'boolean',
    default: { derive: (c) => c.RemoteAccessAllowed, text: 'same as RemoteAccessAllowed' },
    meaning: 'Require HTTP Basic authentication with one of RegisteredUsers.',
    source: 'orthanc',
  },
  RegisteredUsers: {
    schema: stringMap('user names to passwords'),
    type: 'object: user → password',
    default: DEFAULTS.RegisteredUsers,
    meaning: 'Users allowed in when AuthenticationEnabled is true.',
    source: 'orthanc',
  },
  SslEnabled: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.SslEnabled,
    meaning: 'Serve HTTPS instead of HTTP.',
    source: 'orthanc',
  },
  SslCertificate: {
    schema: optionalPath(),
    type: 'path',
    default: undefined,
    meaning: 'PEM file holding the server certificate and its private key; required when SslEnabled is true.',
    source: 'orthanc',
    path: true,
  },
  HttpTimeout: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: DEFAULTS.HttpTimeout,
    unit: 's',
    meaning: 'Timeout of outgoing HTTP calls to peers; 0 means none. A peer\'s own "Timeout" overrides it.',
    source: 'orthanc',
  },
  HttpAllowedHosts: {
    schema: z.array(nonEmpty('a host name'), { error: 'a list of host names' }),
    type: 'list of strings',
    default: DEFAULTS.HttpAllowedHosts,
    meaning:
      'Host names (without port) this node answers to when AuthenticationEnabled is false, beside `localhost`, `*.localhost`, IP ' +
      'addresses, HttpHost and the machine\'s own host name; `"*"` accepts any. A request naming another host in its `Host` header is ' +
      'refused (403): this stops a web page from reaching the node under a name of its own (DNS rebinding). With authentication on, any ' +
      'name is served.',
    source: 'dicom-xfer',
  },
  HttpMaxConnections: {
    schema: uint(),
    type: 'integer ≥ 0',
    default: DEFAULTS.HttpMaxConnections,
    meaning:
      "Connections served at once; 0 means no bound. Past it, each new connection gets 503 (Orthanc's JSON error, `Retry-After`) and is " +
      'closed; past twice it, new connections are closed at once.',
    source: 'dicom-xfer',
  },
  HttpRequestMinimumRate: {
    schema: uint('bytes/s'),
    type: 'integer ≥ 0',
    default: DEFAULTS.HttpRequestMinimumRate,
    unit: 'bytes/s',
    meaning:
      'Slowest average rate of a request body, measured over each HttpTimeout of waiting for the client (so a slow disk or Orthanc on ' +
      'this side does not count); a slower body is answered 408 and its connection closed. 0 means none. A body with no byte for ' +
      'HttpTimeout is cut in any case.',
    source: 'dicom-xfer',
  },
  HttpsVerifyPeers: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.HttpsVerifyPeers,
    meaning: 'Verify the certificates of HTTPS peers (and of an HTTPS Orthanc store); false is warned about at start.',
    source: 'orthanc',
  },
  HttpsCACertificates: {
    schema: optionalPath(),
    type: 'path',
    default: undefined,
    meaning: 'PEM bundle of CA certificates trusted for HTTPS peers; the system\'s when unset or "".',
    source: 'orthanc',
    path: true,
  },
  StableAge: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: DEFAULTS.StableAge,
    unit: 's',
    meaning: 'Seconds without a new instance after which a patient, study or series is stable.',
    source: 'orthanc',
  },
  OverwriteInstances: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.OverwriteInstances,
    meaning: 'Replace an instance that is stored again; when false the stored copy is kept.',
    source: 'orthanc',
  },
  MaximumStorageSize: {
    schema: uint('MB'),
    type: 'integer ≥ 0',
    default: DEFAULTS.MaximumStorageSize,
    unit: 'MB',
    meaning: 'Most space the embedded store may use; 0 means unlimited.',
    source: 'orthanc',
  },
  MaximumZipEntries: {
    schema: uint(),
    type: 'integer ≥ 0',
    default: DEFAULTS.MaximumZipEntries,
    meaning:
      'dicom-xfer extension: most entries of a ZIP archive uploaded to `POST /instances`, read from its central directory before ' +
      'anything is stored; beyond it the upload is refused with 413. 0 means unlimited. Within the limits each entry is stored or ' +
      'rejected on its own, and the answer lists every entry by `FileName`: Orthanc\'s answer for the instances stored, `"Status": ' +
      '"Failure"` with `Message` and `Details` for the others (a non-DICOM or damaged file); when no entry could be stored ' +
      'the answer is a 400.',
    source: 'dicom-xfer',
  },
  MaximumZipUncompressedSize: {
    schema: uint('MB'),
    type: 'integer ≥ 0',
    default: DEFAULTS.MaximumZipUncompressedSize,
    unit: 'MB',
    meaning:
      'dicom-xfer extension: most bytes of all the entries of a ZIP archive uploaded to `POST /instances` once uncompressed, read from ' +
      'its central directory before anything is stored; beyond it the upload is refused with 413 (and with 507 beyond the free disk ' +
      'space). 0 means unlimited.',
    source: 'dicom-xfer',
  },
  MaximumInflationRatio: {
    schema: uint(),
    type: 'integer ≥ 0',
    default: DEFAULTS.MaximumInflationRatio,
    meaning:
      'dicom-xfer extension: a body sent to `POST /instances` with `Content-Encoding: gzip` (as Orthanc\'s peer store with `"Compress": ' +
      'true` sends it) is inflated as it arrives; once past 16 MiB inflated, it is refused with 413 when it has inflated more than this ' +
      'many times its compressed size (a gzip bomb inflates about 1000 times). 0 means no ratio limit. The size limits of every route ' +
      'apply to the inflated bytes.',
    source: 'dicom-xfer',
  },
  ConcurrentJobs: {
    schema: uint(),
    type: 'integer ≥ 0',
    default: DEFAULTS.ConcurrentJobs,
    meaning: 'Jobs running at once; 0 means one per CPU core.',
    source: 'orthanc',
  },
  JobsHistorySize: {
    schema: uint(),
    type: 'integer ≥ 0',
    default: DEFAULTS.JobsHistorySize,
    meaning: 'Finished jobs kept in the job list.',
    source: 'orthanc',
  },
  SaveJobs: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.SaveJobs,
    meaning: 'Keep jobs in the database so that they resume after a restart.',
    source: 'orthanc',
  },
  HttpDescribeErrors: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.HttpDescribeErrors,
    meaning: "Answer errors with Orthanc's JSON error body.",
    source: 'orthanc',
  },
  OrthancPeers: {
    schema: peers,
    type: 'object: name → peer',
    default: {},
    meaning:
      'Peers, each `[url]`, `[url, username, password]` or an object (see below). Any key of the object form that Orthanc does not ' +
      'reserve, such as `RemoteSelf`, is a user property.',
    source: 'orthanc',
  },
  ...DICOM_SETTINGS,
  Routes: ROUTES_SETTING,
  DicomWeb: DICOMWEB_SETTING,
  OrthancStore: {
    schema: orthancStore,
    type: 'object',
    default: undefined,
    meaning:
      'dicom-xfer extension: keep the DICOM in this Orthanc (1.5 or later), reached through its REST API, instead of the embedded store; ' +
      '`{"Url": ..., "Username": ..., "Password": ..., "Timeout": seconds, "RangeCacheSize": MB, "Proxy": true/false}` (see below). ' +
      'StorageDirectory still holds staging, jobs and peers. `serve --orthanc URL` sets it. With `"Proxy": true` (or `serve --proxy`), ' +
      "every request that dicom-xfer does not answer itself is forwarded to that Orthanc, so one port serves Orthanc's REST API, " +
      'Orthanc Explorer (with the "Transfers accelerator" button) and the transfers routes.',
    source: 'dicom-xfer',
  },
  PostgreSQL: POSTGRES_SETTING,
  LogLevel: {
    schema: z.enum(LOG_LEVELS, { error: `one of ${LOG_LEVELS.map((l) => `"${l}"`).join(', ')}` }),
    type: `one of ${LOG_LEVELS.join(', ')}`,
    default: DEFAULTS.LogLevel,
    meaning: 'Least severe log level written.',
    source: 'dicom-xfer',
  },
};

/** Keys of the `Transfers` section, in the order the docs list them. */
export const TRANSFERS_SETTINGS: {
  readonly [K in keyof TransfersConfig]-?: Setting<TransfersConfig[K], TransfersConfig>;
} = {
  Threads: {
    schema: positive(),
    type: 'integer ≥ 1',
    default: TRANSFERS_DEFAULTS.Threads,
    meaning: 'HTTP workers per push or pull job; also how many chunk requests are served at once.',
    source: 'transfers-plugin',
  },
  BucketSize: {
    schema: positive('KB'),
    type: 'integer ≥ 1',
    default: TRANSFERS_DEFAULTS.BucketSize,
    unit: 'KB',
    meaning: 'Instances smaller than this are grouped into buckets of about this size; instances of twice this size or more are split.',
    source: 'transfers-plugin',
  },
  CacheSize: {
    schema: positive('MB'),
    type: 'integer ≥ 1',
    default: TRANSFERS_DEFAULTS.CacheSize,
    unit: 'MB',
    meaning: 'Memory cache of DICOM files read on the sending side.',
    source: 'transfers-plugin',
  },
  MaxPushTransactions: {
    schema: positive(),
    type: 'integer ≥ 1',
    default: TRANSFERS_DEFAULTS.MaxPushTransactions,
    meaning:
      'Push transactions a receiver holds at once; a new one beyond this evicts the least recently used idle one, or waits its turn ' +
      '(PushAdmissionWait). The plugin defaults to 4; dicom-xfer to 32, so that up to 32 senders pushing at once share the link ' +
      'instead of taking turns, the memory the transactions hold bounded by PushTransactionsMemory.',
    source: 'transfers-plugin',
  },
  MaxHttpRetries: {
    schema: uint(),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.MaxHttpRetries,
    meaning: 'Retries of each failed outgoing HTTP call.',
    source: 'transfers-plugin',
  },
  PeerConnectivityTimeout: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.PeerConnectivityTimeout,
    unit: 's',
    meaning: 'Timeout of `GET /plugins` when checking whether a peer runs the transfers protocol.',
    source: 'transfers-plugin',
  },
  PeerCommitTimeout: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.PeerCommitTimeout,
    unit: 's',
    meaning: 'Timeout of creating and of committing a push transaction.',
    source: 'transfers-plugin',
  },
  CommitThreadsCount: {
    schema: positive(),
    type: 'integer ≥ 1',
    default: TRANSFERS_DEFAULTS.CommitThreadsCount,
    meaning: 'Workers that store the instances of a committed transfer on the receiving side.',
    source: 'transfers-plugin',
  },
  MaxThreads: {
    schema: positive(),
    type: 'integer ≥ 1',
    default: {
      derive: (t) => Math.max(TRANSFERS_DEFAULTS.MaxThreads, t.Threads),
      text: `${TRANSFERS_DEFAULTS.MaxThreads}, or Threads if larger`,
    },
    meaning:
      'dicom-xfer extension: most requests one job keeps in flight when it widens beyond Threads on a link that rewards it (a lossy ' +
      'link, where each TCP connection gets a small share). As a source, also the chunk requests served at once. Not below Threads. ' +
      'Jobs running at once share it (without MaxRequestsInFlight): their levels together stay within it, each its fair part, ' +
      'at least one.',
    source: 'dicom-xfer',
  },
  IdleTransactionTimeout: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.IdleTransactionTimeout,
    unit: 's',
    meaning:
      'dicom-xfer extension: a push transaction that receives no request for this long is discarded with its staged data; 0 means never.',
    source: 'dicom-xfer',
  },
  RetryBudget: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.RetryBudget,
    unit: 's',
    meaning:
      'dicom-xfer extension: time during which a failed outgoing call is retried with backoff, beyond MaxHttpRetries, before its job ' +
      'fails; 0 means only MaxHttpRetries applies, as in the plugin.',
    source: 'dicom-xfer',
  },
  IdleBeforeEviction: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.IdleBeforeEviction,
    unit: 's',
    meaning:
      'dicom-xfer extension: a push transaction is evicted to make room for a new one (beyond MaxPushTransactions) only after it has ' +
      'received no request for this long; when none qualifies, the create waits (PushAdmissionWait), then is answered 503, which ' +
      'senders retry. 0 evicts any transaction without a request in flight.',
    source: 'dicom-xfer',
  },
  PushTransactionsMemory: {
    schema: uint('MB'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.PushTransactionsMemory,
    unit: 'MB',
    meaning:
      'dicom-xfer extension: memory the push transactions a receiver holds may take together, each counted as about 20 KiB plus ' +
      '0.4 KiB per instance it declares (its manifest and per-instance state; the bytes in flight are bounded by the requests). ' +
      'A create beyond it is treated as one beyond MaxPushTransactions (eviction of idle ones, then its turn); one larger than the ' +
      'bound is admitted when no other transaction is held. 0 means no bound.',
    source: 'dicom-xfer',
  },
  PushAdmissionWait: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.PushAdmissionWait,
    unit: 's',
    meaning:
      'dicom-xfer extension: when MaxPushTransactions are held and none may be evicted, a new push transaction waits this long for ' +
      'room, in the order the senders asked (so that many senders sharing one receiver take turns), before it is answered 503. ' +
      '0 answers 503 at once, as in the plugin.',
    source: 'dicom-xfer',
  },
  Extensions: onOff(
    TRANSFERS_DEFAULTS.Extensions,
    'dicom-xfer extension: list the protocol extensions (resume, dedupe, async-commit, bucket-crc32, bucket-span, receiver-progress, ' +
      'zstd) in `GET /transfers/capabilities` and use them with peers that list them; false makes the node list none and use none, ' +
      "speaking exactly the plugin's protocol.",
  ),
  BucketSpans: onOff(
    TRANSFERS_DEFAULTS.BucketSpans,
    'dicom-xfer extension: with Extensions, list and use bucket-span: transfers between dicom-xfer nodes plan buckets of 512 KiB and ' +
      "join consecutive ones into requests sized to the link. false keeps the plugin's bucket layout (one request per BucketSize bucket) " +
      'while the other extensions stay.',
  ),
  Zstd: onOff(
    TRANSFERS_DEFAULTS.Zstd,
    'dicom-xfer extension: with Extensions, list and use zstd: a compressed transfer ("Compression": "gzip" or "zstd") between ' +
      'dicom-xfer nodes that both list it sends zstd frames, which take less CPU than gzip for fewer bytes. false: such ' +
      'transfers use gzip, and "zstd" from a peer is refused as by the plugin.',
  ),
  MaxPushInstances: {
    schema: positive(),
    type: 'integer ≥ 1',
    default: TRANSFERS_DEFAULTS.MaxPushInstances,
    meaning:
      'dicom-xfer: most instances a receiver accepts in one push transaction; a create declaring more is refused with 413 before ' +
      'anything is made. It also sizes the largest create body accepted: 64 MiB per 100,000 instances (at least 4 MiB), whatever the ' +
      'protocol mode.',
    source: 'dicom-xfer',
  },
  MaxRequestsInFlight: {
    schema: uint(),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.MaxRequestsInFlight,
    meaning:
      'dicom-xfer: most transfer requests the node has in flight at once, across all its jobs and the chunk answers it serves; a request ' +
      "beyond it waits its turn (the job says so in Content.Waiting). It is also the ceiling the running jobs' levels share, in " +
      "place of MaxThreads. 0 means no cap on requests; the jobs' levels then share MaxThreads.",
    source: 'dicom-xfer',
  },
  MaxInFlightSize: {
    schema: uint('MB'),
    type: 'integer ≥ 0',
    default: TRANSFERS_DEFAULTS.MaxInFlightSize,
    unit: 'MB',
    meaning:
      'dicom-xfer: most bytes of buckets and chunk answers the node has in flight at once, across all its jobs and the chunk answers it ' +
      'serves; a request beyond it waits its turn, and one larger than the cap runs alone. 0 means no cap.',
    source: 'dicom-xfer',
  },
  RateLimit: RATE_LIMIT_SETTING,
  RateSchedule: RATE_SCHEDULE_SETTING,
};

// ---- description for docs and the API -----------------------------------------------------------------------

export interface ConfigKeyInfo {
  /** Key path, e.g. `HttpPort` or `Transfers.BucketSize`. */
  key: string;
  type: string;
  /** The default as the docs show it (JSON text, a rule, or "none"). */
  default: string;
  unit?: string;
  meaning: string;
  source: SettingSource;
}

function defaultText<T, C>(d: T | Derived<T, C> | undefined): string {
  if (d === undefined) return 'none';
  if (isDerived(d)) return d.text;
  return JSON.stringify(d);
}

/** Every key dicom-xfer reads, top level first then `Transfers.*`, with type, default, unit and meaning. */
export function describeConfig(): ConfigKeyInfo[] {
  const rows: ConfigKeyInfo[] = [];
  const add = (key: string, s: Setting<unknown, never>) => {
    const row: ConfigKeyInfo = { key, type: s.type, default: defaultText(s.default), meaning: s.meaning, source: s.source };
    if (s.unit) row.unit = s.unit;
    rows.push(row);
  };
  for (const [key, s] of Object.entries(SETTINGS)) add(key, s as Setting<unknown, never>);
  rows.push({
    key: 'Transfers',
    type: 'object',
    default: '{}',
    meaning: 'Settings of the transfers protocol; the keys below.',
    source: 'transfers-plugin',
  });
  for (const [key, s] of Object.entries(TRANSFERS_SETTINGS)) add(`Transfers.${key}`, s as Setting<unknown, never>);
  return rows;
}

let jsonSchema: Record<string, unknown> | undefined;

/** JSON Schema (draft 2020-12) of the configuration file's keys, for `GET /openapi.json`. Built once. */
export function configJsonSchema(): Record<string, unknown> {
  jsonSchema ??= buildJsonSchema();
  return structuredClone(jsonSchema);
}

function buildJsonSchema(): Record<string, unknown> {
  const shape = (table: Record<string, Setting<unknown, never>>) =>
    Object.fromEntries(Object.entries(table).map(([k, s]) => [k, s.schema.optional().meta({ description: s.meaning })]));
  const transfers = z.object(shape(TRANSFERS_SETTINGS as Record<string, Setting<unknown, never>>));
  const top = z.looseObject({
    ...shape(SETTINGS as Record<string, Setting<unknown, never>>),
    Transfers: transfers.optional().meta({ description: 'Settings of the transfers protocol.' }),
  });
  return z.toJSONSchema(top, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
