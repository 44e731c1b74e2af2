// `dicom-xfer send` and `dicom-xfer pull`: ask a node to start a transfer job with a peer
// (POST /transfers/send or /transfers/pull), then follow the job, on the node or on the peer when the
// send runs as a pull by the peer (RemoteSelf), until it ends; the exit status says how it ended.
import { Option, type Command } from 'commander';
import { NodeClient, UsageError, addTargetOptions, resolveTarget, type NodeTarget, type TargetFlags } from './http.ts';
import { HttpError } from '../http/errors.ts';
import {
  CANCELED_JOB_CODE,
  EXIT_INTERRUPTED,
  EXIT_UNKNOWN,
  errorExit,
  failureText,
  followJobs,
  formatMBValue,
  formatSpeed,
  interruptOnCtrlC,
  shortId,
  targetArgs,
  usageExit,
  type FollowEnd,
  type JobView,
} from './jobs.ts';
import { ORTHANC_ID, resolveStudy } from './find.ts';
import { StatusBars, formatDuration } from './progress.ts';

export const ENV_PEER_USERNAME = 'DICOM_XFER_PEER_USERNAME';
export const ENV_PEER_PASSWORD = 'DICOM_XFER_PEER_PASSWORD';

export type Level = 'Patient' | 'Study' | 'Series' | 'Instance';
export type Compression = 'gzip' | 'none';
export type TransferKind = 'send' | 'pull';

export interface TransferResource {
  Level: Level;
  ID: string;
}

/** The body of POST /transfers/send and /transfers/pull. */
export interface TransferRequest {
  Resources: TransferResource[];
  Peer: string;
  Compression: Compression;
  Priority?: number;
}

export interface TransferFlags extends TargetFlags {
  peer: string;
  patient?: string[];
  study?: string[];
  series?: string[];
  instance?: string[];
  compression: Compression;
  priority?: string;
  follow: boolean;
  json?: boolean;
  quiet?: boolean;
  peerUsername?: string;
  peerPassword?: string;
}

/**
 * The transfer query for the flags: every --patient/--study/--series/--instance ID (each once), the
 * peer, the compression and the priority. Throws UsageError for a missing resource, an ID that is not
 * an Orthanc ID, or a priority that is not a 32-bit integer.
 */
/** The plural of each level, as Orthanc's REST API names its lists (GET /studies). */
const LEVEL_PATH: Record<Level, string> = { Patient: 'patients', Study: 'studies', Series: 'series', Instance: 'instances' };

export function buildTransferRequest(flags: TransferFlags): TransferRequest {
  const resources: TransferResource[] = [];
  const seen = new Set<string>();
  const levels: [Level, string[] | undefined, string][] = [
    ['Patient', flags.patient, '--patient'],
    ['Study', flags.study, '--study'],
    ['Series', flags.series, '--series'],
    ['Instance', flags.instance, '--instance'],
  ];
  for (const [Level, ids, flag] of levels) {
    for (const raw of ids ?? []) {
      const ID = raw.trim().toLowerCase();
      if (!ORTHANC_ID.test(ID)) {
        throw new UsageError(
          `${flag} "${raw}" is not an Orthanc ID (five groups of 8 hexadecimal digits, as GET /${LEVEL_PATH[Level]} lists them)`,
        );
      }
      const key = `${Level}/${ID}`;
      if (seen.has(key)) continue;
      seen.add(key);
      resources.push({ Level, ID });
    }
  }
  if (resources.length === 0) {
    throw new UsageError('say what to transfer: --patient, --study, --series or --instance followed by one or more IDs');
  }
  const peer = flags.peer.trim();
  if (peer === '') throw new UsageError('--peer needs the name of a peer of the node (list them with `dicom-xfer peers`)');
  const out: TransferRequest = { Resources: resources, Peer: peer, Compression: flags.compression };
  if (flags.priority !== undefined) {
    const n = Number(flags.priority);
    if (!/^-?\d+$/.test(flags.priority.trim()) || !Number.isSafeInteger(n) || n < -2147483648 || n > 2147483647) {
      throw new UsageError(`--priority must be a whole number (higher runs first), not "${flags.priority}"`);
    }
    out.Priority = n;
  }
  return out;
}

