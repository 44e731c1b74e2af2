// JSON Schemas of the bodies the node reads and answers, for the OpenAPI document: the protocol's zod
// schemas converted with zod's own converter (the wire form, as a peer sends it), the configuration
// file's schema, and hand-written shapes for the answers no schema validates (Orthanc's job and error JSON).
import { z } from 'zod';
import { RouteRuleSchema } from '../config/routes-schema.ts';
import { configJsonSchema } from '../config/schema.ts';
import {
  JobHandleSchema,
  LookupAnswerSchema,
  LookupRequestSchema,
  PushCreateSchema,
  RemoteJobHandleSchema,
  ResourceSchema,
  TransferQuerySchema,
} from '../protocol/wire.ts';

type Json = Record<string, unknown>;

/** A zod schema as JSON Schema of its input side (what arrives on the wire), without `$schema`. */
export function fromZod(schema: z.ZodType): Json {
  const out = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
  delete out.$schema;
  return out;
}

/** Adds facts the zod schemas check in code (enumerations, decimal strings) to a converted object schema. */
function refine(schema: Json, props: Record<string, Json>): Json {
  const properties = (schema.properties ?? {}) as Record<string, Json>;
  for (const [k, extra] of Object.entries(props)) if (properties[k]) properties[k] = { ...properties[k], ...extra };
  return schema;
}

const COMPRESSION = {
  enum: ['gzip', 'none', 'zstd'],
  description: 'Bucket compression: exactly "gzip" or "none"; "zstd" between dicom-xfer nodes that list the extension zstd.',
};
const LEVEL = { description: 'Patient, Study, Series or Instance (any case, singular or plural).' };
const DECIMAL = { pattern: '^[0-9]+$', description: 'A byte count written as a decimal string.' };

function resource(): Json {
  return refine(fromZod(ResourceSchema), { Level: LEVEL, ID: { description: "Orthanc's ID of the resource." } });
}

function instanceInfo(s: Json): void {
  const items = ((s.properties as Record<string, Json>).Instances as Json).items as Json;
  refine(items, { Size: DECIMAL });
}

function orthancErrorSchema(): Json {
  return {
    type: 'object',
    description: "Orthanc's error answer: every failure of every route has this shape.",
    properties: {
      Method: { type: 'string' },
      Uri: { type: 'string' },
      HttpError: { type: 'string', description: 'Reason phrase of the HTTP status.' },
      HttpStatus: { type: 'integer' },
      OrthancError: { type: 'string', description: "Orthanc's message for the error code." },
      OrthancStatus: { type: 'integer', description: "Orthanc's error code (ErrorCodes.json)." },
      Message: { type: 'string' },
      Details: { type: 'string', description: 'What went wrong, in words.' },
    },
    required: ['Method', 'Uri', 'HttpError', 'HttpStatus', 'OrthancError', 'OrthancStatus', 'Message'],
  };
}

function jobSchema(): Json {
  return {
    type: 'object',
    description: "A job in Orthanc's JSON shape.",
    properties: {
      ID: { type: 'string' },
      Type: {
        type: 'string',
        enum: ['PushTransfer', 'PullTransfer', 'RemotePullTransfer', 'DicomModalityStore', 'DicomWebStow', 'DicomWebRetrieve'],
        description:
          "RemotePullTransfer: a send in pull mode, following the peer's PullTransfer (Content.RemoteJob, RemoteJobURL, RemoteState). " +
          'DicomModalityStore: a C-STORE to a modality.',
      },
      State: { type: 'string', enum: ['Pending', 'Running', 'Paused', 'Success', 'Failure'] },
      Priority: { type: 'integer' },
      Progress: { type: 'integer', minimum: 0, maximum: 100 },
      CreationTime: { type: 'string' },
      CompletionTime: { type: 'string' },
      EstimatedTimeOfArrival: { type: 'string' },
      EffectiveRuntime: { type: 'number' },
      ErrorCode: { type: 'integer' },
      ErrorDescription: { type: 'string' },
      ErrorDetails: { type: 'string' },
      Timestamp: { type: 'string' },
      Content: {
        type: 'object',
        description:
          'Peer, Resources, Compression, TotalInstances, TotalSizeMB, TotalBuckets, CompletedHttpQueries, NetworkSpeedKBs, WireBytes, ' +
          'Retries...; ' +
          'while a call waits to be tried again, Waiting (why, in plain words) and NextTryTime.',
      },
    },
    required: ['ID', 'Type', 'State', 'Priority', 'Progress', 'Content'],
  };
}

