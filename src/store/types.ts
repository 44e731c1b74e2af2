// The store interface: the one contract between the transfer engine and where DICOM lives (the
// embedded store, or a real Orthanc). The engine never knows which store it holds.
import type { DicomHeader } from '../dicom/types.ts';
import type { Readable } from 'node:stream';
import type { Level, OrthancIds } from '../dicom/types.ts';

/** Size and MD5 (32 lowercase hex) of an instance's DICOM file, as stored. */
export interface InstanceInfo {
  id: string;
  size: number;
  md5: string;
}

/** A file staged on local disk, complete, that a commit will adopt. */
export interface StagedInstance {
  id: string;
  path: string;
  size: number;
  md5: string;
  /** The file's data was already flushed to disk (a store need not do it again). */
  synced?: boolean;
  /** The file was hashed as it was written and matched `md5` (a store need not read it again for that). */
  verified?: boolean;
  /** With `verified`: the header parsed from the very bytes that were hashed (a store need not read it). */
  header?: DicomHeader;
  /** With `verified`: where prepareStaged placed the file ahead of the commit (a store need not move it). */
  prepared?: PreparedFile;
}

/** A staged file that a store placed ahead of its commit (prepareStaged): among its files, in no index row. */
export interface PreparedFile {
  file: string;
}

export type IngestStatus = 'Success' | 'AlreadyStored';

export interface IngestResult {
  ids: OrthancIds;
  status: IngestStatus;
}

/** What the caller of ingestFile may already know, to spare the store a read or a flush. */
export interface IngestHints {
  /** The first bytes of the file (enough to parse its header in most cases). */
  head?: Buffer;
  /** The file's data was already flushed to disk. */
  synced?: boolean;
}

export interface CommitResult {
  /** Instances that the commit added. */
  stored: string[];
  /** Instances that were already there with the same content. */
  alreadyStored: string[];
}

/** An instance's Orthanc IDs and the main tags of its patient, study, series and itself, in one flat object. */
export interface InstanceTags {
  ids: OrthancIds;
  tags: Record<string, string>;
}

export interface StoreFeatures {
  /** The store answers Orthanc's resource REST API itself (patients, studies, ...). */
  readonly resourceApi: boolean;
}

export interface Store {
  readonly kind: 'embedded' | 'orthanc';
  readonly features: StoreFeatures;

  /** IDs of the instances of a resource, sorted. Rejects with UnknownResource when it is absent. */
  listInstances(level: Level, id: string): Promise<string[]>;

  /** Size and MD5 of one instance. Rejects with UnknownResource when it is absent. */
  instanceInfo(id: string): Promise<InstanceInfo>;

  /** The instances among `ids` that the store holds, with their size and MD5. Never rejects for absent ones. */
  findInstances(ids: readonly string[]): Promise<Map<string, InstanceInfo>>;

  /**
   * The bytes [start, end) of an instance's file as a stream. Rejects with UnknownResource when the
   * instance is absent and ParameterOutOfRange when the range is outside the file.
   */
  readRange(id: string, start: number, end: number): Promise<Readable>;

  /**
   * Optional: fills `target` with the bytes [start, start + target.length) of an instance's file, read
   * straight into it (no stream, no copy). Rejects as readRange does, and with CorruptedFile when the
   * file ends before the range does.
   */
  readRangeInto?(id: string, start: number, target: Uint8Array): Promise<void>;

  /** A directory on the same file system as the store, where staged files can be written. */
  stagingRoot(): string;

  /**
   * Stores a staged DICOM file (already complete on disk, MD5 known). The file is moved or copied;
   * it no longer belongs to the caller afterwards. Rejects with BadFileFormat for a file that is not
   * DICOM. The answer says whether the instance was new.
   */
  ingestFile(path: string, size: number, md5: string, hints?: IngestHints): Promise<IngestResult>;

  /**
   * Adopts every staged instance, all or none: each file's MD5 is checked against the declared one
   * (CorruptedFile naming the instances otherwise), each must parse as DICOM, and either all become
   * visible at once or none does. The staged files are consumed on success and left on failure.
   */
  commitStaged(staged: readonly StagedInstance[]): Promise<CommitResult>;

  /**
   * Optional: prepares, in the background of a transfer that has just begun, what a commit of `count`
   * new instances will need (the embedded store makes their directories). Best effort; never rejects.
   */
  prepareFiles?(count: number): Promise<void>;

  /**
   * Optional: while a transfer still runs, does a commit's work for staged instances that are complete and
   * verified (their files placed where the store keeps them, unseen until the commit's index transaction),
   * so that the commit is little more than that transaction. Answers one entry per instance, undefined
   * where it did nothing (the commit then does it all). Best effort; never rejects. What a commit does not
   * adopt goes with releasePrepared.
   */
  prepareStaged?(staged: readonly StagedInstance[]): Promise<(PreparedFile | undefined)[]>;

  /** Optional: undoes prepareStaged for files no commit adopted (a discard, a failed commit). Never rejects. */
  releasePrepared?(files: readonly PreparedFile[]): Promise<void>;

  /**
   * Optional: the IDs and main tags of an instance (what routing rules match on), or undefined when it is
   * absent. A tag present at two levels keeps the value of the lower one.
   */
  mainTags?(instanceId: string): Promise<InstanceTags | undefined>;

  /** Optional: deletes instances (and parents left empty); an absent one counts as deleted. Answers those that could not be. */
  deleteInstances?(ids: readonly string[]): Promise<string[]>;

  close(): Promise<void>;
}
