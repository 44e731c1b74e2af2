// `dicom-xfer import PATH...`: uploads every file under the given paths to a node's POST /instances,
// a few at a time, streamed from disk, with progress and a closing summary of what the node said.
import { open, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Option, type Command } from 'commander';
import {
  DEFAULT_NODE_URL,
  ENV_PASSWORD,
  ENV_URL,
  ENV_USERNAME,
  NodeClient,
  NodeConnectionError,
  UsageError,
  resolveTarget,
  type NodeTarget,
} from './http.ts';
import { HttpError } from '../http/errors.ts';
import { Progress, formatMB, formatRate, type ProgressMode } from './progress.ts';

export const DEFAULT_CONCURRENCY = 4;
const MAX_CONCURRENCY = 64;
/** Tries per file when the connection breaks mid-upload (POST /instances is safe to repeat). */
const ATTEMPTS = 3;
const RETRY_DELAY_MS = 250;

/** A regular file to upload. */
export interface ImportFile {
  path: string;
  size: number;
}

/** A path that could not be uploaded before even trying (unreadable folder, broken link, special file). */
export interface FileProblem {
  path: string;
  reason: string;
}

export interface FileListing {
  files: ImportFile[];
  problems: FileProblem[];
}

function errnoOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : e instanceof Error ? e.message : String(e);
}

function plainFsError(e: unknown): string {
  switch (errnoOf(e)) {
    case 'ENOENT':
      return 'no such file (a broken link, or removed meanwhile)';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'too many levels of symbolic links';
    case 'EISDIR':
      return 'is a folder';
    default:
      return errnoOf(e);
  }
}

/**
 * Lists the regular files under `paths`, in a stable order (each argument in turn, folders sorted by
 * name). Folders are walked recursively, following symbolic links but entering each real folder once
 * (so link loops end), skipping entries whose name starts with "." (.DS_Store, .git). A path named on
 * the command line is taken even when hidden. Each file is listed once even when reached twice.
 * Throws UsageError when a given path does not exist; problems met inside folders are returned.
 */
export async function listFiles(paths: readonly string[]): Promise<FileListing> {
  const files: ImportFile[] = [];
  const problems: FileProblem[] = [];
  const seenDirs = new Set<string>();
  const seenFiles = new Set<string>();

  const tops: { path: string; st: Awaited<ReturnType<typeof stat>> }[] = [];
  for (const p of paths) {
    try {
      tops.push({ path: p, st: await stat(p) });
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new UsageError(`${p}: no such file or folder`);
      throw new UsageError(`${p}: ${plainFsError(e)}`);
    }
  }

  const visit = async (path: string, st: Awaited<ReturnType<typeof stat>>): Promise<void> => {
    const key = `${st.dev}:${st.ino}`;
    if (st.isFile()) {
      if (seenFiles.has(key)) return;
      seenFiles.add(key);
      files.push({ path, size: Number(st.size) });
      return;
    }
    if (!st.isDirectory()) {
      problems.push({ path, reason: 'not a regular file' });
      return;
    }
    if (seenDirs.has(key)) return;
    seenDirs.add(key);
    let names: string[];
    try {
      names = await readdir(path);
    } catch (e) {
      problems.push({ path, reason: `cannot list folder: ${plainFsError(e)}` });
      return;
    }
    names.sort();
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const child = join(path, name);
      let cst: Awaited<ReturnType<typeof stat>>;
      try {
        cst = await stat(child); // follows links; seenDirs stops the loops they may form
      } catch (e) {
        problems.push({ path: child, reason: plainFsError(e) });
        continue;
      }
      await visit(child, cst);
    }
  };

  for (const t of tops) await visit(t.path, t.st);
  return { files, problems };
}

/** One instance answer of POST /instances, as Orthanc writes it. */
interface InstanceAnswer {
  ID?: unknown;
  Status?: unknown;
  /** A dicom-xfer node names the entry of a ZIP archive each answer is about, and says why one failed. */
  FileName?: unknown;
  Message?: unknown;
  Details?: unknown;
}

export interface Rejection {
  path: string;
  /** HTTP status of the answer (or 200 for an answer without a usable instance). */
  status: number;
  /** Server's Message and Details, or what was wrong with the answer. */
  reason: string;
  message?: string;
  details?: string;
}

/**
 * What an import did. `new` and `alreadyStored` count instances (a ZIP file counts one per entry the node
 * stored); `rejected`, `failed` and `notSent` count files (`failed` also counts paths of the listing that
 * could not be read, such as an unreadable folder), and `rejected` also the entries of a ZIP archive that
 * the node reports as not stored. `distinctInstances` counts distinct instance IDs.
 */
