// The node as a DICOM client (SCU) on dcmjs-dimse: C-ECHO, and C-STORE of stored instances exactly as they are
// stored (the bytes after the file meta group go on the wire untouched: no parse, no transcoding), over several
// associations at once that share one queue, each holding one instance in memory at a time (and the next).
import dimse from 'dcmjs-dimse';
import { XferError } from '../errors.ts';
import { TS } from '../dicom/dataset.ts';

const { Client, Dataset } = dimse;
const { CEchoRequest, CStoreRequest } = dimse.requests;
const { PresentationContext } = dimse.association;
const PC_ACCEPT = dimse.constants.PresentationContextResult.Accept;

// The library logs every PDU at info level through loglevel: the node says what matters itself.
dimse.log.setLevel('silent');

/** Where and as whom the node speaks to one modality. */
export interface ScuTarget {
  host: string;
  port: number;
  /** The node's AET on the association (the modality's LocalAet, or DicomAet). */
  callingAet: string;
  /** The modality's AET. */
  calledAet: string;
  /** Connection, association and PDU timeout, in milliseconds. */
  timeoutMs: number;
}

/** One stored instance to send: what the association needs to know before its bytes are read. */
export interface ScuInstance {
  /** Orthanc ID, for the caller. */
  id: string;
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
}

/** How the modality answered one C-STORE. */
export interface StoreOutcome {
  instance: ScuInstance;
  /** The DIMSE status (0 success; 0xB000, 0xB006, 0xB007 stored with a warning; anything else a failure). */
  status: number;
  kind: 'success' | 'warning' | 'failure';
  /** The modality's error comment, or why the node did not send the instance. */
  comment?: string;
}

/** Statuses of C-STORE under which the instance counts as stored, with a warning. */
const WARNING_STATUSES = new Set([0xb000, 0xb006, 0xb007]);

/** DIMSE status for an instance the node could not offer: no presentation context was accepted for it. */
export const STATUS_NOT_ACCEPTED = 0x0122;

export function outcomeKind(status: number): StoreOutcome['kind'] {
  if (status === 0) return 'success';
  return WARNING_STATUSES.has(status) ? 'warning' : 'failure';
}

/**
 * An association that could not be made or broke: a connection refused, a timeout, a rejection. Retryable
 * (NetworkProtocol, as Orthanc's "DicomAssociation" errors), its details in Orthanc's words.
 */
export class AssociationError extends XferError {
  /** The modality refused for good (a permanent rejection): trying again changes nothing. */
  readonly permanent: boolean;
  /** What went wrong, without the AET (for the job's Waiting sentence). */
  readonly why: string;

  constructor(target: ScuTarget, why: string, opts: { cause?: unknown; permanent?: boolean } = {}) {
    super('NetworkProtocol', `DicomAssociation - connecting to AET "${target.calledAet}": ${why}`, { cause: opts.cause });
    this.permanent = opts.permanent === true;
    this.why = why;
  }
}

export function associationError(target: ScuTarget, why: string, cause?: unknown): AssociationError {
  return new AssociationError(target, why, { cause });
}

/** An association error worth another try: not a permanent rejection, not a failure of this node. */
export function isRetryableAssociation(e: unknown): boolean {
  return e instanceof AssociationError && !e.permanent;
}

/** The reasons the library gives, as one line ("Connection refused", "association rejected ..."). */
function networkWhy(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  // "<aet> -> Connection error: connect ECONNREFUSED 127.0.0.1:1" → the tail.
  const m = /Connection error: (.*)$/.exec(text);
  const tail = m?.[1] ?? text;
  if (/ECONNREFUSED/.test(tail)) return `TCP connection refused (${tail})`;
  if (/timeout/i.test(tail)) return `no answer in time (${tail})`;
  return tail;
}

/**
 * The library's connection under a Client, which its types do not show: the Client does not pass on an A-ABORT
 * from the modality, so the node listens to the connection itself and closes the socket.
 */