/** Where a job runs: its node, its ID, and whether it is the peer's job (send in pull mode). */
export interface JobLocation {
  target: NodeTarget;
  id: string;
  remote: boolean;
  /** The peer that runs a remote job. */
  peer?: string;
  /** The URL the node gave for a remote job, as given. */
  url?: string;
}

/**
 * The base address and job ID of a remote job's URL as a node gives it ("http://peer:8042//jobs/ID",
 * the peer's URL and the job's path joined with a doubled slash). Throws Error when the URL has no
 * /jobs/ID path.
 */
export function parseRemoteJobUrl(url: string): { base: string; id: string; username?: string; password?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`the node gave "${url}" as the remote job's address, which is not a URL`);
  }
  const path = u.pathname.replace(/\/{2,}/g, '/');
  const at = path.lastIndexOf('/jobs/');
  const id = at >= 0 ? path.slice(at + '/jobs/'.length).replace(/\/+$/, '') : '';
  if (at < 0 || id === '' || id.includes('/')) throw new Error(`the node gave "${url}" as the remote job's address, which has no /jobs/ID`);
  const out: { base: string; id: string; username?: string; password?: string } = {
    base: `${u.protocol}//${u.host}${path.slice(0, at)}`,
    id: decodeURIComponent(id),
  };
  if (u.username) {
    out.username = decodeURIComponent(u.username);
    out.password = decodeURIComponent(u.password);
  }
  return out;
}

function describeResources(req: TransferRequest): string {
  const counts = new Map<Level, number>();
  for (const r of req.Resources) counts.set(r.Level, (counts.get(r.Level) ?? 0) + 1);
  return [...counts].map(([l, n]) => `${n} ${n === 1 ? l.toLowerCase() : LEVEL_PATH[l]}`).join(', ');
}

/** Answers the transfer request of a node: the local job, or the peer's job for a send in pull mode. */
async function startJob(client: NodeClient, kind: TransferKind, req: TransferRequest, flags: TransferFlags): Promise<JobLocation> {
  const path = kind === 'send' ? '/transfers/send' : '/transfers/pull';
  let answer: unknown;
  try {
    answer = await client.json('POST', path, { body: JSON.stringify(req), contentType: 'application/json' });
  } catch (e) {
    if (e instanceof HttpError && e.status === 400 && e.remote?.OrthancError === 'Unknown resource') {
      // a resource the node does not hold: refused before any job was made
      throw new UsageError(
        `the node at ${client.target.url} does not hold what was asked for: ${e.remote.Details ?? e.reason}. ` +
          'Check the ID (GET /studies on the node lists the studies it holds).',
      );
    }
    if (e instanceof HttpError && e.status === 404) {
      // the usual cause is a peer name the node does not know: say so, with the names it knows
      const names = await client.json<unknown>('GET', '/peers').catch(() => undefined);
      if (Array.isArray(names) && !names.includes(req.Peer)) {
        const known = names.filter((n): n is string => typeof n === 'string');
        throw new UsageError(
          `the node at ${client.target.url} has no peer named "${req.Peer}"; ` +
            (known.length > 0 ? `its peers are: ${known.join(', ')}` : 'it has no peers: define them in its configuration (OrthancPeers)') +
            ' (see `dicom-xfer peers`)',
        );
      }
      if (!Array.isArray(names)) {
        throw new Error(
          `${e.message}. Does the node at ${client.target.url} offer transfers (a dicom-xfer node, or Orthanc with the Transfers ` +
            `Accelerator plugin)?`,
        );
      }
    }
    throw e;
  }
  const a = (typeof answer === 'object' && answer !== null ? answer : {}) as Record<string, unknown>;
  if (typeof a.RemoteJob === 'string' && typeof a.URL === 'string') {
    const remote = parseRemoteJobUrl(a.URL);
    // The node's own credentials are never sent to another host: the peer's come from their own flags.
    const sameOrigin = new URL(remote.base).origin === new URL(client.target.url).origin;
    const username =
      flags.peerUsername ??
      (process.env[ENV_PEER_USERNAME] || undefined) ??
      remote.username ??
      (sameOrigin ? client.target.username : undefined);
    const password =
      flags.peerPassword ??
      (process.env[ENV_PEER_PASSWORD] || undefined) ??
      remote.password ??
      (sameOrigin ? client.target.password : undefined);
    const target = resolveTarget({ url: remote.base, username, password }, {});
    return { target, id: remote.id, remote: true, peer: typeof a.Peer === 'string' ? a.Peer : req.Peer, url: a.URL };
  }
  if (typeof a.ID === 'string' && a.ID !== '') return { target: client.target, id: a.ID, remote: false };
  throw new Error(`the node at ${client.target.url} answered POST ${path} without a job ID: ${JSON.stringify(answer).slice(0, 200)}`);
}

