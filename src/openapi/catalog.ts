// What the OpenAPI document says of the routes it knows: summary, tag, parameters, request and answer
// bodies. A route missing here is still listed (the document walks the route registry); it just gets a
// plain description.
import type { Method } from '../server/http.ts';

type Json = Record<string, unknown>;

export interface OperationDoc {
  summary: string;
  description?: string;
  tag?: string;
  /** Path parameters whose meaning differs from the usual one (`name` is a peer's elsewhere): name -> description. */
  params?: Record<string, string>;
  /** Query parameters: name -> [JSON Schema, description]. */
  query?: Record<string, [Json, string]>;
  /** The request body's schema (application/json unless `requestType` says otherwise). */
  request?: Json;
  requestType?: string;
  /** The 200 answer: JSON Schema (application/json unless `responseType` says otherwise). */
  response?: Json;
  responseType?: string;
  /** Other success statuses (e.g. 206, 302) with their description. */
  otherResponses?: Record<string, string>;
}

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const arrayOf = (items: Json): Json => ({ type: 'array', items });
const str: Json = { type: 'string' };
const obj: Json = { type: 'object' };
const empty: Json = { type: 'object', description: 'An empty JSON object.' };
const expand: Record<string, [Json, string]> = { expand: [{ type: 'boolean' }, 'Answer the objects instead of their IDs.'] };
const paging: Record<string, [Json, string]> = {
  ...expand,
  since: [{ type: 'integer', minimum: 0 }, 'Skip this many resources.'],
  limit: [{ type: 'integer', minimum: 0 }, 'Answer at most this many resources (0: all).'],
};

const RULE = { name: 'Name of the routing rule.' };
const MODALITY = { name: 'Name of the modality in DicomModalities.' };

const levels = { patients: 'patient', studies: 'study', series: 'series', instances: 'instance' } as const;

function resourceRoutes(): Record<string, Partial<Record<Method, OperationDoc>>> {
  const out: Record<string, Partial<Record<Method, OperationDoc>>> = {};
  for (const [path, one] of Object.entries(levels)) {
    out[`/${path}`] = {
      GET: { summary: `List the ${path}`, tag: 'Resources', query: paging, response: arrayOf({ oneOf: [str, ref('OrthancResource')] }) },
    };
    out[`/${path}/:id`] = {
      GET: { summary: `Describe one ${one}`, tag: 'Resources', response: ref('OrthancResource') },
      DELETE: {
        summary: `Delete one ${one} and what it holds`,
        tag: 'Resources',
        response: { type: 'object', properties: { RemainingAncestor: {} } },
      },
    };
    if (path !== 'instances')
      out[`/${path}/:id/instances`] = {
        GET: { summary: `The instances of one ${one}`, tag: 'Resources', response: arrayOf(ref('OrthancResource')) },
      };
  }
  out['/instances/:id/metadata'] = {
    GET: {
      summary: "The metadata of an instance's reception: Origin, ReceptionDate, RemoteAET, CalledAET, RemoteIP, HttpUsername",
      description: 'Their names; with ?expand, an object of name to value. Only those known for the instance are listed.',
      tag: 'Resources',
      query: expand,
      response: { oneOf: [arrayOf(str), { type: 'object', additionalProperties: str }] },
    },
  };
  out['/instances/:id/metadata/:name'] = {
    GET: {
      summary: 'One metadata value of an instance, as text',
      tag: 'Resources',
      params: { name: 'Name of the metadata (Origin, ReceptionDate, RemoteAET, CalledAET, RemoteIP, HttpUsername).' },
      response: str,
      responseType: 'text/plain',
    },
  };
  out['/instances'] = {
    ...out['/instances'],
    POST: {
      summary: 'Store a DICOM file, or every DICOM file of a ZIP archive (one answer per entry); the body may be gzip-encoded',
      tag: 'Resources',
      request: { type: 'string', format: 'binary' },
      requestType: 'application/dicom',
      response: { oneOf: [ref('IngestAnswer'), arrayOf({ oneOf: [ref('IngestAnswer'), ref('ZipEntryRejected')] })] },
    },
  };
  return out;
}

