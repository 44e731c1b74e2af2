// Orthanc's resource views over the embedded store's index: a resource in Orthanc's JSON shape (with its
// series status and stability), `/tools/find` with its matching rules, and `/statistics`.
import { readDicomHeaderFromFile, simplifiedTags } from '../../dicom/parse.ts';
import type { Level, MainTags } from '../../dicom/types.ts';
import { mainTagMatch, type FindRequest } from '../find.ts';
import type { IndexedResource, InstanceIndex } from './instance-index.ts';

export type OrthancResource = Record<string, unknown>;

export const LEVEL_PATH: Record<Level, string> = {
  Patient: 'patients',
  Study: 'studies',
  Series: 'series',
  Instance: 'instances',
};
const PARENT_KEY: Record<Level, string | undefined> = {
  Patient: undefined,
  Study: 'ParentPatient',
  Series: 'ParentStudy',
  Instance: 'ParentSeries',
};

/** Orthanc's ISO "basic" timestamp without fraction, in UTC (LastUpdate). */
function isoBasic(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, '');
}

/** The resource views of one store: its index, where its files are, and when a resource is stable. */
export class ResourceViews {
  readonly #index: InstanceIndex;
  readonly #filePath: (file: string) => string;
  readonly #stableAgeMs: number;

  constructor(index: InstanceIndex, filePath: (file: string) => string, stableAgeSeconds: number) {
    this.#index = index;
    this.#filePath = filePath;
    this.#stableAgeMs = stableAgeSeconds * 1000;
  }

  /** A resource in Orthanc's object shape. */
  async format(row: IndexedResource): Promise<OrthancResource> {
    const level = row.level;
    const out: OrthancResource = {};
    if (level === 'Instance') {
      const inst = await this.#index.instance(row.id);
      out.FileSize = inst?.size;
      out.FileUuid = inst?.file;
      out.ID = row.id;
      out.IndexInSeries = inst?.indexInSeries ?? null;
      out.MainDicomTags = row.mainTags;
      out.ParentSeries = row.parent;
      out.Type = 'Instance';
      return out;
    }
    const childRows = (await this.#index.children(level, row.id)) ?? [];
    const children = childRows.map((c) => c.id);
    const expected = level === 'Series' ? expectedInstances(row.mainTags) : undefined;
    if (level === 'Series') out.ExpectedNumberOfInstances = expected ?? null;
    out.ID = row.id;
    if (level === 'Series') out.Instances = children;
    out.IsStable = Date.now() - row.lastUpdate >= this.#stableAgeMs;
    out.LastUpdate = isoBasic(row.lastUpdate);
    out.MainDicomTags = row.mainTags;
    const parentKey = PARENT_KEY[level];
    if (parentKey) out[parentKey] = row.parent;
    if (level === 'Study') {
      out.PatientMainDicomTags = row.patientTags ?? {};
      out.Series = children;
    }
    if (level === 'Patient') out.Studies = children;
    if (level === 'Series') out.Status = await this.#seriesStatus(childRows, expected);
    out.Type = level;
    return out;
  }

  /** Orthanc's series status: Unknown without an expected count, else Complete, Missing or Inconsistent. */
  async #seriesStatus(instances: readonly IndexedResource[], expected: number | undefined): Promise<string> {
    if (expected === undefined) return 'Unknown';
    const found = await this.#index.instances(instances.map((i) => i.id));
    const seen = new Set<number>();
    for (const i of instances) {
      const idx = found.get(i.id)?.indexInSeries ?? null;
      if (idx === null) return 'Unknown';
      if (!(idx > 0 && idx <= expected) || seen.has(idx)) return 'Inconsistent';
      seen.add(idx);
    }
    return seen.size === expected ? 'Complete' : 'Missing';
  }