/** The ID of the node's job that follows the peer's job `remoteId` (send in pull mode); undefined when none. */
async function localFollower(target: NodeTarget, remoteId: string): Promise<string | undefined> {
  const client = new NodeClient(target, { connections: 1 });
  try {
    const all = await client.json<unknown>('GET', '/jobs?expand');
    if (!Array.isArray(all)) return undefined;
    for (const j of all) {
      const o = (typeof j === 'object' && j !== null ? j : {}) as { ID?: unknown; Type?: unknown; Content?: { RemoteJob?: unknown } };
      if (o.Type === 'RemotePullTransfer' && o.Content?.RemoteJob === remoteId && typeof o.ID === 'string') return o.ID;
    }
    return undefined;
  } catch {
    return undefined; // an older node, or one that does not list its jobs to this user
  } finally {
    await client.close();
  }
}

/** The closing line of a transfer that succeeded. */
export function successText(kind: TransferKind, job: JobView, loc: JobLocation, peer: string): string {
  const size = job.totalSizeMB !== undefined ? ` (${formatMBValue(job.totalSizeMB)} MB)` : '';
  const what = `${job.totalInstances ?? '?'} instance${job.totalInstances === 1 ? '' : 's'}${size}`;
  const head = loc.remote
    ? `Peer "${peer}" pulled ${what} from the node`
    : kind === 'send'
      ? `Sent ${what} to peer "${peer}"`
      : `Pulled ${what} from peer "${peer}"`;
  const facts: string[] = [];
  if (job.effectiveRuntime !== undefined) facts.push(`in ${formatDuration(job.effectiveRuntime)}`);
  if (job.speedKBs !== undefined && job.speedKBs > 0) facts.push(formatSpeed(job.speedKBs));
  if (job.totalBuckets !== undefined) facts.push(`${job.totalBuckets} bucket${job.totalBuckets === 1 ? '' : 's'}`);
  if (job.compression) facts.push(job.compression);
  if (job.retries) facts.push(`${job.retries} ${job.retries === 1 ? 'retry' : 'retries'}`);
  const where = loc.remote ? `job ${job.id} on ${loc.target.url}` : `job ${job.id}`;
  return `${head}${facts.length ? `, ${facts.join(', ')}` : ''} (${where}).\n`;
}

async function follow(loc: JobLocation, flags: TransferFlags, kind: TransferKind): Promise<FollowEnd> {
  const client = new NodeClient(loc.target, { connections: 2 });
  const bars = new StatusBars({ quiet: flags.quiet === true });
  const ctrlC = interruptOnCtrlC();
  const label = loc.remote ? `pull by ${loc.peer ?? 'peer'}` : kind;
  try {
    return await followJobs(client, [loc.id], { bars, signal: ctrlC.signal, label: () => label });
  } finally {
    ctrlC.dispose();
    bars.stop();
    await client.close();
  }
}

/**
 * The --study values as Orthanc IDs: a StudyInstanceUID or an accession number is looked up with
 * /tools/find where the study is, on the node for a send, on the peer for a pull (its address from the
 * node's GET /peers?expand, its credentials from --peer-username/--peer-password or their variables).
 */
