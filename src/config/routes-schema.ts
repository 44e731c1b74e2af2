// The zod schema of `Routes`: the routing rules that send what arrives by themselves (src/routing/), each
// checked on its own here; whether its destinations exist is checked against the peers and modalities
// when the node starts and when a rule is written through the REST API (src/routing/rules.ts).
import { z } from 'zod';
import type { RouteRuleConfig } from './types.ts';
import { badPeerName, isValidPeerName } from './value-schemas.ts';

export const ROUTE_WHEN = ['StableStudy', 'StableSeries', 'Instance'] as const;
export type RouteWhen = (typeof ROUTE_WHEN)[number];

/** Origin patterns: where an instance came from (dicom, rest, or a peer by name, `peer:*` for any). */
const ORIGIN = /^(dicom|rest|peer:.+)$/;

const nameList = (what: string) =>
  z.array(z.string({ error: 'a name' }), { error: `a list of ${what}` }).superRefine((names, ctx) => {
    for (const n of names) if (!isValidPeerName(n)) ctx.addIssue({ code: 'custom', message: badPeerName(n) });
  });

/** One rule as written in the file or a PUT body (Orthanc-like capitalised keys). */
export const RouteRuleSchema = z.strictObject(
  {
    Name: z.string({ error: 'a name' }).refine(isValidPeerName, { error: (i) => badPeerName(String(i.input)).replace('peer', 'rule') }),
    When: z.enum(ROUTE_WHEN, { error: `one of ${ROUTE_WHEN.join(', ')}` }).default('StableStudy'),
    Match: z
      .record(z.string(), z.string({ error: 'a pattern (string)' }), { error: 'an object of tag name to pattern' })
      .default({})
      .superRefine((m, ctx) => {
        const origin = m['Origin'];
        if (origin !== undefined && !ORIGIN.test(origin)) {
          ctx.addIssue({ code: 'custom', message: `Origin: expected "dicom", "rest", "peer:NAME" or "peer:*", got "${origin}"` });
        }
      }),
    Send: nameList('peer or modality names').refine((l) => l.length > 0, { error: 'at least one destination' }),
    Alternate: nameList('peer or modality names').default([]),
    Compression: z.enum(['gzip', 'none', 'zstd'], { error: '"gzip", "none" or "zstd"' }).default('gzip'),
    Priority: z.int({ error: 'an integer' }).default(0),
    DeleteAfterSend: z.boolean({ error: 'true or false' }).default(false),
    StorageCommitment: z.boolean({ error: 'true or false' }).default(true),
  },
  { error: 'an object with Name, When, Match, Send...' },
);

export type RouteRule = RouteRuleConfig;
// The schema's output is the configuration's type: a change to one without the other does not compile.
const _sameShape: z.ZodType<RouteRuleConfig, unknown> = RouteRuleSchema;
void _sameShape;

/** `Routes`: a list of rules with unique names. */
export const routesSchema = z.array(RouteRuleSchema, { error: 'a list of routing rules' }).superRefine((rules, ctx) => {
  const seen = new Set<string>();
  for (const r of rules) {
    if (seen.has(r.Name)) ctx.addIssue({ code: 'custom', message: `two rules are named "${r.Name}"` });
    seen.add(r.Name);
  }
});

/** The `Routes` entry of the configuration table (src/config/schema.ts). */
export const ROUTES_SETTING = {
  schema: routesSchema,
  type: 'list of rules',
  default: [] as RouteRuleConfig[],
  meaning:
    'dicom-xfer extension: routing rules that send what arrives by themselves (see "Routing rules" below); each `{"Name", "When", ' +
    '"Match", "Send", "Alternate", "Compression", "Priority", "DeleteAfterSend", "StorageCommitment"}`. The initial set: rules ' +
    'written through `PUT /routes/{name}` replace the entry of the same name.',
  source: 'dicom-xfer' as const,
};

