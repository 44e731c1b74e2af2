// A send in pull mode (docs/protocol.md#send-in-pull-mode) seen from the sending node: the peer runs the
// PullTransfer, and this node keeps a RemotePullTransfer job that follows it through the peer's
// GET /jobs/{id}, mirroring its state, progress, figures and outcome, so that the send shows in /jobs, the CLI
// and the dashboard like any other. Pausing, resuming, cancelling and resubmitting it do the same to the
// peer's job (Orthanc's /jobs/{id}/{action}, which the plugin's peers answer); when the peer refuses, the job
// says so.
import type { Config } from '../config/types.ts';
import { ERRORS, XferError, isXferError, type ErrorCode } from '../errors.ts';
import type { JobRunContext, JobRunner, JobsEngine, StopReason } from '../jobs/engine.ts';
import type { PeerClient } from '../peers/client.ts';
import { formatOrthancTimestamp } from '../protocol/progress.ts';
import { toWireRemoteJobHandle, type RemoteJob, type RemoteJobHandle, type TransferQuery } from '../protocol/wire.ts';
import { isRetryable, realClock, retry, retryOptionsFromConfig } from '../util/retry.ts';
import { REMOTE_PULL_KIND, type FollowerPrivate, type RemotePullContent, type RemotePullQuery } from './job-kinds.ts';
import type { TransferDeps } from './jobs.ts';
import { PeerApi } from './peer-api.ts';
import { plainCause, waitingText } from './waiting.ts';
import { displayUrl } from '../util/url.ts';

export type { RemotePullQuery };

type FollowerContext = JobRunContext<RemotePullQuery, RemotePullContent, FollowerPrivate>;

/** Time between two readings of the peer's job. */
const POLL_MS = 500;
/** Seconds a control call to the peer (pause, cancel...) may take. */
const CONTROL_TIMEOUT_S = 10;
/** Content keys of the peer's job that describe it from the peer's side, not copied. */
const NOT_MIRRORED = new Set(['Peer', 'Resources', 'Compression', 'Originator', 'Waiting', 'NextTryTime']);

const CODE_BY_STATUS = new Map<number, ErrorCode>(
  (Object.entries(ERRORS) as [ErrorCode, (typeof ERRORS)[ErrorCode]][]).map(([code, spec]) => [spec.status, code]),
);

/**
 * POST /transfers/send to a peer with RemoteSelf: asks the peer to pull (within the request, as the
 * plugin), then queues the job that follows the peer's job here. Answers the plugin's handle, unchanged.
 */
export async function startRemotePull(
  config: Config,
  engine: JobsEngine,
  client: PeerClient,
  peerUrl: string,
  originator: string,
  remoteSelf: string,
  q: TransferQuery,
  sender: string,
): Promise<RemoteJobHandle> {
  const api = new PeerApi(client, sender);
  // The peer pulls: "gzip" lets it use zstd when both list it, and any peer (Orthanc's plugin too) reads it.
  const compression = q.Compression === 'zstd' ? 'gzip' : q.Compression;
  const trigger = { Compression: compression, Originator: originator, Peer: remoteSelf, Resources: q.Resources };
  const handle = await retry((_a, signal) => api.submitPull(trigger, { signal }), retryOptionsFromConfig(config));
  // Shown to users and in job Content: never the peer's credentials.
  const url = displayUrl(peerUrl) + handle.Path.replace(/^\/+/, '/');
  const query: RemotePullQuery = {
    Peer: q.Peer,
    RemoteJob: handle.ID,
    RemotePath: handle.Path,
    URL: url,
    Resources: q.Resources,
    Compression: q.Compression,
    Priority: q.Priority,
    SenderTransferID: sender,
  };
  engine.submit('RemotePullTransfer', { ...query }, q.Priority, {
    Peer: q.Peer,
    Resources: q.Resources,
    Compression: q.Compression,
    RemoteJob: handle.ID,
    RemoteJobURL: url,
  });
  return toWireRemoteJobHandle(q.Peer, handle.ID, url);
}

export class RemotePullFollower implements JobRunner<RemotePullQuery, RemotePullContent, FollowerPrivate> {
  readonly kind = REMOTE_PULL_KIND;
  readonly watcher = true;
  readonly #deps: TransferDeps;

  constructor(deps: TransferDeps) {
    this.#deps = deps;
  }

