// DICOM tags as data: Orthanc 1.10.1's main DICOM tags of each level (which tags Orthanc indexes and shows
// in `MainDicomTags`), and lookups into the standard data dictionary (VR and keyword of a tag).
import { DICTIONARY_DATA } from './dictionary.ts';
import type { Level } from './types.ts';

/** A tag as a number: group in the high 16 bits, element in the low 16 bits. */
export type TagNumber = number;

export function tagNumber(group: number, element: number): TagNumber {
  return ((group & 0xffff) * 0x10000 + (element & 0xffff)) >>> 0;
}

export function tagGroup(tag: TagNumber): number {
  return tag >>> 16;
}

export function tagElement(tag: TagNumber): number {
  return tag & 0xffff;
}

/** "gggg,eeee" in lowercase hex, the way Orthanc writes tags in JSON. */
export function formatTag(tag: TagNumber): string {
  const hex = tag.toString(16).padStart(8, '0');
  return `${hex.slice(0, 4)},${hex.slice(4)}`;
}

/** Parses "GGGG,EEEE", "GGGGEEEE", "(GGGG,EEEE)" or dicom-parser's "xggggeeee"; undefined if malformed. */
export function parseTag(s: string): TagNumber | undefined {
  const m = /^\(?x?([0-9a-fA-F]{4}),?([0-9a-fA-F]{4})\)?$/.exec(s);
  if (!m || m[1] === undefined || m[2] === undefined) return undefined;
  return tagNumber(parseInt(m[1], 16), parseInt(m[2], 16));
}

/** dicom-parser's key of a tag: "x" and 8 lowercase hex digits ("x00100020"). */
export function parserKey(tag: TagNumber): string {
  return `x${tag.toString(16).padStart(8, '0')}`;
}

export interface MainTag {
  readonly tag: TagNumber;
  readonly name: string;
}

function t(group: number, element: number, name: string): MainTag {
  return { tag: tagNumber(group, element), name };
}

/**
 * Orthanc 1.10.1's main DICOM tags per level, in the order of Orthanc's table. Observed on the real server:
 * every tag below that occurs in the 239 test files is shown at exactly this level, and no other tag is
 * shown; NumberOfTimeSlices and AcquisitionDeviceProcessingDescription (absent from the test files) were
 * checked on a file written for the purpose. ImageOrientationPatient is a main tag of both Series and
 * Instance. A tag absent from the file is absent from `MainDicomTags`; a tag present but empty is "".
 */