/** Operation docs by registered path and method. */
export const CATALOG: Record<string, Partial<Record<Method, OperationDoc>>> = {
  '/system': { GET: { summary: "Identity and version of the node (Orthanc's /system)", tag: 'System', response: obj } },
  '/plugins': { GET: { summary: 'Plugins of the node: "transfers"', tag: 'System', response: arrayOf(str) } },
  '/plugins/transfers': { GET: { summary: 'Description of the transfers plugin', tag: 'System', response: obj } },
  '/statistics': { GET: { summary: 'Counts and disk size of the store', tag: 'Resources', response: obj } },
  ...resourceRoutes(),
  '/tools/find': {
    POST: {
      summary:
        "Find patients, studies, series or instances by DICOM tags (Orthanc's /tools/find: Level, Query, Expand, Limit, Since, " +
        'CaseSensitive, RequestedTags)',
      tag: 'Resources',
      request: obj,
      response: arrayOf({ oneOf: [str, ref('OrthancResource')] }),
    },
  },
  '/patients/:id/studies': { GET: { summary: 'The studies of one patient', tag: 'Resources', response: arrayOf(ref('OrthancResource')) } },
  '/studies/:id/series': { GET: { summary: 'The series of one study', tag: 'Resources', response: arrayOf(ref('OrthancResource')) } },
  '/instances/:id/file': {
    GET: {
      summary: 'The DICOM file of an instance (one byte range with Range:)',
      tag: 'Resources',
      response: { type: 'string', format: 'binary' },
      responseType: 'application/dicom',
      otherResponses: { '206': 'The range asked for.' },
    },
  },
  '/instances/:id/tags': {
    GET: {
      summary: 'The tags of an instance',
      tag: 'Resources',
      query: { simplify: [{ type: 'boolean' }, 'Name: value form.'] },
      response: obj,
    },
  },
  '/instances/:id/simplified-tags': { GET: { summary: 'The tags of an instance, as name: value', tag: 'Resources', response: obj } },
  '/instances/:id/attachments/dicom/md5': {
    GET: { summary: 'MD5 of the DICOM file', tag: 'Resources', response: str, responseType: 'text/plain' },
  },
  '/instances/:id/attachments/dicom/size': {
    GET: { summary: 'Size of the DICOM file in bytes', tag: 'Resources', response: str, responseType: 'text/plain' },
  },

  '/jobs': {
    GET: {
      summary: 'The jobs (IDs, or their JSON with ?expand)',
      tag: 'Jobs',
      query: expand,
      response: arrayOf({ oneOf: [str, ref('Job')] }),
    },
  },
  '/jobs/:id': { GET: { summary: "One job in Orthanc's JSON", tag: 'Jobs', response: ref('Job') } },
  '/jobs/:id/pause': { POST: { summary: 'Pause a pending or running job', tag: 'Jobs', response: empty } },
  '/jobs/:id/resume': { POST: { summary: 'Resume a paused job', tag: 'Jobs', response: empty } },
  '/jobs/:id/cancel': { POST: { summary: 'Cancel a job that is not finished', tag: 'Jobs', response: empty } },
  '/jobs/:id/resubmit': { POST: { summary: 'Start a failed or canceled job again', tag: 'Jobs', response: empty } },

  '/peers': {
    GET: {
      summary: 'The peers (names, or their definitions with ?expand)',
      tag: 'Peers',
      query: expand,
      response: { oneOf: [arrayOf(str), obj] },
    },
  },
  '/peers/:name': {
    GET: { summary: 'What can be asked of a peer', tag: 'Peers', response: arrayOf(str) },
    PUT: {
      summary: 'Define a peer at run time (kept in peers.json)',
      tag: 'Peers',
      request: obj,
      response: str,
      responseType: 'text/plain',
    },
    DELETE: { summary: 'Delete a peer', tag: 'Peers', response: str, responseType: 'text/plain' },
  },
  '/peers/:name/configuration': { GET: { summary: 'The definition of a peer (without its password)', tag: 'Peers', response: obj } },
  '/peers/:name/system': { GET: { summary: "The peer's own /system", tag: 'Peers', response: obj } },

  '/modalities': {
    GET: {
      summary: 'The DICOM modalities of DicomModalities (names, or their definitions with ?expand)',
      tag: 'Modalities',
      query: expand,
      response: { oneOf: [arrayOf(str), obj] },
    },
  },
  '/modalities/:name': { GET: { summary: 'What can be asked of a modality', tag: 'Modalities', params: MODALITY, response: arrayOf(str) } },
  '/modalities/:name/configuration': {
    GET: { summary: "A modality in Orthanc's shape (AET, Host, Port, Allow...)", tag: 'Modalities', params: MODALITY, response: obj },
  },
  '/modalities/:name/echo': {
    POST: {
      summary: 'C-ECHO to a modality: {} on success, a DicomAssociation error (500) otherwise',
      tag: 'Modalities',
      params: MODALITY,
      request: { type: 'object', properties: { Timeout: { type: 'integer', minimum: 0 } } },
      response: empty,
    },
  },
  '/modalities/:name/store': {
    POST: {
      summary: 'C-STORE of stored resources to a modality, as stored, as a DicomModalityStore job',
      description:
        'The body is one ID, a list of IDs (any level), or an object. Synchronous (the default) answers when the job ends with ' +
        'Description, LocalAet, RemoteAet, ParentResources, InstancesCount, FailedInstancesCount and StorageCommitment; ' +
        'Asynchronous answers the job at once.',
      tag: 'Modalities',
      params: MODALITY,
      request: {
        oneOf: [
          str,
          arrayOf(str),
          {
            type: 'object',
            properties: {
              Resources: arrayOf(str),
              Synchronous: { type: 'boolean' },
              Asynchronous: { type: 'boolean' },
              StorageCommitment: { type: 'boolean' },
              LocalAet: str,
              Timeout: { type: 'integer', minimum: 0 },
              Priority: { type: 'integer' },
            },
            required: ['Resources'],
          },
        ],
      },
      response: { oneOf: [obj, ref('JobHandle')] },
    },
  },

  '/routes': {
    GET: {
      summary: 'The routing rules, each with where it comes from, its queue, the jobs sending it and its last error',
      tag: 'Routing',
      response: arrayOf(ref('RouteRuleState')),
    },
  },
  '/routes/:name': {
    GET: { summary: 'One routing rule with its figures', tag: 'Routing', params: RULE, response: ref('RouteRuleState') },
    PUT: {
      summary: "Write a routing rule: kept in the routes database, it replaces the configuration file's rule of that name",
      description:
        'Its destinations (Send, Alternate) must be peers of OrthancPeers or modalities of DicomModalities. It applies to new arrivals.',
      tag: 'Routing',
      params: RULE,
      request: ref('RouteRule'),
      response: ref('RouteRuleState'),
    },
    DELETE: { summary: 'Delete a routing rule', tag: 'Routing', params: RULE, response: str, responseType: 'text/plain' },
  },

  '/transfers/peers': {
    GET: {
      summary: 'Which peers speak the transfers protocol: installed, bidirectional or disabled',
      tag: 'Transfers',
      response: { type: 'object', additionalProperties: { enum: ['installed', 'bidirectional', 'disabled'] } },
    },
  },
  '/transfers/send': {
    POST: {
      summary: 'Send resources to a peer: a push job, or a pull by the peer when it has RemoteSelf',
      tag: 'Transfers',
      request: ref('TransferQuery'),
      response: { oneOf: [ref('JobHandle'), ref('RemoteJobHandle')] },
    },
  },
  '/transfers/pull': {
    POST: {
      summary: 'Pull resources from a peer into this node (a pull job)',
      tag: 'Transfers',
      request: ref('TransferQuery'),
      response: ref('JobHandle'),
    },
  },
  '/transfers/lookup': {
    POST: {
      summary: 'Size and MD5 of every instance of some resources (pull mode)',
      tag: 'Transfers',
      request: ref('LookupRequest'),
      response: ref('LookupAnswer'),
    },
  },
  '/transfers/chunks/:ids': {
    GET: {
      summary: 'Bytes of consecutive instances (IDs joined by dots), as a pull bucket',
      tag: 'Transfers',
      query: {
        offset: [{ type: 'integer', minimum: 0 }, 'Offset in the first instance.'],
        size: [{ type: 'integer', minimum: 0 }, 'Bytes to answer.'],
        compression: [{ enum: ['gzip', 'none', 'zstd'] }, 'Bucket compression ("zstd" only from a node that lists the extension).'],
      },
      response: { type: 'string', format: 'binary' },
      responseType: 'application/octet-stream',
    },
  },
  '/transfers/push': {
    POST: {
      summary: 'Create a push transaction (receiver side)',
      tag: 'Transfers',
      request: ref('PushCreate'),
      response: ref('JobHandle'),
    },
  },
  '/transfers/push/:tx': { DELETE: { summary: 'Discard a push transaction', tag: 'Transfers', response: empty } },
  '/transfers/push/:tx/:index': {
    PUT: {
      summary: 'Store one bucket of a push transaction',
      tag: 'Transfers',
      request: { type: 'string', format: 'binary' },
      requestType: 'application/octet-stream',
      response: empty,
    },
  },
  '/transfers/push/:tx/commit': {
    POST: { summary: 'Commit a push transaction: all instances become visible at once, or none', tag: 'Transfers', response: empty },
  },

  // dicom-xfer's protocol extensions (docs/protocol-extensions.md), present when Transfers.Extensions is on.
  '/transfers/capabilities': {
    GET: {
      summary: 'The protocol extensions this node implements, with their versions',
      tag: 'Transfers',
      response: {
        type: 'object',
        properties: {
          Name: str,
          Version: str,
          Protocol: { type: 'integer' },
          Extensions: { type: 'object', additionalProperties: { type: 'integer' } },
        },
      },
    },
  },
  '/transfers/have': {
    POST: {
      summary: 'Extension dedupe: which of these instances this node already stores with the same MD5',
      tag: 'Transfers',
      request: arrayOf({ type: 'object', properties: { ID: str, MD5: str }, required: ['ID', 'MD5'] }),
      response: { type: 'object', properties: { Count: { type: 'integer' }, Instances: arrayOf(str) } },
    },
  },
  '/transfers/push/:tx/buckets': {
    GET: {
      summary: 'Extension resume: the buckets a push transaction holds',
      tag: 'Transfers',
      response: { type: 'object', properties: { Buckets: arrayOf({ type: 'integer' }), Count: { type: 'integer' } } },
    },
  },
  '/transfers/push/:tx/state': {
    GET: {
      summary: 'Extension async-commit: where a push transaction stands (open, committing, or its outcome)',
      tag: 'Transfers',
      response: obj,
    },
  },

  '/tools/metrics-prometheus': {
    GET: {
      summary: 'Metrics in Prometheus text format (orthanc_transfers_* and dicom_xfer_*)',
      tag: 'Metrics',
      response: str,
      responseType: 'text/plain',
    },
  },
  '/openapi.json': { GET: { summary: 'This document', tag: 'Documentation', response: obj } },

  '/ui': {
    GET: { summary: 'The dashboard', tag: 'Dashboard', response: str, responseType: 'text/html', otherResponses: { '302': 'To /ui/.' } },
  },
  '/ui/*': {
    GET: {
      summary: 'Files of the dashboard (HTML, JavaScript modules, CSS)',
      tag: 'Dashboard',
      response: str,
      responseType: 'text/html',
      otherResponses: { '304': 'Not modified since the ETag given.' },
    },
  },
  '/ui/api/overview': {
    GET: { summary: 'Node name, version, store counts, peers and current throughput, for the dashboard', tag: 'Dashboard', response: obj },
  },
  '/ui/api/config': {
    GET: {
      summary: "The node's configuration (passwords left out)",
      tag: 'Dashboard',
      response: { $ref: '#/components/schemas/Configuration' },
    },
  },
  '/ui/api/events': {
    GET: {
      summary: 'Live job changes as Server-Sent Events ("job" events carry the job JSON; "removed" an ID)',
      tag: 'Dashboard',
      response: str,
      responseType: 'text/event-stream',
    },
  },
  '/ui/api/jobs/:id/history': {
    GET: { summary: 'Progress and bytes of a job, one point a second while it runs', tag: 'Dashboard', response: obj },
  },
  '/ui/api/jobs/:id/about': {
    GET: {
      summary:
        'What a job moves: PatientName, PatientID, StudyDescription, StudyDate of its first resource ' +
        '(from the store, or the peer for a pull)',
      tag: 'Dashboard',
      response: obj,
    },
  },
  '/ui/api/bandwidth': {
    GET: {
      summary:
        "The bandwidth policy in force: the node's rate limit now (Transfers.RateLimit or the RateSchedule entry at " +
        "the node's local time), the schedule, and each peer's RateLimit beside the limit its transfers meet",
      tag: 'Dashboard',
      response: obj,
    },
  },
  '/ui/api/peers': {
    GET: {
      summary: 'Every peer with reachability, round-trip time, transfers status, extensions and counters',
      tag: 'Dashboard',
      response: arrayOf(obj),
    },
  },
  '/ui/api/studies': {
    GET: {
      summary: 'Search the studies of the embedded store',
      tag: 'Dashboard',
      query: {
        q: [str, 'Part of the patient name or ID (any case).'],
        from: [{ type: 'string', pattern: '^[0-9]{8}$' }, 'Study date on or after (YYYYMMDD).'],
        to: [{ type: 'string', pattern: '^[0-9]{8}$' }, 'Study date on or before (YYYYMMDD).'],
        modality: [str, 'A modality of one of its series (CT, MR...).'],
        limit: [{ type: 'integer', minimum: 1 }, 'At most this many studies (default 200).'],
      },
      response: arrayOf(obj),
    },
  },
  '/ui/api/send': {
    POST: {
      summary: 'Send resources to a peer, choosing push or pull (pull: the peer fetches them; needs RemoteSelf)',
      tag: 'Dashboard',
      request: {
        type: 'object',
        properties: {
          Resources: { type: 'array', items: ref('Resource') },
          Peer: str,
          Compression: { enum: ['gzip', 'none', 'zstd'] },
          Mode: { enum: ['push', 'pull'] },
        },
        required: ['Resources', 'Peer'],
      },
      response: { oneOf: [ref('JobHandle'), ref('RemoteJobHandle')] },
    },
  },
};
