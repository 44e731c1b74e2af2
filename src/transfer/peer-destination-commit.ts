// The end of a push to a transfers peer: the commit (docs/protocol.md#push-mode, step 5), asynchronous and
// followed to its end with the extension async-commit, and what a sender does when the answer was lost:
// ask the peer whether it holds every instance.
import { ERRORS, XferError, isXferError } from '../errors.ts';
import { PeerHttpError } from '../peers/client.ts';
import type { CommitState, InstanceInfo } from '../protocol/wire.ts';
import type { PeerCapabilities } from './capabilities.ts';
import type { PushTransaction } from './peer-api.ts';
import { isNotFound, isRemoteCorruptedFile, type TransferRun } from './run.ts';
import { isRetryable, realClock } from '../util/retry.ts';
import { mapLimit } from '../util/concurrency.ts';

/** Instances per `POST /transfers/have`. */
const HAVE_BATCH = 10_000;
/** Delays between two looks at an asynchronous commit. */
const COMMIT_POLL_MIN_MS = 100;
const COMMIT_POLL_MAX_MS = 2000;
/** Seconds a look at an asynchronous commit may wait on the peer for the commit to end. */
const COMMIT_WAIT_S = 20;
/** Most looks at one asynchronous commit (a bound; PeerCommitTimeout ends it sooner when set). */
const MAX_LOOKS = 1_000_000;

/** The IDs among `instances` that the peer holds with the same MD5 (extension dedupe), in batches. */
export async function peerHolds(r: TransferRun, instances: readonly InstanceInfo[]): Promise<Set<string>> {
  const held = new Set<string>();
  for (let at = 0; at < instances.length; at += HAVE_BATCH) {
    const batch = instances.slice(at, at + HAVE_BATCH);
    const ids = await r.mustCall('asking which instances the peer holds', (signal) => r.api.have(batch, { signal }));
    const asked = new Set(batch.map((i) => i.ID));
    for (const id of ids) if (asked.has(id)) held.add(id);
  }
  return held;
}

/**
 * Whether the peer stores every instance with its MD5: through `POST /transfers/have` with dedupe, else
 * Orthanc's MD5 of each instance.
 */
async function storedAtPeer(r: TransferRun, caps: PeerCapabilities, instances: readonly InstanceInfo[]): Promise<boolean> {
  try {
    if (caps.has('dedupe')) {
      const held = await peerHolds(r, instances);
      return instances.every((i) => held.has(i.ID));
    }
    await mapLimit(instances, r.threads, async (i) => {
      const md5 = await r.api.instanceMd5(i.ID, { signal: r.ctx.signal });
      if (md5 !== i.MD5) throw new XferError('CorruptedFile', `instance ${i.ID} differs at the peer`);
    });
    return true;
  } catch {
    return false;
  }
}

/**
 * Commits the transaction; with async-commit, the commit answers at once and is followed to its end.
 * Answers false when the transaction is gone and the peer does not hold every instance (a new transaction
 * is needed).
 */
export async function commitPush(
  r: TransferRun,
  caps: PeerCapabilities,
  tx: PushTransaction,
  sent: readonly InstanceInfo[],
): Promise<boolean> {
  if (caps.has('async-commit')) return new AsyncCommit(r, tx).run(caps, sent);
  const start = Date.now();
  // An attempt whose answer never came (cut connection, timeout) may have committed all the same.
  let outcomeUnknown = false;
  try {
    await r.call(
      'the commit',
      async (signal) => {
        try {
          return await r.api.commit(tx, { timeoutMs: r.config.Transfers.PeerCommitTimeout * 1000, signal });
        } catch (e) {
          if (!(e instanceof PeerHttpError)) outcomeUnknown = true;
          throw e;
        }
      },
      // A commit refused for bad data (CorruptedFile) fails the same way every time, and the receiver
      // may have dropped the transaction: another attempt would only hide the reason behind a 404.
      (e) => !isRemoteCorruptedFile(e) && isRetryable(e),
    );
    return true;
  } catch (e) {
    if (r.ctx.signal.aborted) throw e;
    // The transaction is gone after an attempt whose answer was lost: the receiver may well have
    // committed it (then removed it). The instances themselves tell.
    if (outcomeUnknown && isNotFound(e) && (await storedAtPeer(r, caps, sent))) {
      r.ctx.log.warn({ path: tx.path }, 'the commit answer was lost, but the peer holds every instance: the transfer is complete');
      return true;
    }
    throw r.failure('the commit', e, start);
  }
}

