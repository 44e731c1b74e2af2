// The job store: where the jobs engine keeps its jobs, behind an interface so that a second store (a
// queue in PostgreSQL shared by several nodes) can replace the embedded SQLite one without the engine.
import { z } from 'zod';
import { ERRORS, type ErrorCode } from '../errors.ts';
import { describeIssue } from '../util/stored-json.ts';

export const JOB_STATES = ['Pending', 'Running', 'Paused', 'Success', 'Failure'] as const;
export type JobState = (typeof JOB_STATES)[number];
/**
 * RemotePullTransfer: a send in pull mode, followed on this node while the peer's PullTransfer runs.
 * DicomModalityStore: a C-STORE to a modality of DicomModalities (Orthanc's name for that job).
 * DicomWebStow, DicomWebRetrieve: STOW-RS to, and WADO-RS from, a server of DicomWeb.Servers.
 */
export const JOB_TYPES = [
  'PushTransfer',
  'PullTransfer',
  'RemotePullTransfer',
  'DicomModalityStore',
  'DicomWebStow',
  'DicomWebRetrieve',
] as const;
export type JobType = (typeof JOB_TYPES)[number];

/** A job as stored: query, Content and private state are JSON text, checked by the engine against its kind. */
export const JobRecordSchema = z.object({
  /** The order of submission (the store assigns it). */
  seq: z.number().int(),
  id: z.string(),
  type: z.enum(JOB_TYPES),
  state: z.enum(JOB_STATES),
  priority: z.number().int(),
  query: z.string(),
  content: z.string(),
  progress: z.number().min(0).max(1),
  private: z.string().nullable(),
  creation_time: z.number().int(),
  completion_time: z.number().int().nullable(),
  runtime_ms: z.number().int().nonnegative(),
  error_code: z
    .custom<ErrorCode>((v) => typeof v === 'string' && Object.hasOwn(ERRORS, v), 'expected an error code this version knows')
    .nullable(),
  error_details: z.string().nullable(),
});
export type JobRecord = z.output<typeof JobRecordSchema>;

/** What a new job is stored with; the rest starts empty (Pending, progress 0, no private state). */
export type NewJob = Pick<JobRecord, 'id' | 'type' | 'priority' | 'query' | 'content' | 'creation_time'>;

/** What changes on a job after its submission, written in one go. */
export type JobUpdate = Omit<JobRecord, 'seq' | 'id' | 'type' | 'query' | 'creation_time'>;

/** A stored job read back: usable columns, and what was wrong with the others (replaced by fallbacks). */
export interface LoadedJob {
  record: JobRecord;
  /** One line per unusable column; empty when the row is sound. */
  problems: string[];
  /** The type as stored, when it is not one this version knows. */
  storedType?: string;
}

/** What `recover` answers: every job oldest first, and the rows it could not even identify. */
export interface RecoveredJobs {
  jobs: LoadedJob[];
  /** Rows without a usable seq or id, left out. */
  ignored: { seq: unknown; id: unknown }[];
}

/**
 * Every operation the engine needs from its store. Each method is atomic: when it resolves, all of its
 * change is durable, and a failure changes nothing.
 */
export interface JobStore {
  /**
   * Every job, oldest first, after putting back to Pending the jobs left Running by a node that stopped
   * (one transaction: a job is never seen Running by a node that is not running it).
   */
  recover(): Promise<RecoveredJobs>;
  /** Stores a new Pending job; answers it as stored (with its seq). */
  add(job: NewJob): Promise<JobRecord>;
  /**
   * Moves the best Pending job whose type is among `types` (highest priority, then oldest) to Running;
   * answers it, or undefined when none waits. Two callers never claim the same job.
   */
  claimNext(types: readonly JobType[]): Promise<JobRecord | undefined>;
  /** Writes the changing columns of a job; with `clearBuckets`, forgets its finished buckets in the same go. */
  update(id: string, update: JobUpdate, opts?: { clearBuckets?: boolean }): Promise<void>;
  /** Saves a job's private state (JSON text, or null to drop it). */
  savePrivate(id: string, json: string | null): Promise<void>;
  /** The buckets a job has finished. */
  bucketsDone(id: string): Promise<Set<number>>;
  markBucketDone(id: string, index: number): Promise<void>;
  clearBuckets(id: string): Promise<void>;
  /**
   * Deletes the finished jobs (Success, Failure) beyond the `keep` most recently completed; answers the IDs
   * deleted.
   */
  trimHistory(keep: number): Promise<string[]>;
}

/** What a column takes when its stored value is unusable (the job is then failed with the reason). */
const FALLBACK: Omit<JobRecord, 'seq' | 'id'> = {
  type: 'PushTransfer',
  state: 'Failure',
  priority: 0,
  query: '{}',
  content: '{}',
  progress: 0,
  private: null,
  creation_time: 0,
  completion_time: null,
  runtime_ms: 0,
  error_code: null,
  error_details: null,
};

/**
 * Checks a row read from any store: a sound row as is; a damaged one with each unusable column replaced by
 * its fallback and named in `problems`; undefined for one without a usable seq or id.
 */
export function checkJobRow(raw: unknown): LoadedJob | undefined {
  const whole = JobRecordSchema.safeParse(raw);
  if (whole.success) return { record: whole.data, problems: [] };
  const cols = z.record(z.string(), z.unknown()).catch({}).parse(raw);
  const seq = JobRecordSchema.shape.seq.safeParse(cols['seq']);
  const id = JobRecordSchema.shape.id.safeParse(cols['id']);
  if (!seq.success || !id.success) return undefined;
  const out: Record<string, unknown> = { seq: seq.data, id: id.data };
  const problems: string[] = [];
  let storedType: string | undefined;
  for (const [key, fallback] of Object.entries(FALLBACK)) {
    const r = JobRecordSchema.shape[key as keyof typeof FALLBACK].safeParse(cols[key]);
    out[key] = r.success ? r.data : fallback;
    if (!r.success) problems.push(`column ${key}: ${describeIssue(r.error)}`);
    if (!r.success && key === 'type') storedType = String(cols[key]);
  }
  const record = JobRecordSchema.parse(out);
  return storedType === undefined ? { record, problems } : { record, problems, storedType };
}
