// One association of the node's DICOM server, on dcmjs-dimse's Scp: the negotiation (scp-policy.ts), then
// each request: C-ECHO, C-STORE streamed to disk (store-scp.ts), C-FIND and C-MOVE (find-scp.ts), and the
// storage commitment reports of modalities (scp-commitment.ts).
import type { Socket } from 'node:net';
import dimse from 'dcmjs-dimse';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import type { ArrivalSink } from '../routing/arrivals.ts';
import type { Store } from '../store/types.ts';
import type { CommitmentSink, MoveSender } from './services.ts';
import { commitmentReportOf } from './scp-commitment.ts';
import { allows, findModality, pickTransferSyntax, refusalOf, serviceOf, type Caller, type PolicyConfig } from './scp-policy.ts';
import { findAnswers, MOVE_STATUS, moveInstances, type Finder, type MoveAnswer } from './find-scp.ts';
import { IncomingInstance, part10Header, storeReceived, type Received } from './store-scp.ts';

const { Scp, Dataset } = dimse;
const { CEchoResponse, CStoreResponse, CFindResponse, CMoveResponse, NEventReportResponse } = dimse.responses;
const { PresentationContextResult, RejectResult, RejectSource, RejectReason, Status } = dimse.constants;
type Association = InstanceType<typeof dimse.association.Association>;
type PresentationContext = InstanceType<typeof dimse.association.PresentationContext>;
type CStoreRequest = InstanceType<typeof dimse.requests.CStoreRequest>;
type CFindRequest = InstanceType<typeof dimse.requests.CFindRequest>;
type CMoveRequest = InstanceType<typeof dimse.requests.CMoveRequest>;
type CEchoRequest = InstanceType<typeof dimse.requests.CEchoRequest>;
type NEventReportRequest = InstanceType<typeof dimse.requests.NEventReportRequest>;
type Response = InstanceType<typeof dimse.responses.Response>;

/** Counters of the DICOM server, per calling AET where it says so (the metrics read them). */
export interface ScpCounters {
  associations: number;
  associationsRejected: number;
  /** Per calling AET. */
  stores: Map<string, { count: number; bytes: number; failures: number }>;
}

export function newCounters(): ScpCounters {
  return { associations: 0, associationsRejected: 0, stores: new Map() };
}

/** What an association needs of the node. */
export interface ScpDeps {
  config: PolicyConfig & Pick<Config, 'DicomScpTimeout'>;
  store: Store;
  /** The staging folder of incoming C-STOREs. */
  incomingDir: string;
  arrivals: ArrivalSink;
  find: Finder;
  move?: MoveSender;
  commitments?: CommitmentSink;
  logger: Logger;
  counters: ScpCounters;
  /** True when the node already serves as many associations as it takes. */
  full(): boolean;
  /** Work in progress (storing, finding, moving), which closing the server waits for. */
  track(work: Promise<unknown>): void;
}

/** The data set handed to cStoreRequest: what was received, never parsed by the DIMSE library. */
class ReceivedDataset extends Dataset {
  constructor(
    readonly received: Received,
    readonly bytes: number,
  ) {
    super({});
  }
}

/** A response of "processing failure" (0x0110) with the reason, cut to what the comment element holds. */
function failure<R extends Response>(response: R, comment: string): R {
  response.setStatus(Status.ProcessingFailure);
  response.setErrorComment(comment.slice(0, 64));
  return response;
}

/** The library's own timers are replaced by DicomScpTimeout (see #watchSilence): it would abort long C-MOVEs. */
const NO_LIBRARY_TIMEOUT = 2 ** 31 - 1;

export class NodeScp extends Scp {
  readonly #deps: ScpDeps;
  readonly #remoteIp: string;
  readonly #socket: Socket;
  #caller: Caller | undefined;
  #incoming: IncomingInstance | undefined;
  /** Requests being answered: the association is not silent while the node works on one. */
  #busy = 0;
  /** Reading is paused while the disk catches up with a data set: the silence is the node's own. */
  #paused = false;
  readonly #moves = new Map<number, AbortController>();

