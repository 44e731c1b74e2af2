// The node's own core routes, as Orthanc answers them: /system, /plugins and /plugins/transfers (with the
// extensions this node lists). Another route set may amend their JSON through the app's hooks.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/types.ts';
import type { HttpApp } from '../server/app.ts';
import { route, sendJson } from '../server/http.ts';
import { capabilitiesDocument } from '../transfer/capabilities.ts';
import { VERSION } from '../version.ts';

/** The core routes whose JSON answer may be amended (by the Orthanc proxy). */
export type CorePath = '/system' | '/plugins' | '/plugins/transfers';

/** What GET /system answers before any amending. */
function systemDocument(config: Config, dicomPort: number): Record<string, unknown> {
  return {
    ApiVersion: 16,
    CheckRevisions: false,
    DatabaseBackendPlugin: null,
    DatabaseVersion: 6,
    DicomAet: config.DicomAet,
    DicomPort: dicomPort,
    DicomXferVersion: VERSION,
    HttpPort: config.HttpPort,
    // As Orthanc: insecure only when anyone who reaches the port gets in without credentials.
    IsHttpServerSecure: !config.RemoteAccessAllowed || config.AuthenticationEnabled,
    Name: config.Name,
    PluginsEnabled: true,
    StorageAreaPlugin: null,
    Version: '1.10.1',
  };
}

/**
 * Registers the core routes on `app`; each answer passes through the amender of its path, if any.
 * `dicomPort` says the DICOM server's port (the bound one when it listens, as Orthanc shows DicomPort).
 */
export function registerSystemRoutes(app: HttpApp, config: Config, dicomPort: () => number = () => config.DicomPort): void {
  const { fastify, routes } = app;
  const answer = (path: CorePath, value: () => unknown) => ({
    GET: async (req: FastifyRequest, reply: FastifyReply) => sendJson(reply, await app.amended(path, value(), req)),
  });
  route(
    fastify,
    '/system',
    answer('/system', () => systemDocument(config, dicomPort())),
    routes,
  );
  route(
    fastify,
    '/plugins',
    answer('/plugins', () => ['transfers']),
    routes,
  );
  route(
    fastify,
    '/plugins/transfers',
    answer('/plugins/transfers', () => ({
      // The extensions this node lists (as GET /transfers/capabilities); an Orthanc has no such key.
      Capabilities: capabilitiesDocument(config),
      Description: 'dicom-xfer: accelerated, resumable DICOM transfers, wire-compatible with the Transfers Accelerator',
      ExtendsOrthancExplorer: false,
      ID: 'transfers',
      Version: VERSION,
    })),
    routes,
  );
}