interface ClientInternals {
  network?: {
    on(event: 'abort', fn: (a: { source: number; reason: number }) => void): void;
    socket?: { destroy(): void; setNoDelay(on: boolean): void };
  };
}

/** Sends the requests added to `client`, and watches the modality's A-ABORT (see ClientInternals). */
function sendOn(client: InstanceType<typeof Client>, target: ScuTarget, onAbort: (why: string) => void): void {
  client.send(target.host, target.port, target.callingAet, target.calledAet, sendOptions(target));
  const network = (client as unknown as ClientInternals).network;
  // Each C-STORE is a few writes then a wait for the answer: Nagle's algorithm would hold the last write back.
  network?.socket?.setNoDelay(true);
  network?.on('abort', (a) => {
    onAbort(`the modality aborted the association (source ${a.source}, reason ${a.reason})`);
    network.socket?.destroy();
  });
}

/** How long a stopped association waits for the answer of the C-STORE in flight before it is aborted. */
const STOP_GRACE_MS = 3000;

/** Sends an A-ABORT, if there is a connection to send it on. */
function abortQuietly(client: InstanceType<typeof Client>): void {
  try {
    client.abort();
  } catch {
    // No connection yet or any more: nothing to abort.
  }
}

/** An association's end, as events of the library tell it: resolves once the connection is closed. */
function whenClosed(
  client: InstanceType<typeof Client>,
  target: ScuTarget,
  signal?: AbortSignal,
): { closed: Promise<XferError | undefined>; aborted: (why: string) => void } {
  let aborted: (why: string) => void = () => {};
  const closed = new Promise<XferError | undefined>((resolve) => {
    let failure: XferError | undefined;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      clearTimeout(fallback);
      clearTimeout(grace);
      resolve(failure);
    };
    // The library closes the socket after a network error; should it not, the association is given up anyway.
    let fallback: NodeJS.Timeout | undefined;
    let grace: NodeJS.Timeout | undefined;
    const failAndClose = (e: XferError) => {
      failure ??= e;
      fallback ??= setTimeout(() => {
        (client as unknown as ClientInternals).network?.socket?.destroy();
        finish();
      }, 5000);
    };
    const onAbort = () => {
      failAndClose(associationError(target, 'the node stopped the association'));
      // The C-STORE in flight may finish for a moment (its answer is then recorded: it is not sent again after
      // a pause or a restart); the association is aborted after its answer, or at the end of that moment.
      grace = setTimeout(() => abortQuietly(client), STOP_GRACE_MS);
    };
    aborted = (why) => failAndClose(associationError(target, why));
    signal?.addEventListener('abort', onAbort, { once: true });
    client.on('associationRejected', (r: { result: number; source: number; reason: number }) => {
      // Result 1 is a permanent rejection (an AET not known there...), 2 a transient one (too busy).
      const why = `association rejected (result ${r.result}, source ${r.source}, reason ${r.reason})`;
      failAndClose(new AssociationError(target, why, { permanent: r.result === 1 }));
    });
    client.on('networkError', (e: unknown) => failAndClose(associationError(target, networkWhy(e), e)));
    client.on('closed', finish);
  });
  return { closed, aborted };
}

function sendOptions(target: ScuTarget) {
  return { connectTimeout: target.timeoutMs, associationTimeout: target.timeoutMs, pduTimeout: target.timeoutMs };
}

/** C-ECHO: resolves when the modality answered success; rejects with an association error otherwise. */
export async function echo(target: ScuTarget, signal?: AbortSignal): Promise<void> {
  const client = new Client();
  const request = new CEchoRequest();
  let status: number | undefined;
  request.on('response', (r: InstanceType<typeof dimse.responses.Response>) => {
    status = r.getStatus();
  });
  client.addRequest(request);
  const { closed, aborted } = whenClosed(client, target, signal);
  sendOn(client, target, aborted);
  const failure = await closed;
  if (failure) throw failure;
  if (status === undefined) throw associationError(target, 'the association ended without an answer to C-ECHO');
  if (status !== 0) {
    throw new XferError('NetworkProtocol', `C-ECHO to AET "${target.calledAet}" answered status 0x${status.toString(16).padStart(4, '0')}`);
  }
}

