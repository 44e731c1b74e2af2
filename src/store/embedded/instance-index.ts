// The index of the embedded store (patients, studies, series, instances and where each instance's file
// is), behind an interface so that a second index (PostgreSQL, shared by several nodes) can replace the
// SQLite one; the files themselves stay on local disk, handled by the store.
import type { Level, MainTags, OrthancIds } from '../../dicom/types.ts';

/** A resource of any level as indexed. */
export interface IndexedResource {
  id: string;
  level: Level;
  /** The ID of its parent (undefined for a patient). */
  parent: string | undefined;
  mainTags: MainTags;
  /** A study's own copy of its patient's main tags (undefined at the other levels). */
  patientTags: MainTags | undefined;
  /** When an instance under it was last stored (ms since the epoch). */
  lastUpdate: number;
}

/** Where an instance's file is, and what it holds. */
export interface IndexedInstance {
  id: string;
  /** The file's name in the store's files/ directory. */
  file: string;
  size: number;
  md5: string;
  /** Orthanc's IndexInSeries (InstanceNumber or ImageIndex when an integer). */
  indexInSeries: number | null;
}

/** One instance to index, its file already in place. */
export interface IndexEntry {
  ids: OrthancIds;
  tags: Record<Level, MainTags>;
  file: string;
  size: number;
  md5: string;
  transferSyntax: string;
  sopClass: string | null;
  indexInSeries: number | null;
}

/**
 * What an instance already indexed becomes on adoption: kept ('never' replaced), replaced ('always'), or
 * replaced only when its MD5 differs ('if-different').
 */
export type ReplacePolicy = 'never' | 'always' | 'if-different';

export interface AdoptResult {
  /** Instances indexed by this adoption (new, or replacing an older file). */
  adopted: string[];
  /** Instances left as they were: their new files are to be removed (they stay in the journal). */
  kept: { id: string; file: string }[];
  /** Files of the instances replaced: to be removed (they are in the journal). */
  replaced: string[];
}

export interface IndexCounts {
  patients: number;
  studies: number;
  series: number;
  instances: number;
  /** The sum of the instances' file sizes. */
  bytes: number;
}

/**
 * The index. Each method is atomic; reads answer what committed writes left. The journal holds the files
 * being placed or removed, so that a crash between a file operation and the index leaves nothing behind:
 * a journalled file that no instance references is removed at the next start.
 */
export interface InstanceIndex {
  /** A resource of a given level, or of any level when `level` is undefined. */
  resource(id: string, level?: Level): Promise<IndexedResource | undefined>;
  instance(id: string): Promise<IndexedInstance | undefined>;
  /** The instances among `ids` that are indexed. */
  instances(ids: readonly string[]): Promise<Map<string, IndexedInstance>>;
  /** The instances under a resource (itself for an instance), in the order they were stored. */
  instancesUnder(level: Level, id: string): Promise<IndexedResource[] | undefined>;
  /** The IDs of the instances under a resource (as instancesUnder, without reading their tags). */
  instanceIdsUnder(level: Level, id: string): Promise<string[] | undefined>;
  /** The direct children of a resource, in the order they were stored. */
  children(level: Level, id: string): Promise<IndexedResource[] | undefined>;
  /** IDs of the resources of a level in the order they were stored; `since` skips, `limit` (> 0) caps. */
  list(level: Level, since: number, limit: number): Promise<string[]>;
  /** Every resource of a level, by storage order or by ID. */
  all(level: Level, order: 'stored' | 'id'): Promise<IndexedResource[]>;
  counts(): Promise<IndexCounts>;

  /** Records files about to be placed or removed. */
  journal(files: readonly string[], now: number): Promise<void>;
  /** Drops files from the journal (placed and indexed, or removed from disk). */
  unjournal(files: readonly string[]): Promise<void>;
  /** The journalled files that no instance references (to be removed), the journal then emptied. */
  takeOrphans(): Promise<string[]>;

  /**
   * Indexes the entries in one transaction, all or none: the four levels of each, their files leaving the
   * journal, and the files of replaced instances entering it.
   */
  adopt(entries: readonly IndexEntry[], replace: ReplacePolicy, now: number): Promise<AdoptResult>;
  /**
   * Removes a resource, its descendants and the ancestors it leaves empty, in one transaction; their
   * files enter the journal. Undefined when absent.
   */
  remove(level: Level, id: string, now: number): Promise<{ files: string[]; remaining: IndexedResource | undefined } | undefined>;
  close(): Promise<void>;
}