async function resolveStudies(kind: TransferKind, target: NodeTarget, flags: TransferFlags): Promise<string[]> {
  let where = `on the node at ${target.url}`;
  let at = target;
  if (kind === 'pull') {
    const node = new NodeClient(target, { connections: 1 });
    let peers: unknown;
    try {
      peers = await node.json<unknown>('GET', '/peers?expand');
    } finally {
      await node.close();
    }
    const peer =
      typeof peers === 'object' && peers !== null
        ? (peers as Record<string, Record<string, unknown> | undefined>)[flags.peer.trim()]
        : undefined;
    if (typeof peer?.Url !== 'string') {
      const known = typeof peers === 'object' && peers !== null ? Object.keys(peers).join(', ') : '';
      throw new UsageError(
        `the node at ${target.url} has no peer named "${flags.peer}"${known ? `; its peers are: ${known}` : ''} (see \`dicom-xfer peers\`)`,
      );
    }
    at = resolveTarget(
      {
        url: peer.Url.replace(/\/+$/, ''),
        username: flags.peerUsername ?? (process.env[ENV_PEER_USERNAME] || undefined),
        password: flags.peerPassword ?? (process.env[ENV_PEER_PASSWORD] || undefined),
      },
      {},
    );
    where = `on peer "${flags.peer}" (${at.url})`;
  }
  const client = new NodeClient(at, { connections: 2 });
  try {
    const out: string[] = [];
    for (const s of flags.study ?? []) out.push(await resolveStudy(client, s, where));
    return out;
  } finally {
    await client.close();
  }
}

/** A started job and how to name it in the messages that follow. */
interface Started {
  kind: TransferKind;
  flags: TransferFlags;
  req: TransferRequest;
  loc: JobLocation;
  /** The node's target flags, for the commands suggested to the user. */
  more: string;
  /** The target flags of the node that runs the job (the peer's, for a remote job). */
  peerMore: string;
  /** The node's own job that follows a remote one, if any. */
  local: string | undefined;
}

/** The target and the request of a transfer from the flags (studies given by UID looked up); throws UsageError. */
async function prepareTransfer(kind: TransferKind, flags: TransferFlags): Promise<{ target: NodeTarget; req: TransferRequest }> {
  const target = resolveTarget(flags);
  if (flags.study?.some((s) => !ORTHANC_ID.test(s.trim().toLowerCase()))) {
    flags = { ...flags, study: await resolveStudies(kind, target, flags) };
  }
  return { target, req: buildTransferRequest(flags) };
}

/** Says on stderr what was started (unless --quiet while following). */
function announce(s: Started): void {
  const { kind, flags, req, loc } = s;
  if (flags.quiet && flags.follow) return;
  const what = describeResources(req);
  const text = loc.remote
    ? `Peer "${req.Peer}" pulls ${what} from the node (send in pull mode): the job ${loc.id} runs on the peer at ${loc.target.url}.`
    : `${kind === 'send' ? 'Sending' : 'Pulling'} ${what} ${kind === 'send' ? 'to' : 'from'} peer "${req.Peer}" (${req.Compression}): ` +
      `job ${loc.id}.`;
  process.stderr.write(`${text}\n`);
  if (s.local) process.stderr.write(`The node follows it as job ${s.local}.\n`);
}

/** With --no-follow: prints the job's handle and how to follow it. */
function printHandle(s: Started): number {
  const { loc } = s;
  if (s.flags.json) {
    const handle = loc.remote ? { Peer: loc.peer, RemoteJob: loc.id, URL: loc.url } : { ID: loc.id, Path: `/jobs/${loc.id}` };
    process.stdout.write(`${JSON.stringify(handle, null, 2)}\n`);
  } else {
    process.stdout.write(`${loc.id}\n`);
  }
  process.stderr.write(`Follow it with \`dicom-xfer jobs --follow ${loc.id}${s.peerMore}\`.\n`);
  return 0;
}

