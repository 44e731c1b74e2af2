// The index's rows, shared by its SQLite and PostgreSQL implementations: the level numbers, the row schemas,
// and the conversion of a checked row into what InstanceIndex answers. A damaged row is refused, never used.
import { z } from 'zod';
import type { Level } from '../../dicom/types.ts';
import { XferError } from '../../errors.ts';
import { readStored } from '../../util/stored-json.ts';
import type { IndexedInstance, IndexedResource } from './instance-index.ts';

export const LEVEL_NUM: Record<Level, number> = { Patient: 0, Study: 1, Series: 2, Instance: 3 };
export const NUM_LEVEL: readonly Level[] = ['Patient', 'Study', 'Series', 'Instance'];

const MainTagsSchema = z.record(z.string(), z.string());

/** A resource row with its parent's ID (each implementation's RESOURCE select). */
const ResourceRow = z.object({
  seq: z.number().int(),
  id: z.string(),
  level: z.number().int().min(0).max(3),
  parent_id: z.string().nullable(),
  main_tags: z.string(),
  patient_tags: z.string().nullable(),
  last_update: z.number(),
});

const InstanceRow = z.object({
  id: z.string(),
  file: z.string(),
  size: z.number().int().nonnegative(),
  md5: z.string(),
  index_in_series: z.number().int().nullable(),
});

export const SeqRow = z.object({ seq: z.number().int() });
export const ParentRow = z.object({ seq: z.number().int(), parent: z.number().int().nullable() });
export const CountRow = z.object({ n: z.number() });
export const IdRow = z.object({ id: z.string() });
export const FileRow = z.object({ file: z.string() });

/** Checks a row; a damaged one is refused with the field at fault (BadFileFormat), never used. */
export function checked<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) throw new XferError('BadFileFormat', `index row of ${what}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

export function toResource(raw: unknown): IndexedResource {
  const row = checked(ResourceRow, raw, 'a resource');
  return {
    id: row.id,
    level: NUM_LEVEL[row.level] as Level,
    parent: row.parent_id ?? undefined,
    mainTags: readStored(MainTagsSchema, row.main_tags, `main tags of ${row.id}`),
    patientTags: row.patient_tags === null ? undefined : readStored(MainTagsSchema, row.patient_tags, `patient tags of ${row.id}`),
    lastUpdate: row.last_update,
  };
}

export function toInstance(raw: unknown): IndexedInstance {
  const row = checked(InstanceRow, raw, 'an instance');
  return { id: row.id, file: row.file, size: row.size, md5: row.md5, indexInSeries: row.index_in_series };
}
