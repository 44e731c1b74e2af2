// What each kind of transfer job persists in the jobs database (its query, public Content and private
// state), as schemas: the jobs engine checks every value read back against them (see jobs/engine.ts).
import { z } from 'zod';
import type { JobKind } from '../jobs/engine.ts';

/** Levels as stored: already normalised by the wire parser when the job was submitted. */
const StoredResource = z.object({ ID: z.string(), Level: z.enum(['Patient', 'Study', 'Series', 'Instance']) });
const StoredCompression = z.enum(['gzip', 'none', 'zstd']);
const Count = z.number().int().nonnegative();
const StoredInstance = z.object({ ID: z.string(), Size: Count, MD5: z.string() });
const StoredBucket = z.array(z.object({ ID: z.string(), Offset: Count, Size: Count }));
const StoredSkipped = z.object({ count: Count, bytes: Count });

/** The serialized form of a push or pull job: its query (docs/protocol.md#job-persistence). */
export const TransferJobQuerySchema = z.object({
  Resources: z.array(StoredResource),
  Peer: z.string(),
  Compression: StoredCompression,
  Priority: z.number().int(),
  SenderTransferID: z.string(),
  Originator: z.string().optional(),
  /** The routing rule that made the job (src/routing/), and its key of the batch and destination. */
  Route: z.string().optional(),
  RouteBatch: z.string().optional(),
});
export type TransferJobQuery = z.output<typeof TransferJobQuerySchema>;

/**
 * The Content keys that push and pull both write. Keys this version does not know (written by another
 * version) are kept as they are: the Content is shown, not acted on, beyond the keys listed here.
 */
const TRANSFER_CONTENT = {
  Peer: z.string().optional(),
  Resources: z.array(StoredResource).optional(),
  Compression: StoredCompression.optional(),
  Originator: z.string().optional(),
  Route: z.string().optional(),
  RouteBatch: z.string().optional(),
  Retries: Count.optional(),
  LastRetryCause: z.string().optional(),
  LastRetryTime: z.string().optional(),
  Waiting: z.string().optional(),
  NextTryTime: z.string().optional(),
  PeerExtensions: z.array(z.string()).optional(),
  /** The compression on the wire, once known: "zstd" with a peer that lists it for a compressed transfer. */
  WireCompression: StoredCompression.optional(),
  /** Why the wire's compression differs from the one asked for (zstd asked of a peer without it). */
  CompressionNote: z.string().optional(),
  SkippedInstances: Count.optional(),
  SkippedSizeMB: z.number().optional(),
  SkippedBytes: Count.optional(),
  TotalInstances: Count.optional(),
  TotalSizeMB: z.number().optional(),
  TotalBytes: Count.optional(),
  TotalBuckets: Count.optional(),
  CompletedHttpQueries: Count.optional(),
  BucketRequests: Count.optional(),
  WireBytes: Count.optional(),
  NetworkSpeedKBs: z.number().optional(),
  BucketsInFlight: Count.optional(),
  /** Mbit/s the bandwidth policy allows the transfer now (the peer's RateLimit, the node's), absent when none. */
  RateLimit: z.number().optional(),
  /** The controller's last decisions: [seconds into the run, requests in flight, MB/s measured]. */
  Adaptive: z.array(z.array(z.number().nullable())).optional(),
  /** Where the controller started: from the link's profile (its rate and age) or from the configuration. */
  AdaptiveStart: z
    .object({
      BucketsInFlight: Count,
      Source: z.enum(['profile', 'configuration']),
      ProfileRateMBs: z.number().optional(),
      ProfileAgeSeconds: z.number().optional(),
      /** The link's round-trip time (ms) the controller started with, when known. */
      RttMs: z.number().optional(),
    })
    .optional(),
  /** What the phase recorded in the link's profile at its end (RttMs: the round-trip time it measured). */
  LinkProfile: z.object({ BucketsInFlight: Count, RateMBs: z.number(), RttMs: z.number().optional() }).optional(),
};

export const TransferContentSchema = z.looseObject(TRANSFER_CONTENT);
export type TransferContent = z.output<typeof TransferContentSchema>;