function reportInterrupted(s: Started, job: JobView | undefined): number {
  const { kind, loc, req, peerMore } = s;
  process.stderr.write(
    `dicom-xfer ${kind}: stopped following; job ${loc.id} goes on${loc.remote ? ` on peer "${req.Peer}"` : ''}` +
      `${job ? ` (${job.state}, ${job.progress}%)` : ''}.\n` +
      `  Follow it again: dicom-xfer jobs --follow ${shortId(loc.id)}${peerMore}\n` +
      `  Cancel it:       dicom-xfer jobs cancel ${loc.id}${peerMore}\n`,
  );
  return EXIT_INTERRUPTED;
}

function reportLost(s: Started, e: Error): number {
  const { kind, loc, req, more, local } = s;
  if (loc.remote && e instanceof HttpError && (e.status === 401 || e.status === 403)) {
    process.stderr.write(
      `dicom-xfer ${kind}: the job runs on peer "${req.Peer}" as job ${loc.id}, and the peer refused to show it ` +
        `(HTTP ${e.status}): it needs the peer's credentials; pass --peer-username and --peer-password ` +
        `(or set ${ENV_PEER_USERNAME} and ${ENV_PEER_PASSWORD}) to follow it. The job: ${loc.url ?? loc.target.url}\n` +
        (local ? `  Or follow it on the node, which watches it: dicom-xfer jobs --follow ${shortId(local)}${more}\n` : ''),
    );
  } else if (loc.remote) {
    process.stderr.write(
      `dicom-xfer ${kind}: the job runs on peer "${req.Peer}" as job ${loc.id}, but it cannot be followed there: ${e.message}\n` +
        `  The job: ${loc.url ?? loc.target.url}\n`,
    );
  } else {
    process.stderr.write(
      `dicom-xfer ${kind}: job ${loc.id} was started, but it cannot be followed any more: ${e.message}\n` +
        `  Check it later with \`dicom-xfer jobs${more}\`.\n`,
    );
  }
  return EXIT_UNKNOWN;
}

function reportEnded(s: Started, job: JobView): number {
  const { kind, loc, peerMore } = s;
  if (job.state === 'Success') {
    if (!s.flags.json) process.stdout.write(successText(kind, job, loc, s.req.Peer));
    return 0;
  }
  if (job.errorCode === CANCELED_JOB_CODE) {
    process.stderr.write(
      `dicom-xfer ${kind}: job ${loc.id} was canceled.\n  Start it again: dicom-xfer jobs resubmit ${loc.id}${peerMore}\n`,
    );
    return 1;
  }
  process.stderr.write(
    `dicom-xfer ${kind}: job ${loc.id} failed: ${failureText(job)}\n` +
      `  When the cause is fixed, start it again: dicom-xfer jobs resubmit ${loc.id}${peerMore}\n`,
  );
  return 1;
}

/** Follows the started job to its end and says how it ended; returns the exit status. */
async function followToEnd(s: Started): Promise<number> {
  const end = await follow(s.loc, s.flags, s.kind);
  const job = end.jobs[0];
  if (s.flags.json && job) process.stdout.write(`${JSON.stringify(job.raw, null, 2)}\n`);
  if (end.kind === 'interrupted') return reportInterrupted(s, job);
  if (end.kind === 'lost') return reportLost(s, end.error);
  if (!job) return EXIT_UNKNOWN; // 'ended' always carries the job; kept for the type checker
  return reportEnded(s, job);
}

/**
 * Runs `send` or `pull`: starts the job, follows it unless --no-follow, prints the outcome.
 * Exit status: 0 the job succeeded (or was started, with --no-follow); 1 it failed, or the node refused
 * or could not be reached; 2 usage (including an unknown peer); 3 the job was started but its end could
 * not be watched; 130 Ctrl-C while following (the job goes on).
 */
