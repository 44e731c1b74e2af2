// The DicomWebRetrieve job: brings studies, series or instances of a DICOMweb server into the node, as
// POST /dicom-web/servers/{name}/retrieve submits it (the body of Orthanc's DICOMweb plugin). QIDO-RS lists
// the instances once (kept in the job), then WADO-RS fetches them one per request, as many at once as the
// link rewards (the transfers' AdaptiveConcurrency), each through the node's ingest path and announced to
// the routing rules; each instance stored is a finished unit, so a restart fetches only the others.
import { rm } from 'node:fs/promises';
import { z } from 'zod';
import { ingestSpooled, spool } from '../../api/ingest.ts';
import type { Config } from '../../config/types.ts';
import { XferError } from '../../errors.ts';
import type { JobKind, JobRunContext, JobRunner } from '../../jobs/engine.ts';
import { networkSpeedKBs, toMegabytes } from '../../protocol/progress.ts';
import type { ArrivalSink } from '../../routing/arrivals.ts';
import { parseJsonBody, RESOURCES_JSON_BODY } from '../../server/json-body.ts';
import type { IngestResult, Store } from '../../store/types.ts';
import { AdaptiveConcurrency } from '../../transfer/adaptive/controller.ts';
import { parseMultipartType, readMultipart } from '../multipart.ts';
import { retry, retryOptionsFromConfig } from '../../util/retry.ts';
import { runAdaptive } from './adaptive-pool.ts';
import type { DicomWebClient } from './client.ts';
import type { DicomWebServers } from './servers.ts';

const Uid = z.string().regex(/^[0-9.]{1,64}$/, { error: 'a DICOM UID' });
const RetrieveResource = z.object({ Study: Uid, Series: Uid.optional(), Instance: Uid.optional() });

export const RetrieveJobQuerySchema = z.object({
  Server: z.string(),
  Resources: z.array(RetrieveResource),
  Priority: z.number().int(),
});
export type RetrieveJobQuery = z.output<typeof RetrieveJobQuerySchema>;

const RetrieveState = z.object({ instances: z.array(z.object({ Study: z.string(), Series: z.string(), Instance: z.string() })) });
type RetrieveState = z.output<typeof RetrieveState>;
type Content = Record<string, unknown>;

export const RETRIEVE_JOB_KIND: JobKind<RetrieveJobQuery, Content, RetrieveState> = {
  query: RetrieveJobQuerySchema,
  content: z.looseObject({}),
  private: RetrieveState,
};

/** Most bytes of one instance fetched. */
const INSTANCE_LIMIT = 2 * 1024 * 1024 * 1024;

/** The plugin's body: `{"Resources": [{"Study", "Series"?, "Instance"?}], "Synchronous"/"Asynchronous", "Priority"}`. */
export function parseRetrieveBody(buf: Buffer): { resources: RetrieveJobQuery['Resources']; synchronous: boolean; priority: number } {
  const body = parseJsonBody(buf, RESOURCES_JSON_BODY);
  const schema = z.object({
    Resources: z.array(RetrieveResource).min(1),
    Synchronous: z.boolean().optional(),
    Asynchronous: z.boolean().optional(),
    Priority: z.number().int().optional(),
  });
  const r = schema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new XferError(
      'BadFileFormat',
      `the body must be {"Resources": [{"Study": uid, "Series": uid}, ...]}: ${issue?.path.join('.')} ${issue?.message}`,
    );
  }
  const o = r.data;
  const synchronous = o.Asynchronous !== undefined ? !o.Asynchronous : (o.Synchronous ?? true);
  return { resources: o.Resources, synchronous, priority: o.Priority ?? 0 };
}

export interface RetrieveDeps {
  config: Config;
  store: Store;
  servers: DicomWebServers;
  arrivals: ArrivalSink;
}

type Ctx = JobRunContext<RetrieveJobQuery, Content, RetrieveState>;

export class DicomWebRetrieveJob implements JobRunner<RetrieveJobQuery, Content, RetrieveState> {
  readonly kind = RETRIEVE_JOB_KIND;
  readonly sharesLink = true;
  readonly #deps: RetrieveDeps;

  constructor(deps: RetrieveDeps) {
    this.#deps = deps;
  }

