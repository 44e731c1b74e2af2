// `dicom-xfer jobs`: a node's transfer jobs as a table, live progress of running jobs, and the four
// controls (pause, resume, cancel, resubmit); also the reading and following of one job's JSON that
// `send` and `pull` use.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { NodeClient, NodeConnectionError, UsageError, addTargetOptions, resolveTarget, type NodeTarget, type TargetFlags } from './http.ts';
import { HttpError } from '../http/errors.ts';
import { StatusBars, formatDuration } from './progress.ts';

/** Orthanc's job states. Success and Failure are final. */
export type JobState = 'Pending' | 'Running' | 'Paused' | 'Success' | 'Failure';

/** Orthanc's "CanceledJob" error code, which a canceled job carries as its ErrorCode. */
export const CANCELED_JOB_CODE = 37;

/** Time between two readings of a followed job. */
export const POLL_INTERVAL_MS = 500;
/** Readings in a row that may fail (node restarting, network hiccup) before following gives up. */
export const MAX_FAILED_POLLS = 30;

/**
 * One job as a node describes it (GET /jobs/{id}), with the figures the CLI shows read out of Content.
 * Figures the node did not give are undefined. Times are epoch milliseconds (the node's clock).
 */
export interface JobView {
  id: string;
  type: string;
  state: string;
  priority: number;
  /** 0 to 100. */
  progress: number;
  peer: string | undefined;
  compression: string | undefined;
  totalInstances: number | undefined;
  /** The node's megabytes (MiB), rounded by the node. */
  totalSizeMB: number | undefined;
  totalBuckets: number | undefined;
  completedQueries: number | undefined;
  /** UploadedSizeMB of a push, DownloadedSizeMB of a pull. */
  transferredMB: number | undefined;
  /** The node's KB (KiB) per second. */
  speedKBs: number | undefined;
  retries: number | undefined;
  creationTime: number | undefined;
  completionTime: number | undefined;
  /** When the node wrote this description. */
  timestamp: number | undefined;
  estimatedArrival: number | undefined;
  /** Seconds the job ran. */
  effectiveRuntime: number | undefined;
  errorCode: number;
  errorDescription: string;
  errorDetails: string;
  /** Why a running job waits, in plain words (Content.Waiting), while it retries. */
  waiting: string | undefined;
  /** What happened when a control was passed on to a peer's job (Content.RemoteControl). */
  remoteControl: string | undefined;
  /** The JSON exactly as the node sent it. */
  raw: Record<string, unknown>;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** "20261129T094356.114000" (Orthanc's job timestamps, UTC) as epoch ms; undefined when not one. */
export function parseOrthancTime(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,6}))?$/.exec(v);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac] = m;
  const ms = frac ? Math.floor(Number(frac.padEnd(6, '0')) / 1000) : 0;
  return Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms);
}

/**
 * Reads a node's job JSON. Throws an Error saying what is wrong when `v` is not a job (no ID or State),
 * so that a wrong URL or a proxy's page is not taken for a job.
 */
export function parseJob(v: unknown): JobView {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Error('the node answered something that is not a job (not a JSON object)');
  const raw = v as Record<string, unknown>;
  const id = str(raw.ID);
  const state = str(raw.State);
  if (!id || !state) throw new Error('the node answered something that is not a job (no ID or State)');
  const c = (typeof raw.Content === 'object' && raw.Content !== null ? raw.Content : {}) as Record<string, unknown>;
  return {
    id,
    type: str(raw.Type) ?? '?',
    state,
    priority: num(raw.Priority) ?? 0,
    progress: num(raw.Progress) ?? 0,
    peer: str(c.Peer),
    compression: str(c.Compression),
    totalInstances: num(c.TotalInstances),
    totalSizeMB: num(c.TotalSizeMB),
    totalBuckets: num(c.TotalBuckets),
    completedQueries: num(c.CompletedHttpQueries),
    transferredMB: num(c.UploadedSizeMB) ?? num(c.DownloadedSizeMB),
    speedKBs: num(c.NetworkSpeedKBs),
    retries: num(c.Retries),
    creationTime: parseOrthancTime(raw.CreationTime),
    completionTime: parseOrthancTime(raw.CompletionTime),
    timestamp: parseOrthancTime(raw.Timestamp),
    estimatedArrival: parseOrthancTime(raw.EstimatedTimeOfArrival),
    effectiveRuntime: num(raw.EffectiveRuntime),
    errorCode: num(raw.ErrorCode) ?? 0,
    errorDescription: str(raw.ErrorDescription) ?? '',
    errorDetails: str(raw.ErrorDetails) ?? '',
    waiting: str(c.Waiting),
    remoteControl: str(c.RemoteControl),
    raw,
  };
}

