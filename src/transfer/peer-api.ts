// The peer side of the transfers protocol as one typed client: every call a transfer makes to a peer
// (lookup, chunks, the push transaction and its extensions, a pull asked of the peer and the peer's job),
// its path spelled once (protocol/paths.ts), every answer parsed through the wire schemas. It sits on
// PeerClient's public calls only; retries stay with the caller, which knows what is worth another try.
import type { Readable } from 'node:stream';
import type { z } from 'zod';
import type { Config } from '../config/types.ts';
import { XferError } from '../errors.ts';
import type { PeerClient, PeerRequestBody } from '../peers/client.ts';
import { buildChunkPath } from '../protocol/chunk-url.ts';
import {
  HAVE_PATH,
  LOOKUP_PATH,
  PULL_PATH,
  PUSH_PATH,
  bucketPath,
  commitPath,
  commitStatePath,
  heldBucketsPath,
  instanceMd5Path,
  jobControlPath,
} from '../protocol/paths.ts';
import {
  CommitStateSchema,
  HaveAnswerSchema,
  HeldBucketsSchema,
  JobHandleSchema,
  LookupAnswerSchema,
  Md5TextSchema,
  PushHandleSchema,
  RemoteJobSchema,
  firstIssue,
  toWireLookupRequest,
  toWirePullTrigger,
  toWirePushCreate,
  type Bucket,
  type CommitState,
  type Compression,
  type InstanceInfo,
  type JobHandle,
  type LookupAnswer,
  type PushCreateBody,
  type RemoteJob,
  type Resource,
} from '../protocol/wire.ts';
import {
  HEADER_ASYNC_COMMIT,
  HEADER_CRC32,
  HEADER_RECEIVED,
  HEADER_WANT_CRC32,
  RECEIVED_VALUE,
  peerCapabilities,
  type PeerCapabilities,
} from './capabilities.ts';

/** A push transaction on the peer: its path (the create answer's `Path`) and the cookie to send back. */
export interface PushTransaction {
  path: string;
  cookie?: string | undefined;
}

/** A peer's answer (status 200) whose document does not have the shape the protocol gives it. */
export class PeerAnswerError extends XferError {
  readonly peer: string;
  /** Where the answer is wrong (`Instances[0].MD5`), "" for the document as a whole. */
  readonly field: string;

  constructor(peer: string, what: string, error: z.ZodError) {
    const { field, message } = firstIssue(error);
    const where = field === '' ? '' : ` at ${field}`;
    super('BadFileFormat', `peer "${peer}" answered ${what} with a malformed document${where}: ${message}`, { cause: error });
    this.name = 'PeerAnswerError';
    this.peer = peer;
    this.field = field;
  }
}

/** Options of one call: its abort signal, its own timeout (else the peer's). */
interface CallOptions {
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
}

/** Options of a bucket PUT. */
interface PutOptions extends CallOptions {
  /** HEADER_CRC32 of the payload (extension bucket-crc32): 8 hex digits, or CRC32_MEMBER for gzip. */
  crc32?: string | undefined;
  /** Told the body's bytes as they leave. */
  onBodyBytes?: ((n: number) => void) | undefined;
}

/** Options of a chunk GET. */
interface ChunkOptions extends CallOptions {
  /** Asks for the payload's CRC-32 (extension bucket-crc32, version 2). */
  wantCrc32?: boolean;
  /** Told the answer's bytes as they are read. */
  onBodyBytes?: ((n: number) => void) | undefined;
}

const JSON_TYPE = { 'content-type': 'application/json' };

export class PeerApi {
  readonly client: PeerClient;
  readonly #sender: string | undefined;
  /** The shortest request-to-headers time of this client's small calls (see rttMs). */
  #minRttMs: number | undefined;

  /** `sender` is the transfer's `sender-transfer-id`, sent on every call of the protocol. */
  constructor(client: PeerClient, sender?: string) {
    this.client = client;
    this.#sender = sender;
  }

  get name(): string {
    return this.client.name;
  }

  /**
   * The link's round-trip time as these calls measured it (ms), undefined before any: the shortest time from
   * a small request (no payload in its body) to its answer's headers. Each also holds the peer's time to
   * answer (and the first call on a connection its set-up): an upper bound, closest on connections kept alive.
   */
  get rttMs(): number | undefined {
    return this.#minRttMs;
  }

