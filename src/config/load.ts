// Loads dicom-xfer's configuration: an Orthanc-style JSON file (or a folder of them, as Orthanc accepts),
// with comments, trailing commas and ${ENV} substitution, validated against the table in schema.ts, then
// overridden by command-line values and completed with the defaults.
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseTree, printParseErrorCode, stripComments, type Node, type ParseError } from 'jsonc-parser';
import type { z } from 'zod';
import { XferError } from '../errors.ts';
import { displayUrl } from '../util/url.ts';
import { ORTHANC_IGNORED_KEYS, TRANSFERS_IGNORED_KEYS, type IgnoredKey } from './orthanc-keys.ts';
import { isDerived, RESERVED_PEER_KEYS, SETTINGS, TRANSFERS_SETTINGS, type Setting } from './schema.ts';
import type { Config, ConfigOverrides, DicomWebConfig, PeerConfig, TransfersConfig } from './types.ts';

/** Environment variable naming the configuration file when no `--config` flag does. */
export const CONFIG_ENV_VAR = 'DICOM_XFER_CONFIG';

/** Origin named in messages about values given on the command line. */
export const OVERRIDES_ORIGIN = 'command line';

export interface LoadedConfig {
  config: Config;
  /** One line each, naming the file, line, column and key concerned. */
  warnings: string[];
  /** Key paths that Orthanc knows, dicom-xfer ignores, and the file sets (for a debug log line). */
  ignored: string[];
  /** The files read, in order; empty when only defaults and overrides were used. */
  files: string[];
}

export interface LoadOptions {
  /** A configuration file, or a folder whose `*.json` files are read together as Orthanc does. */
  file?: string | undefined;
  /** Command-line values; they win over the file. */
  overrides?: ConfigOverrides | undefined;
  /** Environment for DICOM_XFER_CONFIG and ${VAR} substitution; process.env by default. */
  env?: NodeJS.ProcessEnv | undefined;
}

export interface ParseOptions {
  overrides?: ConfigOverrides | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Folder against which relative paths of the text resolve; the current directory by default. */
  baseDir?: string | undefined;
}

/**
 * Reads the configuration named by `opts.file`, else by $DICOM_XFER_CONFIG, else uses defaults only, and
 * applies `opts.overrides` over it. Rejects with XferError InexistentFile when the file or folder does not
 * exist, BadFileFormat when it does not parse or a value is wrong (the message names every bad key with
 * file, line and column), BadParameterType when only an override is wrong. Unknown keys only warn.
 */
export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const fromEnv = opts.file === undefined && !!env[CONFIG_ENV_VAR];
  const file = opts.file ?? (env[CONFIG_ENV_VAR] || undefined);
  const report = newReport();
  if (file === undefined) return finish([], opts.overrides, process.cwd(), report, []);

  const path = resolve(file);
  const how = fromEnv ? ` (from ${CONFIG_ENV_VAR})` : '';
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    throw new XferError('InexistentFile', `configuration file not found: ${path}${how}`, { cause: e });
  }
  let files = [path];
  if (isDir) {
    files = (await readdir(path))
      .filter((n) => n.toLowerCase().endsWith('.json'))
      .sort()
      .map((n) => join(path, n));
    if (files.length === 0) report.warnings.push(`${path}: no .json file in this configuration folder`);
  }
  const sources: Source[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new XferError('InexistentFile', `configuration file not found: ${f}${how}`, { cause: e });
      throw new XferError('BadFileFormat', `cannot read configuration file ${f}: ${code ?? String(e)}`, { cause: e });
    }
    sources.push(readSource(text, f, env, report));
  }
  return finish(sources, opts.overrides, isDir ? path : dirname(path), report, files);
}

/**
 * Same as loadConfig for a configuration given as text; `origin` names it in messages. Throws the same
 * errors synchronously.
 */
export function parseConfigText(text: string, origin: string, opts: ParseOptions = {}): LoadedConfig {
  const report = newReport();
  const source = readSource(text, origin, opts.env ?? process.env, report);
  return finish([source], opts.overrides, opts.baseDir ?? process.cwd(), report, []);
}

// ---- reading ------------------------------------------------------------------------------------------------

interface Report {
  errors: string[];
  warnings: string[];
  ignored: string[];
}

function newReport(): Report {
  return { errors: [], warnings: [], ignored: [] };
}

type Path = readonly (string | number)[];

