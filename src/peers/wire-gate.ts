// How a peer's client meets the bandwidth policy: the gate it is given (src/transfer/bandwidth/ makes
// one per peer), what an HTTP request's and answer's heads weigh on the wire, and a body paced piece by
// piece through the gate, so that a limited transfer waits instead of buffering.
import type { IncomingHttpHeaders } from 'node:http';

/** Which way bytes cross the link: from this node to the peer, or back. */
export type WireWay = 'out' | 'in';

/**
 * The bandwidth policy as a peer's client sees it (src/transfer/bandwidth/ implements it): every byte of
 * a call, headers included, is counted; a paced call waits for its turn, the others go at once.
 */
export interface WireGate {
  /** Waits until `bytes` may cross the link `way`; undefined when they may at once. Rejects when `signal` aborts. */
  take(way: WireWay, bytes: number, signal?: AbortSignal): Promise<void> | undefined;
  /** Counts `bytes` that crossed without waiting. */
  charge(way: WireWay, bytes: number): void;
  /** Mbit/s in force for this peer's transfers now (the lower of the peer's and the node's); undefined = none. */
  limitMbps(): number | undefined;
}

/** Most bytes paced at once: a waiter holds a count, never the bytes, and waiters alternate at this grain. */
export const PACE_PIECE = 64 * 1024;

/**
 * Bytes of a request's head as it goes on the wire: the request line, the headers given, and those the
 * HTTP layer adds (Host, Connection; Transfer-Encoding for a body of unknown length), with their CRLFs.
 * The TCP/IP framing below is not counted.
 */
export function requestHeadBytes(method: string, path: string, host: string, headers: Readonly<Record<string, string>>): number {
  let n = method.length + path.length + ' HTTP/1.1\r\n'.length + `host: ${host}\r\n`.length + 'connection: keep-alive\r\n'.length;
  for (const [k, v] of Object.entries(headers)) n += k.length + 2 + Buffer.byteLength(v) + 2;
  if (headers['content-length'] === undefined) n += 'transfer-encoding: chunked\r\n'.length;
  return n + 2;
}

/** Bytes of an answer's head: the status line and every header as received, with their CRLFs. */
export function responseHeadBytes(status: number, headers: IncomingHttpHeaders): number {
  let n = `HTTP/1.1 ${status} OK\r\n`.length + 2;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) n += k.length + 2 + Buffer.byteLength(one) + 2;
  }
  return n;
}

/** Pieces of at most PACE_PIECE bytes of `chunk` (views, no copy). */
export function* pieces(chunk: Uint8Array): Generator<Uint8Array> {
  if (chunk.byteLength <= PACE_PIECE) {
    yield chunk;
    return;
  }
  for (let at = 0; at < chunk.byteLength; at += PACE_PIECE) yield chunk.subarray(at, at + PACE_PIECE);
}
