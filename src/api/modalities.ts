// Orthanc's /modalities routes: the modalities of DicomModalities (list, describe), C-ECHO to one, and C-STORE
// of stored resources to one as a DicomModalityStore job, answered when it ends (Orthanc's default) or at once.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../config/types.ts';
import { isValidAet } from '../config/modality-schema.ts';
import { ERRORS, XferError, isXferError, type ErrorCode } from '../errors.ts';
import { isOrthancId } from '../dicom/ids.ts';
import type { Level } from '../dicom/types.ts';
import { describeModality, modalityNamed, scuTarget } from '../dimse/modality.ts';
import { echo } from '../dimse/scu.ts';
import type { StoreJobQuery } from '../dimse/store-job-kind.ts';
import type { JobsEngine } from '../jobs/engine.ts';
import { toWireJobHandle } from '../protocol/wire.ts';
import { flag, readBody, route, sendJson, type RouteInfo } from '../server/http.ts';
import { RESOURCES_JSON_BODY, parseJsonBody } from '../server/json-body.ts';
import type { Store } from '../store/types.ts';

/** What Orthanc 1.10.1 lists under GET /modalities/{name}, for the operations this node has. */
const MODALITY_OPERATIONS = ['configuration', 'echo', 'store'];

/** Longest wait a request body may ask for (Orthanc's "Timeout", seconds). */
const MAX_TIMEOUT_SECONDS = 3600;

export interface ModalitiesDeps {
  config: Config;
  store: Store;
  engine: JobsEngine;
  httpTimeoutSeconds: number;
}

function nameOf(req: FastifyRequest): string {
  return (req.params as { name?: string }).name ?? '';
}

/** A store request as Orthanc reads it: the resources and the options of its object form. */
export interface StoreRequest {
  ids: string[];
  synchronous: boolean;
  storageCommitment: boolean;
  localAet?: string;
  timeout?: number;
  priority: number;
}

const badFormat = (why: string) => new XferError('BadFileFormat', why);

function optionalBool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw badFormat(`JSON field "${key}" must contain a Boolean value`);
  return v;
}

function resourceIds(list: unknown[]): string[] {
  return list.map((item) => {
    const id = typeof item === 'object' && item !== null && 'ID' in item ? (item as { ID: unknown }).ID : item;
    if (typeof id !== 'string') throw badFormat('Must provide a JSON object, or a JSON array of strings');
    if (!isOrthancId(id)) throw badFormat(`This string is not a valid Orthanc identifier: ${id}`);
    return id;
  });
}

/**
 * Orthanc's three bodies of POST /modalities/{name}/store: one ID (plain text or a JSON string), a JSON list
 * of IDs, or `{"Resources": [...], "Synchronous", "Asynchronous", "StorageCommitment", "LocalAet", "Timeout",
 * "Priority"}`. BadFileFormat in Orthanc's words otherwise.
 */
export function parseStoreBody(buf: Buffer): StoreRequest {
  const text = buf.toString('utf8').trim();
  let body: unknown;
  if (text !== '' && !/^["[{]/.test(text)) body = text;
  else body = parseJsonBody(buf, RESOURCES_JSON_BODY);
  const out: StoreRequest = { ids: [], synchronous: true, storageCommitment: false, priority: 0 };
  if (typeof body === 'string') {
    out.ids = resourceIds([body]);
    return out;
  }
  if (Array.isArray(body)) {
    out.ids = resourceIds(body);
    return out;
  }
  if (typeof body !== 'object' || body === null) throw badFormat('Must provide a JSON object, or a JSON array of strings');
  const o = body as Record<string, unknown>;
  if (!Array.isArray(o.Resources)) throw badFormat('JSON field "Resources" must contain an array');
  out.ids = resourceIds(o.Resources);
  const asynchronous = optionalBool(o, 'Asynchronous');
  const synchronous = optionalBool(o, 'Synchronous');
  out.synchronous = asynchronous !== undefined ? !asynchronous : (synchronous ?? true);
  out.storageCommitment = optionalBool(o, 'StorageCommitment') ?? false;
  if (o.LocalAet !== undefined) {
    if (typeof o.LocalAet !== 'string' || !isValidAet(o.LocalAet)) throw badFormat('JSON field "LocalAet" must contain an AE title');
    out.localAet = o.LocalAet;
  }
  if (o.Timeout !== undefined) {
    const t = o.Timeout;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > MAX_TIMEOUT_SECONDS) {
      throw badFormat(`JSON field "Timeout" must contain seconds (an integer from 0 to ${MAX_TIMEOUT_SECONDS})`);
    }
    out.timeout = t;
  }
  if (o.Priority !== undefined) {
    if (typeof o.Priority !== 'number' || !Number.isInteger(o.Priority)) throw badFormat('JSON field "Priority" must contain an integer');
    out.priority = o.Priority;
  }
  return out;
}

/** The level of a stored resource from its ID alone, as Orthanc finds it; UnknownResource when none holds it. */
export async function levelOf(store: Store, id: string): Promise<Level> {
  const tries: [Level, () => Promise<unknown>][] = [
    ['Instance', () => store.instanceInfo(id)],
    ['Series', () => store.listInstances('Series', id)],
    ['Study', () => store.listInstances('Study', id)],
    ['Patient', () => store.listInstances('Patient', id)],
  ];
  for (const [level, probe] of tries) {
    try {
      await probe();
      return level;
    } catch (e) {
      if (!isXferError(e, 'UnknownResource')) throw e;
    }
  }
  throw new XferError('UnknownResource', `${id} is not stored on this node`);
}

/**
 * The job as it ended (Success or Failure), described at that moment: with a short JobsHistorySize the engine
 * may forget it right after.
 */
export function jobEnded(engine: JobsEngine, id: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const check = (changed: string) => {
      if (changed !== id) return;
      const s = engine.state(id);
      if (s === 'Success' || s === 'Failure') {
        engine.off('change', check);
        resolve(engine.describe(id));
      }
    };
    engine.on('change', check);
    check(id);
  });
}