export interface ImportSummary {
  url: string;
  files: number;
  new: number;
  alreadyStored: number;
  distinctInstances: number;
  rejected: number;
  failed: number;
  notSent: number;
  bytes: number;
  seconds: number;
  bytesPerSecond: number;
  rejections: Rejection[];
  failures: FileProblem[];
  /** Why the import stopped before the end (node unreachable, credentials), else null. */
  error: string | null;
}

export interface ImportOptions {
  concurrency?: number;
  progressMode?: ProgressMode;
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean };
}

type Outcome =
  | { kind: 'stored'; answers: InstanceAnswer[] }
  | { kind: 'rejected'; rejection: Rejection }
  | { kind: 'failed'; reason: string }
  | { kind: 'fatal'; message: string };

function contentTypeOf(path: string): string {
  return path.toLowerCase().endsWith('.zip') ? 'application/zip' : 'application/dicom';
}

/** Sends one file, streamed from disk; tries again (bounded) when the connection breaks mid-way. */
async function uploadOne(client: NodeClient, file: ImportFile, progress: Progress): Promise<Outcome> {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    let size: number;
    try {
      handle = await open(file.path, 'r');
      size = (await handle.stat()).size;
    } catch (e) {
      await handle?.close().catch(() => undefined);
      return { kind: 'failed', reason: `cannot read the file: ${plainFsError(e)}` };
    }
    // the size comes from the open handle, so Content-Length matches what this stream will read
    const stream = handle.createReadStream({ autoClose: true });
    let sent = 0;
    let readError: unknown;
    // counts each chunk as undici takes it for the socket; a 'data' listener would start the stream
    // flowing before undici reads it and lose those bytes
    const counted = async function* (): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of stream) {
          const b = chunk as Buffer;
          sent += b.length;
          progress.addBytes(b.length);
          yield b;
        }
      } catch (e) {
        readError = e;
        throw e;
      }
    };
    try {
      const answer = await client.json<unknown>('POST', '/instances', {
        body: Readable.from(counted(), { objectMode: false }),
        contentLength: size,
        contentType: contentTypeOf(file.path),
      });
      const answers = (Array.isArray(answer) ? answer : [answer]) as InstanceAnswer[];
      return { kind: 'stored', answers };
    } catch (e) {
      if (readError !== undefined) return { kind: 'failed', reason: `cannot read the file: ${plainFsError(readError)}` };
      if (e instanceof HttpError) {
        // every other file would get the same answer: stop and say it once
        if (e.status === 401 || e.status === 403) return { kind: 'fatal', message: e.message };
        if (e.status === 507)
          return {
            kind: 'fatal',
            message: `The node at ${client.target.url} has no room left (${e.reason}): free space there, then import again.`,
          };
        if (e.status >= 400 && e.status < 500) {
          const rejection: Rejection = { path: file.path, status: e.status, reason: e.reason };
          if (e.remote?.Message !== undefined) rejection.message = e.remote.Message;
          if (e.remote?.Details !== undefined) rejection.details = e.remote.Details;
          return { kind: 'rejected', rejection };
        }
        return { kind: 'failed', reason: `the node failed to store it: ${e.reason} (HTTP ${e.status})` };
      }
      if (e instanceof NodeConnectionError) {
        if (e.unreachable) return { kind: 'fatal', message: e.message };
        if (e.retryable && attempt < ATTEMPTS) {
          progress.addBytes(-sent); // these bytes go again: count them once
          await sleep(RETRY_DELAY_MS * attempt);
          continue;
        }
        return { kind: 'failed', reason: e.message };
      }
      return { kind: 'failed', reason: e instanceof Error ? e.message : String(e) };
    } finally {
      stream.destroy();
    }
  }
  return { kind: 'failed', reason: 'gave up after repeated connection failures' };
}

function emptySummary(url: string, listing: FileListing): ImportSummary {
  return {
    url,
    files: listing.files.length + listing.problems.length,
    new: 0,
    alreadyStored: 0,
    distinctInstances: 0,
    rejected: 0,
    failed: listing.problems.length,
    notSent: 0,
    bytes: 0,
    seconds: 0,
    bytesPerSecond: 0,
    rejections: [],
    failures: [...listing.problems],
    error: null,
  };
}

