// A DICOMweb server of DicomWeb.Servers as a destination (destinations/types.ts): STOW-RS of the instances in
// multipart/related requests of about Transfers.BucketSize, as many in flight as the link rewards (the
// transfers' AdaptiveConcurrency, within the node's InFlight budget), each retried with backoff; what the
// server acknowledges is kept in the task before the request counts as done, so a restart sends only the
// rest. Then every acknowledged instance is looked up with QIDO-RS, series by series, and the task's Content
// says what was stored, what was refused and why, and what could not be confirmed.
import type { Config } from '../../config/types.ts';
import type { Destination, DestinationDirectory, DestinationStatus, SendRequest, SendTask } from '../../destinations/types.ts';
import { XferError } from '../../errors.ts';
import { HttpError } from '../../http/errors.ts';
import { readBounded } from '../../http/body.ts';
import { formatOrthancTimestamp, networkSpeedKBs, toMegabytes } from '../../protocol/progress.ts';
import type { Store } from '../../store/types.ts';
import { AdaptiveConcurrency } from '../../transfer/adaptive/controller.ts';
import type { InFlight } from '../../transfer/in-flight.ts';
import { displayUrl } from '../../util/url.ts';
import { retry, retryOptionsFromConfig } from '../../util/retry.ts';
import { runAdaptive } from './adaptive-pool.ts';
import type { DicomWebClient } from './client.ts';
import type { DicomWebServers } from './servers.ts';
import { parseStowAnswer, reasonText, stowBody, type StowOutcome } from './stow-body.ts';
import { groupInstances, sendOrder, planStow, STORED, type StowState } from './stow-plan.ts';

export interface DicomWebDestinationDeps {
  config: Config;
  store: Store;
  inFlight: InFlight;
  servers: DicomWebServers;
}

/** Most bytes of a STOW answer read (a DICOM JSON list of a few thousand instances is far smaller). */
const ANSWER_LIMIT = 16 * 1024 * 1024;
/** Milliseconds a STOW-RS request in flight may still run after its job was told to stop. */
const GRACE_MS = 10_000;
/** Refused and unconfirmed instances named in the Content (their counts are there whole). */
const LISTED = 100;

/** One refused (or unconfirmed) instance, as the job's Content names it. */
interface NamedInstance {
  ID: string;
  SOPInstanceUID: string;
  Reason: string;
}

export class DicomWebDestination implements Destination<StowState> {
  readonly description: string;
  readonly #deps: DicomWebDestinationDeps;
  readonly #name: string;

  constructor(deps: DicomWebDestinationDeps, name: string) {
    this.#deps = deps;
    this.#name = name;
    this.description = `DICOMweb server "${name}" (${displayUrl(deps.servers.get(name).url)})`;
  }

