// `dicom-xfer peers`: a node's peers with their URL and whether each speaks the transfers protocol
// (GET /peers?expand joined with GET /transfers/peers, which probes every peer).
import type { Command } from 'commander';
import { NodeClient, addTargetOptions, resolveTarget, type NodeTarget, type TargetFlags } from './http.ts';
import { HttpError } from '../http/errors.ts';
import { errorExit, formatTable, usageExit } from './jobs.ts';
import { displayUrl } from '../util/url.ts';

/** The plugin's three answers, and 'unknown' when the node has no GET /transfers/peers. */
export type TransfersStatus = 'installed' | 'bidirectional' | 'disabled' | 'unknown';

export interface PeerRow {
  name: string;
  url: string;
  transfers: TransfersStatus;
  /** The peer's name for this node, when the peer pulls from it (send in pull mode). */
  remoteSelf: string | undefined;
  username: string | undefined;
  /** The peer's description as GET /peers?expand gives it. */
  raw: Record<string, unknown>;
}

const STATUSES = new Set<string>(['installed', 'bidirectional', 'disabled']);

/**
 * The node's peers, sorted by name. A node without GET /transfers/peers (a plain Orthanc) gives
 * 'unknown' statuses; any other failure throws HttpError or NodeConnectionError.
 */
export async function listPeers(client: NodeClient): Promise<PeerRow[]> {
  const [expanded, statuses] = await Promise.all([
    client.json<unknown>('GET', '/peers?expand'),
    client.json<unknown>('GET', '/transfers/peers').catch((e: unknown) => {
      if (e instanceof HttpError && e.status === 404) return undefined;
      throw e;
    }),
  ]);
  if (typeof expanded !== 'object' || expanded === null || Array.isArray(expanded)) {
    throw new Error(`the node at ${client.target.url} answered GET /peers?expand with something that is not an object`);
  }
  const st = (typeof statuses === 'object' && statuses !== null ? statuses : {}) as Record<string, unknown>;
  return Object.entries(expanded as Record<string, unknown>)
    .map(([name, v]) => {
      const raw = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
      const s = st[name];
      return {
        name,
        url: typeof raw.Url === 'string' ? raw.Url : '?',
        transfers: typeof s === 'string' && STATUSES.has(s) ? (s as TransfersStatus) : 'unknown',
        remoteSelf: typeof raw.RemoteSelf === 'string' ? raw.RemoteSelf : undefined,
        username: typeof raw.Username === 'string' ? raw.Username : undefined,
        raw,
      };
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const NOTES: Record<TransfersStatus, string> = {
  installed: 'send pushes to it; pull downloads from it',
  bidirectional: 'send runs as a pull by the peer (RemoteSelf)',
  disabled: 'no answer, or no transfers protocol: transfers with it will fail',
  unknown: 'the node cannot tell (no GET /transfers/peers)',
};

/** The peers as a table: name, URL, transfers status, and what the status means. */
export function formatPeersTable(rows: readonly PeerRow[]): string {
  return formatTable(
    ['NAME', 'URL', 'TRANSFERS', 'NOTE'],
    rows.map((r) => [
      r.name,
      displayUrl(r.url),
      r.transfers,
      r.transfers === 'bidirectional' && r.remoteSelf
        ? `${NOTES.bidirectional}: it knows this node as "${r.remoteSelf}"`
        : NOTES[r.transfers],
    ]),
  );
}

interface PeersFlags extends TargetFlags {
  json?: boolean;
}

async function runPeers(flags: PeersFlags): Promise<number> {
  let target: NodeTarget;
  try {
    target = resolveTarget(flags);
  } catch (e) {
    return errorExit('peers', e);
  }
  const client = new NodeClient(target, { connections: 2 });
  try {
    const rows = await listPeers(client);
    if (flags.json) {
      const out: Record<string, unknown> = {};
      for (const r of rows) out[r.name] = { ...r.raw, Transfers: r.transfers };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else if (rows.length === 0) {
      process.stdout.write(
        `The node at ${target.url} has no peers; define them in its configuration (OrthancPeers) or with PUT /peers/NAME.\n`,
      );
    } else {
      process.stdout.write(formatPeersTable(rows));
    }
    return 0;
  } catch (e) {
    return errorExit('peers', e);
  } finally {
    await client.close();
  }
}

/** Adds `peers` to the program. Exit status: 0 listed; 1 the node refused or could not be reached; 2 usage. */
export function registerPeers(program: Command): void {
  const cmd = program
    .command('peers')
    .description("List a node's peers with their URL and transfers status (installed, bidirectional, disabled)");
  addTargetOptions(cmd)
    .option('--json', 'print the peers as JSON on stdout: GET /peers?expand with "Transfers" added to each')
    .addHelpText(
      'after',
      '\nThe node probes each peer to tell its status, which takes up to its PeerConnectivityTimeout for a peer\n' +
        'that does not answer. Exit status: 0 listed; 1 the node refused or could not be reached; 2 usage errors.',
    );
  usageExit(cmd).action(async (flags: PeersFlags) => {
    process.exitCode = await runPeers(flags);
  });
}