export const PushContentSchema = z.looseObject({
  ...TRANSFER_CONTENT,
  UploadedSizeMB: z.number().optional(),
  GzipLevel: z.number().int().optional(),
  ZstdLevel: z.number().int().optional(),
});
export type PushContent = z.output<typeof PushContentSchema>;

export const PullContentSchema = z.looseObject({
  ...TRANSFER_CONTENT,
  DownloadedSizeMB: z.number().optional(),
  /** Instances the store placed ahead of the commit, as they were verified (the commit adopted them as they were). */
  PreparedInstances: Count.optional(),
});
export type PullContent = z.output<typeof PullContentSchema>;

/** Durable state of a push job between runs. */
export const PushPrivateSchema = z.object({
  /** Every instance of the resources (TotalInstances). */
  instances: z.array(StoredInstance),
  /** What the current transaction carries (all, or what the peer lacked), its buckets; set with `path`. */
  sent: z.array(StoredInstance).optional(),
  buckets: z.array(StoredBucket).optional(),
  skipped: StoredSkipped.optional(),
  /** Path of the transaction on the peer, once created. */
  path: z.string().optional(),
  cookie: z.string().optional(),
  /** The compression the transaction was created with (its bodies must keep it); absent: the query's. */
  compression: StoredCompression.optional(),
});
export type PushPrivate = z.output<typeof PushPrivateSchema>;

/** Durable state of a pull job between runs. */
export const PullPrivateSchema = z.object({
  /** Every instance the lookup listed. */
  instances: z.array(StoredInstance),
  /** The ones fetched (those the local store lacked, when skipping), their buckets and staging. */
  fetched: z.array(StoredInstance).optional(),
  buckets: z.array(StoredBucket),
  staging: z.string(),
  skipped: StoredSkipped.optional(),
});
export type PullPrivate = z.output<typeof PullPrivateSchema>;

/** The query of a RemotePullTransfer job (a send in pull mode, followed here). */
export const RemotePullQuerySchema = z.object({
  Peer: z.string(),
  /** The peer's job ID and its path there (`/jobs/{id}`), and the URL given to the client. */
  RemoteJob: z.string(),
  RemotePath: z.string(),
  URL: z.string(),
  Resources: z.array(StoredResource),
  Compression: StoredCompression,
  Priority: z.number().int(),
  SenderTransferID: z.string(),
});
export type RemotePullQuery = z.output<typeof RemotePullQuerySchema>;

/**
 * The follower's own Content keys; the others are mirrored from the peer's job as the peer wrote them
 * (any JSON), so they are kept unchecked.
 */
export const RemotePullContentSchema = z.looseObject({
  Peer: z.string().optional(),
  Resources: z.array(StoredResource).optional(),
  Compression: StoredCompression.optional(),
  RemoteJob: z.string().optional(),
  RemoteJobURL: z.string().optional(),
  RemoteState: z.string().optional(),
  RemoteControl: z.string().optional(),
  Waiting: z.string().optional(),
  NextTryTime: z.string().optional(),
});
export type RemotePullContent = z.output<typeof RemotePullContentSchema>;

/** Durable state of the follower between runs. */
export const FollowerPrivateSchema = z.object({
  /** This node paused the peer's job (resuming here resumes it there). */
  pausedRemote: z.boolean().optional(),
});
export type FollowerPrivate = z.output<typeof FollowerPrivateSchema>;

export const PUSH_KIND: JobKind<TransferJobQuery, PushContent, PushPrivate> = {
  query: TransferJobQuerySchema,
  content: PushContentSchema,
  private: PushPrivateSchema,
};

export const PULL_KIND: JobKind<TransferJobQuery, PullContent, PullPrivate> = {
  query: TransferJobQuerySchema,
  content: PullContentSchema,
  private: PullPrivateSchema,
};

export const REMOTE_PULL_KIND: JobKind<RemotePullQuery, RemotePullContent, FollowerPrivate> = {
  query: RemotePullQuerySchema,
  content: RemotePullContentSchema,
  private: FollowerPrivateSchema,
};
