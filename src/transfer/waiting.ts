// Why a transfer job waits, in plain words: the usual failures of a call to a peer (or to the Orthanc
// store) turned into one short sentence, "b does not answer: connection refused; next try in 8 s", that
// the job JSON (Content.Waiting), the CLI and the dashboard show while the job retries.
import { isXferError } from '../errors.ts';
import { PeerHttpError } from '../peers/client.ts';
import { systemCode } from '../util/retry.ts';

/** TLS failures (Node's and OpenSSL's codes) and what they mean for the person reading. */
const TLS_CODES: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed and not trusted here',
  SELF_SIGNED_CERT_IN_CHAIN: 'its certificate chain ends in a self-signed certificate that is not trusted here',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate cannot be verified (issuer unknown here)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the issuer of its certificate is not trusted here',
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate is for another host name',
  ERR_SSL_WRONG_VERSION_NUMBER: 'it does not speak TLS on that port (is the URL http rather than https?)',
  EPROTO: 'the TLS handshake failed',
};

/** Transport failures: what the peer does, seen from here. */
const SOCKET_CODES: Record<string, string> = {
  ECONNREFUSED: 'does not answer: connection refused',
  ETIMEDOUT: 'does not answer: the connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'does not answer: the connection timed out',
  UND_ERR_HEADERS_TIMEOUT: 'does not answer in time',
  UND_ERR_BODY_TIMEOUT: 'stopped sending in the middle of an answer',
  ENOTFOUND: 'cannot be found: its host name does not resolve',
  EAI_AGAIN: 'cannot be found for now: the host name lookup failed',
  EHOSTUNREACH: 'cannot be reached: no route to its host',
  EHOSTDOWN: 'cannot be reached: its host is down',
  ENETUNREACH: 'cannot be reached: the network is unreachable',
  ENETDOWN: 'cannot be reached: the network is down',
  ECONNRESET: 'dropped the connection',
  ECONNABORTED: 'dropped the connection',
  EPIPE: 'dropped the connection',
  ENETRESET: 'dropped the connection',
  UND_ERR_SOCKET: 'dropped the connection',
  UND_ERR_CLOSED: 'dropped the connection',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'cut an answer short',
};

/** A failure of the Orthanc store (its client names "Orthanc at <url>"), not of the peer. */
function fromStore(e: unknown): boolean {
  if (e instanceof PeerHttpError) return false;
  if (isXferError(e) && e.code === 'DatabaseUnavailable') return true;
  const text = isXferError(e) ? (e.details ?? '') : '';
  return /^Orthanc at \S+ (cannot be reached|did not answer|answered)/.test(text);
}

function httpPhrase(status: number, remote: string | undefined): string {
  const said = remote ? `: ${remote}` : '';
  if (status === 401) return `refuses our credentials (HTTP 401${said}): check its Username and Password`;
  if (status === 403) return `refuses access (HTTP 403${said}): check its RemoteAccessAllowed and credentials`;
  if (status === 404) return `does not know what was asked (HTTP 404${said})`;
  if (status === 408) return 'gave up waiting for our request (HTTP 408)';
  if (status === 429) return 'is busy and asks us to slow down (HTTP 429)';
  if (status === 507) return `has no room left on its disk (HTTP 507${said})`;
  if (status === 503) return `is not available for now (HTTP 503${said})`;
  if (status >= 500) return `answers with a server error (HTTP ${status}${said})`;
  return `answers HTTP ${status}${said}`;
}

/**
 * What a failed call says about `who` (a peer's name, or "the Orthanc store" when the error came from it),
 * as the end of a sentence starting with that name: "b does not answer: connection refused".
 */
export function plainCause(peer: string, e: unknown): string {
  const who = fromStore(e) ? 'the Orthanc store' : peer;
  if (e instanceof PeerHttpError) {
    if (e.badBody) return `${who} answered something that is not what the protocol expects`;
    return `${who} ${httpPhrase(e.status, e.remote?.Details ?? e.remote?.Message)}`;
  }
  const status = (e as { status?: unknown } | null)?.status;
  if (typeof status === 'number' && status >= 400) return `${who} ${httpPhrase(status, undefined)}`;
  const code = systemCode(e);
  if (code !== undefined) {
    const tls =
      TLS_CODES[code] ?? (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') ? `the TLS connection failed (${code})` : undefined);
    if (tls) return `${who} cannot be reached securely: ${tls}`;
    const s = SOCKET_CODES[code];
    if (s) return `${who} ${s}`;
  }
  if (isXferError(e) && e.code === 'Timeout') return `${who} does not answer in time`;
  if (isXferError(e) && e.code === 'DatabaseUnavailable') return `${who} cannot be reached`;
  const text = isXferError(e) ? (e.details ?? e.message) : e instanceof Error ? e.message : String(e);
  return `${who} failed: ${text}`;
}

/** "8 s", "1.5 s", "2 min 05 s", "a moment": a wait as people read it. */
export function waitText(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  // A jittered backoff may wait only a few milliseconds.
  if (s < 0.1) return 'a moment';
  if (s < 10) return `${(Math.round(s * 10) / 10).toString()} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(Math.round(s) / 60);
  return `${m} min ${String(Math.round(s) % 60).padStart(2, '0')} s`;
}

/** The whole sentence of Content.Waiting: the cause, then when the next attempt is. */
export function waitingText(peer: string, e: unknown, delayMs: number): string {
  return `${plainCause(peer, e)}; next try in ${waitText(delayMs)}`;
}