export function isFinal(state: string): boolean {
  return state === 'Success' || state === 'Failure';
}

/** What a job's JSON says about how far it is; each figure undefined when the node did not give it. */
export interface JobFigures {
  /** 0 to 100, the node's Progress. */
  percent: number;
  bucketsDone: number | undefined;
  bucketsTotal: number | undefined;
  /** Megabytes moved, estimated from the buckets done (they are of similar size), else from Progress. */
  mbDone: number | undefined;
  mbTotal: number | undefined;
  /** The node's average network speed, in its megabytes per second. */
  mbPerSecond: number | undefined;
  etaSeconds: number | undefined;
}

export function jobFigures(job: JobView): JobFigures {
  const bucketsTotal = job.totalBuckets;
  const bucketsDone = bucketsTotal !== undefined ? Math.min(job.completedQueries ?? 0, bucketsTotal) : undefined;
  let fraction = job.progress / 100;
  if (bucketsTotal !== undefined && bucketsTotal > 0 && bucketsDone !== undefined) fraction = bucketsDone / bucketsTotal;
  if (job.state === 'Success') fraction = 1;
  const mbTotal = job.totalSizeMB;
  const mbDone = mbTotal !== undefined ? mbTotal * Math.min(1, Math.max(0, fraction)) : undefined;
  const mbPerSecond = job.speedKBs !== undefined && job.speedKBs > 0 ? job.speedKBs / 1024 : undefined;
  let etaSeconds: number | undefined;
  if (job.state === 'Running') {
    if (job.estimatedArrival !== undefined && job.timestamp !== undefined) {
      // both times come from the node's clock, so the local clock's drift does not matter
      etaSeconds = Math.max(0, (job.estimatedArrival - job.timestamp) / 1000);
    } else if (mbPerSecond !== undefined && mbTotal !== undefined && mbDone !== undefined) {
      etaSeconds = Math.max(0, mbTotal - mbDone) / mbPerSecond;
    }
  }
  return { percent: job.progress, bucketsDone, bucketsTotal, mbDone, mbTotal, mbPerSecond, etaSeconds };
}

/** "1.4", "12", "250": megabytes with as many decimals as are worth reading. */
export function formatMBValue(mb: number): string {
  return mb < 10 ? mb.toFixed(1).replace(/\.0$/, '') : mb.toFixed(0);
}

/** "2.50 MB/s" from the node's KB per second. */
export function formatSpeed(speedKBs: number | undefined): string {
  if (speedKBs === undefined || speedKBs <= 0) return '-';
  return `${(speedKBs / 1024).toFixed(2)} MB/s`;
}

/** The line next to a job's bar: "3/6 buckets  1.4/3 MB  2.50 MB/s  ETA 4s  2 retries" (state first unless Running). */
export function describeJob(job: JobView): string {
  const f = jobFigures(job);
  const parts: string[] = [];
  if (job.state !== 'Running') parts.push(job.state);
  if (f.bucketsTotal !== undefined) parts.push(`${f.bucketsDone ?? 0}/${f.bucketsTotal} buckets`);
  if (f.mbTotal !== undefined && f.mbDone !== undefined) parts.push(`${formatMBValue(f.mbDone)}/${formatMBValue(f.mbTotal)} MB`);
  if (f.mbPerSecond !== undefined) parts.push(formatSpeed(job.speedKBs));
  if (job.state === 'Running') parts.push(`ETA ${formatDuration(f.etaSeconds)}`);
  if (job.retries !== undefined && job.retries > 0) parts.push(`${job.retries} ${job.retries === 1 ? 'retry' : 'retries'}`);
  if (job.waiting !== undefined && !isFinal(job.state)) parts.push(`waiting: ${job.waiting}`);
  return parts.join('  ');
}

