// The `PostgreSQL` key: where a node keeps its index, jobs, push-transaction state and link profiles
// when they live in PostgreSQL (src/db/postgres/), in the shape of Orthanc's PostgreSQL plugin section.
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { POSTGRES_DEFAULTS } from './defaults.ts';
import type { PostgresConfig } from './types.ts';
import { bool, intIn, nonEmpty, uint } from './value-schemas.ts';

/** Marks an issue whose message is a whole sentence rather than an "expected ..." phrase. */
const PLAIN = { plain: true } as const;

const KEYS = [
  'EnableIndex',
  'EnableStorage',
  'Host',
  'Port',
  'Database',
  'Username',
  'Password',
  'ConnectionUri',
  'EnableSsl',
  'SslRootCertificate',
  'MaximumConnectionRetries',
  'ConnectionRetryInterval',
  'Lock',
];
/** Keys of the plugin's section that tune its own engine; accepted and without effect here. */
const PLUGIN_ONLY = [
  'EnableVerboseLogs',
  'IndexConnectionsCount',
  'TransactionMode',
  'HousekeepingInterval',
  'AllowInconsistentChildCounts',
];

const pgUri = () =>
  z
    .string({ error: 'a postgres:// or postgresql:// URI' })
    .refine((s) => /^postgres(ql)?:\/\//.test(s) && URL.canParse(s), { error: 'a postgres:// or postgresql:// URI' });

export const postgresSchema = z
  .looseObject(
    {
      EnableIndex: bool().optional(),
      EnableStorage: bool().optional(),
      Host: nonEmpty('a host name or IP address').optional(),
      Port: intIn(1, 65535).optional(),
      Database: nonEmpty('a database name').optional(),
      Username: z.string({ error: 'a string' }).optional(),
      Password: z.string({ error: 'a string' }).optional(),
      ConnectionUri: pgUri().optional(),
      EnableSsl: bool().optional(),
      SslRootCertificate: nonEmpty('an absolute path').refine(isAbsolute, { error: 'an absolute path' }).optional(),
      MaximumConnectionRetries: uint().optional(),
      ConnectionRetryInterval: uint('seconds').optional(),
      Lock: bool().optional(),
    },
    { error: 'an object with "EnableIndex", "Host", "Port", "Database", "Username", "Password" or "ConnectionUri"' },
  )
  .transform((o, ctx): PostgresConfig => {
    const issue = (key: string, message: string) =>
      ctx.issues.push({ code: 'custom', message, path: [key], input: (o as Record<string, unknown>)[key], params: PLAIN });
    for (const key of Object.keys(o)) {
      if (!KEYS.includes(key) && !PLUGIN_ONLY.includes(key)) issue(key, `unknown key "${key}" (known keys: ${KEYS.join(', ')})`);
    }
    if (o.EnableStorage === true) {
      issue('EnableStorage', 'EnableStorage is not supported: the DICOM files stay under StorageDirectory (or in OrthancStore)');
    }
    if (o.ConnectionUri !== undefined) {
      for (const k of ['Host', 'Port', 'Database', 'Username', 'Password'] as const) {
        if (o[k] !== undefined) issue(k, `${k} and ConnectionUri cannot both be given (the URI carries it)`);
      }
    }
    const out: PostgresConfig = {
      enableIndex: o.EnableIndex ?? POSTGRES_DEFAULTS.EnableIndex,
      host: o.Host ?? POSTGRES_DEFAULTS.Host,
      port: o.Port ?? POSTGRES_DEFAULTS.Port,
      database: o.Database ?? POSTGRES_DEFAULTS.Database,
      enableSsl: o.EnableSsl ?? POSTGRES_DEFAULTS.EnableSsl,
      maximumConnectionRetries: o.MaximumConnectionRetries ?? POSTGRES_DEFAULTS.MaximumConnectionRetries,
      connectionRetryInterval: o.ConnectionRetryInterval ?? POSTGRES_DEFAULTS.ConnectionRetryInterval,
      lock: o.Lock ?? POSTGRES_DEFAULTS.Lock,
    };
    if (o.Username !== undefined) out.username = o.Username;
    if (o.Password !== undefined) out.password = o.Password;
    if (o.ConnectionUri !== undefined) out.connectionUri = o.ConnectionUri;
    if (o.SslRootCertificate !== undefined) out.sslRootCertificate = o.SslRootCertificate;
    return out;
  });

/** The `PostgreSQL` entry of the configuration table (src/config/schema.ts). */
export const POSTGRES_SETTING = {
  schema: postgresSchema,
  type: 'object',
  default: undefined,
  meaning:
    'With `"EnableIndex": true`, the node keeps its index, jobs, push-transaction state and link profiles in this PostgreSQL ' +
    'database instead of the SQLite files of StorageDirectory; `{"EnableIndex", "Host", "Port", "Database", "Username", "Password"}` ' +
    'or `"ConnectionUri"`, `"EnableSsl"`, `"SslRootCertificate"`, `"MaximumConnectionRetries"`, `"ConnectionRetryInterval"`, `"Lock"` ' +
    '(see "PostgreSQL" below and docs/postgresql.md). `"EnableStorage": true` is refused: the files stay under StorageDirectory.',
  source: 'orthanc' as const,
};

/** The "PostgreSQL" section of docs/configuration.md (src/config/reference.ts). */
export function postgresSection(): string[] {
  const d = POSTGRES_DEFAULTS;
  return [
    '## `PostgreSQL`',
    '',
    "The section of Orthanc's PostgreSQL plugin, read by dicom-xfer for its own state. With `EnableIndex` true the",
    'node keeps its index, jobs, link profiles and the state of the push transactions it receives in PostgreSQL, all',
    'in the schema `dicom_xfer` of the database (so a database shared with Orthanc keeps its own tables apart). The',
    'DICOM files, the staged bytes of transfers, the routes (`routes.sqlite`) and the peers changed at run time',
    '(`peers.json`) stay under `StorageDirectory`; `EnableStorage` true is refused.',
    '',
    '```jsonc',
    '"PostgreSQL": {',
    `  "EnableIndex": ${d.EnableIndex},            // true: the node's state in PostgreSQL`,
    `  "Host": "${d.Host}",             // or "ConnectionUri": "postgresql://user:password@host:5432/db?sslmode=verify-full"`,
    `  "Port": ${d.Port},`,
    `  "Database": "${d.Database}",`,
    '  "Username": "dicom-xfer",',
    '  "Password": "secret",              // never logged',
    `  "EnableSsl": ${d.EnableSsl},              // TLS, the server's certificate checked (against SslRootCertificate when given)`,
    '  "SslRootCertificate": "/etc/ssl/pg-ca.pem", // dicom-xfer extension: absolute path of the CA bundle',
    `  "MaximumConnectionRetries": ${d.MaximumConnectionRetries},   // attempts to reach the database at start, after the first`,
    `  "ConnectionRetryInterval": ${d.ConnectionRetryInterval},     // seconds between them`,
    `  "Lock": ${d.Lock}                    // one node per database (a second one refuses to start)`,
    '}',
    '```',
    '',
    'With `"Lock": true` (the default, as in the plugin) the node holds a PostgreSQL advisory lock for as long',
    'as it runs, and a second node given the same database stops at its start with an error naming the lock.',
    '`"Lock": false` lets several nodes share the database. The plugin\'s tuning keys (`IndexConnectionsCount`,',
    '`TransactionMode`, `EnableVerboseLogs`, `HousekeepingInterval`) are accepted and have no effect. A',
    'database that cannot be reached at start is tried again `MaximumConnectionRetries` times, then the node',
    'stops with an error that says which server it tried.',
    '',
  ];
}
