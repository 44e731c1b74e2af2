// The zod schemas of the configuration's values: the small helpers (strings, booleans, integers in a
// range, sizes), the forms of an OrthancPeers entry and the OrthancStore object.
import { z } from 'zod';
import { peerRateMbps } from './bandwidth-schema.ts';
import { ORTHANC_STORE_DEFAULTS } from './defaults.ts';
import type { OrthancStoreConfig, PeerConfig } from './types.ts';

// ---- schema helpers: each failure message is the phrase that follows "expected" in an error -------------

/** Marks an issue whose message is a whole sentence rather than an "expected ..." phrase. */
const PLAIN = { plain: true } as const;

const str = (expected = 'a string') => z.string({ error: expected });
export const nonEmpty = (expected = 'a non-empty string') => z.string({ error: expected }).min(1, { error: expected });
export const bool = () => z.boolean({ error: 'true or false' });
/** The table entry of a boolean of dicom-xfer's own (an extension on or off). */
export const onOff = (def: boolean, meaning: string) =>
  ({ schema: bool(), type: 'boolean', default: def, meaning, source: 'dicom-xfer' }) as const;
export const intIn = (lo: number, hi: number) => {
  const expected = `an integer between ${lo} and ${hi}`;
  return z.int({ error: expected }).min(lo, { error: expected }).max(hi, { error: expected });
};
export const uint = (unit?: string) => {
  const expected = `an integer of at least 0${unit ? ` (${unit})` : ''}`;
  return z.int({ error: expected }).min(0, { error: expected });
};
/** An unsigned integer where 0 is refused, because the plugin refuses it or it would stall every job. */
export const positive = (unit?: string) => {
  const expected = `an integer of at least 1${unit ? ` (${unit})` : ''}; 0 is not allowed`;
  return z.int({ error: expected }).min(1, { error: expected });
};
export const stringMap = (what: string) => z.record(z.string(), z.string({ error: 'a string' }), { error: `an object of ${what}` });
/** An optional path where "" means "not set", as in Orthanc's own file. */
export const optionalPath = () => str('a path (string)').transform((s) => (s === '' ? undefined : s));

// ---- OrthancPeers -----------------------------------------------------------------------------------------

/** Keys of a long-form peer that Orthanc reserves; every other key is a user property. */
export const RESERVED_PEER_KEYS: readonly string[] = [
  'Url',
  'URL',
  'Username',
  'Password',
  'HttpHeaders',
  'CertificateFile',
  'CertificateKeyFile',
  'CertificateKeyPassword',
  'Pkcs11',
  'Timeout',
  // dicom-xfer's own: the peer's bandwidth limit (bandwidth-schema.ts).
  'RateLimit',
];

const URL_EXPECTED = 'an http:// or https:// URL';

/**
 * Peer names appear in URLs (/peers/{name}), in peers.json and as keys of JSON objects: a plain set of
 * characters keeps them printable and keeps names such as "__proto__" or ".." out.
 */
export const PEER_NAME_RULE = 'letters, digits, "-", "_" and ".", starting with a letter or a digit, at most 64 characters';

export function isValidPeerName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name);
}