  /** Answers `a`, its time counted towards rttMs. */
  #timed<A extends { rttMs: number }>(a: A): A {
    if (Number.isFinite(a.rttMs) && a.rttMs >= 0) this.#minRttMs = Math.min(this.#minRttMs ?? Number.POSITIVE_INFINITY, a.rttMs);
    return a;
  }

  /** `schema`'s reading of `body`, or a PeerAnswerError naming the peer, the answer and the field. */
  #parse<S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S> {
    const r = schema.safeParse(body);
    if (!r.success) throw new PeerAnswerError(this.name, what, r.error);
    return r.data;
  }

  /** Headers of the protocol's calls (docs/protocol.md#headers), with the transaction's cookie. */
  #headers(cookie?: string, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { ...extra };
    if (this.#sender !== undefined) h['sender-transfer-id'] = this.#sender;
    if (cookie) h.cookie = cookie;
    return h;
  }

  /** The extensions the peer lists (capabilities.ts: cached, none from an Orthanc); `call` runs the probe. */
  capabilities(
    config: Pick<Config, 'Transfers'>,
    call: <T>(fn: (signal: AbortSignal | undefined) => Promise<T>) => Promise<T>,
  ): Promise<PeerCapabilities> {
    return peerCapabilities(config, this.client, call);
  }

  /** `POST /transfers/lookup`: the instances of `resources` on the peer, and its Originator. */
  async lookup(resources: readonly Resource[], o: CallOptions = {}): Promise<LookupAnswer> {
    const body = JSON.stringify(toWireLookupRequest(resources));
    const a = await this.client.json({ method: 'POST', path: LOOKUP_PATH, headers: this.#headers(undefined, JSON_TYPE), body, ...o });
    this.#timed(a);
    const l = this.#parse(LookupAnswerSchema, a.body, 'the lookup');
    return { Instances: l.Instances, Originator: l.Originator };
  }

  /** `GET /transfers/chunks/...`: a bucket's payload as a stream, and its CRC-32 when asked and given. */
  async chunks(bucket: Bucket, compression: Compression, o: ChunkOptions = {}): Promise<{ body: Readable; crc32?: string }> {
    // The answer's headers come before its payload: a chunk request is a small call too.
    const res = await this.client.stream({
      method: 'GET',
      path: buildChunkPath(bucket, compression),
      headers: o.wantCrc32 ? { [HEADER_WANT_CRC32]: '2' } : undefined,
      signal: o.signal,
      timeoutMs: o.timeoutMs,
      onBodyBytes: o.onBodyBytes,
      // The payload waits for the bandwidth policy (src/transfer/bandwidth/).
      paced: true,
    });
    this.#timed(res);
    const crc32 = o.wantCrc32 ? res.headers[HEADER_CRC32] : undefined;
    return typeof crc32 === 'string' ? { body: res.body, crc32 } : { body: res.body };
  }

  /** `POST /transfers/have` (dedupe): which of `instances` the peer holds with the same MD5. */
  async have(instances: readonly Pick<InstanceInfo, 'ID' | 'MD5'>[], o: CallOptions = {}): Promise<string[]> {
    const body = JSON.stringify(instances.map((i) => ({ ID: i.ID, MD5: i.MD5 })));
    const a = await this.client.json({ method: 'POST', path: HAVE_PATH, headers: this.#headers(undefined, JSON_TYPE), body, ...o });
    this.#timed(a);
    return this.#parse(HaveAnswerSchema, a.body, 'which instances it holds').Instances;
  }

  /** `POST /transfers/push`: creates a transaction. */
  async createPush(create: PushCreateBody, o: CallOptions = {}): Promise<PushTransaction> {
    const body = JSON.stringify(toWirePushCreate(create));
    const a = await this.client.json({ method: 'POST', path: PUSH_PATH, headers: this.#headers(undefined, JSON_TYPE), body, ...o });
    this.#timed(a);
    const handle = this.#parse(PushHandleSchema, a.body, 'the creation of a push transaction');
    return a.cookie ? { path: handle.Path, cookie: a.cookie } : { path: handle.Path };
  }

  /**
   * `PUT {tx}/{segment}`: one bucket or a span. Answers the receiver's count of the bytes received and its
   * clock (extension receiver-progress) when it gave them.
   */
  async putBucket(
    tx: PushTransaction,
    segment: string,
    body: PeerRequestBody,
    o: PutOptions = {},
  ): Promise<{ received?: { bytes: number; at: number } }> {
    const extra: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (o.crc32) extra[HEADER_CRC32] = o.crc32;
    const a = await this.client.buffer({
      method: 'PUT',
      path: bucketPath(tx.path, segment),
      headers: this.#headers(tx.cookie, extra),
      body,
      signal: o.signal,
      timeoutMs: o.timeoutMs,
      onBodyBytes: o.onBodyBytes,
      // The payload waits for the bandwidth policy (src/transfer/bandwidth/).
      paced: true,
    });
    const value = a.headers[HEADER_RECEIVED];
    const m = typeof value === 'string' ? RECEIVED_VALUE.exec(value) : null;
    return m ? { received: { bytes: Number(m[1]), at: Number(m[2]) } } : {};
  }

  /** `POST {tx}/commit`, answered when the commit ends (the plugin's commit). */
  async commit(tx: PushTransaction, o: CallOptions = {}): Promise<void> {
    await this.client.json({ method: 'POST', path: commitPath(tx.path), headers: this.#headers(tx.cookie), body: '', ...o });
  }

  /** `POST {tx}/commit` answered at once (extension async-commit): where the commit stands. */
  async commitAsync(tx: PushTransaction, o: CallOptions = {}): Promise<CommitState> {
    const headers = this.#headers(tx.cookie, { [HEADER_ASYNC_COMMIT]: '1' });
    const a = await this.client.json({ method: 'POST', path: commitPath(tx.path), headers, body: '', ...o });
    return this.#parse(CommitStateSchema, a.body, 'the commit');
  }

  /** `GET {tx}/state?wait=` (async-commit): where the transaction stands, once its commit ends or after `waitSeconds`. */
  async commitState(tx: PushTransaction, waitSeconds: number, o: CallOptions = {}): Promise<CommitState> {
    const a = await this.client.json({
      method: 'GET',
      path: commitStatePath(tx.path, waitSeconds),
      headers: this.#headers(tx.cookie),
      ...o,
    });
    return this.#parse(CommitStateSchema, a.body, 'the state of the commit');
  }

  /** `GET {tx}/buckets` (resume): the buckets the transaction holds. */
  async heldBuckets(tx: PushTransaction, o: CallOptions = {}): Promise<Set<number>> {
    const a = await this.client.json({ method: 'GET', path: heldBucketsPath(tx.path), headers: this.#headers(tx.cookie), ...o });
    this.#timed(a);
    return new Set(this.#parse(HeldBucketsSchema, a.body, 'which buckets the transaction holds').Buckets);
  }

  /** `DELETE {tx}`: discards the transaction. */
  async discard(tx: PushTransaction, o: CallOptions = {}): Promise<void> {
    await this.client.buffer({ method: 'DELETE', path: tx.path, headers: this.#headers(tx.cookie), ...o });
  }

  /** Orthanc's MD5 of an instance the peer stores. */
  async instanceMd5(id: string, o: CallOptions = {}): Promise<string> {
    const a = await this.client.buffer({ method: 'GET', path: instanceMd5Path(id), ...o });
    return this.#parse(Md5TextSchema, a.body.toString('utf8'), `the MD5 of instance ${id}`);
  }

  /** `POST /transfers/pull` on the peer: it pulls `p.Resources` from its peer `p.Peer` (send in pull mode). */
  async submitPull(
    p: { Compression: Compression; Originator: string; Peer: string; Resources: readonly Resource[] },
    o: CallOptions = {},
  ): Promise<JobHandle> {
    const a = await this.client.json({
      method: 'POST',
      path: PULL_PATH,
      headers: this.#headers(),
      body: JSON.stringify(toWirePullTrigger(p)),
      ...o,
    });
    return this.#parse(JobHandleSchema, a.body, 'the pull it was asked for');
  }

  /** Orthanc's `GET /jobs/{id}` on the peer (`job` is the handle's Path). */
  async job(job: string, o: CallOptions = {}): Promise<RemoteJob> {
    const a = await this.client.json({ method: 'GET', path: job, ...o });
    return this.#parse(RemoteJobSchema, a.body, `its job ${job}`);
  }

  /** Orthanc's `POST /jobs/{id}/{action}` on the peer. */
  async controlJob(job: string, action: 'pause' | 'resume' | 'cancel' | 'resubmit', o: CallOptions = {}): Promise<void> {
    await this.client.buffer({ method: 'POST', path: jobControlPath(job, action), headers: JSON_TYPE, body: '{}', ...o });
  }
}