/** One parsed file, or the overrides, with a way to say where a key sits. */
interface Source {
  origin: string;
  values: Record<string, unknown>;
  /**
   * "file:line:column" of the value at `path` (of its key when `at` is 'key'), or of the nearest enclosing
   * value; just the origin when there is no position.
   */
  locate(path: Path, at?: 'key' | 'value'): string;
  isOverride: boolean;
}

const pathKey = (p: Path): string => p.join('\u0000');

/** Orthanc replaces ${VAR} with the variable's value (or "" when unset) and ${VAR:-text} with text when unset. */
function substituteEnv(text: string, env: NodeJS.ProcessEnv, origin: string, report: Report): string {
  return text.replace(/\$\{([^}]*)\}/g, (whole, body: string) => {
    const sep = body.indexOf(':-');
    const name = sep >= 0 ? body.slice(0, sep) : body;
    const value = env[name];
    if (value !== undefined) return value;
    if (sep >= 0) return body.slice(sep + 2);
    report.warnings.push(`${origin}: environment variable ${name} is not set; ${whole} becomes ""`);
    return '';
  });
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

function position(starts: readonly number[], offset: number): string {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] ?? 0) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return `${lo + 1}:${offset - (starts[lo] ?? 0) + 1}`;
}

function readSource(rawText: string, origin: string, env: NodeJS.ProcessEnv, report: Report): Source {
  // Comments become blanks (line breaks kept) so that offsets still match the file, and so that a ${VAR}
  // mentioned in a comment is neither substituted nor warned about.
  const text = substituteEnv(stripComments(rawText.replace(/^\uFEFF/, ''), ' '), env, origin, report);
  const starts = lineStarts(text);
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  const first = errors[0];
  if (first) {
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
    throw new XferError(
      'BadFileFormat',
      `${origin}:${position(starts, first.offset)}: ${describeParseError(printParseErrorCode(first.error))}${more}`,
    );
  }
  if (root?.type !== 'object') {
    throw new XferError('BadFileFormat', `${origin}: expected a JSON object ({ ... }) at the top level`);
  }
  const offsets = new Map<string, number>();
  const keyOffsets = new Map<string, number>();
  const values = nodeValue(root, [], offsets, keyOffsets, (kind, p, offset) => {
    const at = `${origin}:${position(starts, offset)}`;
    if (kind === 'duplicate') report.warnings.push(`${at}: ${formatPath(p)} is given twice; the last one is used`);
    else report.errors.push(`${at}: ${formatPath(p)}: "__proto__" is not allowed as a key`);
  }) as Record<string, unknown>;
  return {
    origin,
    values,
    isOverride: false,
    locate(path, at = 'value') {
      const keyOffset = at === 'key' ? keyOffsets.get(pathKey(path)) : undefined;
      if (keyOffset !== undefined) return `${origin}:${position(starts, keyOffset)}`;
      for (let n = path.length; n > 0; n--) {
        const offset = offsets.get(pathKey(path.slice(0, n)));
        if (offset !== undefined) return `${origin}:${position(starts, offset)}`;
      }
      return origin;
    },
  };
}

function describeParseError(code: string): string {
  // jsonc-parser names errors like "CommaExpected"; say it in words.
  return `invalid JSON: ${code.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()}`;
}

/**
 * Turns a parse tree into plain values, recording where each value starts. A "__proto__" key is refused:
 * assigned to a plain object it would replace the object's prototype instead of adding a key.
 */
function nodeValue(
  node: Node,
  path: Path,
  offsets: Map<string, number>,
  keyOffsets: Map<string, number>,
  problem: (kind: 'duplicate' | 'proto', p: Path, offset: number) => void,
): unknown {
  offsets.set(pathKey(path), node.offset);
  switch (node.type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const prop of node.children ?? []) {
        const [keyNode, valueNode] = prop.children ?? [];
        if (!keyNode || !valueNode || typeof keyNode.value !== 'string') continue;
        const key = keyNode.value;
        const p = [...path, key];
        if (key === '__proto__') {
          problem('proto', p, keyNode.offset);
          continue;
        }
        if (Object.hasOwn(out, key)) problem('duplicate', p, keyNode.offset);
        keyOffsets.set(pathKey(p), keyNode.offset);
        out[key] = nodeValue(valueNode, p, offsets, keyOffsets, problem);
      }
      return out;
    }
    case 'array':
      return (node.children ?? []).map((c, i) => nodeValue(c, [...path, i], offsets, keyOffsets, problem));
    default:
      return node.value;
  }
}