export async function runTransfer(kind: TransferKind, flags: TransferFlags): Promise<number> {
  let target: NodeTarget;
  let req: TransferRequest;
  try {
    ({ target, req } = await prepareTransfer(kind, flags));
  } catch (e) {
    return errorExit(kind, e);
  }
  const client = new NodeClient(target, { connections: 2 });
  let loc: JobLocation;
  try {
    loc = await startJob(client, kind, req, flags);
  } catch (e) {
    return errorExit(kind, e);
  } finally {
    await client.close();
  }

  const more = targetArgs(target, flags);
  // A send in pull mode is also followed on the node itself (a RemotePullTransfer job): with it, the
  // user can watch the transfer without the peer's credentials.
  const local = loc.remote ? await localFollower(target, loc.id) : undefined;
  const peerMore = loc.remote
    ? ` --url ${loc.target.url}${loc.target.username !== undefined ? ` --username ${loc.target.username} --password ...` : ''}`
    : more;
  const started: Started = { kind, flags, req, loc, more, peerMore, local };
  announce(started);
  return flags.follow ? followToEnd(started) : printHandle(started);
}

function addTransferOptions(cmd: Command, kind: TransferKind): Command {
  const direction = kind === 'send' ? 'to' : 'from';
  addTargetOptions(cmd)
    .requiredOption('--peer <name>', `the peer (as named in the node's OrthancPeers) to ${kind} ${direction}`)
    .option('--patient <id...>', 'patients (Orthanc IDs)')
    .option(
      '--study <id...>',
      `studies: Orthanc IDs, StudyInstanceUIDs or accession numbers (looked up on the ${kind === 'send' ? 'node' : 'peer'})`,
    )
    .option('--series <id...>', 'series (Orthanc IDs)')
    .option('--instance <id...>', 'instances (Orthanc IDs)')
    .addOption(new Option('--compression <kind>', 'compression on the wire').choices(['gzip', 'none']).default('gzip'))
    .option('--priority <n>', 'job priority on the node: higher runs first (default 0)')
    .option('--no-follow', 'print the job ID once started and return, without following it')
    .option('--json', "print the job's final JSON on stdout (with --no-follow: the node's answer)")
    .option('--quiet', 'no progress display');
  if (kind === 'send') {
    cmd
      .addOption(
        new Option(
          '--peer-username <user>',
          `user name on the peer, to follow a job that runs there (env ${ENV_PEER_USERNAME}; default: none, unless the peer is this node)`,
        ),
      )
      .addOption(new Option('--peer-password <password>', `password on the peer (env ${ENV_PEER_PASSWORD})`));
  } else {
    cmd
      .addOption(
        new Option(
          '--peer-username <user>',
          `user name on the peer, to look up a --study given by UID or accession number (env ${ENV_PEER_USERNAME})`,
        ),
      )
      .addOption(new Option('--peer-password <password>', `password on the peer (env ${ENV_PEER_PASSWORD})`));
  }
  return cmd.addHelpText(
    'after',
    '\nSeveral IDs and levels may be given: --study ID1 ID2 --instance ID3.\n' +
      'Exit status: 0 the job succeeded (with --no-follow: was started); 1 it failed (the cause is printed),\n' +
      'or the node refused or could not be reached; 2 usage errors, an unknown peer; 3 the job was started\n' +
      'but could not be followed to its end; 130 Ctrl-C while following (the job goes on: cancel it with\n' +
      '`dicom-xfer jobs cancel ID`).',
  );
}

/** Adds `send` (push to a peer; a pull by the peer when it has RemoteSelf) to the program. */
export function registerSend(program: Command): void {
  const cmd = program
    .command('send')
    .description('Send patients, studies, series or instances from a node to one of its peers, and follow the transfer');
  usageExit(addTransferOptions(cmd, 'send')).action(async (flags: TransferFlags) => {
    process.exitCode = await runTransfer('send', flags);
  });
}

/** Adds `pull` (the node downloads resources from a peer) to the program. */
export function registerPull(program: Command): void {
  const cmd = program
    .command('pull')
    .description('Make a node pull patients, studies, series or instances from one of its peers, and follow the transfer');
  usageExit(addTransferOptions(cmd, 'pull')).action(async (flags: TransferFlags) => {
    process.exitCode = await runTransfer('pull', flags);
  });
}
