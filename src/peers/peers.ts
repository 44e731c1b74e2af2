// The peers of a running node as the rest of dicom-xfer uses them: the registry, one PeerClient per peer
// (dropped and closed when the peer changes), per-peer counters, and detection of the transfers protocol.
import type { Logger } from 'pino';
import type { Config, PeerConfig } from '../config/types.ts';
import { XferError } from '../errors.ts';
import { PeerClient, newPeerStats, type PeerClientSettings, type PeerStats, type WireGate } from './client.ts';
import { PeerRegistry, peersFile } from './registry.ts';

/** What `GET /transfers/peers` says of a peer (docs/protocol.md#peers). */
export type PeerTransfersStatus = 'installed' | 'bidirectional' | 'disabled';

/** The outcome of one detection call, `GET {peer}/plugins`. */
export interface PeerProbe {
  name: string;
  status: PeerTransfersStatus;
  /** The peer answered 200 with a JSON array. */
  reachable: boolean;
  /** The plugins the peer listed, when it answered. */
  plugins?: string[];
  /** Milliseconds to the answer's headers, when it answered. */
  rttMs?: number;
  /** Why the peer is disabled, when it is. */
  error?: string;
  /** ISO time of the probe. */
  at: string;
}

export interface PeersOptions {
  settings: PeerClientSettings;
  /** Seconds allowed for `GET /plugins` when detecting (Transfers.PeerConnectivityTimeout); 0 = none. */
  connectivityTimeout: number;
  /** Detection calls in flight at once. */
  probeConcurrency: number;
  logger?: Logger | undefined;
  /** The bandwidth policy's gate of each peer, by name; none means no policy. */
  wire?: ((peer: string) => WireGate) | undefined;
}

/** The client settings a configuration gives (HttpTimeout, HttpsVerifyPeers, HttpsCACertificates). */
export function clientSettingsFrom(config: Config): PeerClientSettings {
  return {
    httpTimeout: config.HttpTimeout,
    verifyPeers: config.HttpsVerifyPeers,
    caFile: config.HttpsCACertificates,
  };
}

/**
 * The peers of a node. Ask `client(name)` for each call (it is a map lookup): a client is closed when its
 * peer is changed or deleted, and a call on a closed client fails with BadSequenceOfCalls.
 */
export class Peers {
  readonly registry: PeerRegistry;
  readonly #opts: PeersOptions;
  readonly #clients = new Map<string, PeerClient>();
  readonly #stats = new Map<string, PeerStats>();
  readonly #probes = new Map<string, PeerProbe>();
  readonly #unsubscribe: () => void;
  #closed = false;