  async run(ctx: Ctx): Promise<void> {
    const client = this.#deps.servers.client(ctx.query.Server);
    ctx.setContent({ Server: ctx.query.Server, Description: 'REST API' });
    let state = ctx.loadPrivate();
    if (!state) {
      state = { instances: await listInstances(client, ctx, this.#deps.config) };
      await ctx.clearBucketsDone();
      await ctx.savePrivate(state);
    }
    const all = state.instances;
    ctx.setContent({ TotalInstances: all.length });
    const T = this.#deps.config.Transfers;
    const adaptive = new AdaptiveConcurrency({ initial: T.Threads, min: 1, max: Math.max(T.Threads, T.MaxThreads) });
    const done = ctx.bucketsDone();
    const started = Date.now();
    let bytes = 0;
    await runAdaptive(
      all.map((_x, i) => i).filter((i) => !done.has(i)),
      adaptive,
      async (i) => {
        const size = await this.#fetchOne(client, ctx, all[i] as RetrieveState['instances'][number]);
        await ctx.markBucketDone(i);
        bytes += size;
        adaptive.progress(size);
        ctx.setContent({
          ReceivedInstances: ctx.bucketsDone().size,
          DownloadedSizeMB: toMegabytes(bytes),
          NetworkSpeedKBs: networkSpeedKBs(bytes, Date.now() - started),
        });
        ctx.setProgress(ctx.bucketsDone().size / Math.max(1, all.length));
      },
    );
  }

  /** One instance by WADO-RS, with retries, stored through the ingest path; answers its size. */
  async #fetchOne(client: DicomWebClient, ctx: Ctx, x: { Study: string; Series: string; Instance: string }): Promise<number> {
    const path = `studies/${x.Study}/series/${x.Series}/instances/${x.Instance}`;
    const { store } = this.#deps;
    const accept = 'multipart/related; type="application/dicom"; transfer-syntax=*';
    // The answer streams into the spool (never held whole); a failed attempt leaves no file behind.
    const spooled = await retry(
      async (_n, signal) => {
        const res = await client.ok({ method: 'GET', path, headers: { accept }, signal });
        const part = firstPart(String(res.headers['content-type'] ?? ''), res.body as AsyncIterable<Buffer>);
        return spool(part, store.stagingRoot(), INSTANCE_LIMIT);
      },
      retryOptionsFromConfig(this.#deps.config, { signal: ctx.signal }),
    );
    let result: IngestResult;
    try {
      result = await ingestSpooled(store, spooled);
    } catch (e) {
      await rm(spooled.path, { force: true });
      throw e;
    }
    await this.#deps.arrivals.arrived([
      { instanceId: result.ids.instance, origin: { kind: 'rest' }, alreadyStored: result.status === 'AlreadyStored' },
    ]);
    return spooled.size;
  }
}

/** Most bytes of the first part's headers (and a preamble before it) in a WADO-RS answer. */
const HEAD_LIMIT = 64 * 1024;

/** A WADO-RS answer that breaks the multipart format is the server's fault, not the node's caller's. */
function protocolError(e: unknown): unknown {
  return e instanceof XferError && e.code === 'BadRequest'
    ? new XferError('NetworkProtocol', `a WADO-RS answer: ${e.details ?? e.message}`)
    : e;
}

/**
 * The body of the first part of a WADO-RS answer as it streams, read by the shared multipart reader (the
 * part's headers dropped, the rest of the answer left unread); a plain application/dicom answer passes whole.
 */
export async function* firstPart(contentType: string, body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  if (/^application\/dicom\b/i.test(contentType)) {
    yield* body;
    return;
  }
  let parts: AsyncGenerator<{ body: AsyncIterable<Buffer> }>;
  try {
    parts = readMultipart(body, parseMultipartType(contentType).boundary, { maxHeaderBytes: HEAD_LIMIT, maxParts: 1 });
  } catch (e) {
    throw protocolError(e);
  }
  try {
    const first = await parts.next();
    if (first.done) throw new XferError('NetworkProtocol', 'a WADO-RS answer holds no part');
    yield* first.value.body;
  } catch (e) {
    throw protocolError(e);
  } finally {
    await parts.return(undefined);
  }
}

function firstValue(item: unknown, tag: string): string | undefined {
  const v = (item as Record<string, { Value?: unknown[] }> | null)?.[tag]?.Value?.[0];
  return typeof v === 'string' ? v : undefined;
}

/** Every instance of the query's resources, by QIDO-RS (an instance named whole is taken as it is). */
async function listInstances(client: DicomWebClient, ctx: Ctx, config: Config): Promise<RetrieveState['instances']> {
  const out: RetrieveState['instances'] = [];
  const seen = new Set<string>();
  for (const r of ctx.query.Resources) {
    if (r.Series !== undefined && r.Instance !== undefined) {
      out.push({ Study: r.Study, Series: r.Series, Instance: r.Instance });
      continue;
    }
    const under = r.Series !== undefined ? `studies/${r.Study}/series/${r.Series}` : `studies/${r.Study}`;
    const list = await retry(
      (_n, signal) => client.qidoAll(`${under}/instances?includefield=0020000E&includefield=00080018`, signal),
      retryOptionsFromConfig(config, { signal: ctx.signal }),
    );
    for (const item of Array.isArray(list) ? list : []) {
      const series = r.Series ?? firstValue(item, '0020000E');
      const sop = firstValue(item, '00080018');
      if (series === undefined || sop === undefined || seen.has(sop)) continue;
      seen.add(sop);
      out.push({ Study: r.Study, Series: series, Instance: sop });
    }
  }
  if (out.length === 0)
    throw new XferError('UnknownResource', `DICOMweb server "${ctx.query.Server}" lists no instance of these resources`);
  return out;
}
