// Capability discovery: the protocol extensions a dicom-xfer node lists in `GET /transfers/capabilities`,
// and the probe a job makes of its peer, so that an extension is used only with a peer that lists it (an
// Orthanc peer answers 404: none). The extension headers and routes are named here, once.
import type { Config } from '../config/types.ts';
import type { PeerClient } from '../peers/client.ts';
import { PeerHttpError } from '../peers/client.ts';
import { CAPABILITIES_PATH } from '../protocol/paths.ts';
import { VERSION } from '../version.ts';

/** The extensions this node implements, each with its version (a peer must list at least this one). */
export const EXTENSIONS = {
  /** `GET /transfers/push/{tx}/buckets`: which buckets a push transaction holds, for a resuming sender. */
  resume: 1,
  /** `POST /transfers/have`: which instances the receiver already holds with the same MD5. */
  dedupe: 1,
  /** Commit answered at once, followed through `GET /transfers/push/{tx}/state`; outcomes kept durably. */
  'async-commit': 1,
  /**
   * `x-dicom-xfer-crc32` on each bucket (push PUT, chunk answer): the CRC-32 of its uncompressed payload,
   * checked as the bytes are written; a bucket corrupted in flight is refused (422) and sent again.
   * Version 2: a gzip body may carry CRC32_MEMBER instead, its gzip trailer being that same CRC-32.
   */
  'bucket-crc32': 2,
  /**
   * Spans of buckets. A push may `PUT /transfers/push/{tx}/{first}-{last}`: buckets first..last in one
   * request, their payloads concatenated (one gzip member for the whole span with gzip; HEADER_CRC32 of the
   * whole), so a sender plans small buckets and joins them as the link allows. As a source, the node
   * serves chunk requests of any size cheaply (byte ranges of its files), so a puller plans the same way.
   */
  'bucket-span': 1,
  /**
   * Each bucket PUT's answer carries HEADER_RECEIVED: the bytes the transaction's PUTs have received so
   * far and when, on the receiver's clock, so that a pusher measures the link's rate from what arrived
   * rather than from what its kernel buffers took.
   */
  'receiver-progress': 1,
  /**
   * Compression "zstd": push bodies and chunk answers as one zstd frame per request that declares its
   * content size (src/protocol/zstd.ts), checked before it is decoded, with HEADER_CRC32 in hexadecimal.
   * A sender uses it for a "gzip" (or "zstd") transfer with a peer that lists it; other peers get gzip.
   */
  zstd: 1,
} as const;

export type Extension = keyof typeof EXTENSIONS;

/** Version of the protocol itself: the plugin's, which every extension leaves intact. */
export const PROTOCOL_VERSION = 1;

/** Route of the capability document (spelled in protocol/paths.ts). */
export { CAPABILITIES_PATH };

/**
 * CRC-32 (zlib's, 8 lowercase hex digits) of a bucket's uncompressed payload. A sender puts it on a push
 * PUT; a chunk server puts it on a chunk answer when the request carries HEADER_WANT_CRC32. CRC-32 is
 * four times cheaper than MD5 here and catches what a link or a proxy damages; each instance's MD5 is
 * still checked at commit.
 */
export const HEADER_CRC32 = 'x-dicom-xfer-crc32';
/**
 * On a chunk GET: asks the chunk server for HEADER_CRC32 on its answer. "1" (version 1): always the
 * hexadecimal CRC-32; "2" (version 2): CRC32_MEMBER for a gzip answer, the hexadecimal CRC-32 otherwise.
 */
export const HEADER_WANT_CRC32 = 'x-dicom-xfer-want-crc32';
/** The form of a HEADER_CRC32 value. */
export const CRC32_HEX = /^[0-9a-f]{8}$/;
/**
 * HEADER_CRC32 of a gzip body streamed as it is compressed: the checksum is the member's own trailer (the
 * CRC-32 of the uncompressed payload, known only once it is all read), checked as it is inflated; a damaged
 * member is still refused with 422 and sent again. It spares reading every payload twice.
 */
export const CRC32_MEMBER = 'member';

/** zlib's CRC-32 as 8 lowercase hex digits. */
export function crc32Hex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0');
}
/**
 * On a bucket PUT's answer (extension receiver-progress): "BYTES MS", the request body bytes (as they
 * crossed the link) that the transaction's PUTs have received, and the receiver's monotonic clock in ms.
 */
export const HEADER_RECEIVED = 'x-dicom-xfer-received';
/** The form of a HEADER_RECEIVED value. */
export const RECEIVED_VALUE = /^(\d{1,15}) (\d{1,15})$/;

/** On a commit POST: "1" asks for an answer at once (`{"State": ...}`), the commit going on in the background. */
export const HEADER_ASYNC_COMMIT = 'x-dicom-xfer-async-commit';

/** HTTP status of a bucket refused because its payload does not match HEADER_CRC32: send it again. */
export const BUCKET_CHECKSUM_STATUS = 422;

