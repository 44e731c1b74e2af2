// The node's DICOMweb server: QIDO-RS, WADO-RS and STOW-RS under one root (/dicom-web/ by default), on the
// embedded store, behind the node's own security hooks like every other route.
import type { FastifyInstance } from 'fastify';
import type { UploadLimits } from '../../api/orthanc-api.ts';
import type { ArrivalSink } from '../../routing/arrivals.ts';
import { route, type RouteInfo } from '../../server/http.ts';
import type { EmbeddedStore } from '../../store/embedded/store.ts';
import { search } from './qido.ts';
import { store as stow } from './stow.ts';
import { retrieveBulk, retrieveFiles, retrieveMetadata } from './wado.ts';

export interface DicomWebServerOptions {
  /** Where the routes live, with a slash at both ends ("/dicom-web/"). */
  root?: string;
  store: EmbeddedStore;
  /** Seconds without a byte after which a STOW-RS body is abandoned (HttpTimeout). */
  httpTimeoutSeconds: number;
  /** The bounds of POST /instances, which STOW-RS bodies meet too. */
  uploadLimits: UploadLimits;
  /** Told of every instance STOW-RS stores (routing), with origin rest. */
  arrivals?: ArrivalSink;
}

/** "/dicom-web/" from "dicom-web", "/dicom-web" or "/dicom-web/". */
export function normaliseRoot(root: string): string {
  const trimmed = root.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '/' : `/${trimmed}/`;
}

/** Registers the DICOMweb routes on the node's HTTP app. */
export function registerDicomWebServer(app: FastifyInstance, opts: DicomWebServerOptions, routes?: RouteInfo[]): void {
  const root = normaliseRoot(opts.root ?? '/dicom-web/');
  const { store } = opts;
  const study = `${root}studies/:study`;
  const series = `${study}/series/:series`;
  const instance = `${series}/instances/:instance`;
  const stowHandler = stow({ store, root, idleMs: opts.httpTimeoutSeconds * 1000, limits: opts.uploadLimits, arrivals: opts.arrivals });
  route(app, `${root}studies`, { GET: search(store, root, 'Study'), POST: stowHandler }, routes);
  route(app, `${root}series`, { GET: search(store, root, 'Series') }, routes);
  route(app, `${root}instances`, { GET: search(store, root, 'Instance') }, routes);
  route(app, study, { GET: retrieveFiles(store), POST: stowHandler }, routes);
  route(app, `${study}/series`, { GET: search(store, root, 'Series') }, routes);
  route(app, `${study}/instances`, { GET: search(store, root, 'Instance') }, routes);
  route(app, series, { GET: retrieveFiles(store) }, routes);
  route(app, `${series}/instances`, { GET: search(store, root, 'Instance') }, routes);
  route(app, instance, { GET: retrieveFiles(store) }, routes);
  for (const path of [study, series, instance]) route(app, `${path}/metadata`, { GET: retrieveMetadata(store, root) }, routes);
  route(app, `${instance}/bulk/*`, { GET: retrieveBulk(store) }, routes);
}
