// Renders docs/configuration.md from the configuration table, so the reference cannot drift from the code
// (a unit test compares the file with this output).
import { DEFAULTS, ORTHANC_STORE_DEFAULTS } from './defaults.ts';
import { CONFIG_ENV_VAR } from './load.ts';
import { ORTHANC_IGNORED_KEYS } from './orthanc-keys.ts';
import { postgresSection } from './postgres-schema.ts';
import { routesSection } from './routes-schema.ts';
import { dicomWebSection } from './dicomweb-schema.ts';
import { describeConfig, PEER_NAME_RULE, RESERVED_PEER_KEYS, type ConfigKeyInfo } from './schema.ts';

/** Path of the reference, relative to the repository root. */
export const CONFIG_REFERENCE_PATH = 'docs/configuration.md';

const SOURCE_LABEL: Record<ConfigKeyInfo['source'], string> = {
  orthanc: 'Orthanc',
  'transfers-plugin': 'plugin',
  'dicom-xfer': 'dicom-xfer',
};

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function table(rows: readonly ConfigKeyInfo[]): string[] {
  const lines = ['| Key | Type | Default | Unit | From | Meaning |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(
      `| \`${r.key}\` | ${cell(r.type)} | ${cell(r.default)} | ${r.unit ?? ''} | ${SOURCE_LABEL[r.source]} | ${cell(r.meaning)} |`,
    );
  }
  return lines;
}

/** The opening: where the file comes from and how it is read. */
function intro(): string[] {
  return [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by configReferenceMarkdown(); test/unit/config.test.ts checks it. -->',
    '',
    'dicom-xfer reads an Orthanc-style JSON configuration file: `dicom-xfer serve --config <file>`, or the',
    `file named by the environment variable \`${CONFIG_ENV_VAR}\` when no flag is given. An Orthanc`,
    'configuration file works as it is:',
    '',
    '- `//` and `/* */` comments and trailing commas are allowed;',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the text shows Orthanc's ${VAR} syntax, not a placeholder
    '- `${VAR}` is replaced by the environment variable VAR (empty when unset) and `${VAR:-text}` by text',
    '  when VAR is unset, as Orthanc does;',
    '- the path may name a folder, whose `*.json` files are read together; a top-level key defined in two',
    '  of them is an error, as in Orthanc;',
    '- relative paths are relative to the folder of the configuration file;',
    '- keys that Orthanc knows but dicom-xfer does not use are ignored quietly (list below); other unknown',
    '  keys are reported as warnings; a value of the wrong type stops start-up with a message naming the',
    '  file, line, column and key.',
    '',
    'Command-line flags override the file. Units: sizes in KB are multiples of 1024 bytes, sizes in MB',
    'multiples of 1,048,576 bytes; durations are in seconds.',
    '',
  ];
}

/** What the HTTP server refuses or limits whatever the configuration. */
function httpServerSection(): string[] {
  return [
    '## Requests from browsers, host names and limits of the HTTP server',
    '',
    'Whatever the configuration, a request that would change something (any method but GET, HEAD and',
    'OPTIONS, or a GET that asks for another method with `?_method=` or `X-HTTP-Method-Override`, as Orthanc',
    'honours them) is refused with 403 when a browser says it comes from a page of another origin: an',
    "`Origin` header that names another origin than the node's (its `Host`, the `X-Forwarded-Host` of a",
    'reverse proxy, or a name of `HttpAllowedHosts`), `Sec-Fetch-Site: cross-site` or `same-site`, or, from',
    'older browsers, a `Referer` of another origin. Clients that are no browser send none of these headers',
    "and are served whatever their `Content-Type`: Orthanc's peer store (`application/x-www-form-urlencoded`),",
    'curl, scripts posting JSON without a content type, the peers of the transfers protocol. The dashboard',
    "and Orthanc Explorer through `--proxy` are pages of the node's own origin. Reading (GET) stays open.",
    '',
    'When `AuthenticationEnabled` is false, the `Host` header must name this node: `localhost` or',
    "`*.localhost`, an IP address, `HttpHost`, the machine's host name, or a name of `HttpAllowedHosts`;",
    'any other gets 403. A node reached by a DNS name without authentication needs that name listed.',
    '',
    'An `Expect` header other than `100-continue` is ignored, as Orthanc ignores it. Requests the HTTP parser',
    'refuses (headers larger than 16 KB: 431; a malformed request line or URL: 400; headers not received',
    "within about a minute: 408) are answered with Orthanc's JSON error body. A request body that stops for",
    '`HttpTimeout` seconds, or brings less than `HttpRequestMinimumRate` bytes per second over any',
    '`HttpTimeout` seconds of waiting, is answered 408; the rest of a body that no route reads gets',
    '`HttpTimeout` seconds after the answer before the connection is closed. At most `HttpMaxConnections`',
    'connections are served at once.',
    '',
  ];
}

