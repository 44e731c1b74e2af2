// What the DICOM server accepts, decided as Orthanc decides it: the called AET, the calling modality
// (known by its AET, and its host when asked), which services each may use, and for each presentation
// context its abstract syntax and the first transfer syntax the node takes as it is sent.
import type { Config, ModalityConfig } from '../config/types.ts';

export const VERIFICATION = '1.2.840.10008.1.1';
export const STORAGE_COMMITMENT_PUSH = '1.2.840.10008.1.20.1';
export const PATIENT_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.1.1';
export const PATIENT_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.1.2';
export const STUDY_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.2.1';
export const STUDY_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.2.2';

/** Every storage SOP class of the standard lives under this root (images, SR, waveforms, RT, ...). */
const STORAGE_ROOT = '1.2.840.10008.5.1.4.1.1.';
/** Storage SOP classes outside that root. */
const OTHER_STORAGE = new Set([
  '1.2.840.10008.5.1.4.34.7', // RT Beams Delivery Instruction
  '1.2.840.10008.5.1.4.34.10', // RT Brachy Application Setup Delivery Instruction
  '1.2.840.10008.5.1.4.38.1', // Hanging Protocol
  '1.2.840.10008.5.1.4.39.1', // Color Palette
  '1.2.840.10008.5.1.4.43.1', // Generic Implant Template
  '1.2.840.10008.5.1.4.44.1', // Implant Assembly Template
  '1.2.840.10008.5.1.4.45.1', // Implant Template Group
]);

export function isStorageSopClass(uid: string): boolean {
  return uid.startsWith(STORAGE_ROOT) || OTHER_STORAGE.has(uid);
}

/** Transfer syntaxes of commands, queries and reports: the two the DIMSE library reads itself. */
const PLAIN_SYNTAXES = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);

/** Transfer syntaxes a C-STORE is taken in, stored byte for byte as they come (never transcoded). */
export const STORE_SYNTAXES: ReadonlySet<string> = new Set([
  '1.2.840.10008.1.2', // implicit VR little endian
  '1.2.840.10008.1.2.1', // explicit VR little endian
  '1.2.840.10008.1.2.1.99', // deflated explicit VR little endian (stored deflated)
  '1.2.840.10008.1.2.2', // explicit VR big endian (retired, still sent by old modalities)
  '1.2.840.10008.1.2.4.50', // JPEG baseline
  '1.2.840.10008.1.2.4.51', // JPEG extended
  '1.2.840.10008.1.2.4.57', // JPEG lossless
  '1.2.840.10008.1.2.4.70', // JPEG lossless, first-order prediction
  '1.2.840.10008.1.2.4.80', // JPEG-LS lossless
  '1.2.840.10008.1.2.4.81', // JPEG-LS near-lossless
  '1.2.840.10008.1.2.4.90', // JPEG 2000 lossless
  '1.2.840.10008.1.2.4.91', // JPEG 2000
  '1.2.840.10008.1.2.4.92', // JPEG 2000 part 2 lossless
  '1.2.840.10008.1.2.4.93', // JPEG 2000 part 2
  '1.2.840.10008.1.2.4.100', // MPEG-2 main profile
  '1.2.840.10008.1.2.4.101', // MPEG-2 high profile
  '1.2.840.10008.1.2.4.102', // MPEG-4 AVC/H.264
  '1.2.840.10008.1.2.4.103', // MPEG-4 AVC/H.264 BD-compatible
  '1.2.840.10008.1.2.4.104', // MPEG-4 AVC/H.264 2D video
  '1.2.840.10008.1.2.4.105', // MPEG-4 AVC/H.264 3D video
  '1.2.840.10008.1.2.4.106', // MPEG-4 AVC/H.264 stereo
  '1.2.840.10008.1.2.4.107', // HEVC/H.265 main profile
  '1.2.840.10008.1.2.4.108', // HEVC/H.265 main 10 profile
  '1.2.840.10008.1.2.4.201', // HTJ2K lossless
  '1.2.840.10008.1.2.4.202', // HTJ2K lossless RPCL
  '1.2.840.10008.1.2.4.203', // HTJ2K
  '1.2.840.10008.1.2.5', // RLE lossless
]);

/** The services a presentation context asks for, each allowed or not per calling modality. */
export type Service = 'Echo' | 'Store' | 'Find' | 'Move' | 'StorageCommitment';