// ---- validation ---------------------------------------------------------------------------------------------

function formatPath(p: Path): string {
  let s = '';
  for (const seg of p) s += typeof seg === 'number' ? `[${seg}]` : s === '' ? seg : `.${seg}`;
  return s;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number') return String(v);
  // A refused URL is shown without its credentials.
  const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'string' ? displayUrl(x) : x));
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function valueAt(v: unknown, path: readonly PropertyKey[]): unknown {
  let cur = v;
  for (const seg of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Values of one source after validation, in loaded form, paths not yet resolved. */
interface Layer {
  top: Record<string, unknown>;
  transfers: Record<string, unknown>;
  source: Source;
}

// The tables are typed per key; here they are walked generically, which their types cannot express.
type AnySetting = Setting<unknown, never>;
const TOP_TABLE = SETTINGS as Readonly<Record<string, AnySetting>>;
const TRANSFERS_TABLE = TRANSFERS_SETTINGS as Readonly<Record<string, AnySetting>>;

function suggestion(key: string, ...tables: Iterable<string>[]): string {
  const lower = key.toLowerCase();
  for (const table of tables) for (const k of table) if (k.toLowerCase() === lower) return ` (did you mean ${k}?)`;
  const near = closestKey(
    key,
    tables.flatMap((t) => [...t]),
  );
  return near === undefined ? '' : ` (did you mean ${near}?)`;
}

/**
 * Edits (insertion, deletion, substitution, swap of two neighbours) between `a` and `b`, ignoring case;
 * stops counting past `max` (returns max + 1).
 */
function editDistance(a: string, b: string, max: number): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] as number) + 1);
      cur.push(d);
      best = Math.min(best, d);
    }
    if (best > max) return max + 1;
    before = prev;
    prev = cur;
  }
  return prev[b.length] as number;
}

/** The known key that `key` most likely misspells: one edit away for short keys, two for longer ones. */
function closestKey(key: string, known: readonly string[]): string | undefined {
  const max = key.length <= 4 ? 1 : 2;
  let found: string | undefined;
  let foundDistance = max + 1;
  for (const k of known) {
    const d = editDistance(key, k, max);
    if (d < foundDistance) {
      found = k;
      foundDistance = d;
    }
  }
  return found;
}

function validateSection(
  raw: Record<string, unknown>,
  prefix: Path,
  table: Readonly<Record<string, AnySetting>>,
  ignoredKeys: ReadonlyMap<string, IgnoredKey>,
  src: Source,
  report: Report,
  out: Record<string, unknown>,
  nested?: (key: string, value: unknown) => boolean,
): void {
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue; // an override that was not given
    const path = [...prefix, key];
    const where = src.locate(path, 'key');
    if (nested?.(key, value)) continue;
    const setting = Object.hasOwn(table, key) ? table[key] : undefined;
    if (setting) {
      const schema: z.ZodType = (src.isOverride && setting.overrideSchema) || setting.schema;
      const parsed = schema.safeParse(value);
      if (parsed.success) {
        out[key] = parsed.data;
        continue;
      }
      for (const issue of parsed.error.issues) {
        const full = [...path, ...(issue.path as (string | number)[])];
        const at = src.locate(full);
        const plain = issue.code === 'custom' && issue.params?.['plain'] === true;
        report.errors.push(
          plain
            ? `${at}: ${formatPath(full)}: ${issue.message}`
            : `${at}: ${formatPath(full)}: expected ${issue.message}, got ${show(valueAt(value, issue.path))}`,
        );
      }
      continue;
    }
    const ignored = ignoredKeys.get(key);
    if (ignored) {
      report.ignored.push(formatPath(path));
      const note = ignored.note?.(value);
      if (note) report.warnings.push(`${where}: ${formatPath(path)} is ignored by dicom-xfer: ${note}`);
      continue;
    }
    const hint = suggestion(key, Object.keys(table), ignoredKeys.keys());
    report.warnings.push(`${where}: unknown key ${formatPath(path)}, ignored${hint}`);
  }
}

