// The modalities of DicomModalities as the SCU and the REST API see them: found by name or by AET, shown in
// Orthanc's JSON shape, and turned into the target of an association (calling AET, timeout).
import type { Config, ModalityConfig } from '../config/types.ts';
import { XferError } from '../errors.ts';
import type { ScuTarget } from './scu.ts';

/** Associations opened at once to a modality that does not say (its MaximumAssociations). */
export const DEFAULT_MAX_ASSOCIATIONS = 4;

/** The modality of that name; InexistentItem in Orthanc's words when none. */
export function modalityNamed(config: Pick<Config, 'DicomModalities'>, name: string): ModalityConfig {
  const m = Object.hasOwn(config.DicomModalities, name) ? config.DicomModalities[name] : undefined;
  if (!m) throw new XferError('InexistentItem', `No modality with symbolic name: ${name}`);
  return m;
}

/** The modality whose AET is `aet` (the first by name when several share it); undefined when none. */
export function modalityByAet(config: Pick<Config, 'DicomModalities'>, aet: string): ModalityConfig | undefined {
  const names = Object.keys(config.DicomModalities).sort();
  for (const n of names) {
    const m = config.DicomModalities[n];
    if (m && m.aet === aet) return m;
  }
  return undefined;
}

/** What a caller may change for one association (Orthanc's LocalAet and Timeout of a request body). */
export interface TargetOverrides {
  localAet?: string;
  timeoutSeconds?: number;
}

/** How the node reaches a modality: its AET, host and port, as the modality's LocalAet or DicomAet, within its timeout. */
export function scuTarget(config: Pick<Config, 'DicomAet' | 'DicomScuTimeout'>, m: ModalityConfig, o: TargetOverrides = {}): ScuTarget {
  const seconds = o.timeoutSeconds ?? m.timeout ?? config.DicomScuTimeout;
  return {
    host: m.host,
    port: m.port,
    callingAet: o.localAet ?? m.localAet ?? config.DicomAet,
    calledAet: m.aet,
    // 0 means no limit in Orthanc; the library needs one: an hour.
    timeoutMs: (seconds > 0 ? seconds : 3600) * 1000,
  };
}

export function maxAssociations(m: ModalityConfig): number {
  return m.maximumAssociations ?? DEFAULT_MAX_ASSOCIATIONS;
}

/** "PACS@127.0.0.1:4242": a modality in one word for messages. */
export function modalityAddress(m: ModalityConfig): string {
  const host = m.host.includes(':') ? `[${m.host}]` : m.host;
  return `${m.aet}@${host}:${m.port}`;
}

/**
 * A modality as Orthanc's `GET /modalities?expand` shows it. The node keeps one storage commitment switch
 * (both of Orthanc's show it), never transcodes (AllowTranscoding false) and speaks no DICOM TLS.
 */
export function describeModality(m: ModalityConfig): Record<string, unknown> {
  return {
    AET: m.aet,
    AllowEcho: m.allowEcho,
    AllowEventReport: m.allowStorageCommitment,
    AllowFind: m.allowFind,
    AllowFindWorklist: m.allowFind,
    AllowGet: m.allowGet,
    AllowMove: m.allowMove,
    AllowNAction: m.allowStorageCommitment,
    AllowStore: m.allowStore,
    AllowTranscoding: false,
    Host: m.host,
    LocalAet: m.localAet ?? '',
    Manufacturer: m.manufacturer,
    Port: m.port,
    Timeout: m.timeout ?? 0,
    UseDicomTls: false,
  };
}