/** The service of an abstract syntax, or undefined when the node does not offer it. */
export function serviceOf(abstractSyntax: string): Service | undefined {
  if (abstractSyntax === VERIFICATION) return 'Echo';
  if (abstractSyntax === PATIENT_ROOT_FIND || abstractSyntax === STUDY_ROOT_FIND) return 'Find';
  if (abstractSyntax === PATIENT_ROOT_MOVE || abstractSyntax === STUDY_ROOT_MOVE) return 'Move';
  if (abstractSyntax === STORAGE_COMMITMENT_PUSH) return 'StorageCommitment';
  if (isStorageSopClass(abstractSyntax)) return 'Store';
  return undefined;
}

const BIG_ENDIAN = '1.2.840.10008.1.2.2';

/**
 * The first of the proposed transfer syntaxes the node takes for this service, or undefined. Big endian
 * (retired) only when nothing else is proposed: an SCU that lists it first would otherwise convert little
 * endian files into it on the way.
 */
export function pickTransferSyntax(service: Service, proposed: readonly string[]): string | undefined {
  const accepted = service === 'Store' ? STORE_SYNTAXES : PLAIN_SYNTAXES;
  const clean = proposed.map((ts) => ts.replace(/\0+$/, '').trim()).filter((ts) => accepted.has(ts));
  return clean.find((ts) => ts !== BIG_ENDIAN) ?? clean[0];
}

/** The parts of the configuration the negotiation reads. */
export type PolicyConfig = Pick<
  Config,
  | 'DicomAet'
  | 'DicomCheckCalledAet'
  | 'DicomCheckModalityHost'
  | 'DicomAlwaysAllowEcho'
  | 'DicomAlwaysAllowStore'
  | 'DicomAlwaysAllowFind'
  | 'DicomAlwaysAllowMove'
  | 'DicomModalities'
>;

/** Orthanc compares AE titles without case and without padding (StrictAetComparison false). */
export function sameAet(a: string, b: string): boolean {
  return a.trim().toUpperCase() === b.trim().toUpperCase();
}

function bareIp(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}

function sameHost(host: string, remoteIp: string): boolean {
  const ip = bareIp(remoteIp);
  const h = host.trim().toLowerCase();
  if (h === ip.toLowerCase()) return true;
  // A modality written as "localhost" is this machine, whichever loopback address it came from.
  return h === 'localhost' && (ip === '::1' || ip.startsWith('127.'));
}

/** The modality of DicomModalities this association comes from, if any. */
export function findModality(config: PolicyConfig, callingAet: string, remoteIp: string): ModalityConfig | undefined {
  const byAet = Object.values(config.DicomModalities).filter((m) => sameAet(m.aet, callingAet));
  if (!config.DicomCheckModalityHost) return byAet[0];
  return byAet.find((m) => sameHost(m.host, remoteIp));
}

/** Why an association is refused before its presentation contexts are looked at. */
export type AssociationRefusal = 'called-aet' | 'calling-aet';

/** The association-level decision: who calls, and whether the node talks to it at all. */
export interface Caller {
  callingAet: string;
  calledAet: string;
  remoteIp: string;
  modality: ModalityConfig | undefined;
}

export function refusalOf(config: PolicyConfig, caller: Caller): AssociationRefusal | undefined {
  if (config.DicomCheckCalledAet && !sameAet(caller.calledAet, config.DicomAet)) return 'called-aet';
  const anyAlways =
    config.DicomAlwaysAllowEcho || config.DicomAlwaysAllowStore || config.DicomAlwaysAllowFind || config.DicomAlwaysAllowMove;
  if (!anyAlways && !caller.modality) return 'calling-aet';
  return undefined;
}

/** Whether the caller may use a service: always for all, or allowed to its modality. */
export function allows(config: PolicyConfig, modality: ModalityConfig | undefined, service: Service): boolean {
  switch (service) {
    case 'Echo':
      return config.DicomAlwaysAllowEcho || modality?.allowEcho === true;
    case 'Store':
      return config.DicomAlwaysAllowStore || modality?.allowStore === true;
    case 'Find':
      return config.DicomAlwaysAllowFind || modality?.allowFind === true;
    case 'Move':
      return config.DicomAlwaysAllowMove || modality?.allowMove === true;
    case 'StorageCommitment':
      // Orthanc has no "always" switch here: only a known modality that allows it reports commitments.
      return modality?.allowStorageCommitment === true;
  }
}