  constructor(socket: Socket, deps: ScpDeps) {
    super(socket, { connectTimeout: NO_LIBRARY_TIMEOUT, associationTimeout: NO_LIBRARY_TIMEOUT, pduTimeout: NO_LIBRARY_TIMEOUT });
    this.#deps = deps;
    this.#remoteIp = socket.remoteAddress ?? '';
    this.#socket = socket;
    this.#watchSilence(socket);
    this.on('networkError', (e: Error) => deps.logger.debug({ err: e.message, remote: this.#remoteIp }, 'DICOM association error'));
    socket.on('close', () => {
      this.#incoming?.writable.destroy();
      for (const c of this.#moves.values()) c.abort();
    });
  }

  /** DicomScpTimeout: an association silent that long (and not waiting for the node) is closed. */
  #watchSilence(socket: Socket): void {
    const seconds = this.#deps.config.DicomScpTimeout;
    socket.setTimeout(seconds > 0 ? seconds * 1000 : 0);
    socket.on('timeout', () => {
      if (this.#busy > 0 || this.#paused) return;
      this.#deps.logger.info(
        { remote: this.#remoteIp, aet: this.#caller?.callingAet },
        'DICOM association silent for DicomScpTimeout: closed',
      );
      socket.destroy();
    });
  }

  override associationRequested(association: Association): void {
    const { config, counters } = this.#deps;
    const callingAet = association.getCallingAeTitle().trim();
    const calledAet = association.getCalledAeTitle().trim();
    const caller: Caller = { callingAet, calledAet, remoteIp: this.#remoteIp, modality: findModality(config, callingAet, this.#remoteIp) };
    const log = this.#deps.logger.child({ aet: callingAet, called: calledAet, remote: this.#remoteIp });
    const refused = this.#refusal(association, caller);
    if (refused) {
      counters.associationsRejected++;
      log.info(`DICOM association refused: ${refused.why}`);
      this.sendAssociationReject(refused.result, refused.source, refused.reason);
      return;
    }
    this.#caller = caller;
    counters.associations++;
    log.debug('DICOM association accepted');
    this.sendAssociationAccept();
  }

  /** Why an association is refused (A-ASSOCIATE-RJ result, source, reason), after its contexts are negotiated. */
  #refusal(association: Association, caller: Caller): { result: number; source: number; reason: number; why: string } | undefined {
    const { config } = this.#deps;
    if (this.#deps.full()) {
      const why = 'too many associations';
      return {
        result: RejectResult.Transient,
        source: RejectSource.ServiceProviderPresentation,
        reason: RejectReason.LocalLimitExceeded,
        why,
      };
    }
    const refusal = refusalOf(config, caller);
    if (refusal === 'called-aet') {
      const why = `called AET is not ${config.DicomAet}`;
      return { result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CalledAeNotRecognized, why };
    }
    if (refusal === 'calling-aet') {
      const why = 'unknown calling AET';
      return { result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CallingAeNotRecognized, why };
    }
    let accepted = 0;
    for (const { context } of association.getPresentationContexts()) {
      if (this.#negotiate(context, caller)) accepted++;
    }
    if (accepted === 0) {
      const why = 'no presentation context accepted';
      return { result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.NoReasonGiven, why };
    }
    return undefined;
  }

  /** Sets the result of one presentation context; true when accepted. */
  #negotiate(context: PresentationContext, caller: Caller): boolean {
    const service = serviceOf(context.getAbstractSyntaxUid().replace(/\0+$/, '').trim());
    if (service === undefined) {
      context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      return false;
    }
    if (!allows(this.#deps.config, caller.modality, service)) {
      context.setResult(PresentationContextResult.RejectUser);
      return false;
    }
    const ts = pickTransferSyntax(service, context.getTransferSyntaxUids());
    if (ts === undefined) {
      context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
      return false;
    }
    context.setResult(PresentationContextResult.Accept, ts);
    return true;
  }

  /** The SCU aborted: whatever it was sending is dropped, and the connection closed. */
  override abort(): void {
    this.#incoming?.writable.destroy();
    this.#socket.destroy();
  }

  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }

  override cEchoRequest(request: CEchoRequest, callback: (response: InstanceType<typeof CEchoResponse>) => void): void {
    const response = CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  override createStoreWritableStream(context: PresentationContext, request: CStoreRequest): import('node:stream').Writable {
    const header = part10Header(
      request.getAffectedSopClassUid() ?? '',
      request.getAffectedSopInstanceUid() ?? '',
      context?.getAcceptedTransferSyntaxUid() ?? '1.2.840.10008.1.2',
      this.#caller?.callingAet ?? '',
    );
    const socket = this.#socket;
    this.#incoming = new IncomingInstance(this.#deps.incomingDir, header, {
      pause: () => {
        this.#paused = true;
        socket.pause();
      },
      resume: () => {
        this.#paused = false;
        socket.resume();
      },
    });
    return this.#incoming.writable;
  }

  override createDatasetFromStoreWritableStream(
    _writable: import('node:stream').Writable,
    _context: PresentationContext,
    callback: (dataset: InstanceType<typeof Dataset>) => void,
  ): void {
    const incoming = this.#incoming;
    this.#incoming = undefined;
    if (!incoming) {
      callback(new ReceivedDataset({ error: new Error('no data set') }, 0));
      return;
    }
    this.#busy++;
    const done = incoming.received
      .then((received) => callback(new ReceivedDataset(received, incoming.bytes)))
      .catch((e: unknown) => this.#deps.logger.debug({ err: e instanceof Error ? e.message : String(e) }, 'C-STORE not answered'))
      .finally(() => {
        this.#busy--;
      });
    this.#deps.track(done);
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: InstanceType<typeof CStoreResponse>) => void): void {
    this.#answer(
      callback,
      async () => {
        const dataset = request.getDataset();
        const caller = this.#caller as Caller;
        const received: Received = dataset instanceof ReceivedDataset ? dataset.received : { error: new Error('no data set') };
        const outcome = await storeReceived(this.#deps.store, this.#deps.arrivals, received, request.getAffectedSopInstanceUid() ?? '', {
          callingAet: caller.callingAet,
          calledAet: caller.calledAet,
          remoteIp: caller.remoteIp,
        });
        this.#count(caller.callingAet, dataset instanceof ReceivedDataset ? dataset.bytes : 0, outcome.status !== 0);
        if (outcome.status !== 0) {
          this.#deps.logger.info({ aet: caller.callingAet, status: outcome.status, why: outcome.comment }, 'C-STORE refused');
        }
        const response = CStoreResponse.fromRequest(request);
        response.setStatus(outcome.status);
        if (outcome.comment) response.setErrorComment(outcome.comment.slice(0, 64));
        return response;
      },
      (comment) => failure(CStoreResponse.fromRequest(request), comment),
    );
  }

  #count(aet: string, bytes: number, failed: boolean): void {
    const stores = this.#deps.counters.stores;
    const c = stores.get(aet) ?? { count: 0, bytes: 0, failures: 0 };
    stores.set(aet, c);
    c.count++;
    c.bytes += bytes;
    if (failed) c.failures++;
  }

