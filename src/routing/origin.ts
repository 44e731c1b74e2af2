// Which peer a push came from, for the origin `peer:NAME` of what its commit stored: the OrthancPeers entry
// whose Username (or name) is the HTTP user of the commit request when authentication is on, else the one
// entry whose host resolves to the request's remote address; '' when none (or several) fit.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { PeerConfig } from '../config/types.ts';

/** Who sent a request: its remote address and, with Basic authentication, its user. */
export interface RequestSender {
  remoteIp?: string;
  user?: string;
}

/** The user of a Basic `Authorization` header, if any. */
export function basicUser(header: string | undefined): string | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(0, colon);
}

/** An address as compared: IPv4 inside IPv6 (::ffff:a.b.c.d) as plain IPv4, lower case. */
function plainAddress(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return (m ? (m[1] as string) : ip).toLowerCase();
}

/** Host names resolved, for a minute: a peer's host is looked up once per commit burst, not per commit. */
const resolved = new Map<string, { at: number; addresses: Promise<string[]> }>();

function addressesOf(host: string): Promise<string[]> {
  const bare = host.replace(/^\[|\]$/g, '');
  if (isIP(bare)) return Promise.resolve([plainAddress(bare)]);
  const hit = resolved.get(bare);
  if (hit && Date.now() - hit.at < 60_000) return hit.addresses;
  const addresses = lookup(bare, { all: true }).then(
    (list) => list.map((a) => plainAddress(a.address)),
    () => [],
  );
  if (resolved.size > 256) resolved.clear();
  resolved.set(bare, { at: Date.now(), addresses });
  return addresses;
}

/** The name of the peer that sent a request (see the file's opening), or ''. */
export async function senderPeer(sender: RequestSender, peers: readonly PeerConfig[], authenticated: boolean): Promise<string> {
  if (authenticated && sender.user !== undefined) {
    const byUser = peers.filter((p) => p.username === sender.user || p.name === sender.user);
    if (byUser.length === 1) return (byUser[0] as PeerConfig).name;
  }
  if (sender.remoteIp === undefined) return '';
  const ip = plainAddress(sender.remoteIp);
  const byAddress: string[] = [];
  for (const p of peers) {
    const host = new URL(p.url).hostname;
    if ((await addressesOf(host)).includes(ip)) byAddress.push(p.name);
  }
  return byAddress.length === 1 ? (byAddress[0] as string) : '';
}