/** The `OrthancPeers` key: short and long forms, reserved keys, names. */
function peersSection(): string[] {
  return [
    '## `OrthancPeers`',
    '',
    'Each entry names a peer. Short forms: `["https://host:8042/"]` or `["https://host:8042/", "user", "password"]`.',
    'Long form:',
    '',
    '```jsonc',
    '"OrthancPeers": {',
    '  "site-b": {',
    '    "Url": "https://site-b.example.org:8042/",   // or "URL"; http:// or https:// only',
    '    "Username": "alice",',
    '    "Password": "secret",',
    '    "HttpHeaders": { "Token": "..." },',
    '    "CertificateFile": "client.crt",            // client certificate (PEM)',
    '    "CertificateKeyFile": "client.key",',
    '    "CertificateKeyPassword": "...",',
    '    "Timeout": 120,                             // seconds, overrides HttpTimeout for this peer',
    '    "RateLimit": 20,                            // dicom-xfer: Mbit/s of the transfers with this peer',
    '    "RemoteSelf": "site-a"                      // a user property',
    '  }',
    '}',
    '```',
    '',
    `Reserved keys: ${RESERVED_PEER_KEYS.map((k) => `\`${k}\``).join(', ')}. Every other key is a user`,
    'property, kept as a string (`true`/`false` become `"1"`/`"0"`, integers their decimal text).',
    "`RemoteSelf` is the user property that names this node in the peer's own `OrthancPeers`; with it,",
    'sending to that peer runs in pull mode. A trailing `/` is added to every URL. `Pkcs11` is not supported.',
    'A key one or two letters away from a reserved one (`Usrname`) is warned about at start, naming the key it',
    'resembles: it would otherwise be kept as a user property and the peer called without it.',
    "`RateLimit` (dicom-xfer's own key, a number above 0) caps the transfers with that peer, in each direction and",
    'counted on the wire, on top of `Transfers.RateLimit` and `Transfers.RateSchedule`: the lower limit holds.',
    '',
    `Peer names: ${PEER_NAME_RULE} (for example \`site-b\`); any other name is refused at start and by`,
    '`PUT /peers/{name}` (400). A URL may carry credentials (`https://user:password@host/`, used when the entry',
    'gives no `Username`); they are never shown: answers, the dashboard, the command line, job contents and logs',
    'give the URL without them.',
    '',
  ];
}

