// The peers of a node: OrthancPeers from the configuration, overlaid by the changes made at run time
// through PUT and DELETE /peers/{name}, which are saved (atomically) in <StorageDirectory>/peers.json.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { SETTINGS, badPeerName, isValidPeerName } from '../config/schema.ts';
import type { PeerConfig } from '../config/types.ts';
import { XferError } from '../errors.ts';
import { displayUrl } from '../util/url.ts';

/** Name of the file, in the storage directory, that keeps the peers changed at run time. */
export const PEERS_FILE = 'peers.json';

/** Where a peer's current definition comes from. */
export type PeerSource = 'config' | 'runtime';

export interface PeerChange {
  name: string;
  kind: 'put' | 'delete';
  /** The new definition (undefined after a delete). */
  peer: PeerConfig | undefined;
  /** The registry's version after this change. */
  version: number;
}

// ---- parsing a peer as the configuration file would ----------------------------------------------------

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  // A refused URL is shown without its credentials.
  const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'string' ? displayUrl(x) : x)) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function formatPath(p: readonly PropertyKey[]): string {
  let s = '';
  for (const seg of p) s += typeof seg === 'number' ? `[${seg}]` : s === '' ? String(seg) : `.${String(seg)}`;
  return s;
}

function valueAt(v: unknown, path: readonly PropertyKey[]): unknown {
  let cur = v;
  for (const seg of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

/**
 * Validates one peer given as in OrthancPeers (`[url]`, `[url, user, password]` or the long object form),
 * with the configuration file's own rules, and returns it normalised. Relative certificate paths are
 * resolved against `baseDir`, and the files must exist. Throws XferError BadFileFormat (400) whose details
 * name the offending key, e.g. `Url: expected an http:// or https:// URL, got "ftp://x"`.
 */
export function parsePeerInput(name: string, input: unknown, baseDir: string = process.cwd()): PeerConfig {
  if (!isValidPeerName(name)) throw new XferError('BadFileFormat', badPeerName(name));
  if (input === undefined) throw new XferError('BadFileFormat', 'the body is empty; expected a peer definition');
  const parsed = SETTINGS.OrthancPeers.schema.safeParse({ [name]: input });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const path = issue.path.slice(1);
      const where = path.length > 0 ? `${formatPath(path)}: ` : '';
      const plain = issue.code === 'custom' && issue.params?.['plain'] === true;
      return plain ? `${where}${issue.message}` : `${where}expected ${issue.message}, got ${show(valueAt(input, path))}`;
    });
    throw new XferError('BadFileFormat', problems.join('; '));
  }
  const peer = parsed.data[name];
  if (!peer) throw new XferError('BadFileFormat', `the peer "${name}" could not be read`);
  for (const key of ['certificateFile', 'certificateKeyFile'] as const) {
    const file = peer[key];
    if (file === undefined) continue;
    const abs = isAbsolute(file) ? file : resolve(baseDir, file);
    if (!existsSync(abs)) {
      const orthancKey = key === 'certificateFile' ? 'CertificateFile' : 'CertificateKeyFile';
      throw new XferError('BadFileFormat', `${orthancKey}: no such file: ${abs}`);
    }
    peer[key] = abs;
  }
  return peer;
}

/** A peer in Orthanc's long form with every setting, secrets included: what peers.json keeps. */
export function peerToLongForm(peer: PeerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { Url: peer.url };
  if (peer.username !== undefined) {
    out['Username'] = peer.username;
    out['Password'] = peer.password ?? '';
  }
  if (Object.keys(peer.httpHeaders).length > 0) out['HttpHeaders'] = { ...peer.httpHeaders };
  if (peer.certificateFile) out['CertificateFile'] = peer.certificateFile;
  if (peer.certificateKeyFile) out['CertificateKeyFile'] = peer.certificateKeyFile;
  if (peer.certificateKeyPassword) out['CertificateKeyPassword'] = peer.certificateKeyPassword;
  if (peer.timeout !== undefined) out['Timeout'] = peer.timeout;
  if (peer.rateLimit !== undefined) out['RateLimit'] = peer.rateLimit;
  for (const [k, v] of Object.entries(peer.userProperties)) out[k] = v;
  return out;
}