/**
 * A data set the library sends as it is: the stored bytes after the file meta group, in the stored transfer
 * syntax. Only the two UIDs the request needs are known as elements; the bytes are read just before sending.
 */
class StoredDataset extends Dataset {
  bytes: Buffer | undefined;

  constructor(instance: ScuInstance) {
    super({ SOPClassUID: instance.sopClassUid, SOPInstanceUID: instance.sopInstanceUid }, instance.transferSyntaxUid);
  }

  override getDenaturalizedDataset(): Buffer {
    if (!this.bytes) throw new Error('the instance was not read before sending');
    return this.bytes;
  }
}

/**
 * A C-STORE whose data set is read only when the one before it is answered: the library sends the next request
 * as soon as the previous one is done, so "done" waits for the next instance's bytes to be in memory.
 */
class StoredStoreRequest extends CStoreRequest {
  readonly instance: ScuInstance;
  readonly data: StoredDataset;
  status: number | undefined;
  comment: string | undefined;
  /**
   * Run before the library moves on to the next request (read the next instance, let this one go); false
   * when the association must not go on (it is being aborted).
   */
  beforeNext: () => Promise<boolean> = async () => true;

  constructor(instance: ScuInstance, data: StoredDataset) {
    super(data);
    this.instance = instance;
    this.data = data;
    this.on('response', (r: InstanceType<typeof dimse.responses.Response>) => {
      this.status = r.getStatus();
      const comment = r.getErrorComment();
      if (comment) this.comment = comment;
    });
  }

  override raiseDoneEvent(): void {
    this.beforeNext().then(
      (goOn) => {
        if (goOn) super.raiseDoneEvent();
      },
      () => super.raiseDoneEvent(),
    );
  }
}

/** What one association of a store needs from its caller. */
export interface StoreCallbacks {
  /** The whole stored file of an instance (meta group included). */
  read(instance: ScuInstance): Promise<Buffer>;
  /** Told each instance's outcome as the modality answers it; the next outcome waits for this one to resolve. */
  outcome(o: StoreOutcome): Promise<void>;
}

/** The data set bytes of a stored file (after the meta group), checked to be in the syntax it was planned with. */
export function datasetBytes(file: Buffer, instance: ScuInstance, start: number, fileTs: string): Buffer {
  if (fileTs !== instance.transferSyntaxUid) {
    throw new XferError('CorruptedFile', `instance ${instance.id} changed in the store (transfer syntax ${fileTs})`);
  }
  const data = file.subarray(start);
  // A deflated data set may end on an odd byte; DICOM pads it with one null byte (an odd PDV is refused).
  if (fileTs === TS.DeflatedExplicitLittle && data.length % 2 === 1) return Buffer.concat([data, Buffer.alloc(1)]);
  return data;
}

/** Presentation contexts one association can carry (odd IDs 1 to 255). */
export const MAX_PRESENTATION_CONTEXTS = 128;

/** Uncompressed syntaxes the library proposes for every SOP class anyway. */
const NATIVE = new Set<string>([TS.ImplicitLittle, TS.ExplicitLittle]);

/**
 * The presentation contexts a batch needs: for each SOP class, the library's own one (implicit and explicit
 * little endian), and one per stored transfer syntax, so that the stored syntax can be accepted on its own.
 */
export function contextsNeeded(instances: readonly ScuInstance[]): number {
  const classes = new Set<string>();
  const pairs = new Set<string>();
  for (const i of instances) {
    classes.add(i.sopClassUid);
    pairs.add(`${i.sopClassUid}|${i.transferSyntaxUid}`);
  }
  return classes.size + pairs.size;
}