  constructor(registry: PeerRegistry, opts: PeersOptions) {
    this.registry = registry;
    this.#opts = opts;
    this.#unsubscribe = registry.onChange((c) => {
      const old = this.#clients.get(c.name);
      this.#clients.delete(c.name);
      this.#probes.delete(c.name);
      if (c.kind === 'delete') this.#stats.delete(c.name);
      // Calls in flight on the old definition finish; new calls get a client for the new one.
      old?.close().catch((e: unknown) => opts.logger?.warn({ err: e, peer: c.name }, 'closing a peer client failed'));
    });
  }

  /** The peers of a node's configuration plus its saved run-time changes (<StorageDirectory>/peers.json). */
  static async open(config: Config, logger?: Logger, wire?: (peer: string) => WireGate): Promise<Peers> {
    const registry = await PeerRegistry.open({
      configPeers: config.OrthancPeers,
      file: peersFile(config.StorageDirectory),
      logger,
    });
    return new Peers(registry, {
      settings: clientSettingsFrom(config),
      connectivityTimeout: config.Transfers.PeerConnectivityTimeout,
      probeConcurrency: Math.max(16, config.Transfers.Threads),
      logger,
      wire,
    });
  }

  /** The current definition of peer `name` (same as registry.get). */
  get(name: string): PeerConfig | undefined {
    return this.registry.get(name);
  }

  /** The peer names, sorted (same as registry.names). */
  names(): string[] {
    return this.registry.names();
  }

  /** The client of peer `name`; XferError InexistentItem (404) when there is no such peer. */
  client(name: string): PeerClient {
    if (this.#closed) throw new XferError('BadSequenceOfCalls', 'the node is stopping');
    const peer = this.registry.require(name);
    let c = this.#clients.get(name);
    if (!c || c.peer !== peer) {
      c = new PeerClient(peer, this.#opts.settings, this.#statsOf(name), this.#opts.wire?.(name));
      this.#clients.set(name, c);
    }
    return c;
  }

  #statsOf(name: string): PeerStats {
    let s = this.#stats.get(name);
    if (!s) {
      s = newPeerStats();
      this.#stats.set(name, s);
    }
    return s;
  }

  /** A copy of the counters of peer `name` (zeros when it was never called); undefined for an unknown peer. */
  stats(name: string): PeerStats | undefined {
    if (!this.registry.has(name)) return undefined;
    return { ...this.#statsOf(name) };
  }

  /** The last detection result of peer `name`, if it was probed since it last changed. */
  lastProbe(name: string): PeerProbe | undefined {
    return this.#probes.get(name);
  }

  /**
   * Detects whether peer `name` speaks the transfers protocol: `GET {url}/plugins` with the connectivity
   * timeout and no retry; installed when the answer is a JSON array holding "transfers" (bidirectional
   * when the peer has a RemoteSelf), disabled otherwise. Never throws for a known peer.
   */
  async probe(name: string, signal?: AbortSignal): Promise<PeerProbe> {
    const peer = this.registry.require(name);
    const at = new Date().toISOString();
    let probe: PeerProbe;
    try {
      const res = await this.client(name).json({
        method: 'GET',
        path: '/plugins',
        timeoutMs: this.#opts.connectivityTimeout * 1000,
        signal,
      });
      if (!Array.isArray(res.body)) {
        probe = { name, status: 'disabled', reachable: true, rttMs: res.rttMs, error: 'GET /plugins did not answer a JSON array', at };
      } else {
        const plugins = res.body.filter((p): p is string => typeof p === 'string');
        const has = plugins.includes('transfers');
        const status: PeerTransfersStatus = !has
          ? 'disabled'
          : peer.userProperties['RemoteSelf'] !== undefined
            ? 'bidirectional'
            : 'installed';
        probe = { name, status, reachable: true, plugins, rttMs: res.rttMs, at };
        if (!has) probe.error = 'the peer does not list the "transfers" plugin';
      }
    } catch (e) {
      if (signal?.aborted) throw e;
      probe = { name, status: 'disabled', reachable: false, error: e instanceof Error ? e.message : String(e), at };
    }
    // Keep it only if the peer was not changed meanwhile.
    if (this.registry.get(name) === peer) this.#probes.set(name, probe);
    return probe;
  }

  /**
   * Probes every peer, `probeConcurrency` at a time, each independently of the others (an unreachable
   * peer delays no one beyond its own timeout and makes no other peer "disabled"). Sorted by name.
   */
  async probeAll(signal?: AbortSignal): Promise<PeerProbe[]> {
    const names = this.registry.names();
    const results: PeerProbe[] = new Array<PeerProbe>(names.length);
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        const name = names[i];
        if (name === undefined) return;
        results[i] = this.registry.has(name)
          ? await this.probe(name, signal)
          : { name, status: 'disabled', reachable: false, error: 'the peer was deleted', at: new Date().toISOString() };
      }
    };
    const workers = Math.min(this.#opts.probeConcurrency, names.length);
    await Promise.all(Array.from({ length: workers }, worker));
    return results;
  }

  /** Closes every client (calls in flight finish first). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.all(clients.map((c) => c.close()));
  }
}