/**
 * A peer as Orthanc 1.10.1 describes it in `GET /peers?expand` and `GET /peers/{name}/configuration`:
 * keys sorted; header names only; `Password`, `CertificateKeyFile` and `CertificateKeyPassword` shown as
 * null when set (Orthanc hides them); `Pkcs11` false; `Timeout` 0 when unset; user properties as strings.
 */
export function describePeer(peer: PeerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    HttpHeaders: Object.keys(peer.httpHeaders).sort(),
    Pkcs11: false,
    Timeout: peer.timeout ?? 0,
    Url: displayUrl(peer.url),
  };
  if (peer.username !== undefined) {
    out['Username'] = peer.username;
    out['Password'] = null;
  }
  if (peer.certificateFile) {
    out['CertificateFile'] = peer.certificateFile;
    out['CertificateKeyFile'] = null;
    out['CertificateKeyPassword'] = null;
  }
  // dicom-xfer's own key, shown when set (Orthanc has none).
  if (peer.rateLimit !== undefined) out['RateLimit'] = peer.rateLimit;
  for (const [k, v] of Object.entries(peer.userProperties)) out[k] = v;
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---- the registry --------------------------------------------------------------------------------------

/** Runtime entries: a definition, or null for a configuration-file peer deleted at run time. */
type Saved = Map<string, PeerConfig | null>;

export interface RegistryOptions {
  /** OrthancPeers of the configuration, already normalised. */
  configPeers: Record<string, PeerConfig>;
  /** The peers.json file; none means run-time changes are kept in memory only. */
  file?: string | undefined;
  logger?: Logger | undefined;
}

/**
 * The peers of a node. Configuration-file peers come first; a run-time entry of the same name replaces
 * it, and a configuration-file peer deleted at run time stays deleted (peers.json keeps a null for it)
 * until it is PUT again. Every change bumps `version` and is reported to `onChange` listeners, so that
 * holders of a client for a changed peer drop it.
 */
export class PeerRegistry {
  readonly #config: ReadonlyMap<string, PeerConfig>;
  readonly #file: string | undefined;
  readonly #logger: Logger | undefined;
  #saved: Saved;
  #version = 0;
  readonly #listeners = new Set<(c: PeerChange) => void>();
  /** Writes of peers.json, one at a time, in order. */
  #writing: Promise<unknown> = Promise.resolve();

  private constructor(opts: RegistryOptions, saved: Saved) {
    this.#config = new Map(Object.entries(opts.configPeers));
    this.#file = opts.file;
    this.#logger = opts.logger;
    this.#saved = saved;
  }