function validateSource(src: Source, report: Report): Layer {
  const layer: Layer = { top: {}, transfers: {}, source: src };
  validateSection(src.values, [], TOP_TABLE, ORTHANC_IGNORED_KEYS, src, report, layer.top, (key, value) => {
    if (key !== 'Transfers') return false;
    if (!isPlainObject(value)) {
      report.errors.push(`${src.locate(['Transfers'])}: Transfers: expected an object, got ${show(value)}`);
    } else {
      validateSection(value, ['Transfers'], TRANSFERS_TABLE, TRANSFERS_IGNORED_KEYS, src, report, layer.transfers);
    }
    return true;
  });
  const rawPeers = src.values['OrthancPeers'];
  if (isPlainObject(rawPeers)) {
    for (const [name, peer] of Object.entries(rawPeers)) {
      if (isPlainObject(peer) && peer['Pkcs11'] === true) {
        report.warnings.push(
          `${src.locate(['OrthancPeers', name, 'Pkcs11'], 'key')}: OrthancPeers.${name}.Pkcs11 is ignored by dicom-xfer: PKCS#11 is not ` +
            `supported, the peer is called without it`,
        );
      }
      // Any other key is a user property, so a misspelt Username would silently call the peer without it.
      if (isPlainObject(peer)) {
        for (const key of Object.keys(peer)) {
          if (RESERVED_PEER_KEYS.includes(key)) continue;
          const near = closestKey(key, RESERVED_PEER_KEYS);
          if (near === undefined) continue;
          report.warnings.push(
            `${src.locate(['OrthancPeers', name, key], 'key')}: OrthancPeers.${name}.${key} is not a setting of a peer and is kept as a ` +
              `user property (did you mean ${near}?)`,
          );
        }
      }
    }
  }
  return layer;
}

function overridesSource(overrides: ConfigOverrides): Source {
  return {
    origin: OVERRIDES_ORIGIN,
    values: overrides as Record<string, unknown>,
    isOverride: true,
    locate: () => OVERRIDES_ORIGIN,
  };
}

// ---- merging and defaults -----------------------------------------------------------------------------------

function resolvePaths(layer: Layer, baseDir: string): void {
  for (const [key, setting] of Object.entries(TOP_TABLE)) {
    const v = layer.top[key];
    if (setting.path && typeof v === 'string') layer.top[key] = resolve(baseDir, v);
  }
  const peers = layer.top['OrthancPeers'] as Record<string, PeerConfig> | undefined;
  for (const peer of Object.values(peers ?? {})) {
    if (peer.certificateFile) peer.certificateFile = resolve(baseDir, peer.certificateFile);
    if (peer.certificateKeyFile) peer.certificateKeyFile = resolve(baseDir, peer.certificateKeyFile);
  }
  // The DICOMweb servers' files, as the peers' (a token command's program is found on PATH, as a shell would).
  const dicomWeb = layer.top['DicomWeb'] as DicomWebConfig | undefined;
  for (const s of Object.values(dicomWeb?.Servers ?? {})) {
    if (s.certificateFile) s.certificateFile = resolve(baseDir, s.certificateFile);
    if (s.certificateKeyFile) s.certificateKeyFile = resolve(baseDir, s.certificateKeyFile);
    if (s.bearerTokenFile) s.bearerTokenFile = resolve(baseDir, s.bearerTokenFile);
  }
}

/** Keys whose entries merge one by one across files and overrides instead of being replaced whole. */
const MERGED_BY_ENTRY = new Set(['OrthancPeers', 'RegisteredUsers']);

function fill(table: Readonly<Record<string, AnySetting>>, given: Record<string, unknown>, baseDir: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(table)) {
    if (Object.hasOwn(given, key)) out[key] = given[key];
    else if (setting.default !== undefined && !isDerived(setting.default)) {
      const d = structuredClone(setting.default);
      out[key] = setting.path && typeof d === 'string' ? resolve(baseDir, d) : d;
    }
  }
  // Rules read only keys that have plain defaults, which are all filled by now.
  for (const [key, setting] of Object.entries(table)) {
    if (!Object.hasOwn(out, key) && isDerived(setting.default)) out[key] = setting.default.derive(out as never);
  }
  // Keys in table order, so that a printed configuration reads like the reference.
  const ordered: Record<string, unknown> = {};
  for (const key of Object.keys(table)) if (Object.hasOwn(out, key)) ordered[key] = out[key];
  return ordered;
}