/** The message for a peer name that breaks PEER_NAME_RULE. */
export function badPeerName(name: string): string {
  const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 77)}...` : name);
  return name === '' ? 'a peer has an empty name' : `the peer name ${shown} is not allowed: use ${PEER_NAME_RULE}`;
}

function isHttpUrl(s: string): boolean {
  if (!/^https?:\/\//i.test(s)) return false;
  try {
    new URL(s);
    return true;
  } catch {
    return false;
  }
}

/** Orthanc keeps every peer URL with a trailing '/', and dicom-xfer builds request URLs the same way. */
const peerUrl = () =>
  z
    .string({ error: URL_EXPECTED })
    .refine(isHttpUrl, { error: URL_EXPECTED })
    .transform((u) => (u.endsWith('/') ? u : `${u}/`));

type PeerFields = Omit<PeerConfig, 'name'>;

const shortPeer = z
  .array(z.string({ error: 'a string' }), { error: 'an array' })
  .refine((a) => a.length === 1 || a.length === 3, { error: '[url] or [url, username, password]' })
  .transform((a, ctx): PeerFields => {
    const url = peerUrl().safeParse(a[0]);
    if (!url.success) ctx.issues.push({ code: 'custom', message: URL_EXPECTED, path: [0], input: a[0] });
    const peer: PeerFields = { url: url.data ?? '', httpHeaders: {}, userProperties: {} };
    if (a.length === 3 && a[1]) {
      peer.username = a[1];
      peer.password = a[2] ?? '';
    } else if (a.length === 3 && a[2]) {
      ctx.issues.push({
        code: 'custom',
        message: 'a password is given without a username',
        path: [2],
        input: a[2],
        params: PLAIN,
      });
    }
    return peer;
  });

const longPeer = z
  .looseObject({
    Url: str().optional(),
    URL: str().optional(),
    Username: str().optional(),
    Password: str().optional(),
    HttpHeaders: stringMap('header names to strings').optional(),
    CertificateFile: str('a path (string)').optional(),
    CertificateKeyFile: str('a path (string)').optional(),
    CertificateKeyPassword: str().optional(),
    Pkcs11: bool().optional(),
    Timeout: uint('seconds').optional(),
    RateLimit: peerRateMbps().optional(),
  })
  .transform((p, ctx): PeerFields => {
    // Orthanc takes "Url" when it is non-empty, else "URL".
    const rawUrl = p.Url !== undefined && p.Url !== '' ? p.Url : p.URL;
    const urlKey = rawUrl === p.Url ? 'Url' : 'URL';
    const url = peerUrl().safeParse(rawUrl);
    if (!url.success) {
      const message = rawUrl === undefined ? `${URL_EXPECTED} under "Url"` : URL_EXPECTED;
      ctx.issues.push({ code: 'custom', message, path: rawUrl === undefined ? [] : [urlKey], input: rawUrl });
    }
    if ((p.Username ?? '') === '' && (p.Password ?? '') !== '') {
      ctx.issues.push({
        code: 'custom',
        message: 'a Password is given without a Username',
        path: ['Password'],
        input: p.Password,
        params: PLAIN,
      });
    }
    const userProperties: Record<string, string> = {};
    for (const [key, value] of Object.entries(p)) {
      if (RESERVED_PEER_KEYS.includes(key)) continue;
      if (typeof value === 'string') userProperties[key] = value;
      else if (typeof value === 'boolean') userProperties[key] = value ? '1' : '0';
      else if (typeof value === 'number' && Number.isSafeInteger(value)) userProperties[key] = String(value);
      else {
        ctx.issues.push({
          code: 'custom',
          message: 'a string, true, false or an integer (user property)',
          path: [key],
          input: value,
        });
      }
    }
    const peer: PeerFields = { url: url.data ?? '', httpHeaders: { ...p.HttpHeaders }, userProperties };
    if (p.Username) peer.username = p.Username;
    if (p.Username) peer.password = p.Password ?? '';
    if (p.CertificateFile) peer.certificateFile = p.CertificateFile;
    if (p.CertificateFile && p.CertificateKeyFile) peer.certificateKeyFile = p.CertificateKeyFile;
    if (p.CertificateFile && p.CertificateKeyPassword) peer.certificateKeyPassword = p.CertificateKeyPassword;
    if (p.Timeout !== undefined && p.Timeout > 0) peer.timeout = p.Timeout;
    if (p.RateLimit !== undefined) peer.rateLimit = p.RateLimit;
    return peer;
  });

const PEER_EXPECTED = '[url], [url, username, password] or an object with "Url"';

/** How `namedEntries` reads one kind of named entry (a peer, a modality). */
export interface NamedEntryForms<T> {
  /** The schema of the short form (an array) and of the long form (an object). */
  short: z.ZodType<T>;
  long: z.ZodType<T>;
  /** What the object as a whole is ("an object of peer name to peer"). */
  record: string;
  /** What an entry of neither form should have been. */
  expected: string;
  /** The message for a name that breaks PEER_NAME_RULE. */
  badName(name: string): string;
}

/**
 * An object of name → entry in Orthanc's short (array) or long (object) form, as `OrthancPeers` and
 * `DicomModalities` are: each name checked, each entry parsed by its form, its issues reported under its
 * name, and the name kept in the entry.
 */
export function namedEntries<T extends object>(forms: NamedEntryForms<T>) {
  return z.record(z.string(), z.unknown(), { error: forms.record }).transform((rec, ctx): Record<string, T & { name: string }> => {
    const out: Record<string, T & { name: string }> = {};
    for (const [name, raw] of Object.entries(rec)) {
      if (!isValidPeerName(name)) {
        ctx.issues.push({ code: 'custom', message: forms.badName(name), path: [name], input: raw, params: PLAIN });
        continue;
      }
      const schema = Array.isArray(raw) ? forms.short : typeof raw === 'object' && raw !== null ? forms.long : undefined;
      if (!schema) {
        ctx.issues.push({ code: 'custom', message: forms.expected, path: [name], input: raw });
        continue;
      }
      const parsed = schema.safeParse(raw);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) {
          const plain = issue.code === 'custom' && issue.params?.['plain'] === true;
          ctx.issues.push({
            code: 'custom',
            message: issue.message,
            path: [name, ...issue.path],
            input: raw,
            ...(plain ? { params: PLAIN } : {}),
          });
        }
        continue;
      }
      out[name] = { name, ...parsed.data };
    }
    return out;
  });
}

export const peers = namedEntries<PeerFields>({
  short: shortPeer,
  long: longPeer,
  record: 'an object of peer name to peer',
  expected: PEER_EXPECTED,
  badName: badPeerName,
});

// ---- OrthancStore ----------------------------------------------------------------------------------------

/** Keys of the `OrthancStore` object. */
const ORTHANC_STORE_KEYS: readonly string[] = ['Url', 'Username', 'Password', 'Timeout', 'RangeCacheSize', 'Proxy'];

export const orthancStore = z
  .looseObject(
    {
      Url: peerUrl(),
      Username: str().optional(),
      Password: str().optional(),
      Timeout: uint('seconds').optional(),
      RangeCacheSize: positive('MB').optional(),
      Proxy: bool().optional(),
    },
    { error: 'an object with "Url"' },
  )
  .transform((o, ctx): OrthancStoreConfig => {
    for (const key of Object.keys(o)) {
      if (!ORTHANC_STORE_KEYS.includes(key)) {
        ctx.issues.push({
          code: 'custom',
          message: `unknown key "${key}" (known keys: ${ORTHANC_STORE_KEYS.join(', ')})`,
          path: [key],
          input: o[key],
          params: PLAIN,
        });
      }
    }
    if ((o.Username ?? '') === '' && (o.Password ?? '') !== '') {
      ctx.issues.push({
        code: 'custom',
        message: 'a Password is given without a Username',
        path: ['Password'],
        input: o.Password,
        params: PLAIN,
      });
    }
    const out: OrthancStoreConfig = {
      url: o.Url,
      timeout: o.Timeout ?? ORTHANC_STORE_DEFAULTS.Timeout,
      rangeCacheSize: o.RangeCacheSize ?? ORTHANC_STORE_DEFAULTS.RangeCacheSize,
      proxy: o.Proxy ?? ORTHANC_STORE_DEFAULTS.Proxy,
    };
    if (o.Username) {
      out.username = o.Username;
      out.password = o.Password ?? '';
    }
    return out;
  });
