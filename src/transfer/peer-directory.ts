// The node's transfers peers as its destinations: the directory the push jobs and the dashboard use. Each
// configured peer is a TransfersPeerDestination; its status for the dashboard is the peer's probe (reachable,
// round trip, plugins), the extensions its capabilities list, and the client's counters.
import type { Config } from '../config/types.ts';
import { XferError } from '../errors.ts';
import type { Peers } from '../peers/peers.ts';
import { CAPABILITIES_PATH } from '../protocol/paths.ts';
import type { TransferDeps } from './run.ts';
import { displayUrl } from '../util/url.ts';
import { TransfersPeerDestination, type TransfersPeerState } from './peer-destination.ts';
import type { Destination, DestinationDirectory, DestinationStatus } from '../destinations/types.ts';

export class TransfersPeerDirectory implements DestinationDirectory<TransfersPeerState> {
  readonly #deps: TransferDeps;
  readonly #peers: Peers;
  readonly #config: Config;

  constructor(deps: TransferDeps, peers: Peers, config: Config) {
    this.#deps = deps;
    this.#peers = peers;
    this.#config = config;
  }

  names(): string[] {
    return this.#peers.names();
  }

  get(name: string): Destination<TransfersPeerState> {
    if (!this.#peers.get(name)) throw new XferError('UnknownResource', `peer "${name}" is not configured`);
    return new TransfersPeerDestination(this.#deps, name);
  }

  statusAll(): Promise<DestinationStatus[]> {
    return peerStatuses(this.#peers, this.#config);
  }
}

/** The names a peer's `GET /transfers/capabilities` answer gives its extensions, whatever its exact shape. */
export function extensionNames(body: unknown): string[] {
  if (Array.isArray(body)) return body.filter((x): x is string => typeof x === 'string').sort();
  if (body === null || typeof body !== 'object') return [];
  const o = body as Record<string, unknown>;
  for (const key of ['Extensions', 'extensions', 'Capabilities']) {
    if (o[key] !== undefined) return extensionNames(o[key]);
  }
  // An object of versions, flags or per-extension settings: the keys whose value is not false, 0 or null.
  return Object.entries(o)
    .filter(([, v]) => v !== false && v !== 0 && v !== null && v !== undefined)
    .map(([k]) => k)
    .sort();
}

/** What the dashboard shows of each transfers peer: the probe, its extensions, its counters. */
async function peerStatuses(peers: Peers, config: Config): Promise<DestinationStatus[]> {
  const probes = await peers.probeAll();
  const timeoutMs = Math.max(1, config.Transfers.PeerConnectivityTimeout) * 1000;
  return Promise.all(
    probes.map(async (probe) => {
      const peer = peers.get(probe.name);
      const stats = peers.stats(probe.name);
      let extensions: string[] | null = null;
      let capabilities: unknown = null;
      if (peer && probe.reachable && probe.status !== 'disabled') {
        try {
          const res = await peers.client(probe.name).json({ method: 'GET', path: CAPABILITIES_PATH, timeoutMs });
          capabilities = res.body;
          extensions = extensionNames(res.body);
        } catch {
          // No such route (an Orthanc peer, an older dicom-xfer): no extensions.
          extensions = [];
        }
      }
      return {
        Name: probe.name,
        Kind: 'transfers-peer',
        Url: peer ? displayUrl(peer.url) : null,
        RemoteSelf: peer?.userProperties.RemoteSelf ?? null,
        Reachable: probe.reachable,
        RttMs: probe.rttMs ?? null,
        Status: probe.status,
        Error: probe.error ?? null,
        Plugins: probe.plugins ?? [],
        Extensions: extensions,
        Capabilities: capabilities,
        ProbedAt: probe.at,
        Stats: stats ?? null,
      };
    }),
  );
}