  override cFindRequest(request: CFindRequest, callback: (responses: InstanceType<typeof CFindResponse>[]) => void): void {
    this.#answer(
      callback,
      async () => {
        const answers = await findAnswers(this.#deps.find, request.getDataset()?.getElements() ?? {}, this.#deps.config.DicomAet);
        const out: InstanceType<typeof CFindResponse>[] = [];
        const ts = request.getDataset()?.getTransferSyntaxUid();
        for (const elements of answers.matches) {
          const r = CFindResponse.fromRequest(request);
          r.setStatus(Status.Pending);
          r.setDataset(new Dataset(elements, ts));
          out.push(r);
        }
        const done = CFindResponse.fromRequest(request);
        done.setStatus(answers.status);
        if (answers.comment) done.setErrorComment(answers.comment.slice(0, 64));
        out.push(done);
        return out;
      },
      (comment) => [failure(CFindResponse.fromRequest(request), comment)],
    );
  }

  override cMoveRequest(request: CMoveRequest, callback: (responses: InstanceType<typeof CMoveResponse>[]) => void): void {
    const id = Number(request.getMessageId());
    const abort = new AbortController();
    this.#moves.set(id, abort);
    const respond = (a: MoveAnswer) => {
      const r = CMoveResponse.fromRequest(request);
      r.setStatus(a.status);
      // The remaining count belongs to pending (and cancelled) answers only; a final answer leaves it out, as Orthanc does.
      if (a.status === MOVE_STATUS.Pending || a.status === MOVE_STATUS.Cancel) r.setRemaining(a.remaining);
      r.setCompleted(a.completed);
      r.setFailures(a.failed);
      r.setWarnings(a.warning);
      if (a.comment) r.setErrorComment(a.comment.slice(0, 64));
      return r;
    };
    this.#answer(
      callback,
      async () => {
        try {
          const destination = String(request.getCommandDataset().getElement('MoveDestination') ?? '').trim();
          const elements = request.getDataset()?.getElements() ?? {};
          // The library takes one call of the callback per request: pending answers go out on their own.
          const pending = (p: MoveAnswer) => this.sendResponse(request, respond(p));
          const final = await moveInstances(this.#deps.find, this.#deps.move, elements, destination, abort.signal, pending);
          return [respond(final)];
        } finally {
          this.#moves.delete(id);
        }
      },
      (comment) => [failure(CMoveResponse.fromRequest(request), comment)],
    );
  }

  override cCancelRequest(request: InstanceType<typeof dimse.requests.CCancelRequest>): void {
    this.#moves.get(Number(request.getMessageIdBeingRespondedTo()))?.abort();
  }

  override nEventReportRequest(
    request: NEventReportRequest,
    callback: (response: InstanceType<typeof NEventReportResponse>) => void,
  ): void {
    this.#answer(
      callback,
      async () => {
        const response = NEventReportResponse.fromRequest(request);
        const caller = this.#caller as Caller;
        const report = commitmentReportOf(request, caller.callingAet);
        if (!this.#deps.commitments) {
          response.setStatus(Status.ProcessingFailure);
          return response;
        }
        await this.#deps.commitments.report(report);
        response.setStatus(Status.Success);
        return response;
      },
      (comment) => failure(NEventReportResponse.fromRequest(request), comment),
    );
  }

  /** Runs a request's work and hands its response to the library; a failure answers what `failed` makes of it. */
  #answer<R extends Response | Response[]>(callback: (r: R) => void, work: () => Promise<R>, failed: (comment: string) => R): void {
    this.#busy++;
    const done = work()
      .catch((e: unknown) => {
        const comment = e instanceof Error ? e.message : String(e);
        this.#deps.logger.warn({ err: comment, aet: this.#caller?.callingAet }, 'DICOM request failed');
        return failed(comment);
      })
      .then(callback)
      // Answering on a connection that just broke: nothing to tell anyone, and nothing may crash the node.
      .catch((e: unknown) => this.#deps.logger.debug({ err: e instanceof Error ? e.message : String(e) }, 'DICOM answer not sent'))
      .finally(() => {
        this.#busy--;
      });
    this.#deps.track(done);
  }
}