/**
 * Beside the library's own context per SOP class (implicit and explicit little endian: the modality picks one),
 * one context per uncompressed syntax stored, so that the stored one can be accepted as such (the library
 * adds one per compressed syntax itself).
 */
function proposeStoredSyntaxes(client: InstanceType<typeof Client>, batch: readonly ScuInstance[]): void {
  const seen = new Set<string>();
  for (const i of batch) {
    const key = `${i.sopClassUid}|${i.transferSyntaxUid}`;
    if (seen.has(key) || !NATIVE.has(i.transferSyntaxUid)) continue;
    seen.add(key);
    client.addAdditionalPresentationContext(new PresentationContext(1, i.sopClassUid, i.transferSyntaxUid), true);
  }
}

/**
 * One association carrying `batch`: C-STOREs one after the other, each instance read when its turn comes.
 * Resolves with the instances not answered (the association broke: they go back to the queue) and the error.
 */
export async function storeBatch(
  target: ScuTarget,
  batch: readonly ScuInstance[],
  first: Buffer,
  cb: StoreCallbacks,
  signal?: AbortSignal,
): Promise<{ unanswered: ScuInstance[]; error?: XferError }> {
  const client = new Client();
  const requests = batch.map((i) => new StoredStoreRequest(i, new StoredDataset(i)));
  const firstRequest = requests[0];
  if (!firstRequest) return { unanswered: [] };
  firstRequest.data.bytes = first;
  proposeStoredSyntaxes(client, batch);
  for (const r of requests) client.addRequest(r);
  let closedFlag = false;
  let requeue = false;
  let readError: XferError | undefined;
  // Outcomes are told one after the other, while the association goes on; a failure to record one ends it.
  let outcomes: Promise<void> = Promise.resolve();
  let reportError: unknown;
  const report = (o: StoreOutcome) => {
    outcomes = outcomes
      .then(() => cb.outcome(o))
      .catch((e: unknown) => {
        reportError ??= e;
      });
  };
  const notAccepted: StoredStoreRequest[] = [];
  client.on('associationAccepted', (association: InstanceType<typeof dimse.association.Association>) => {
    const accepted = (r: StoredStoreRequest) =>
      association
        .getPresentationContexts()
        .some(
          ({ context }) =>
            context.getAbstractSyntaxUid() === r.instance.sopClassUid &&
            context.getResult() === PC_ACCEPT &&
            context.getAcceptedTransferSyntaxUid() === r.instance.transferSyntaxUid,
        );
    const sendable = requests.filter(accepted);
    notAccepted.push(...requests.filter((r) => !accepted(r)));
    client.clearRequests();
    // The first instance was read before the association: when it cannot go, none goes on this one (the
    // others come back to the queue; the next association starts with one that can).
    if (sendable[0] !== firstRequest) {
      requeue = true;
      return;
    }
    for (const r of sendable) client.addRequest(r);
    sendable.forEach((r, k) => {
      const next = sendable[k + 1];
      r.beforeNext = async () => {
        r.data.bytes = undefined;
        report({ instance: r.instance, status: r.status ?? -1, kind: outcomeKind(r.status ?? -1), comment: r.comment });
        if (closedFlag) return false;
        // Stopped (pause, shutdown) or unable to record: this answer is kept, nothing more is sent.
        if (signal?.aborted || reportError !== undefined) {
          abortQuietly(client);
          return false;
        }
        if (!next) return true;
        try {
          next.data.bytes = await cb.read(next.instance);
        } catch (e) {
          readError ??= e instanceof XferError ? e : new XferError('InternalError', String(e), { cause: e });
          abortQuietly(client);
          return false;
        }
        if (!signal?.aborted) return true;
        abortQuietly(client);
        return false;
      };
    });
  });
  const { closed, aborted } = whenClosed(client, target, signal);
  sendOn(client, target, aborted);
  let error = await closed;
  closedFlag = true;
  await outcomes;
  if (readError) error = readError;
  for (const r of notAccepted) {
    report({
      instance: r.instance,
      status: STATUS_NOT_ACCEPTED,
      kind: 'failure',
      comment:
        `the modality accepted no presentation context for SOP class ${r.instance.sopClassUid} ` +
        `in transfer syntax ${r.instance.transferSyntaxUid}`,
    });
  }
  await outcomes;
  if (reportError !== undefined) throw reportError;
  const unanswered = requests.filter((r) => r.status === undefined && !notAccepted.includes(r)).map((r) => r.instance);
  if (unanswered.length > 0 && !error && !requeue)
    error = associationError(target, 'the association ended before every instance was answered');
  return error ? { unanswered, error } : { unanswered };
}

