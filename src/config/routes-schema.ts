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
    Compression: z.enum(['gzip', 'none'], { error: '"gzip" or "none"' }).default('gzip'),
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
