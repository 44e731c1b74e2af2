// What a DicomModalityStore job (a C-STORE of stored resources to a modality, Orthanc's job type) keeps in the
// jobs database: its query (the one the REST API and the routing rules submit), its Content and its plan.
import { z } from 'zod';
import type { JobKind } from '../jobs/engine.ts';

const Count = z.number().int().nonnegative();
const StoredResource = z.object({ Level: z.enum(['Patient', 'Study', 'Series', 'Instance']), ID: z.string() });

/** The query: the modality (a key of DicomModalities), the resources, storage commitment, the rule that made it. */
export const StoreJobQuerySchema = z.object({
  Modality: z.string(),
  Resources: z.array(StoredResource),
  StorageCommitment: z.boolean(),
  Priority: z.number().int(),
  /** The routing rule that submitted the job. */
  Route: z.string().optional(),
  /** Orthanc's request keys: the calling AET and the timeout (seconds) instead of the modality's. */
  LocalAet: z.string().optional(),
  Timeout: z.number().int().nonnegative().optional(),
});
export type StoreJobQuery = z.output<typeof StoreJobQuerySchema>;

export const COMMITMENT_OUTCOMES = ['Committed', 'Failed', 'NotRequested', 'Unsupported', 'Pending'] as const;
export type CommitmentOutcome = (typeof COMMITMENT_OUTCOMES)[number];

const FailedInstance = z.object({ ID: z.string(), SOPInstanceUID: z.string(), Status: z.string(), Reason: z.string() });
export type FailedInstance = z.output<typeof FailedInstance>;

export const StoreJobContentSchema = z.looseObject({
  Description: z.string().optional(),
  Modality: z.string().optional(),
  RemoteAet: z.string().optional(),
  LocalAet: z.string().optional(),
  ParentResources: z.array(z.string()).optional(),
  InstancesCount: Count.optional(),
  /** Instances the modality confirmed (success or warning). */
  StoredInstancesCount: Count.optional(),
  WarningInstancesCount: Count.optional(),
  FailedInstancesCount: Count.optional(),
  FailedInstances: z.array(FailedInstance).optional(),
  TotalSizeMB: z.number().optional(),
  StorageCommitment: z.enum(COMMITMENT_OUTCOMES).optional(),
  Route: z.string().optional(),
  Retries: Count.optional(),
  LastRetryCause: z.string().optional(),
  LastRetryTime: z.string().optional(),
  Waiting: z.string().optional(),
  NextTryTime: z.string().optional(),
});
export type StoreJobContent = z.output<typeof StoreJobContentSchema>;

/** One instance of the plan: what the association needs before reading the file. */
const PlannedInstance = z.object({
  ID: z.string(),
  Size: Count,
  SOPClassUID: z.string(),
  SOPInstanceUID: z.string(),
  TransferSyntaxUID: z.string(),
});
export type PlannedInstance = z.output<typeof PlannedInstance>;

/** A storage commitment request sent and not yet answered: a report may still come, after a restart too. */
const PendingCommitment = z.object({
  TransactionUID: z.string(),
  /** When the request was sent (epoch ms): the wait is bounded from there. */
  RequestedAt: z.number().int(),
});

export const StoreJobPrivateSchema = z.object({
  instances: z.array(PlannedInstance),
  commitment: PendingCommitment.optional(),
});
export type StoreJobPrivate = z.output<typeof StoreJobPrivateSchema>;

export const STORE_JOB_KIND: JobKind<StoreJobQuery, StoreJobContent, StoreJobPrivate> = {
  query: StoreJobQuerySchema,
  content: StoreJobContentSchema,
  private: StoreJobPrivateSchema,
};
