// The plan of a STOW-RS send: each instance with the UIDs its confirmation needs (read from its stored
// header), grouped into requests of about Transfers.BucketSize, never splitting an instance, never above
// the server's MaxRequestSize unless one instance is larger by itself.
import { z } from 'zod';
import { FIRST_PREFIX, parseDicomHeader } from '../../dicom/parse.ts';
import { isDicomTruncated } from '../../dicom/dataset.ts';
import type { Store } from '../../store/types.ts';

const Count = z.number().int().nonnegative();

const StowPlanned = z.object({
  ID: z.string(),
  Size: Count,
  SOPInstanceUID: z.string(),
  SeriesInstanceUID: z.string(),
  StudyInstanceUID: z.string(),
});
export type StowPlanned = z.output<typeof StowPlanned>;

/** What a STOW send keeps between runs: its plan, its requests, and what the server said of each instance. */
export const StowStateSchema = z.object({
  plan: z.array(StowPlanned),
  /** Indexes into the plan, one list per request; a request done is a finished unit of the task. */
  groups: z.array(z.array(Count)),
  /** By plan index: "stored" (acknowledged), or why the server refused it. */
  outcomes: z.record(z.string(), z.string()),
});
export type StowState = z.output<typeof StowStateSchema>;

export const STORED = 'stored';

async function readPrefix(store: Store, id: string, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await store.readRange(id, 0, length)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** The UIDs of a stored instance, from as few bytes of its header as suffice. */
export async function planStow(store: Store, id: string, size: number): Promise<StowPlanned> {
  // Bounded: the prefix grows 4 times per round and stops at the file's size.
  for (let want = Math.min(FIRST_PREFIX, size); ; want = Math.min(want * 4, size)) {
    try {
      const h = parseDicomHeader(await readPrefix(store, id, want), { prefix: want < size });
      return {
        ID: id,
        Size: size,
        SOPInstanceUID: h.sopInstanceUid,
        SeriesInstanceUID: h.seriesInstanceUid,
        StudyInstanceUID: h.studyInstanceUid,
      };
    } catch (e) {
      if (want >= size || !isDicomTruncated(e)) throw e;
    }
  }
}

/** Requests of about `target` bytes in plan order; none above `cap` unless one instance is larger by itself. */
export function groupInstances(plan: readonly { Size: number }[], target: number, cap: number | undefined): number[][] {
  const limit = cap === undefined ? target : Math.min(target, cap);
  const groups: number[][] = [];
  let cur: number[] = [];
  let bytes = 0;
  plan.forEach((p, i) => {
    if (cur.length > 0 && bytes + p.Size > limit) {
      groups.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(i);
    bytes += p.Size;
  });
  if (cur.length > 0) groups.push(cur);
  return groups;
}

/**
 * The requests not yet done, largest first. An instance is never split, so a large one crosses the link on
 * one connection, whose rate a lossy link caps well below the link's: started first, it runs while the
 * other requests share the rest of the link, instead of alone at the end.
 */
export function sendOrder(groups: readonly (readonly number[])[], plan: readonly { Size: number }[], done: ReadonlySet<number>): number[] {
  const bytes = groups.map((g) => g.reduce((s, i) => s + (plan[i]?.Size ?? 0), 0));
  const todo = groups.map((_g, i) => i).filter((i) => !done.has(i));
  // Stable: requests of equal size keep their plan order.
  return todo.sort((a, b) => (bytes[b] ?? 0) - (bytes[a] ?? 0));
}