/** The `OrthancStore` key and the proxy in front of Orthanc. */
function orthancStoreSection(): string[] {
  return [
    '## `OrthancStore`',
    '',
    'With this key (or `dicom-xfer serve --orthanc URL [--orthanc-username U --orthanc-password P]`, which',
    'replaces the key whole), dicom-xfer runs beside an existing Orthanc and keeps no DICOM of its own: it',
    "lists, reads and stores instances through Orthanc's REST API. Orthanc's own resource API is not served",
    'by dicom-xfer then, unless `Proxy` is true. A commit stores instance by instance and deletes what it added',
    'when one store fails.',
    '',
    '```jsonc',
    '"OrthancStore": {',
    '  "Url": "http://127.0.0.1:8042/",   // Orthanc\'s REST API; http:// or https:// (HttpsVerifyPeers applies)',
    '  "Username": "dicom-xfer",           // Basic credentials, when Orthanc asks for them',
    '  "Password": "secret",',
    `  "Timeout": ${ORTHANC_STORE_DEFAULTS.Timeout},                      // seconds to wait for an answer of Orthanc; 0 = none`,
    `  "RangeCacheSize": ${ORTHANC_STORE_DEFAULTS.RangeCacheSize},             // MB of local copies of large instances read in pieces`,
    `  "Proxy": ${ORTHANC_STORE_DEFAULTS.Proxy}                     // forward what dicom-xfer does not answer to Orthanc (serve --proxy)`,
    '}',
    '```',
    '',
    'Orthanc 1.10.1 ignores HTTP `Range` and sends whole files: an instance split into several buckets is',
    'then copied once to `StorageDirectory/orthanc-range-cache/` and read from there (copies are dropped',
    'after a minute unused, and the oldest first beyond `RangeCacheSize`).',
    '',
    'With `"Proxy": true` (or `serve --proxy`), one port looks like Orthanc with the Transfers Accelerator',
    'plugin: every request that dicom-xfer does not answer itself (any method, any path) is forwarded to',
    'Orthanc with its body streamed both ways, so `POST /instances`, `/tools/find`, `/app/explorer.html` and',
    "the rest of Orthanc's API work through dicom-xfer's port. Orthanc Explorer gets the \"Transfers",
    "accelerator\" button (`/plugins/explorer.js`), and `/jobs` lists Orthanc's jobs beside dicom-xfer's.",
    "When dicom-xfer has no authentication of its own, the client's `Authorization` header goes to Orthanc",
    'unchanged; with `AuthenticationEnabled`, dicom-xfer checks the client first and uses `Username` and',
    '`Password` towards Orthanc. Orthanc down gives 502. Requests go on as they came: method, query,',
    'headers (but those of the connection), a `Content-Type` dicom-xfer itself cannot read, the body of a GET',
    "(Orthanc's `?_method=PUT`).",
    '',
  ];
}

/** The Orthanc keys accepted and ignored. */
function ignoredSection(): string[] {
  const ignored = [...ORTHANC_IGNORED_KEYS.keys()].sort();
  return [
    '## Orthanc keys that dicom-xfer ignores',
    '',
    'These are accepted without a warning so that an Orthanc file loads unchanged. A few print a note when',
    'their value asks for something dicom-xfer does not do (for example a non-empty `HttpProxy`).',
    '',
    `${ignored.map((k) => `\`${k}\``).join(', ')}.`,
    '',
  ];
}

/** Defaults with no configuration, the storage lock and the logs. */
function closing(): string[] {
  return [
    `With no configuration at all, dicom-xfer listens on 127.0.0.1:${DEFAULTS.HttpPort} and stores data in`,
    `\`${DEFAULTS.StorageDirectory}\` under the current directory.`,
    '',
    'One node at a time uses a storage directory: it holds an operating-system lock on',
    '`dicom-xfer-lock.sqlite` there while it runs (released by the system when the process ends, even by',
    '`kill -9`), and writes its pid into `dicom-xfer.lock` for people to read. A second node on the same',
    'directory is refused, naming that pid.',
    '',
    'Logs go to stderr: readable lines when stderr is a terminal, JSON lines otherwise (for log collectors).',
    'The environment variable `DICOM_XFER_LOG_FORMAT` (`json` or `pretty`) chooses one whatever stderr is;',
    '`NO_COLOR` turns colours off. Each finished transfer logs one line with its peer, instances, size,',
    'running time and data rate.',
    '',
  ];
}

/** The markdown text of docs/configuration.md. */
export function configReferenceMarkdown(): string {
  const rows = describeConfig();
  const top = rows.filter((r) => !r.key.startsWith('Transfers.'));
  const transfers = rows.filter((r) => r.key.startsWith('Transfers.'));
  const out = [
    ...intro(),
    '## Top-level keys',
    '',
    ...table(top),
    '',
    ...httpServerSection(),
    '## `Transfers`',
    '',
    "The Transfers Accelerator plugin's keys with the plugin's defaults, then dicom-xfer's extensions,",
    'which the plugin ignores. All but `Extensions` (a boolean) are integers of at least 0; 0 is refused where',
    'the table says ≥ 1.',
    '',
    ...table(transfers),
    '',
    ...peersSection(),
    ...orthancStoreSection(),
    ...postgresSection(),
    ...routesSection(),
    ...dicomWebSection(),
    ...ignoredSection(),
    ...closing(),
  ];
  return out.join('\n');
}