/**
 * The asynchronous commit (extension async-commit): the commit POST answers `{"State"}` at once, then the
 * transaction's state is read until Success or Failure. A retried POST whose first answer was lost gets the
 * recorded outcome (nothing is committed twice); a transaction found Open (the receiver restarted during the
 * commit) is committed again; one that is gone is checked instance by instance. Bounded by PeerCommitTimeout
 * (when not 0).
 */
class AsyncCommit {
  readonly #r: TransferRun;
  readonly #tx: PushTransaction;
  readonly #start = Date.now();
  #delay = COMMIT_POLL_MIN_MS;
  /** When the commit first found the receiver's disk full. */
  #fullSince: number | undefined;

  constructor(r: TransferRun, tx: PushTransaction) {
    this.#r = r;
    this.#tx = tx;
  }

  #post(): Promise<CommitState> {
    return this.#r.call('the commit', (signal) => this.#r.api.commitAsync(this.#tx, { signal }));
  }

  /** Long poll: the peer answers when the commit ends (or after COMMIT_WAIT_S), so its end is known at once. */
  #look(): Promise<CommitState> {
    const timeoutMs = (COMMIT_WAIT_S + 30) * 1000;
    return this.#r.call('following the commit', (signal) => this.#r.api.commitState(this.#tx, COMMIT_WAIT_S, { signal, timeoutMs }));
  }

  async #pause(): Promise<void> {
    await realClock.sleep(this.#delay, this.#r.ctx.signal);
    this.#delay = Math.min(COMMIT_POLL_MAX_MS, this.#delay * 2);
  }

  async run(caps: PeerCapabilities, sent: readonly InstanceInfo[]): Promise<boolean> {
    const r = this.#r;
    try {
      await this.#follow();
      return true;
    } catch (e) {
      if (r.ctx.signal.aborted) throw e;
      // Gone without a recorded outcome: committed long ago (or during a crash), or dropped.
      if (isNotFound(e)) return storedAtPeer(r, caps, sent);
      if (isXferError(e) && (e.code === 'CorruptedFile' || e.code === 'Timeout') && !(e instanceof PeerHttpError)) throw e;
      throw r.failure('the commit', e, this.#start);
    }
  }

  /** Posts the commit and follows it until it succeeds; throws why it did not. */
  async #follow(): Promise<void> {
    const { q, config } = this.#r;
    const limitMs = config.Transfers.PeerCommitTimeout * 1000;
    let s = await this.#post();
    for (let looks = 0; looks < MAX_LOOKS; looks++) {
      if (s.State === 'Success') return;
      if (s.State === 'Failure')
        throw new XferError('CorruptedFile', `the peer "${q.Peer}" refused the commit: ${s.Details ?? 'no details'}`);
      if (limitMs > 0 && Date.now() - this.#start > limitMs) {
        throw new XferError('Timeout', `the peer "${q.Peer}" did not finish the commit within ${limitMs / 1000} s (PeerCommitTimeout)`);
      }
      const asked = Date.now();
      s = await this.#look();
      // A peer that answers at once although the commit runs (no long poll): wait before asking again.
      if (s.State === 'Committing' && Date.now() - asked < COMMIT_POLL_MIN_MS) await this.#pause();
      if (s.State === 'Open' && s.LastCommitStatus === ERRORS.FullStorage.http) {
        await this.#waitForSpace(s);
        s = await this.#post();
      } else if (s.State === 'Open') {
        // Open: the receiver restarted during the commit and reloaded the transaction intact.
        s = await this.#post();
      }
    }
    throw new XferError('Timeout', 'the commit did not end');
  }

  /**
   * The commit found the receiver's disk full and the transaction is kept: commit again after a pause while
   * the job's outage budget lasts (someone may free space), else fail saying why.
   */
  async #waitForSpace(s: CommitState): Promise<void> {
    const r = this.#r;
    const full = new XferError('FullStorage', `the receiver's disk is full: ${s.LastCommitDetails ?? 'no details'}`);
    this.#fullSince ??= Date.now();
    if (Date.now() - this.#fullSince >= r.config.Transfers.RetryBudget * 1000) throw full;
    r.noteRetry('the commit', full, this.#delay);
    await this.#pause();
  }
}