/** Each source checked against the table, then the overrides; a key defined by two files is an error. */
function validateLayers(sources: Source[], overrides: ConfigOverrides | undefined, fileBaseDir: string, report: Report): Layer[] {
  const layers: Layer[] = [];
  const definedIn = new Map<string, string>();
  for (const src of sources) {
    // Orthanc refuses a folder whose files define the same top-level key twice; so does dicom-xfer.
    for (const key of Object.keys(src.values)) {
      const other = definedIn.get(key);
      if (other !== undefined) report.errors.push(`${src.locate([key], 'key')}: ${key} is already defined in ${other}`);
      else definedIn.set(key, src.origin);
    }
    const layer = validateSource(src, report);
    resolvePaths(layer, fileBaseDir);
    layers.push(layer);
  }
  if (overrides) {
    const overrideLayer = validateSource(overridesSource(overrides), report);
    resolvePaths(overrideLayer, process.cwd());
    layers.push(overrideLayer);
  }
  return layers;
}

/** The layers merged, later ones winning, with the source that gave each key (for messages). */
interface Merged {
  top: Record<string, unknown>;
  transfers: Record<string, unknown>;
  topFrom: Map<string, Source>;
  transfersFrom: Map<string, Source>;
}

function mergeLayers(layers: readonly Layer[]): Merged {
  const m: Merged = { top: {}, transfers: {}, topFrom: new Map(), transfersFrom: new Map() };
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer.top)) {
      m.top[key] = MERGED_BY_ENTRY.has(key) && isPlainObject(m.top[key]) ? { ...m.top[key], ...(value as object) } : value;
      m.topFrom.set(key, layer.source);
    }
    for (const [key, value] of Object.entries(layer.transfers)) {
      m.transfers[key] = value;
      m.transfersFrom.set(key, layer.source);
    }
  }
  return m;
}

/** Checks that involve more than one key: errors and warnings into `report`. */
function crossChecks(config: Config, merged: Merged, sources: readonly Source[], report: Report): void {
  const whereTop = (...keys: string[]): string => {
    for (const key of keys) {
      const src = merged.topFrom.get(key);
      if (src) return src.locate([key], 'key');
    }
    return sources[0]?.origin ?? 'configuration';
  };
  if (config.SslEnabled && !config.SslCertificate) {
    report.errors.push(`${whereTop('SslEnabled')}: SslCertificate: a certificate file is required when SslEnabled is true`);
  }
  const t = config.Transfers;
  const maxFrom = merged.transfersFrom.get('MaxThreads');
  if (maxFrom && t.MaxThreads < t.Threads) {
    report.errors.push(
      `${maxFrom.locate(['Transfers', 'MaxThreads'])}: Transfers.MaxThreads: expected at least Transfers.Threads (${t.Threads}), got ` +
        `${t.MaxThreads}`,
    );
  }
  if (config.AuthenticationEnabled && Object.keys(config.RegisteredUsers).length === 0) {
    report.warnings.push(
      `${whereTop('AuthenticationEnabled', 'RemoteAccessAllowed')}: AuthenticationEnabled is true ` +
        'but RegisteredUsers is empty: no user can log in',
    );
  }
  if (!config.HttpsVerifyPeers) {
    report.warnings.push(
      `${whereTop('HttpsVerifyPeers')}: HttpsVerifyPeers is false: the certificates of HTTPS peers and of an HTTPS Orthanc store are not ` +
        `checked, so whoever sits between this node and them can read and change what passes`,
    );
  }
  if (config.RemoteAccessAllowed && !config.AuthenticationEnabled) {
    report.warnings.push(
      `${whereTop('AuthenticationEnabled', 'RemoteAccessAllowed')}: RemoteAccessAllowed is true and AuthenticationEnabled is false: ` +
        `anyone who reaches this node can read and change its data`,
    );
  }
}

function finish(
  sources: Source[],
  overrides: ConfigOverrides | undefined,
  fileBaseDir: string,
  report: Report,
  files: string[],
): LoadedConfig {
  const merged = mergeLayers(validateLayers(sources, overrides, fileBaseDir, report));
  // Defaults resolve relative paths like Orthanc: against the configuration file's folder.
  const config = fill(TOP_TABLE, merged.top, fileBaseDir) as unknown as Config;
  config.Transfers = fill(TRANSFERS_TABLE, merged.transfers, fileBaseDir) as unknown as TransfersConfig;
  crossChecks(config, merged, sources, report);
  if (report.errors.length > 0) {
    const fromFile = report.errors.some((e) => !e.startsWith(OVERRIDES_ORIGIN));
    throw new XferError(fromFile ? 'BadFileFormat' : 'BadParameterType', report.errors.join('\n'));
  }
  return { config, warnings: report.warnings, ignored: report.ignored, files };
}