/** The error of a failed job, with its own code when the table knows it. */
export function jobError(job: Record<string, unknown>): XferError {
  const status = job.ErrorCode;
  const code = (Object.keys(ERRORS) as ErrorCode[]).find((k) => ERRORS[k].status === status) ?? 'NetworkProtocol';
  const details = typeof job.ErrorDetails === 'string' && job.ErrorDetails !== '' ? job.ErrorDetails : undefined;
  return new XferError(code, details);
}

/** Orthanc's answer to a synchronous store: the job's Content keys that Orthanc 1.10.1 writes. */
function syncAnswer(content: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of [
    'Description',
    'FailedInstancesCount',
    'InstancesCount',
    'LocalAet',
    'ParentResources',
    'RemoteAet',
    'StorageCommitment',
  ]) {
    if (content[k] !== undefined) out[k] = content[k];
  }
  return out;
}

export function registerModalityRoutes(app: FastifyInstance, deps: ModalitiesDeps, routes: RouteInfo[]): void {
  const { config, engine, store } = deps;
  const idleMs = deps.httpTimeoutSeconds * 1000;

  route(
    app,
    '/modalities',
    {
      GET: async (req, reply) => {
        const names = Object.keys(config.DicomModalities).sort();
        if (!flag(req.query, 'expand')) return sendJson(reply, names);
        const out: Record<string, unknown> = {};
        for (const n of names) out[n] = describeModality(modalityNamed(config, n));
        return sendJson(reply, out);
      },
    },
    routes,
  );

  route(
    app,
    '/modalities/:name',
    {
      GET: async (req, reply) => {
        modalityNamed(config, nameOf(req));
        return sendJson(reply, MODALITY_OPERATIONS);
      },
    },
    routes,
  );

  route(
    app,
    '/modalities/:name/configuration',
    { GET: async (req, reply) => sendJson(reply, describeModality(modalityNamed(config, nameOf(req)))) },
    routes,
  );

  route(
    app,
    '/modalities/:name/echo',
    {
      POST: async (req, reply) => {
        const m = modalityNamed(config, nameOf(req));
        const body = parseJsonBody(await readBody(req, 64 * 1024, idleMs), 64 * 1024);
        let timeoutSeconds: number | undefined;
        if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
          const t = (body as Record<string, unknown>).Timeout;
          if (t !== undefined) {
            if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > MAX_TIMEOUT_SECONDS) {
              throw badFormat(`JSON field "Timeout" must contain seconds (an integer from 0 to ${MAX_TIMEOUT_SECONDS})`);
            }
            timeoutSeconds = t;
          }
        }
        await echo(scuTarget(config, m, { timeoutSeconds }));
        return sendJson(reply, {});
      },
    },
    routes,
  );

  route(
    app,
    '/modalities/:name/store',
    {
      POST: async (req, reply) => {
        const name = nameOf(req);
        const m = modalityNamed(config, name);
        const r = parseStoreBody(await readBody(req, RESOURCES_JSON_BODY, idleMs));
        // Every resource must be here: a mistyped ID is refused now (404), and no job starts.
        const resources: StoreJobQuery['Resources'] = [];
        for (const id of r.ids) resources.push({ Level: await levelOf(store, id), ID: id });
        const query: StoreJobQuery = { Modality: name, Resources: resources, StorageCommitment: r.storageCommitment, Priority: r.priority };
        if (r.localAet !== undefined) query.LocalAet = r.localAet;
        if (r.timeout !== undefined) query.Timeout = r.timeout;
        const id = engine.submit('DicomModalityStore', { ...query }, r.priority, {
          Description: 'REST API',
          Modality: name,
          RemoteAet: m.aet,
          LocalAet: r.localAet ?? m.localAet ?? config.DicomAet,
          ParentResources: r.ids,
          InstancesCount: 0,
          FailedInstancesCount: 0,
        });
        if (!r.synchronous) return sendJson(reply, toWireJobHandle(id));
        const job = await jobEnded(engine, id);
        if (job.State !== 'Success') throw jobError(job);
        return sendJson(reply, syncAnswer(job.Content as Record<string, unknown>));
      },
    },
    routes,
  );
}
