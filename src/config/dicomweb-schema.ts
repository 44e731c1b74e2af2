// The `DicomWeb` section, in the shape of Orthanc's DICOMweb plugin: `Enable` and `Root` of the node's own
// DICOMweb server, and `Servers`, the DICOMweb servers the node stows to and retrieves from, each
// `[url, user, password]` or the object form, with what cloud archives need beside (bearer tokens, a cap per request).
import { z } from 'zod';
import { badPeerName, namedEntries, stringMap, uint } from './value-schemas.ts';
import type { DicomWebConfig, DicomWebServerConfig } from './types.ts';

const PLAIN = { plain: true } as const;
const URL_EXPECTED = 'an http:// or https:// URL';
const str = (expected = 'a string') => z.string({ error: expected });

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/** The plugin keeps every server URL with a trailing '/', as the requests are built under it. */
const serverUrl = () =>
  z
    .string({ error: URL_EXPECTED })
    .refine(isHttpUrl, { error: URL_EXPECTED })
    .transform((u) => (u.endsWith('/') ? u : `${u}/`));

type ServerFields = Omit<DicomWebServerConfig, 'name'>;

const base = (url: string): ServerFields => ({ url, httpHeaders: {}, maxRequestSize: 0 });

const shortServer = z
  .array(z.string({ error: 'a string' }), { error: 'an array' })
  .refine((a) => a.length === 1 || a.length === 3, { error: '[url] or [url, username, password]' })
  .transform((a, ctx): ServerFields => {
    const url = serverUrl().safeParse(a[0]);
    if (!url.success) ctx.issues.push({ code: 'custom', message: URL_EXPECTED, path: [0], input: a[0] });
    const s = base(url.data ?? '');
    if (a.length === 3 && a[1]) {
      s.username = a[1];
      s.password = a[2] ?? '';
    }
    return s;
  });

const longServer = z
  .looseObject({
    Url: serverUrl(),
    Username: str().optional(),
    Password: str().optional(),
    HttpHeaders: stringMap('header names to strings').optional(),
    CertificateFile: str('a path (string)').optional(),
    CertificateKeyFile: str('a path (string)').optional(),
    CertificateKeyPassword: str().optional(),
    Timeout: uint('seconds').optional(),
    BearerTokenFile: str('a path (string)').optional(),
    BearerTokenCommand: z.array(str(), { error: 'a command as a list of strings: ["program", "arg", ...]' }).min(1).optional(),
    TokenLifetime: uint('seconds').optional(),
    MaxRequestSize: uint('MB').optional(),
  })
  .transform((o, ctx): ServerFields => {
    const s = base(o.Url);
    if (o.Username) {
      s.username = o.Username;
      s.password = o.Password ?? '';
    }
    if (o.HttpHeaders) s.httpHeaders = { ...o.HttpHeaders };
    if (o.CertificateFile) s.certificateFile = o.CertificateFile;
    if (o.CertificateKeyFile) s.certificateKeyFile = o.CertificateKeyFile;
    if (o.CertificateKeyPassword) s.certificateKeyPassword = o.CertificateKeyPassword;
    if (o.Timeout !== undefined && o.Timeout > 0) s.timeout = o.Timeout;
    if (o.BearerTokenFile && o.BearerTokenCommand) {
      ctx.issues.push({
        code: 'custom',
        message: 'give BearerTokenFile or BearerTokenCommand, not both',
        path: ['BearerTokenCommand'],
        input: o.BearerTokenCommand,
        params: PLAIN,
      });
    }
    if (o.BearerTokenFile) s.bearerTokenFile = o.BearerTokenFile;
    if (o.BearerTokenCommand) s.bearerTokenCommand = [...o.BearerTokenCommand];
    if (o.TokenLifetime !== undefined && o.TokenLifetime > 0) s.tokenLifetime = o.TokenLifetime;
    if (o.MaxRequestSize !== undefined) s.maxRequestSize = o.MaxRequestSize;
    return s;
  });

const servers = namedEntries<ServerFields>({
  short: shortServer,
  long: longServer,
  record: 'an object of server name to DICOMweb server',
  expected: '[url], [url, username, password] or an object with "Url"',
  badName: (name) => badPeerName(name).replace('peer', 'DICOMweb server'),
});

const ROOT_EXPECTED = 'a path that starts and ends with "/", such as "/dicom-web/"';