  /**
   * Orthanc's `/tools/find` over the index: the IDs of the matching resources sorted as Orthanc sorts them
   * (by ID), `since` skipped and at most `limit` (0: all); with `expand`, each in its GET shape. Tags that are
   * not main tags are read from the first instance of each candidate, as Orthanc reads them from a file.
   */
  async find(req: FindRequest): Promise<string[] | OrthancResource[]> {
    const constraints = req.constraints;
    if (constraints.some((c) => c.source.kind === 'never')) return [];
    const depth = Math.max(0, ...constraints.map((c) => (c.source.kind === 'main' ? c.source.up : 0)));
    const ancestors = new Map<string, IndexedResource | undefined>();
    const ancestor = async (id: string) => {
      if (!ancestors.has(id)) ancestors.set(id, await this.#index.resource(id));
      return ancestors.get(id);
    };
    // Orthanc answers instances in the order they were stored, the other levels sorted by ID (observed).
    const rows = await this.#index.all(req.level, req.level === 'Instance' ? 'stored' : 'id');
    const found: IndexedResource[] = [];
    let skipped = 0;
    for (const row of rows) {
      const up: MainTags[] = [];
      for (let r: IndexedResource | undefined = row; r && up.length <= depth; ) {
        up.push(r.mainTags);
        // Patient tags are matched on the study's own copy of them, as Orthanc does: patients without a
        // PatientID gather studies of different names.
        if (r.level === 'Study') {
          up.push(r.patientTags ?? {});
          break;
        }
        r = r.parent === undefined ? undefined : await ancestor(r.parent);
      }
      if (!constraints.every((c) => c.source.kind !== 'main' || mainTagMatch(c, up))) continue;
      if (!(await this.#matchesBeyondMain(req, row))) continue;
      if (skipped < req.since) {
        skipped++;
        continue;
      }
      found.push(row);
      if (req.limit > 0 && found.length >= req.limit) break;
    }
    if (!req.expand) return found.map((r) => r.id);
    const out: OrthancResource[] = [];
    for (const row of found) {
      const r = await this.format(row);
      if (req.requestedTags.length > 0) r.RequestedTags = await this.#requestedTags(row, req.requestedTags);
      out.push(r);
    }
    return out;
  }

  /** The constraints on a study's modalities and on tags read from a file. */
  async #matchesBeyondMain(req: FindRequest, row: IndexedResource): Promise<boolean> {
    const byFile = req.constraints.filter((c) => c.source.kind === 'file');
    const byModality = req.constraints.filter((c) => c.source.kind === 'series-modality');
    if (byModality.length > 0) {
      const series = ((await this.#index.children(row.level, row.id)) ?? []).map((s) => s.mainTags.Modality);
      if (!byModality.every((c) => series.some((m) => m !== undefined && c.test(m)))) return false;
    }
    if (byFile.length > 0) {
      const tags = await this.#fileTags(row);
      return byFile.every((c) => {
        const v = tags?.[c.name];
        return typeof v === 'string' && c.test(v);
      });
    }
    return true;
  }

  /** The simplified tags of the first instance under a resource (undefined when its file cannot be read). */
  async #fileTags(row: IndexedResource): Promise<Record<string, unknown> | undefined> {
    const first = row.level === 'Instance' ? row.id : (await this.#index.instanceIdsUnder(row.level, row.id))?.[0];
    const file = first === undefined ? undefined : await this.#index.instance(first);
    if (!file) return undefined;
    try {
      return simplifiedTags(await readDicomHeaderFromFile(this.#filePath(file.file)), 'simplify') as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /** RequestedTags of one resource: main tags of it and its ancestors first, else read from a file. */
  async #requestedTags(row: IndexedResource, names: readonly string[]): Promise<Record<string, unknown>> {
    const merged: MainTags = {};
    for (let r: IndexedResource | undefined = row, i = 0; r && i < 4; i++) {
      for (const [k, v] of Object.entries(r.mainTags)) if (!(k in merged)) merged[k] = v;
      r = r.parent === undefined ? undefined : await this.#index.resource(r.parent);
    }
    const out: Record<string, unknown> = {};
    let fromFile: Record<string, unknown> | undefined;
    for (const name of names) {
      if (merged[name] !== undefined) {
        out[name] = merged[name];
        continue;
      }
      fromFile ??= (await this.#fileTags(row)) ?? {};
      if (fromFile[name] !== undefined) out[name] = fromFile[name];
    }
    return out;
  }

  /** Orthanc's /statistics. */
  async statistics(): Promise<Record<string, unknown>> {
    const c = await this.#index.counts();
    const mb = Math.floor(c.bytes / (1024 * 1024));
    return {
      CountInstances: c.instances,
      CountPatients: c.patients,
      CountSeries: c.series,
      CountStudies: c.studies,
      TotalDiskSize: String(c.bytes),
      TotalDiskSizeMB: mb,
      TotalUncompressedSize: String(c.bytes),
      TotalUncompressedSizeMB: mb,
    };
  }
}

function strictInt(v: string | undefined): number | undefined {
  return v !== undefined && /^[+-]?\d{1,15}$/.test(v) ? Number.parseInt(v, 10) : undefined;
}

/**
 * How many instances a series announces, as Orthanc computes it from the series' main tags:
 * ImagesInAcquisition x NumberOfTemporalPositions, else NumberOfSlices x NumberOfTimeSlices, else
 * CardiacNumberOfImages. Undefined when none applies or the product is not positive.
 */
function expectedInstances(tags: MainTags): number | undefined {
  const pairs: [string, string | undefined][] = [
    ['ImagesInAcquisition', 'NumberOfTemporalPositions'],
    ['NumberOfSlices', 'NumberOfTimeSlices'],
    ['CardiacNumberOfImages', undefined],
  ];
  for (const [a, b] of pairs) {
    if (tags[a] === undefined || (b !== undefined && tags[b] === undefined)) continue;
    const x = strictInt(tags[a]);
    const y = b === undefined ? 1 : strictInt(tags[b]);
    if (x === undefined || y === undefined) return undefined;
    return x * y > 0 ? x * y : undefined;
  }
  return undefined;
}
