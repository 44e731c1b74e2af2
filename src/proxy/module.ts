// The Orthanc proxy. Beside an Orthanc store, /jobs lists Orthanc's jobs with dicom-xfer's
// and requests about Orthanc's jobs are forwarded to it. With OrthancStore.Proxy (serve --proxy), the node
// also forwards every request it does not answer itself, so that one port looks like Orthanc with the
// Transfers Accelerator plugin: Orthanc's REST API, Orthanc Explorer with the "Transfers accelerator" button
// (web/explorer/transfers.js appended to Orthanc's /plugins/explorer.js), and the transfers routes.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FastifyRequest } from 'fastify';
import type { CorePath } from '../api/system.ts';
import type { Config } from '../config/types.ts';
import type { ForeignJobs } from '../jobs/routes.ts';
import { METRICS_PATH, type ForeignMetrics } from '../metrics/metrics.ts';
import type { Amender, HttpApp } from '../server/app.ts';
import { route } from '../server/http.ts';
import { OrthancForwarder } from './forward.ts';

/** The Orthanc Explorer extension shipped with dicom-xfer (a static script, no build step). */
export const EXPLORER_SCRIPT = fileURLToPath(new URL('../../web/explorer/transfers.js', import.meta.url));

/**
 * Longest wait for Orthanc's part of /plugins and /system: peers detect this node through /plugins with a
 * short timeout (Transfers.PeerConnectivityTimeout), so a slow Orthanc must not make it look absent.
 */
const AMEND_TIMEOUT_MS = 1500;
/** Longest wait for Orthanc's job list, and for its /plugins/explorer.js. */
const LIST_TIMEOUT_MS = 10_000;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * What a node does beside an Orthanc store (undefined without one): Orthanc's jobs for /jobs (foreignJobs),
 * and with Proxy, Orthanc's metrics (foreignMetrics) and the routes and hooks of `install`.
 */
export function openOrthancProxy(config: Config, httpTimeoutSeconds: number): OrthancProxy | undefined {
  return config.OrthancStore ? new OrthancProxy(config, config.OrthancStore, httpTimeoutSeconds) : undefined;
}

export class OrthancProxy {
  /** Orthanc's jobs, listed in /jobs beside this node's; requests about them are forwarded. */
  readonly foreignJobs: ForeignJobs;
  /** Orthanc's metrics, appended to this node's (with Proxy only). */
  readonly foreignMetrics: ForeignMetrics | undefined;
  readonly #fwd: OrthancForwarder;
  readonly #proxy: boolean;

  constructor(config: Config, store: NonNullable<Config['OrthancStore']>, httpTimeoutSeconds: number) {
    this.#proxy = store.proxy;
    const fwd = new OrthancForwarder({
      url: store.url,
      username: store.username,
      password: store.password,
      // Without authentication of its own, the proxy lets Orthanc judge the client's credentials. Otherwise
      // (and for the job calls of a node that is no proxy) Orthanc gets the node's configured credentials.
      passClientAuthorization: store.proxy && !config.AuthenticationEnabled,
      timeoutMs: store.timeout * 1000,
      clientIdleMs: httpTimeoutSeconds * 1000,
      publicScheme: config.SslEnabled ? 'https' : 'http',
      verifyPeers: config.HttpsVerifyPeers,
      caFile: config.HttpsCACertificates,
    });
    this.#fwd = fwd;
    this.foreignJobs = {
      async list(req, expand) {
        const v = await fwd.getJson(req, expand ? '/jobs?expand' : '/jobs', LIST_TIMEOUT_MS);
        if (!Array.isArray(v)) {
          req.log.debug("Orthanc's jobs are not listed: Orthanc did not answer GET /jobs");
          return undefined;
        }
        return v;
      },
      forward: (req, reply) => fwd.forward(req, reply),
    };
    // Orthanc's metrics stay where Prometheus scrapes them, after this node's.
    this.foreignMetrics = store.proxy ? (req) => fwd.getText(req, METRICS_PATH, AMEND_TIMEOUT_MS) : undefined;
  }

  /** With Proxy: the fallback to Orthanc, Orthanc's answers merged into the core routes, /plugins/explorer.js. */
  async install(app: HttpApp): Promise<void> {
    if (!this.#proxy) return;
    const ours = await readFile(EXPLORER_SCRIPT, 'utf8');
    const fwd = this.#fwd;
    app.hooks.setFallback((req, reply) => fwd.forward(req, reply));
    this.#amendCoreRoutes(app);
    // Orthanc Explorer loads ../plugins/explorer.js, where Orthanc gathers the extensions of its plugins.
    // Ours is appended, unless Orthanc runs the Transfers Accelerator plugin itself, whose button already
    // posts to /transfers/send (answered here).
    route(
      app.fastify,
      '/plugins/explorer.js',
      {
        GET: async (req, reply) => {
          const [theirs, plugins] = await Promise.all([
            fwd.getText(req, '/plugins/explorer.js', LIST_TIMEOUT_MS),
            this.#orthancPlugins(req, LIST_TIMEOUT_MS),
          ]);
          const body = plugins?.includes('transfers') && theirs !== undefined ? theirs : `${theirs ?? ''}\n${ours}`;
          return reply
            .code(200)
            .header('Content-Type', 'application/javascript; charset=utf-8')
            .header('Cache-Control', 'no-cache')
            .send(body);
        },
      },
      app.routes,
    );
  }

  /** Orthanc's plugins, or undefined when Orthanc cannot tell. */
  async #orthancPlugins(req: FastifyRequest, timeoutMs: number): Promise<string[] | undefined> {
    const v = await this.#fwd.getJson(req, '/plugins', timeoutMs);
    return Array.isArray(v) ? v.filter((p): p is string => typeof p === 'string') : undefined;
  }

  #amendCoreRoutes(app: HttpApp): void {
    const fwd = this.#fwd;
    const amend = (path: CorePath, fn: Amender) => app.hooks.amend(path, fn);
    amend('/plugins', async (value, req) => {
      const list = Array.isArray(value) ? (value as unknown[]) : [];
      const theirs = (await this.#orthancPlugins(req, AMEND_TIMEOUT_MS)) ?? [];
      return [...theirs, ...list.filter((p) => !theirs.includes(p as string))];
    });
    amend('/plugins/transfers', async (value) => (isObject(value) ? { ...value, ExtendsOrthancExplorer: true } : value));
    // Orthanc's own description (its name is what Explorer shows), with what concerns this port and dicom-xfer.
    amend('/system', async (value, req) => {
      const theirs = await fwd.getJson(req, '/system', AMEND_TIMEOUT_MS);
      if (!isObject(theirs) || !isObject(value)) return value;
      return {
        ...theirs,
        DicomXferVersion: value['DicomXferVersion'],
        HttpPort: value['HttpPort'],
        IsHttpServerSecure: value['IsHttpServerSecure'],
      };
    });
  }

  close(): Promise<void> {
    return this.#fwd.close();
  }
}