  async run(ctx: FollowerContext): Promise<void> {
    const q = ctx.query;
    const client = new PeerApi(this.#deps.peer(q.Peer).client);
    const priv = ctx.loadPrivate();
    // A resubmitted follower (it ran before, its state was dropped when it ended): when the peer's job
    // has failed too (or was canceled with it), the peer's job starts again.
    if (!priv && ctx.content().RemoteState !== undefined) {
      const now = await client
        .job(q.RemotePath, { signal: ctx.signal })
        .then((j) => j.State)
        .catch(() => undefined);
      if (now === 'Failure') await this.#control(ctx, client, q, 'resubmit', true);
    }
    if (priv?.pausedRemote) await this.#control(ctx, client, q, 'resume', false);
    await ctx.savePrivate({} satisfies FollowerPrivate);
    try {
      await this.#follow(ctx, client, q);
    } catch (e) {
      if (ctx.signal.aborted && (ctx.signal.reason as StopReason) === 'pause') {
        // Paused here: the peer's job is paused too, and resumed with this one.
        if (await this.#control(ctx, client, q, 'pause', false)) await ctx.savePrivate({ pausedRemote: true } satisfies FollowerPrivate);
      }
      throw e;
    }
  }

  /** Reads the peer's job until it ends, mirroring it; throws its failure. */
  async #follow(ctx: FollowerContext, client: PeerApi, q: RemotePullQuery): Promise<void> {
    const config = this.#deps.config;
    let waiting = false;
    for (let polls = 0; polls < Number.MAX_SAFE_INTEGER; polls++) {
      let job: RemoteJob;
      try {
        job = await retry(
          (_a, signal) => client.job(q.RemotePath, { signal }),
          retryOptionsFromConfig(config, {
            signal: ctx.signal,
            // A 404 means the peer no longer knows the job: no other attempt will change that.
            retryable: (e) => (e as { status?: unknown }).status !== 404 && isRetryable(e),
            onRetry: (info) => {
              waiting = true;
              ctx.setContent({
                Waiting: waitingText(q.Peer, info.error, info.delayMs),
                NextTryTime: formatOrthancTimestamp(Date.now() + info.delayMs),
              });
            },
          }),
        );
      } catch (e) {
        if (ctx.signal.aborted) throw e;
        if ((e as { status?: unknown }).status === 404) {
          throw new XferError(
            'UnknownResource',
            `peer "${q.Peer}" no longer knows its job ${q.RemoteJob} (its job history is full, or it restarted)`,
          );
        }
        throw new XferError(
          'NetworkProtocol',
          `lost track of the pull by peer "${q.Peer}": ${plainCause(q.Peer, e)}; its job may still run there: ${q.URL}`,
          { cause: e },
        );
      }
      const state = job.State;
      const mirrored: Record<string, unknown> = { RemoteState: state };
      for (const [k, v] of Object.entries(job.Content ?? {})) if (!NOT_MIRRORED.has(k)) mirrored[k] = v;
      const theirs = job.Content?.Waiting;
      if (typeof theirs === 'string') mirrored.Waiting = `the pull by ${q.Peer} waits: ${theirs}`;
      else if (waiting || ctx.content().Waiting !== undefined) mirrored.Waiting = undefined;
      if (typeof theirs !== 'string') mirrored.NextTryTime = undefined;
      waiting = false;
      ctx.setContent(mirrored);
      if (typeof job.Progress === 'number') ctx.setProgress(job.Progress / 100);
      if (state === 'Success') return;
      if (state === 'Failure') {
        const status = job.ErrorCode;
        const code = (status !== undefined ? CODE_BY_STATUS.get(status) : undefined) ?? 'NetworkProtocol';
        const desc = job.ErrorDescription ?? 'failed';
        const details = job.ErrorDetails ? `: ${job.ErrorDetails}` : '';
        throw new XferError(code, `the pull by peer "${q.Peer}" (its job ${q.RemoteJob}) failed: ${desc}${details}`);
      }
      await realClock.sleep(POLL_MS, ctx.signal);
    }
  }

  /**
   * POST {RemotePath}/{action} on the peer, best effort. Answers whether the peer did it; what happened is
   * shown in Content.RemoteControl. With `must`, a refusal fails the job instead.
   */
  async #control(
    ctx: FollowerContext,
    client: PeerApi,
    q: RemotePullQuery,
    action: 'pause' | 'resume' | 'cancel' | 'resubmit',
    must: boolean,
  ): Promise<boolean> {
    try {
      await client.controlJob(q.RemotePath, action, { timeoutMs: CONTROL_TIMEOUT_S * 1000 });
      ctx.setContent({ RemoteControl: `${action}: done on peer "${q.Peer}"` });
      return true;
    } catch (e) {
      const why = plainCause(q.Peer, e);
      ctx.log.warn({ action, peer: q.Peer, err: why }, 'the peer did not apply the control to its job');
      ctx.setContent({ RemoteControl: `${action}: not done on peer "${q.Peer}" (${why}); its job ${q.RemoteJob} is unchanged there` });
      if (must) throw new XferError('NetworkProtocol', `peer "${q.Peer}" did not ${action} its job ${q.RemoteJob}: ${why}`, { cause: e });
      return false;
    }
  }

  /** Cancelling the follower cancels the peer's job; when the peer refuses, Content.RemoteControl says so. */
  async cancelled(ctx: FollowerContext): Promise<void> {
    const q = ctx.query;
    try {
      const client = new PeerApi(this.#deps.peer(q.Peer).client);
      await this.#control(ctx, client, q, 'cancel', false);
    } catch (e) {
      ctx.setContent({ RemoteControl: `cancel: not done (${isXferError(e) ? (e.details ?? e.message) : String(e)})` });
    }
  }
}