  /**
   * Loads the saved run-time changes from `opts.file` (missing is fine). A file that cannot be read as
   * peers is moved aside (`peers.json.bad-<time>`) with a warning, never fatal; so are single bad entries.
   */
  static async open(opts: RegistryOptions): Promise<PeerRegistry> {
    const saved: Saved = new Map();
    const file = opts.file;
    if (file) {
      let text: string | undefined;
      try {
        text = await readFile(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new XferError('InexistentFile', `${file}: ${String(e)}`, { cause: e });
      }
      if (text !== undefined) {
        let peers: unknown;
        try {
          peers = (JSON.parse(text) as { Peers?: unknown }).Peers;
        } catch {
          peers = undefined;
        }
        if (typeof peers !== 'object' || peers === null || Array.isArray(peers)) {
          const aside = `${file}.bad-${Date.now()}`;
          await rename(file, aside);
          opts.logger?.warn({ file, aside }, 'the saved peers file is not valid; it was moved aside and ignored');
        } else {
          for (const [name, entry] of Object.entries(peers as Record<string, unknown>)) {
            if (entry === null) {
              saved.set(name, null);
              continue;
            }
            try {
              saved.set(name, parsePeerInput(name, entry, dirname(file)));
            } catch (e) {
              opts.logger?.warn(
                { file, peer: name, err: e instanceof Error ? e.message : String(e) },
                'a saved peer is not valid and is ignored',
              );
            }
          }
        }
      }
    }
    return new PeerRegistry(opts, saved);
  }

  /** Goes up by one at every change. */
  get version(): number {
    return this.#version;
  }

  /** The peer names, sorted as Orthanc sorts them (by code unit). */
  names(): string[] {
    const names = new Set<string>(this.#config.keys());
    for (const [name, entry] of this.#saved) {
      if (entry === null) names.delete(name);
      else names.add(name);
    }
    return [...names].sort();
  }

  /** Every peer, sorted by name. */
  list(): PeerConfig[] {
    return this.names().map((n) => this.get(n) as PeerConfig);
  }

  get(name: string): PeerConfig | undefined {
    const saved = this.#saved.get(name);
    if (saved === null) return undefined;
    return saved ?? this.#config.get(name);
  }

  /** The peer, or XferError InexistentItem (404) "Unknown Orthanc peer: name". */
  require(name: string): PeerConfig {
    const p = this.get(name);
    if (!p) throw new XferError('InexistentItem', `Unknown Orthanc peer: ${name}`);
    return p;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Where the current definition of `name` comes from, or undefined when there is none. */
  source(name: string): PeerSource | undefined {
    const saved = this.#saved.get(name);
    if (saved === null) return undefined;
    if (saved) return 'runtime';
    return this.#config.has(name) ? 'config' : undefined;
  }

  /** Calls `listener` after every change; returns the function that stops it. */
  onChange(listener: (c: PeerChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Adds or replaces `name` from `input` (any form OrthancPeers accepts; see parsePeerInput, which gives
   * the 400 errors), saves it, then reports it. Nothing changes when the file cannot be written.
   */
  async put(name: string, input: unknown): Promise<PeerConfig> {
    const peer = parsePeerInput(name, input);
    await this.#change(name, peer);
    return peer;
  }

  /** Removes `name` (XferError InexistentItem, 404, when unknown), saves it, then reports it. */
  async remove(name: string): Promise<void> {
    this.require(name);
    await this.#change(name, undefined);
  }

  /**
   * Applies one change after the ones before it (so two PUTs at once both count): saves the new state,
   * then makes it current and reports it.
   */
  async #change(name: string, peer: PeerConfig | undefined): Promise<void> {
    const run = this.#writing.then(async () => {
      const next: Saved = new Map(this.#saved);
      if (peer) next.set(name, peer);
      else {
        this.require(name); // a DELETE that raced with another one
        if (this.#config.has(name)) next.set(name, null);
        else next.delete(name);
      }
      await this.#save(next);
      this.#saved = next;
      this.#version++;
      const event: PeerChange = { name, kind: peer ? 'put' : 'delete', peer, version: this.#version };
      for (const l of this.#listeners) {
        try {
          l(event);
        } catch (e) {
          this.#logger?.error({ err: e, peer: name }, 'a peer change listener failed');
        }
      }
    });
    this.#writing = run.catch(() => undefined);
    await run;
  }

  /** Writes peers.json through a temporary file, fsync and rename, so a crash leaves the old or the new. */
  async #save(saved: Saved): Promise<void> {
    const file = this.#file;
    if (!file) return;
    const peers: Record<string, unknown> = {};
    for (const [name, entry] of [...saved].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      peers[name] = entry === null ? null : peerToLongForm(entry);
    }
    const text = `${JSON.stringify({ Peers: peers }, null, 2)}\n`;
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await mkdir(dirname(file), { recursive: true });
      // Passwords live in this file: only the node's user may read it.
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(text, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      const dir = await open(dirname(file), 'r');
      try {
        await dir.sync();
      } catch {
        // Some filesystems refuse fsync on a directory; the rename is still atomic.
      } finally {
        await dir.close();
      }
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new XferError('CannotWriteFile', `cannot save the peers to ${file}: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
  }
}

/** The peers.json path of a storage directory. */
export function peersFile(storageDirectory: string): string {
  return join(storageDirectory, PEERS_FILE);
}