/** Answers of Orthanc's own routes: a stored instance, a ZIP entry not stored, a resource. */
function orthancAnswerSchemas(): Record<string, Json> {
  return {
    IngestAnswer: {
      type: 'object',
      properties: {
        ID: { type: 'string' },
        ParentPatient: { type: 'string' },
        ParentStudy: { type: 'string' },
        ParentSeries: { type: 'string' },
        Path: { type: 'string' },
        Status: { type: 'string', enum: ['Success', 'AlreadyStored'] },
        FileName: { type: 'string', description: 'In the answer to a ZIP archive: the entry this instance came from.' },
      },
      required: ['ID', 'Path', 'Status'],
    },
    ZipEntryRejected: {
      type: 'object',
      description: 'In the answer to a ZIP archive: an entry that was not stored (not DICOM, damaged), and why.',
      properties: {
        FileName: { type: 'string' },
        Status: { type: 'string', enum: ['Failure'] },
        Message: { type: 'string' },
        Details: { type: 'string' },
      },
      required: ['FileName', 'Status', 'Message'],
    },
    OrthancResource: {
      type: 'object',
      description: "A patient, study, series or instance in Orthanc's shape (ID, Type, MainDicomTags, parents and children).",
      properties: { ID: { type: 'string' }, Type: { type: 'string' }, MainDicomTags: { type: 'object' } },
    },
  };
}

/** The protocol's bodies, from the wire schemas with what they check in code added. */
function protocolSchemas(): Record<string, Json> {
  const transferQuery = refine(fromZod(TransferQuerySchema.extend({ Resources: z.array(ResourceSchema) })), {
    Compression: COMPRESSION,
    Peer: { description: 'Name of the peer in OrthancPeers.' },
    Priority: { description: 'Job priority: higher runs first (default 0).' },
    Originator: { description: 'UUID of the server that asks for a pull (send in pull mode).' },
  });
  (transferQuery.properties as Record<string, Json>).Resources = { type: 'array', items: { $ref: '#/components/schemas/Resource' } };
  const pushCreate = refine(fromZod(PushCreateSchema), { Compression: COMPRESSION });
  instanceInfo(pushCreate);
  const lookupAnswer = refine(fromZod(LookupAnswerSchema), { TotalSize: DECIMAL });
  instanceInfo(lookupAnswer);
  const lookupRequest = fromZod(LookupRequestSchema);
  lookupRequest.items = { $ref: '#/components/schemas/Resource' };
  return {
    Resource: resource(),
    TransferQuery: transferQuery,
    JobHandle: { ...fromZod(JobHandleSchema), description: 'A job (or push transaction) on the server that answered: its ID and path.' },
    RemoteJobHandle: { ...fromZod(RemoteJobHandleSchema), description: 'Send in pull mode: the job runs on the peer.' },
    LookupRequest: lookupRequest,
    LookupAnswer: lookupAnswer,
    PushCreate: pushCreate,
  };
}

/** A routing rule as written (from its zod schema), and as GET /routes answers it, with its live figures. */
function routeSchemas(): Record<string, Json> {
  const rule = fromZod(RouteRuleSchema);
  // In a PUT body the path names the rule: Name may be left out (or must be the same).
  rule.required = ((rule.required ?? []) as string[]).filter((k) => k !== 'Name');
  rule.description = 'A routing rule as written in Routes or a PUT /routes/{name} body; omitted keys take their defaults.';
  const written = z.toJSONSchema(RouteRuleSchema, { io: 'output', unrepresentable: 'any' }) as Json;
  const count = { type: 'integer', minimum: 0 };
  const figures: Record<string, Json> = {
    Source: { enum: ['file', 'api'], description: 'Where the rule comes from: the configuration file, or a PUT /routes/{name}.' },
    QueuedInstances: { ...count, description: 'Instances matched and waiting for their study or series to be stable.' },
    WaitingBatches: { ...count, description: 'Studies or series waiting to be stable.' },
    SendingBatches: { ...count, description: 'Batches being sent.' },
    InFlightJobs: { type: 'array', items: { type: 'string' }, description: 'The jobs sending them (IDs of /jobs).' },
    SentInstances: { ...count, description: 'Instances every destination (or an Alternate) confirmed.' },
    DoneBatches: count,
    FailedInstances: count,
    FailedBatches: count,
    LastError: { type: 'string', description: 'The last failure of a job of this rule, in words.' },
    LastErrorTime: { type: 'string', description: 'When it happened (ISO 8601).' },
  };
  const required = [...((written.required ?? []) as string[]), ...Object.keys(figures).filter((k) => !k.startsWith('LastError'))];
  return {
    RouteRule: rule,
    RouteRuleState: {
      type: 'object',
      description: 'A routing rule with every key filled in, where it comes from, and its queue, jobs in flight and last error.',
      properties: { ...(written.properties as Record<string, Json>), ...figures },
      required,
      additionalProperties: false,
    },
  };
}

/** The named schemas of the document (components.schemas). */
export function componentSchemas(): Record<string, Json> {
  const config = configJsonSchema();
  delete config.$schema;
  return {
    OrthancError: orthancErrorSchema(),
    ...protocolSchemas(),
    Job: jobSchema(),
    ...orthancAnswerSchemas(),
    ...routeSchemas(),
    Configuration: { ...config, description: "The node's configuration keys (Orthanc's names)." },
  };
}