/** One import under way: the queue of files, its workers, and the summary they fill in. */
class ImportRun {
  readonly summary: ImportSummary;
  readonly #client: NodeClient;
  readonly #files: readonly ImportFile[];
  readonly #progress: Progress;
  readonly #ids = new Set<string>();
  #next = 0;
  #attempted = 0;

  constructor(client: NodeClient, listing: FileListing, progress: Progress) {
    this.#client = client;
    this.#files = listing.files;
    this.#progress = progress;
    this.summary = emptySummary(client.target.url, listing);
  }

  async run(concurrency: number): Promise<ImportSummary> {
    const workers = Math.max(1, Math.min(concurrency, this.#files.length));
    try {
      await Promise.all(Array.from({ length: workers }, () => this.#worker()));
    } finally {
      this.#progress.stop();
    }
    const summary = this.summary;
    summary.notSent += this.#files.length - this.#attempted;
    const snap = this.#progress.snapshot();
    summary.distinctInstances = this.#ids.size;
    summary.bytes = snap.bytesDone;
    summary.seconds = Math.round(snap.elapsedMs) / 1000;
    summary.bytesPerSecond = Math.round(snap.bytesPerSecond);
    return summary;
  }

  async #worker(): Promise<void> {
    while (this.summary.error === null && this.#next < this.#files.length) {
      const file = this.#files[this.#next++] as ImportFile;
      this.#attempted++;
      const outcome = await uploadOne(this.#client, file, this.#progress);
      this.#record(file, outcome);
      this.#progress.fileDone();
    }
  }

  #record(file: ImportFile, outcome: Outcome): void {
    const summary = this.summary;
    switch (outcome.kind) {
      case 'stored':
        this.#recordStored(file, outcome.answers);
        break;
      case 'rejected':
        summary.rejected++;
        summary.rejections.push(outcome.rejection);
        break;
      case 'failed':
        summary.failed++;
        summary.failures.push({ path: file.path, reason: outcome.reason });
        break;
      case 'fatal':
        // the file was not stored; the cause is said once in `error`, not once per file
        summary.notSent++;
        summary.error ??= outcome.message;
        break;
      default: {
        const never: never = outcome;
        void never;
      }
    }
  }

  /** Counts the instances of one answer of POST /instances (a ZIP archive gives one per entry). */
  #recordStored(file: ImportFile, answers: InstanceAnswer[]): void {
    const summary = this.summary;
    let counted = 0;
    let failedEntries = 0;
    for (const a of answers) {
      if (typeof a !== 'object' || a === null) continue;
      if (typeof a.ID === 'string') this.#ids.add(a.ID);
      if (a.Status === 'Success') {
        summary.new++;
        counted++;
      } else if (a.Status === 'AlreadyStored') {
        summary.alreadyStored++;
        counted++;
      } else if (a.Status === 'Failure' && typeof a.FileName === 'string') {
        // An entry of a ZIP archive that the node did not store: a rejection of its own.
        failedEntries++;
        summary.rejected++;
        summary.rejections.push(entryRejection(file, a.FileName, a));
      }
    }
    if (counted === 0 && failedEntries === 0) {
      const statuses = answers.map((a) => String(a?.Status)).join(', ');
      summary.rejected++;
      summary.rejections.push({
        path: file.path,
        status: 200,
        reason:
          answers.length === 0
            ? 'the node stored no instance from it (a ZIP archive without DICOM files?)'
            : `the node did not store it (Status: ${statuses})`,
      });
    }
  }
}

function entryRejection(file: ImportFile, fileName: string, a: InstanceAnswer): Rejection {
  const message = typeof a.Message === 'string' ? a.Message : 'Failure';
  const rejection: Rejection = { path: `${file.path}/${fileName}`, status: 200, reason: message, message };
  if (typeof a.Details === 'string') {
    rejection.details = a.Details;
    rejection.reason = `${message}: ${a.Details}`;
  }
  return rejection;
}

/**
 * Uploads `files` to the node with `concurrency` workers draining one queue, and says what happened.
 * Stops early (the rest counted in notSent, the cause in `error`) when the node cannot be reached or
 * refuses the credentials. Never throws for a file or a server answer.
 */
export async function importFiles(client: NodeClient, listing: FileListing, opts: ImportOptions = {}): Promise<ImportSummary> {
  const { files } = listing;
  const progress = new Progress({
    label: 'import',
    totalFiles: files.length,
    totalBytes: files.reduce((n, f) => n + f.size, 0),
    mode: opts.progressMode,
    stream: opts.progressStream,
  });
  return new ImportRun(client, listing, progress).run(opts.concurrency ?? DEFAULT_CONCURRENCY);
}

/** The human summary printed at the end of an import (several lines, ends with a newline). */
export function formatSummary(s: ImportSummary): string {
  const lines: string[] = [];
  const sent = s.files - s.notSent;
  lines.push(
    `Sent ${sent} of ${s.files} file${s.files === 1 ? '' : 's'} to ${s.url}: ${formatMB(s.bytes)} in ${s.seconds.toFixed(1)} s ` +
      `(${formatRate(s.bytesPerSecond)})`,
  );
  lines.push(`  new instances:   ${s.new}`);
  lines.push(`  already stored:  ${s.alreadyStored}`);
  lines.push(`  rejected files:  ${s.rejected}`);
  lines.push(`  failed files:    ${s.failed}`);
  if (s.notSent > 0) lines.push(`  not sent:        ${s.notSent}`);
  if (s.rejections.length > 0) {
    lines.push('Rejected by the node:');
    for (const r of s.rejections) lines.push(`  ${r.path}: ${r.reason}`);
  }
  if (s.failures.length > 0) {
    lines.push('Failed:');
    for (const f of s.failures) lines.push(`  ${f.path}: ${f.reason}`);
  }
  return `${lines.join('\n')}\n`;
}

/** 0 when every file was stored (new or already there), 1 otherwise. */
export function exitStatusOf(s: ImportSummary): number {
  return s.rejected === 0 && s.failed === 0 && s.notSent === 0 && s.error === null ? 0 : 1;
}

interface ImportFlags {
  url?: string;
  username?: string;
  password?: string;
  concurrency: string;
  json?: boolean;
  quiet?: boolean;
}

function parseConcurrency(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_CONCURRENCY) {
    throw new UsageError(`--concurrency must be a whole number from 1 to ${MAX_CONCURRENCY}, not "${raw}"`);
  }
  return n;
}

async function runImport(paths: string[], flags: ImportFlags): Promise<number> {
  let target: NodeTarget;
  let concurrency: number;
  let listing: FileListing;
  try {
    target = resolveTarget(flags);
    concurrency = parseConcurrency(flags.concurrency);
    listing = await listFiles(paths.map((p) => resolve(p)));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`dicom-xfer import: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
  if (listing.files.length === 0 && listing.problems.length === 0) {
    process.stderr.write(`dicom-xfer import: no files under ${paths.join(', ')} (hidden files are skipped)\n`);
    return 2;
  }
  const client = new NodeClient(target, { connections: concurrency });
  let summary: ImportSummary;
  try {
    summary = await importFiles(client, listing, {
      concurrency,
      progressMode: flags.quiet ? 'none' : undefined,
    });
  } finally {
    await client.close();
  }
  if (summary.error !== null) process.stderr.write(`dicom-xfer import: ${summary.error}\n`);
  if (flags.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else if (!flags.quiet || exitStatusOf(summary) !== 0) process.stdout.write(formatSummary(summary));
  return exitStatusOf(summary);
}

/** Adds `import` to the program. Exit status: 0 all stored, 1 files rejected or failed or node unreachable, 2 usage. */
export function registerImport(program: Command): void {
  program
    .command('import')
    .description('Upload DICOM files, folders (recursively) and ZIP archives to a node (POST /instances)')
    .argument('<path...>', 'files and folders to upload; hidden files are skipped')
    .addOption(new Option('--url <url>', `the node's address (env ${ENV_URL})`).default(undefined, DEFAULT_NODE_URL))
    .addOption(new Option('--username <user>', `user name for HTTP Basic authentication (env ${ENV_USERNAME})`))
    .addOption(new Option('--password <password>', `password for HTTP Basic authentication (env ${ENV_PASSWORD})`))
    .option('--concurrency <n>', 'uploads at a time', String(DEFAULT_CONCURRENCY))
    .option('--json', 'print the summary as JSON on stdout (for scripts)')
    .option('--quiet', 'no progress output; the summary only when something went wrong')
    .addHelpText(
      'after',
      '\nExit status: 0 when every file was stored (new or already there); 1 when files were rejected or\n' +
        'failed, or the node could not be reached; 2 for usage errors (bad URL, missing path).',
    )
    // usage errors found by commander itself (missing argument, unknown option) also exit with 2
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : 2);
    })
    .action(async (paths: string[], flags: ImportFlags) => {
      process.exitCode = await runImport(paths, flags);
    });
}