  async send(request: SendRequest, task: SendTask<StowState>): Promise<void> {
    const client = this.#deps.servers.client(this.#name);
    const state = await this.#plan(request, task, client);
    const total = state.plan.reduce((s, p) => s + p.Size, 0);
    task.setContent({
      Server: this.#name,
      TotalInstances: state.plan.length,
      TotalSizeMB: toMegabytes(total),
      Requests: state.groups.length,
    });
    await (task.preemptible ? task.preemptible(() => this.#sendAll(state, task, client)) : this.#sendAll(state, task, client));
    task.setProgress(0.95);
    const unconfirmed = await confirm(state, task, client);
    report(state, task, unconfirmed);
    const refused = refusedOf(state);
    if (refused.length > 0 || unconfirmed.length > 0) {
      const first = refused[0] ?? unconfirmed[0];
      throw new XferError(
        'NetworkProtocol',
        `${refused.length} instances refused and ${unconfirmed.length} not found afterwards by ${this.description}, ` +
          `first ${first?.ID} (${first?.Reason})`,
      );
    }
  }

  /** STOW-RS leaves nothing open at the server to undo. */
  async abandon(): Promise<void> {}

  async #plan(request: SendRequest, task: SendTask<StowState>, client: DicomWebClient): Promise<StowState> {
    const saved = task.loadPrivate();
    if (saved) return saved;
    const plan = [];
    for (const i of request.instances) plan.push(await planStow(this.#deps.store, i.ID, i.Size));
    const groups = groupInstances(plan, this.#deps.config.Transfers.BucketSize * 1024, client.maxRequestBytes);
    const state: StowState = { plan, groups, outcomes: {} };
    await task.clearBucketsDone();
    await task.savePrivate(state);
    return state;
  }

  /** Every request not yet done, as many at once as the controller allows. */
  async #sendAll(state: StowState, task: SendTask<StowState>, client: DicomWebClient): Promise<void> {
    const T = this.#deps.config.Transfers;
    const adaptive = new AdaptiveConcurrency({ initial: T.Threads, min: 1, max: Math.max(T.Threads, T.MaxThreads) });
    const todo = sendOrder(state.groups, state.plan, task.bucketsDone());
    const share = this.#deps.inFlight.share(task);
    const started = Date.now();
    let sent = 0;
    let queries = 0;
    await runAdaptive(todo, adaptive, async (g) => {
      const bytes = (state.groups[g] ?? []).reduce((s, i) => s + (state.plan[i]?.Size ?? 0), 0);
      await share.run(
        bytes,
        task.signal,
        () => this.#sendGroup(state, g, task, client, adaptive),
        (why) => task.setContent({ Waiting: why }),
      );
      sent += bytes;
      queries++;
      task.setContent({
        UploadedSizeMB: toMegabytes(sent),
        CompletedHttpQueries: queries,
        NetworkSpeedKBs: networkSpeedKBs(sent, Date.now() - started),
        RequestsInFlight: adaptive.limit,
      });
      task.setProgress((0.95 * task.bucketsDone().size) / Math.max(1, state.groups.length));
    });
  }

  /** One request with its retries; its outcomes saved, then the request marked done. */
  async #sendGroup(state: StowState, g: number, task: SendTask<StowState>, client: DicomWebClient, adaptive: AdaptiveConcurrency) {
    const group = (state.groups[g] ?? []).map((i) => ({ i, p: state.plan[i] })).filter((x) => x.p !== undefined);
    const parts = group.map((x) => ({ ID: x.p?.ID ?? '', Size: x.p?.Size ?? 0 }));
    const opts = retryOptionsFromConfig(this.#deps.config, {
      signal: task.signal,
      onRetry: (info) => {
        adaptive.failed();
        const retries = (Number(task.content()['Retries']) || 0) + 1;
        const why = info.error instanceof Error ? info.error.message : String(info.error);
        task.log.warn({ err: why, delayMs: info.delayMs, server: this.#name }, 'a STOW-RS request failed; trying again');
        task.setContent({ Retries: retries, LastRetryCause: why, LastRetryTime: formatOrthancTimestamp(Date.now()) });
      },
    });
    const attempt = async (ps: typeof parts): Promise<StowOutcome[] | string> => {
      try {
        // The controller measures the bytes as they stream out, as a push's buckets do, not per answered request.
        const onBytes = (n: number) => adaptive.progress(n);
        return await retry((_n, signal) => withGrace(signal, (late) => stowOnce(client, this.#deps.store, ps, late, onBytes)), opts);
      } catch (e) {
        // A refusal of the whole request for what it holds (400, 409, 413, 415...), not of its credentials.
        if (!(e instanceof HttpError) || e.status < 400 || e.status >= 500 || e.status === 401 || e.status === 403) throw e;
        return `HTTP ${e.status}: ${e.reason}`;
      }
    };
    const whole = await attempt(parts);
    for (const [k, { i, p }] of group.entries()) {
      // A server that refuses a request of several instances without naming one (Orthanc's plugin answers 400
      // when one part cannot be read) is asked again instance by instance, so that only the culprit is refused.
      const outcomes = typeof whole === 'string' && group.length > 1 ? await attempt([parts[k] ?? { ID: '', Size: 0 }]) : whole;
      if (typeof outcomes === 'string') state.outcomes[String(i)] = outcomes;
      else {
        const o = outcomes.find((x) => x.sopInstanceUid === p?.SOPInstanceUID);
        // An instance the answer does not name is looked up with the others afterwards.
        state.outcomes[String(i)] = o === undefined || o.stored ? STORED : reasonText(o.reason);
      }
    }
    await task.savePrivate(state);
    await task.markBucketDone(g);
  }
}

/**
 * Runs a request with a signal that aborts GRACE_MS after `signal` does: a request in flight when the job
 * stops (pause, shutdown) may still get its answer, and what it acknowledged is kept rather than sent again.
 */
async function withGrace<T>(signal: AbortSignal | undefined, fn: (late: AbortSignal) => Promise<T>): Promise<T> {
  const late = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    timer = setTimeout(() => late.abort(signal?.reason), GRACE_MS);
  };
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn(late.signal);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    clearTimeout(timer);
  }
}

/** POST studies once: the outcomes of the answer (200, 202 partial, 409 all refused). */
async function stowOnce(
  client: DicomWebClient,
  store: Store,
  parts: { ID: string; Size: number }[],
  signal: AbortSignal | undefined,
  onBytes: (n: number) => void,
) {
  const body = stowBody(store, parts);
  const call = {
    method: 'POST' as const,
    path: 'studies',
    headers: { 'content-type': body.contentType, 'content-length': String(body.length), accept: 'application/dicom+json' },
    body: () => body.open(onBytes),
    signal,
  };
  const res = await client.ok(call, (s) => s === 200 || s === 202 || s === 409);
  const raw = await readBounded(res.body, ANSWER_LIMIT);
  let doc: unknown;
  try {
    doc = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : {};
  } catch {
    throw new HttpError({
      code: 'NetworkProtocol',
      method: 'POST',
      url: client.endpoint.urlOf('studies'),
      status: res.statusCode,
      details: `DICOMweb server "${client.name}" answered a STOW-RS request with something that is not DICOM JSON`,
      badBody: true,
    });
  }
  const outcomes = parseStowAnswer(doc);
  if (res.statusCode === 409 && outcomes.length === 0) {
    const url = client.endpoint.urlOf('studies');
    const details = `DICOMweb server "${client.name}" refused a STOW-RS request (HTTP 409) without saying which instances`;
    throw new HttpError({ code: 'NetworkProtocol', method: 'POST', url, status: 409, details });
  }
  return outcomes;
}

/** The acknowledged instances that a QIDO-RS of their series does not list (one query per series). */
async function confirm(state: StowState, task: SendTask<StowState>, client: DicomWebClient): Promise<NamedInstance[]> {
  const bySeries = new Map<string, number[]>();
  state.plan.forEach((p, i) => {
    if (state.outcomes[String(i)] !== STORED) return;
    const key = `${p.StudyInstanceUID}/${p.SeriesInstanceUID}`;
    bySeries.set(key, [...(bySeries.get(key) ?? []), i]);
  });
  const missing: NamedInstance[] = [];
  for (const [key, idx] of bySeries) {
    const found = new Set<string>();
    const list = await retry(
      (_n, signal) => client.qidoAll(`studies/${key.replace('/', '/series/')}/instances?includefield=00080018`, signal),
      retryOptionsFromConfig({ Transfers: { MaxHttpRetries: 3, RetryBudget: 60 } }, { signal: task.signal }),
    );
    for (const item of Array.isArray(list) ? list : []) {
      const v = (item as Record<string, { Value?: unknown[] }>)['00080018']?.Value?.[0];
      if (typeof v === 'string') found.add(v);
    }
    for (const i of idx) {
      const p = state.plan[i];
      if (p && !found.has(p.SOPInstanceUID)) missing.push({ ID: p.ID, SOPInstanceUID: p.SOPInstanceUID, Reason: 'not found by QIDO-RS' });
    }
  }
  return missing;
}

function refusedOf(state: StowState): NamedInstance[] {
  const out: NamedInstance[] = [];
  state.plan.forEach((p, i) => {
    const o = state.outcomes[String(i)];
    if (o !== undefined && o !== STORED) out.push({ ID: p.ID, SOPInstanceUID: p.SOPInstanceUID, Reason: o });
  });
  return out;
}

function report(state: StowState, task: SendTask<StowState>, unconfirmed: NamedInstance[]): void {
  const refused = refusedOf(state);
  const stored = state.plan.length - refused.length - unconfirmed.length;
  task.setContent({
    StoredInstances: stored,
    RefusedInstancesCount: refused.length,
    RefusedInstances: refused.slice(0, LISTED),
    UnconfirmedInstancesCount: unconfirmed.length,
    UnconfirmedInstances: unconfirmed.slice(0, LISTED),
    Waiting: undefined,
  });
}

/** The DICOMweb servers of DicomWeb.Servers as destinations, for the jobs and the dashboard. */
export class DicomWebDirectory implements DestinationDirectory<StowState> {
  readonly #deps: DicomWebDestinationDeps;

  constructor(deps: DicomWebDestinationDeps) {
    this.#deps = deps;
  }

  names(): string[] {
    return this.#deps.servers.names();
  }

  get(name: string): DicomWebDestination {
    this.#deps.servers.get(name);
    return new DicomWebDestination(this.#deps, name);
  }

  /** Reachable: a QIDO-RS of one study answered within a few seconds. */
  async statusAll(): Promise<DestinationStatus[]> {
    return Promise.all(
      this.names().map(async (name): Promise<DestinationStatus> => {
        const started = Date.now();
        let error: string | undefined;
        try {
          await this.#deps.servers.client(name).getJson('studies?limit=1', AbortSignal.timeout(3000));
        } catch (e) {
          error = e instanceof Error ? e.message : String(e);
        }
        return {
          Name: name,
          Kind: 'dicomweb-server',
          Url: displayUrl(this.#deps.servers.get(name).url),
          Reachable: error === undefined,
          RttMs: error === undefined ? Date.now() - started : null,
          Status: 'dicomweb',
          ...(error !== undefined ? { Error: error } : {}),
        };
      }),
    );
  }
}
