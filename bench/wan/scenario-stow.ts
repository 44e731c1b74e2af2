// The WAN benchmark's STOW-RS methods: the same data set stowed across the emulated link into an Orthanc
// with Debian's DICOMweb plugin, by a dicom-xfer node (`stow`, a DicomWebStow job) and by an Orthanc with
// the plugin (`orthanc-stow`, the plugin's own client at /dicom-web/servers/{id}/stow, the baseline).
import { existsSync } from 'node:fs';
import type { XferNode } from '../../test/helpers/node.ts';
import { startOrthanc, type OrthancServer } from '../../test/helpers/orthanc.ts';
import { freePort } from '../../test/helpers/ports.ts';
import type { ControlClient, MethodName, RunResult } from './common.ts';

export const DICOMWEB_PLUGIN = process.env.ORTHANC_DICOMWEB_PLUGIN ?? '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

/** Why the STOW methods cannot run here, or undefined when they can. */
export function stowUnavailable(): string | undefined {
  return existsSync(DICOMWEB_PLUGIN) ? undefined : `the Orthanc DICOMweb plugin is not installed (${DICOMWEB_PLUGIN})`;
}

type Md5Map = Record<string, string>;
interface Side {
  url: string;
  pid: number;
  stop(): Promise<unknown>;
  log(): string;
}

/** What the runner lends these methods: its process tracking, source servers, timing and job polling. */
export interface StowRunDeps {
  control: ControlClient;
  track<T extends { stop(): Promise<unknown> }>(p: T): T;
  orthancConfig(name: string): Record<string, unknown>;
  /** The dicom-xfer source node, with extra top-level configuration keys. */
  startXferA(port: number, extra: Record<string, unknown>): Promise<XferNode>;
  /** The Orthanc source, with extra configuration keys. */
  startOrthancA(extra: Record<string, unknown>): Promise<OrthancServer>;
  timed(
    method: MethodName,
    sides: { sender: Side; receiver: Side },
    source: Md5Map,
    transfer: (deadline: number) => Promise<unknown>,
  ): Promise<RunResult>;
  waitJob(base: string, id: string, deadline: number): Promise<unknown>;
}

/** The receiving archive: an Orthanc serving DICOMweb through the plugin, on the far side of the link. */
async function startArchive(deps: StowRunDeps): Promise<OrthancServer> {
  const name = 'bench-stow-archive';
  return deps.track(
    await startOrthanc({ name, config: { ...deps.orthancConfig(name), Plugins: [DICOMWEB_PLUGIN], DicomWeb: { Enable: true } } }),
  );
}

/**
 * Stows every study of the source to the archive as one asynchronous job started with the plugin's route
 * and body (`{"Resources": [...]}`), the same request on both kinds of sender.
 */
export async function runStow(method: 'stow' | 'orthanc-stow', deps: StowRunDeps, source: Md5Map): Promise<RunResult> {
  const archive = await startArchive(deps);
  const DicomWeb = { Servers: { b: [`${archive.url}/dicom-web/`] } };
  const sender =
    method === 'stow'
      ? await deps.startXferA(await freePort(), { DicomWeb })
      : await deps.startOrthancA({ Plugins: [DICOMWEB_PLUGIN], DicomWeb: { ...DicomWeb, Enable: true } });
  const studies = await deps.control.json<string[]>(sender.url, 'GET', '/studies');
  return deps.timed(method, { sender, receiver: archive }, source, async (deadline) => {
    const handle = await deps.control.json<{ ID: string }>(sender.url, 'POST', '/dicom-web/servers/b/stow', {
      Resources: studies,
      Asynchronous: true,
    });
    return deps.waitJob(sender.url, handle.ID, deadline);
  });
}