/** The "Routing rules" section of docs/configuration.md (src/config/reference.ts). */
export function routesSection(): string[] {
  return [
    '## Routing rules (`Routes`)',
    '',
    'Rules send what arrives by themselves, with no one pressing "send". Each instance that the node stores',
    '(`POST /instances`, a C-STORE to its DICOM server, a push committed by a peer, a pull job) is recorded with',
    'where it came from and matched against every rule once, when it arrives: a rule added later applies to new',
    'arrivals only. The matches, the batches and the job of each destination are kept in',
    '`StorageDirectory/routes.sqlite`, written before the client is told the instance is stored, so a crash at',
    'any point loses nothing and does not send again what a destination already confirmed.',
    '',
    '```jsonc',
    '"Routes": [',
    '  { "Name": "ct-to-site-b",          // letters, digits, "-", "_", "."',
    '    "When": "StableStudy",           // or "StableSeries", or "Instance" (at once)',
    '    "Match": { "Modality": "CT",     // main DICOM tags (patient, study, series, instance) with * and ?,',
    '               "CallingAet": "SCANNER*",   // case-insensitive; CallingAet: DICOM arrivals only',
    '               "Origin": "dicom" },  // dicom | rest | peer:NAME | peer:*',
    '    "Send": ["site-b"],              // OrthancPeers or DicomModalities names',
    '    "Alternate": ["site-b-backup"],  // when a destination of Send fails for good',
    '    "Compression": "gzip",           // "none", or "zstd" (gzip with a peer without it)',
    '    "Priority": 0,                   // priority of the jobs',
    '    "DeleteAfterSend": false,        // true: delete once every destination confirmed',
    '    "StorageCommitment": true }      // DICOM modalities: ask for it where the modality allows it',
    ']',
    '```',
    '',
    '- **When**: a study (or series) is sent once no instance of it matched for `StableAge` seconds, as one',
    '  batch; an instance of it that arrives after its batch left is sent as a follow-up batch of just the',
    '  late instances. `Instance` rules send what matched at once.',
    '- **Send**: one job per destination and batch: a `PushTransfer` to a transfers peer (the same job as',
    '  `POST /transfers/send`, with its retries and resume), a `DicomModalityStore` (C-STORE) to a modality. A name',
    '  is looked up in `OrthancPeers` (and peers added through `/peers`), then in `DicomModalities`; a name in',
    "  both, or in neither, is a configuration error naming the rule. Jobs carry the rule's name in",
    '  `Content.Route`.',
    '- **Alternate**: when a job of Send fails after its own retries (`Transfers.MaxHttpRetries`,',
    '  `RetryBudget`...), the batch goes to every Alternate destination, once.',
    '- **DeleteAfterSend**: once every destination confirmed (a committed push; C-STORE success, with storage',
    "  commitment where the modality allows it), the batch's instances are deleted, unless another rule still",
    "  has them to send. A pure gateway's disk then holds only what is in flight.",
    '- **Origin** `peer:NAME`: for a push, NAME is the `OrthancPeers` entry whose `Username` (or name) is the',
    '  HTTP user of the commit when authentication is on, else the one entry whose host is the address the',
    '  commit came from; `peer:` (empty) when none or several fit. For a pull job, the peer pulled from.',
    '',
    'The file gives the initial rules. `PUT /routes/{name}` (a rule as above, checked the same way) creates or',
    'replaces a rule and `DELETE /routes/{name}` deletes one; both are kept in `routes.sqlite` and win over',
    'the file across restarts (a rule deleted through the API stays deleted even if the file lists it). Edit the',
    'file for rules never touched through the API. `GET /routes` lists each rule with where it comes from',
    '(`Source`: file or api) and its figures: instances queued, batches waiting and sending, jobs in flight,',
    'instances sent and failed, the last error and its time.',
    '',
    'The dashboard\'s Routes page shows the same and writes through the same calls: "New rule", and per rule',
    '"Edit" and "Delete" (asked first). Its form offers the peers and modalities of the node as destinations,',
    "and shows the node's refusal beside the form with what was typed kept. Saving a rule of the file stores it",
    "through the API, which then wins over the file's entry, as above.",
    '',
    "Each instance's reception is also served as Orthanc's metadata (embedded store):",
    '`GET /instances/{id}/metadata[/{name}]` with `Origin` (`DicomProtocol`, `RestApi`, or `Plugins` for a',
    'transfer), `ReceptionDate`, `RemoteAET`, `CalledAET`, `RemoteIP`, `HttpUsername` and `TransfersPeer`.',
    '',
  ];
}
