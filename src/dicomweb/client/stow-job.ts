// The DicomWebStow job: STOW-RS of stored resources to a DICOMweb server of DicomWeb.Servers, as
// POST /dicom-web/servers/{name}/stow and the routing rules submit it. It lists the instances once, then
// hands them to the server's destination (stow-destination.ts), which keeps its state in the job.
import { z } from 'zod';
import type { DestinationDirectory } from '../../destinations/types.ts';
import type { JobKind, JobRunContext, JobRunner } from '../../jobs/engine.ts';
import type { Store } from '../../store/types.ts';
import { expandLocal } from '../../transfer/jobs.ts';
import { StowStateSchema, type StowState } from './stow-plan.ts';

const StoredResource = z.object({ Level: z.enum(['Patient', 'Study', 'Series', 'Instance']), ID: z.string() });

export const StowJobQuerySchema = z.object({
  /** A key of DicomWeb.Servers. */
  Server: z.string(),
  Resources: z.array(StoredResource),
  Priority: z.number().int(),
  /** The routing rule that submitted the job, and its send's key. */
  Route: z.string().optional(),
  RouteBatch: z.string().optional(),
});
export type StowJobQuery = z.output<typeof StowJobQuerySchema>;

type StowContent = Record<string, unknown>;

export const STOW_JOB_KIND: JobKind<StowJobQuery, StowContent, StowState> = {
  query: StowJobQuerySchema,
  content: z.looseObject({}),
  private: StowStateSchema,
};

export class DicomWebStowJob implements JobRunner<StowJobQuery, StowContent, StowState> {
  readonly kind = STOW_JOB_KIND;
  /** It moves data over the node's link, as the transfers do. */
  readonly sharesLink = true;
  readonly #store: Store;
  readonly #destinations: DestinationDirectory<StowState>;

  constructor(store: Store, destinations: DestinationDirectory<StowState>) {
    this.#store = store;
    this.#destinations = destinations;
  }

  async run(ctx: JobRunContext<StowJobQuery, StowContent, StowState>): Promise<void> {
    const q = ctx.query;
    ctx.setContent({
      Description: q.Route !== undefined ? `Route ${q.Route}` : 'REST API',
      Server: q.Server,
      ParentResources: q.Resources.map((r) => r.ID),
      ...(q.Route !== undefined ? { Route: q.Route } : {}),
    });
    const destination = this.#destinations.get(q.Server);
    // A run after a pause or a restart finds its plan in the state: the store is not listed again.
    const instances = ctx.loadPrivate() ? [] : await expandLocal(this.#store, q.Resources);
    await destination.send({ instances, compression: 'none', transferId: ctx.id }, ctx);
  }
}