/** The first 8 characters of a job ID: enough to tell jobs apart, and accepted back by the commands. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** "push" for PushTransfer, "pull" for PullTransfer, the type itself otherwise. */
export function shortType(type: string): string {
  if (type === 'PushTransfer') return 'push';
  if (type === 'PullTransfer') return 'pull';
  // A send in pull mode: the peer pulls, this node follows its job.
  if (type === 'RemotePullTransfer') return 'send (pull by peer)';
  return type;
}

/** "Error in the network protocol: peer "b" ..." : the cause of a failed job, as the node gives it. */
export function failureText(job: JobView): string {
  const desc = job.errorDescription || `error ${job.errorCode}`;
  return job.errorDetails ? `${desc}: ${job.errorDetails}` : desc;
}

function pad(cells: string[][]): string {
  const widths: number[] = [];
  for (const row of cells) {
    for (const [i, c] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return cells
    .map((row) =>
      row
        .map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Columns of rows into aligned text, header first; the last column is not padded. */
export function formatTable(header: string[], rows: string[][]): string {
  return `${pad([header, ...rows])}\n`;
}

/** The jobs as a table (ID, type, state, progress, peer, size, rate, age), then the cause of each failure. */
export function formatJobsTable(jobs: readonly JobView[], now = Date.now()): string {
  const rows = jobs.map((j) => {
    const size =
      j.totalSizeMB !== undefined
        ? `${formatMBValue(j.totalSizeMB)} MB${j.totalInstances !== undefined ? ` (${j.totalInstances} inst.)` : ''}`
        : '-';
    // the node's own "now" (Timestamp) keeps ages right when the clocks differ
    const age = j.creationTime !== undefined ? formatDuration(((j.timestamp ?? now) - j.creationTime) / 1000) : '?';
    return [shortId(j.id), shortType(j.type), j.state, `${j.progress}%`, j.peer ?? '-', size, formatSpeed(j.speedKBs), age];
  });
  let out = formatTable(['ID', 'TYPE', 'STATE', 'PROGRESS', 'PEER', 'SIZE', 'RATE', 'AGE'], rows);
  const failed = jobs.filter((j) => j.state === 'Failure');
  for (const j of failed) {
    const remote = j.remoteControl?.startsWith('cancel') ? ` (${j.remoteControl})` : '';
    out += `${shortId(j.id)}: ${j.errorCode === CANCELED_JOB_CODE ? `canceled${remote}` : failureText(j)}\n`;
  }
  for (const j of jobs) if (j.waiting !== undefined && !isFinal(j.state)) out += `${shortId(j.id)}: waiting: ${j.waiting}\n`;
  return out;
}

// ---- following -----------------------------------------------------------------------------------------

/** How following ended: every job final, Ctrl-C, or the node could not be read any more. */
export type FollowEnd =
  | { kind: 'ended'; jobs: JobView[] }
  | { kind: 'interrupted'; jobs: JobView[] }
  | { kind: 'lost'; jobs: JobView[]; error: Error };

export interface FollowOptions {
  /** Where the bars go; none draws nothing. */
  bars?: StatusBars;
  /** Text in front of a job's bar (default "<type> <short id>"). */
  label?: (job: JobView) => string;
  /** Aborting it (Ctrl-C) ends following with 'interrupted'; the jobs are left alone. */
  signal?: AbortSignal;
  intervalMs?: number;
  maxFailedPolls?: number;
}

class JobGone extends Error {}

/**
 * Reads the jobs `ids` on the node every `intervalMs` and shows them until each is Success or Failure
 * (a paused job is waited for), the signal is aborted, or the node cannot be read: a job it no longer
 * knows, a refusal (401/403), or `maxFailedPolls` failed readings in a row. Never throws; answers the
 * last reading of each job that was read at least once, in the order of `ids`.
 */
export async function followJobs(client: NodeClient, ids: readonly string[], opts: FollowOptions = {}): Promise<FollowEnd> {
  const interval = opts.intervalMs ?? POLL_INTERVAL_MS;
  const maxFailed = opts.maxFailedPolls ?? MAX_FAILED_POLLS;
  const label = opts.label ?? ((j: JobView) => `${shortType(j.type)} ${shortId(j.id)}`);
  const last = new Map<string, JobView>();
  const seen = () => ids.flatMap((id) => last.get(id) ?? []);
  let failed = 0;
  for (;;) {
    if (opts.signal?.aborted) return { kind: 'interrupted', jobs: seen() };
    try {
      const pending = ids.filter((id) => !isFinal(last.get(id)?.state ?? ''));
      let read: JobView[];
      if (pending.length === 1) {
        read = [parseJob(await client.json('GET', `/jobs/${pending[0]}`, { signal: opts.signal }))];
      } else {
        const all = await client.json<unknown>('GET', '/jobs?expand', { signal: opts.signal });
        if (!Array.isArray(all)) throw new Error('the node answered GET /jobs?expand with something that is not a list');
        const byId = new Map(all.map((j) => parseJob(j)).map((j) => [j.id, j]));
        read = pending.map((id) => {
          const j = byId.get(id);
          if (!j) throw new JobGone(`the node no longer knows job ${id} (its history keeps a limited number of jobs, or it was replaced)`);
          return j;
        });
      }
      failed = 0;
      for (const j of read) {
        last.set(j.id, j);
        opts.bars?.update(j.id, label(j), j.state === 'Success' ? 100 : j.progress, describeJob(j));
      }
      if (ids.every((id) => isFinal(last.get(id)?.state ?? ''))) return { kind: 'ended', jobs: seen() };
    } catch (e) {
      if (opts.signal?.aborted) return { kind: 'interrupted', jobs: seen() };
      if (e instanceof JobGone) return { kind: 'lost', jobs: seen(), error: e };
      if (e instanceof HttpError && e.status === 404) {
        return { kind: 'lost', jobs: seen(), error: new JobGone(`the node no longer knows the job (${e.reason})`) };
      }
      if (e instanceof HttpError && (e.status === 401 || e.status === 403)) return { kind: 'lost', jobs: seen(), error: e };
      if (!(e instanceof NodeConnectionError || e instanceof HttpError) || ++failed >= maxFailed) {
        return { kind: 'lost', jobs: seen(), error: e instanceof Error ? e : new Error(String(e)) };
      }
      // a broken connection or a 5xx: the node may be restarting; read again after the pause
    }
    try {
      await sleep(interval, undefined, { signal: opts.signal });
    } catch {
      return { kind: 'interrupted', jobs: seen() };
    }
  }
}

/**
 * An AbortSignal aborted by the first Ctrl-C (SIGINT) until `dispose()`; while it is armed, Ctrl-C does
 * not kill the process, so the command can say what it leaves running. A second Ctrl-C kills as usual.
 */
export function interruptOnCtrlC(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSigint = () => {
    process.removeListener('SIGINT', onSigint);
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  return { signal: controller.signal, dispose: () => process.removeListener('SIGINT', onSigint) };
}

/** Exit status after Ctrl-C stopped the following (the job goes on). */
export const EXIT_INTERRUPTED = 130;
/** Exit status when the job was started but its end could not be watched (refused, node gone). */
export const EXIT_UNKNOWN = 3;

// ---- the command ---------------------------------------------------------------------------------------

const FULL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The full ID of the job that `given` names: a full ID as is, else the one job whose ID starts with it.
 * Throws UsageError when no job or several jobs match.
 */
export async function resolveJobId(client: NodeClient, given: string): Promise<string> {
  const wanted = given.trim().toLowerCase();
  if (FULL_ID.test(wanted)) return wanted;
  if (!/^[0-9a-f-]+$/.test(wanted)) throw new UsageError(`"${given}" is not a job ID; list the jobs with \`dicom-xfer jobs\``);
  const ids = await client.json<unknown>('GET', '/jobs');
  const matches = Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string' && id.startsWith(wanted)) : [];
  if (matches.length === 1 && matches[0] !== undefined) return matches[0];
  if (matches.length === 0) {
    throw new UsageError(`no job on ${client.target.url} has an ID starting with "${given}"; list the jobs with \`dicom-xfer jobs\``);
  }
  throw new UsageError(`several jobs have an ID starting with "${given}" (${matches.map(shortId).join(', ')}...): give more characters`);
}

/** `--url X` (and the user, never the password) to repeat in a suggested command; empty for the default node. */
export function targetArgs(target: NodeTarget, flags: TargetFlags): string {
  let out = flags.url !== undefined || process.env.DICOM_XFER_URL ? ` --url ${target.url}` : '';
  if (target.username !== undefined) out += ` --username ${target.username} --password ...`;
  return out;
}

/** The message and exit status for an error met while talking to a node. */
export function errorExit(cmd: string, e: unknown): number {
  if (e instanceof UsageError) {
    process.stderr.write(`dicom-xfer ${cmd}: ${e.message}\n`);
    return e.exitCode;
  }
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`dicom-xfer ${cmd}: ${message}\n`);
  return 1;
}

interface JobsFlags extends TargetFlags {
  follow?: string | boolean;
  json?: boolean;
  quiet?: boolean;
}

async function listJobs(client: NodeClient): Promise<JobView[]> {
  const all = await client.json<unknown>('GET', '/jobs?expand');
  if (!Array.isArray(all)) throw new Error(`the node at ${client.target.url} answered GET /jobs?expand with something that is not a list`);
  return all.map((j) => parseJob(j));
}

async function runJobs(flags: JobsFlags): Promise<number> {
  let target: NodeTarget;
  try {
    target = resolveTarget(flags);
  } catch (e) {
    return errorExit('jobs', e);
  }
  const client = new NodeClient(target, { connections: 2 });
  try {
    if (flags.follow === undefined || flags.follow === false) {
      const jobs = await listJobs(client);
      if (flags.json)
        process.stdout.write(
          `${JSON.stringify(
            jobs.map((j) => j.raw),
            null,
            2,
          )}\n`,
        );
      else if (jobs.length === 0) process.stdout.write(`No jobs on ${target.url}.\n`);
      else process.stdout.write(formatJobsTable(jobs));
      return 0;
    }
    let ids: string[];
    if (typeof flags.follow === 'string') {
      ids = [await resolveJobId(client, flags.follow)];
    } else {
      ids = (await listJobs(client)).filter((j) => j.state === 'Pending' || j.state === 'Running').map((j) => j.id);
      if (ids.length === 0) {
        if (flags.json) process.stdout.write('[]\n');
        else process.stdout.write(`No job is pending or running on ${target.url}.\n`);
        return 0;
      }
    }
    const bars = new StatusBars({ quiet: flags.quiet === true });
    const ctrlC = interruptOnCtrlC();
    let end: FollowEnd;
    try {
      end = await followJobs(client, ids, { bars, signal: ctrlC.signal });
    } finally {
      ctrlC.dispose();
      bars.stop();
    }
    if (flags.json)
      process.stdout.write(
        `${JSON.stringify(
          end.jobs.map((j) => j.raw),
          null,
          2,
        )}\n`,
      );
    else if (end.jobs.length > 0) process.stdout.write(formatJobsTable(end.jobs));
    const more = targetArgs(target, flags);
    if (end.kind === 'interrupted') {
      process.stderr.write(`dicom-xfer jobs: stopped following; the jobs go on. Cancel one with \`dicom-xfer jobs cancel ID${more}\`.\n`);
      return EXIT_INTERRUPTED;
    }
    if (end.kind === 'lost') {
      process.stderr.write(`dicom-xfer jobs: cannot follow the jobs any more: ${end.error.message}\n`);
      return EXIT_UNKNOWN;
    }
    return end.jobs.every((j) => j.state === 'Success') ? 0 : 1;
  } catch (e) {
    return errorExit('jobs', e);
  } finally {
    await client.close();
  }
}

export type JobAction = 'pause' | 'resume' | 'cancel' | 'resubmit';

/** Why the node refused `action` on a job in `state`, in words. */
export function refusalText(action: JobAction, state: string): string {
  switch (action) {
    case 'pause':
      return `it is ${state}: only a pending or running job can be paused`;
    case 'resume':
      return `it is ${state}: only a paused job can be resumed`;
    case 'cancel':
      return isFinal(state) ? `it has already ended (${state}): only a pending, running or paused job can be canceled` : `it is ${state}`;
    case 'resubmit':
      return `it is ${state}: only a failed or canceled job can be resubmitted`;
  }
}

const DONE: Record<JobAction, string> = { pause: 'paused', resume: 'resumed', cancel: 'canceled', resubmit: 'resubmitted' };

async function runControl(action: JobAction, given: string, flags: JobsFlags): Promise<number> {
  let target: NodeTarget;
  try {
    target = resolveTarget(flags);
  } catch (e) {
    return errorExit(`jobs ${action}`, e);
  }
  const client = new NodeClient(target, { connections: 2 });
  try {
    const id = await resolveJobId(client, given);
    try {
      await client.json('POST', `/jobs/${id}/${action}`, { body: '', contentType: 'application/json' });
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) {
        throw new UsageError(`no job ${id} on ${target.url}; list the jobs with \`dicom-xfer jobs${targetArgs(target, flags)}\``);
      }
      if (e instanceof HttpError && e.status === 400) {
        // say why in terms of the job's state, which the node's "Bad sequence of calls" does not
        const state = await client
          .json('GET', `/jobs/${id}`)
          .then((j) => parseJob(j).state)
          .catch(() => undefined);
        const why = state !== undefined ? refusalText(action, state) : e.reason;
        process.stderr.write(`dicom-xfer jobs ${action}: job ${id} cannot be ${DONE[action]}: ${why}.\n`);
        return 1;
      }
      throw e;
    }
    const job = parseJob(await client.json('GET', `/jobs/${id}`));
    if (flags.json) process.stdout.write(`${JSON.stringify(job.raw, null, 2)}\n`);
    else {
      process.stdout.write(
        `Job ${id} (${shortType(job.type)}${job.peer ? `, peer "${job.peer}"` : ''}) ${DONE[action]}: it is now ${job.state}.\n`,
      );
      // A send in pull mode passes the control on to the peer's job: say whether the peer did it.
      if (job.remoteControl?.startsWith(`${action}:`)) process.stdout.write(`The peer's job: ${job.remoteControl}.\n`);
    }
    return 0;
  } catch (e) {
    return errorExit(`jobs ${action}`, e);
  } finally {
    await client.close();
  }
}

/** Commander's own usage errors (unknown option, missing argument) exit with 2, help with 0. */
export function usageExit(cmd: Command): Command {
  return cmd.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });
}

/**
 * Adds `jobs` (table, --follow, --json) and `jobs pause|resume|cancel|resubmit ID` to the program.
 * Exit status: 0 done (followed jobs all succeeded); 1 a followed job failed, the node refused or could
 * not be reached; 2 usage; 3 following stopped because the node could not be read; 130 Ctrl-C.
 */
export function registerJobs(program: Command): void {
  const jobs = program
    .command('jobs')
    .description("List a node's transfer jobs, follow them live, or pause, resume, cancel or resubmit one");
  addTargetOptions(jobs)
    .option('--follow [id]', 'show live progress of every pending or running job (or of the job with this ID) until they end')
    .option('--json', "print the jobs as JSON on stdout (the node's job JSON; after --follow, their final state)")
    .option('--quiet', 'no progress bars while following')
    .addHelpText(
      'after',
      '\nIDs may be shortened to their first characters (as in the table) when no other job starts the same way.\n' +
        'Exit status: 0 done (and every followed job succeeded); 1 a followed job failed, or the node refused\n' +
        'or could not be reached; 2 usage errors; 3 the node could not be read any more while following;\n' +
        '130 Ctrl-C while following (the jobs go on).',
    );
  usageExit(jobs).action(async (flags: JobsFlags) => {
    process.exitCode = await runJobs(flags);
  });
  const what: Record<JobAction, string> = {
    pause: 'Pause a pending or running job (it continues from where it was when resumed)',
    resume: 'Resume a paused job',
    cancel: 'Cancel a pending, running or paused job (it ends as a Failure, "canceled")',
    resubmit: 'Start a failed or canceled job again',
  };
  for (const action of ['pause', 'resume', 'cancel', 'resubmit'] as const) {
    const sub = jobs.command(action).description(what[action]).argument('<id>', 'the job ID, or its first characters');
    addTargetOptions(sub).option('--json', "print the job's JSON after the change");
    usageExit(sub).action(async (id: string, _flags: JobsFlags, cmd: Command) => {
      process.exitCode = await runControl(action, id, cmd.optsWithGlobals<JobsFlags>());
    });
  }
}