/** The answer of `GET /transfers/capabilities` (and the `Capabilities` of `GET /plugins/transfers`). */
export interface CapabilitiesDocument {
  Name: 'dicom-xfer';
  Version: string;
  Protocol: number;
  Extensions: Partial<Record<Extension, number>>;
}

/** Whether this node lists and uses extensions (Transfers.Extensions). */
export function extensionsEnabled(config: Pick<Config, 'Transfers'>): boolean {
  return config.Transfers.Extensions;
}

/** This node's capability document: every extension, or none when Transfers.Extensions is false. */
export function capabilitiesDocument(config: Pick<Config, 'Transfers'>): CapabilitiesDocument {
  return {
    Name: 'dicom-xfer',
    Version: VERSION,
    Protocol: PROTOCOL_VERSION,
    Extensions: extensionsEnabled(config) ? ourExtensions(config) : {},
  };
}

/**
 * The extensions this node lists and uses: all of them, but bucket-span only with Transfers.BucketSpans and
 * zstd only with Transfers.Zstd.
 */
function ourExtensions(config: Pick<Config, 'Transfers'>): Partial<Record<Extension, number>> {
  const out: Partial<Record<Extension, number>> = { ...EXTENSIONS };
  for (const x of switchedOff(config)) delete out[x];
  return out;
}

/** The extensions this node's configuration turns off. */
function switchedOff(config: Pick<Config, 'Transfers'>): Extension[] {
  const off: Extension[] = [];
  if (config.Transfers.BucketSpans === false) off.push('bucket-span');
  if (config.Transfers.Zstd === false) off.push('zstd');
  return off;
}

/** Whether this node lists the extension zstd, so takes "zstd" in a push create and a chunk URL. */
export function zstdListed(config: Pick<Config, 'Transfers'>): boolean {
  return extensionsEnabled(config) && config.Transfers.Zstd !== false;
}

/** What a job may use with one peer: the extensions both sides list. */
export class PeerCapabilities {
  readonly #listed: ReadonlySet<Extension>;

  constructor(listed: Iterable<Extension>) {
    this.#listed = new Set(listed);
  }

  /** No extension: the plugin's protocol exactly. */
  static readonly NONE = new PeerCapabilities([]);

  has(ext: Extension): boolean {
    return this.#listed.has(ext);
  }

  /** The extensions, sorted (for logs and job content). */
  list(): Extension[] {
    return [...this.#listed].sort();
  }
}

/**
 * The extensions listed by a capability document that this node implements at the same version or later;
 * anything else (not an object, no Extensions object, unknown names, versions below ours) lists none.
 */
export function parseCapabilities(doc: unknown): PeerCapabilities {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return PeerCapabilities.NONE;
  const ext = (doc as { Extensions?: unknown }).Extensions;
  if (typeof ext !== 'object' || ext === null || Array.isArray(ext)) return PeerCapabilities.NONE;
  const out: Extension[] = [];
  for (const [name, ours] of Object.entries(EXTENSIONS) as [Extension, number][]) {
    const v = (ext as Record<string, unknown>)[name];
    if (typeof v === 'number' && Number.isInteger(v) && v >= ours) out.push(name);
  }
  return new PeerCapabilities(out);
}

/** How long a peer's answer is reused by the jobs that follow (one probe per job at most otherwise). */
export const CAPABILITIES_TTL_MS = 30_000;

const cache = new Map<string, { caps: PeerCapabilities; at: number }>();

/**
 * The extensions `client`'s peer lists, from a cache of CAPABILITIES_TTL_MS or from one
 * `GET /transfers/capabilities`. A peer that answers anything but a 200 JSON document (an Orthanc: 404)
 * lists none, and so does every peer when this node's Transfers.Extensions is false (then nothing is
 * sent). `call` runs the request (the caller wraps it in its retries, which must not retry an answer that
 * is not JSON); transport failures and 5xx reject, so that a peer that is down is not taken for one
 * without extensions.
 */
export async function peerCapabilities(
  config: Pick<Config, 'Transfers'>,
  client: PeerClient,
  call: <T>(fn: (signal: AbortSignal | undefined) => Promise<T>) => Promise<T>,
): Promise<PeerCapabilities> {
  if (!extensionsEnabled(config)) return PeerCapabilities.NONE;
  const key = `${client.name}\n${client.url('/')}\n${switchedOff(config).join(',')}`;
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < CAPABILITIES_TTL_MS) return hit.caps;
  let caps: PeerCapabilities;
  try {
    const answer = await call((signal) => client.json({ method: 'GET', path: CAPABILITIES_PATH, signal }));
    caps = parseCapabilities(answer.body);
    // What this node does not use itself is not used with the peer either.
    const off = switchedOff(config);
    if (off.length > 0) caps = new PeerCapabilities(caps.list().filter((x) => !off.includes(x)));
  } catch (e) {
    // A definite answer that is not a capability document: the peer has no extensions (an Orthanc).
    if (e instanceof PeerHttpError && (e.badBody || (e.status >= 400 && e.status < 500))) caps = PeerCapabilities.NONE;
    else throw e;
  }
  cache.set(key, { caps, at: Date.now() });
  return caps;
}