export const MAIN_DICOM_TAGS: Readonly<Record<Level, readonly MainTag[]>> = {
  Patient: [
    t(0x0010, 0x0010, 'PatientName'),
    t(0x0010, 0x0030, 'PatientBirthDate'),
    t(0x0010, 0x0040, 'PatientSex'),
    t(0x0010, 0x1000, 'OtherPatientIDs'),
    t(0x0010, 0x0020, 'PatientID'),
  ],
  Study: [
    t(0x0008, 0x0020, 'StudyDate'),
    t(0x0008, 0x0030, 'StudyTime'),
    t(0x0020, 0x0010, 'StudyID'),
    t(0x0008, 0x1030, 'StudyDescription'),
    t(0x0008, 0x0050, 'AccessionNumber'),
    t(0x0020, 0x000d, 'StudyInstanceUID'),
    t(0x0032, 0x1060, 'RequestedProcedureDescription'),
    t(0x0008, 0x0080, 'InstitutionName'),
    t(0x0032, 0x1032, 'RequestingPhysician'),
    t(0x0008, 0x0090, 'ReferringPhysicianName'),
  ],
  Series: [
    t(0x0008, 0x0021, 'SeriesDate'),
    t(0x0008, 0x0031, 'SeriesTime'),
    t(0x0008, 0x0060, 'Modality'),
    t(0x0008, 0x0070, 'Manufacturer'),
    t(0x0008, 0x1010, 'StationName'),
    t(0x0008, 0x103e, 'SeriesDescription'),
    t(0x0018, 0x0015, 'BodyPartExamined'),
    t(0x0018, 0x0024, 'SequenceName'),
    t(0x0018, 0x1030, 'ProtocolName'),
    t(0x0020, 0x0011, 'SeriesNumber'),
    t(0x0018, 0x1090, 'CardiacNumberOfImages'),
    t(0x0020, 0x1002, 'ImagesInAcquisition'),
    t(0x0020, 0x0105, 'NumberOfTemporalPositions'),
    t(0x0054, 0x0081, 'NumberOfSlices'),
    t(0x0054, 0x0101, 'NumberOfTimeSlices'),
    t(0x0020, 0x000e, 'SeriesInstanceUID'),
    t(0x0020, 0x0037, 'ImageOrientationPatient'),
    t(0x0054, 0x1000, 'SeriesType'),
    t(0x0008, 0x1070, 'OperatorsName'),
    t(0x0040, 0x0254, 'PerformedProcedureStepDescription'),
    t(0x0018, 0x1400, 'AcquisitionDeviceProcessingDescription'),
    t(0x0018, 0x0010, 'ContrastBolusAgent'),
  ],
  Instance: [
    t(0x0008, 0x0012, 'InstanceCreationDate'),
    t(0x0008, 0x0013, 'InstanceCreationTime'),
    t(0x0020, 0x0012, 'AcquisitionNumber'),
    t(0x0054, 0x1330, 'ImageIndex'),
    t(0x0020, 0x0013, 'InstanceNumber'),
    t(0x0028, 0x0008, 'NumberOfFrames'),
    t(0x0020, 0x0100, 'TemporalPositionIdentifier'),
    t(0x0008, 0x0018, 'SOPInstanceUID'),
    t(0x0020, 0x0032, 'ImagePositionPatient'),
    t(0x0020, 0x4000, 'ImageComments'),
    t(0x0020, 0x0037, 'ImageOrientationPatient'),
  ],
};

/** Tags that dicom-xfer needs besides the main tags. */
export const TAG = {
  TransferSyntaxUID: tagNumber(0x0002, 0x0010),
  SpecificCharacterSet: tagNumber(0x0008, 0x0005),
  SOPClassUID: tagNumber(0x0008, 0x0016),
  SOPInstanceUID: tagNumber(0x0008, 0x0018),
  PatientID: tagNumber(0x0010, 0x0020),
  StudyInstanceUID: tagNumber(0x0020, 0x000d),
  SeriesInstanceUID: tagNumber(0x0020, 0x000e),
  PixelData: tagNumber(0x7fe0, 0x0010),
} as const;

export interface DictionaryEntry {
  /** The VR as the dictionary gives it; may be a DCMTK pseudo-VR: "ox" (OB/OW), "xs" (US/SS), "lt", "up", "na". */
  readonly vr: string;
  /** The keyword, as DCMTK and Orthanc spell it (retired ones start with "RETIRED_"). */
  readonly name: string;
}

let dictionary: Map<TagNumber, DictionaryEntry> | undefined;

function loadDictionary(): Map<TagNumber, DictionaryEntry> {
  if (dictionary) return dictionary;
  const map = new Map<TagNumber, DictionaryEntry>();
  for (const line of DICTIONARY_DATA.split('\n')) {
    if (line.length < 12) continue;
    const [hex, vr, name] = line.split(' ');
    if (hex === undefined || vr === undefined || name === undefined) continue;
    map.set(parseInt(hex, 16) >>> 0, { vr, name });
  }
  dictionary = map;
  return map;
}

/**
 * The standard dictionary's entry of a tag; undefined for private and unknown tags. Repeating groups (curves
 * 50xx, overlays 60xx) are found under their first group.
 */
export function lookupTag(tag: TagNumber): DictionaryEntry | undefined {
  const dict = loadDictionary();
  const exact = dict.get(tag);
  if (exact) return exact;
  const group = tagGroup(tag);
  if ((group & 0xff01) === 0x5000 || (group & 0xff01) === 0x6000) {
    return dict.get(tagNumber(group & 0xff00, tagElement(tag)));
  }
  return undefined;
}

/** The tag of a keyword of the standard dictionary ("PatientName" -> 0x00100010). */
export function tagOfName(name: string): TagNumber | undefined {
  for (const [tag, e] of loadDictionary()) if (e.name === name) return tag;
  return undefined;
}