export const DICOMWEB_DEFAULTS: DicomWebConfig = { Enable: true, Root: '/dicom-web/', Servers: {} };

export const dicomWebSchema = z
  .looseObject(
    {
      Enable: z.boolean({ error: 'true or false' }).optional(),
      Root: z
        .string({ error: ROOT_EXPECTED })
        .refine((r) => r.startsWith('/') && r.endsWith('/') && !r.includes('//'), { error: ROOT_EXPECTED })
        .optional(),
      Servers: servers.optional(),
    },
    { error: 'an object {"Enable", "Root", "Servers"}' },
  )
  .transform(
    (o): DicomWebConfig => ({
      Enable: o.Enable ?? DICOMWEB_DEFAULTS.Enable,
      Root: o.Root ?? DICOMWEB_DEFAULTS.Root,
      Servers: o.Servers ?? {},
    }),
  );

/** The `DicomWeb` entry of the configuration table (src/config/schema.ts). */
export const DICOMWEB_SETTING = {
  schema: dicomWebSchema,
  type: 'object',
  default: DICOMWEB_DEFAULTS,
  meaning:
    'As the Orthanc DICOMweb plugin: `{"Enable": true, "Root": "/dicom-web/", "Servers": {name: server}}` (see "DICOMweb" below). ' +
    "`Enable` and `Root`: the node's own DICOMweb server. `Servers`: the DICOMweb servers this node stows to and retrieves from.",
  source: 'orthanc' as const,
};

/** The "DICOMweb" section of docs/configuration.md (src/config/reference.ts). */
export function dicomWebSection(): string[] {
  return [
    '## DICOMweb (`DicomWeb`)',
    '',
    '```jsonc',
    '"DicomWeb": {',
    '  "Enable": true,                      // the node serves DICOMweb under Root',
    '  "Root": "/dicom-web/",',
    '  "Servers": {',
    '    "archive": ["https://archive.example/dicom-web/", "user", "password"],',
    '    "cloud": {',
    '      "Url": "https://healthcare.example/v1/.../dicomWeb/",',
    '      "HttpHeaders": { "X-Tenant": "a" },   // sent with every request',
    '      "CertificateFile": "client.pem",      // client certificate (key in the same file unless CertificateKeyFile)',
    '      "CertificateKeyFile": "client.key",',
    '      "Timeout": 60,                        // seconds without an answer; default HttpTimeout',
    '      "BearerTokenFile": "token.txt",       // or: "BearerTokenCommand": ["gcloud", "auth", "print-access-token"]',
    '      "TokenLifetime": 3000,                // seconds a token of the command is used (when it says no expires_in)',
    '      "MaxRequestSize": 1000 }              // MB; largest STOW-RS request (0: no cap)',
    '  }',
    '}',
    '```',
    '',
    "- **Enable** and **Root** are those of the node's own DICOMweb server. The client routes below live under",
    '  `Root` too, but unlike the plugin they stay when `Enable` is false: a node may stow without serving.',
    "- A server is `[url]`, `[url, username, password]` (HTTP Basic) or the object form above, as in Orthanc's DICOMweb",
    '  plugin. Names follow the rule of peer names; a name that is also a peer or a modality is refused when a routing',
    '  rule uses it (it would be ambiguous).',
    '- **BearerTokenFile**: the file holds the token (surrounding white space dropped); it is read again whenever',
    '  it changes, so an outside tool may refresh it. **BearerTokenCommand**: the program is run (no shell) and its',
    '  standard output is the token, either the token itself or JSON `{"access_token": ..., "expires_in": seconds}`;',
    '  it is run again a minute before the token expires (`expires_in`, else `TokenLifetime`, else 3000 s), and at',
    '  once when the server answers 401. Tokens are never logged.',
    '- **MaxRequestSize**: STOW-RS requests group instances up to `Transfers.BucketSize` (never splitting an',
    '  instance); no request is made larger than this cap unless one instance is larger by itself.',
    '- `POST /dicom-web/servers/{name}/stow` with `{"Resources": [Orthanc IDs]}` starts a `DicomWebStow` job;',
    '  `POST /dicom-web/servers/{name}/retrieve` with `{"Resources": [{"Study": uid, "Series": uid}, ...]}` a',
    '  `DicomWebRetrieve` job. Both answer `{"ID", "Path"}`. A routing rule may name a server in `Send`.',
    '',
  ];
}