/** Most instances one association carries before the next is opened (keeps the associations balanced). */
const BATCH_MAX = 100;

/** What a store over several associations needs beyond the target. */
export interface StoreOptions extends StoreCallbacks {
  /** Associations at once (the modality's MaximumAssociations). */
  associations: number;
  /** Where the data set starts in a stored file and its transfer syntax (the caller's DICOM parser). */
  layout(file: Buffer): { start: number; transferSyntaxUid: string };
  signal?: AbortSignal;
}

/** The next batch from the front of the queue: at most `max` instances, within the presentation contexts' limit. */
function takeBatch(queue: ScuInstance[], max: number): ScuInstance[] {
  const batch: ScuInstance[] = [];
  while (queue.length > 0 && batch.length < max) {
    const next = queue[0] as ScuInstance;
    if (batch.length > 0 && contextsNeeded([...batch, next]) > MAX_PRESENTATION_CONTEXTS) break;
    batch.push(next);
    queue.shift();
  }
  return batch;
}

/**
 * Sends every instance over up to `associations` associations at once, each taking its batches from one
 * queue. Each outcome is reported as it comes; rejects with the first association error once every
 * association has stopped (the instances not answered were not reported: a later call sends them again).
 */
export async function storeInstances(target: ScuTarget, instances: readonly ScuInstance[], opts: StoreOptions): Promise<void> {
  const queue = [...instances];
  let failure: XferError | undefined;
  const readData = async (i: ScuInstance): Promise<Buffer> => {
    const file = await opts.read(i);
    const layout = opts.layout(file);
    return datasetBytes(file, i, layout.start, layout.transferSyntaxUid);
  };
  let active = 0;
  const worker = async () => {
    active++;
    try {
      await work();
    } finally {
      active--;
    }
  };
  const work = async () => {
    // Bounded: every round takes at least one instance off the queue, and a failed one stops every worker.
    for (let round = 0; round <= instances.length && queue.length > 0 && !failure && !opts.signal?.aborted; round++) {
      const share = Math.ceil(queue.length / Math.max(1, opts.associations));
      const batch = takeBatch(queue, Math.min(BATCH_MAX, Math.max(1, share)));
      const first = batch[0];
      if (!first) return;
      let bytes: Buffer;
      try {
        bytes = await readData(first);
      } catch (e) {
        queue.unshift(...batch);
        throw e;
      }
      const r = await storeBatch(target, batch, bytes, { read: readData, outcome: opts.outcome }, opts.signal);
      queue.unshift(...r.unanswered);
      if (!r.error) continue;
      // A modality that takes fewer associations at once (it refuses or leaves one waiting) is served by the
      // others: this one stops quietly. The last association standing reports the failure.
      if (active > 1 && r.unanswered.length === batch.length && !opts.signal?.aborted) return;
      failure ??= r.error;
    }
  };
  const n = Math.max(1, Math.min(opts.associations, queue.length));
  const results = await Promise.allSettled(Array.from({ length: n }, () => worker()));
  const thrown = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (thrown) throw thrown.reason;
  if (failure) throw failure;
}
