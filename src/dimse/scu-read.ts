// Reading stored instances for the SCU: the header of each (to plan the presentation contexts) from the
// first bytes only, and the whole file of one instance when its turn comes on an association.
import { buffer } from 'node:stream/consumers';
import { FIRST_PREFIX, parseDicomHeader } from '../dicom/parse.ts';
import { dataSetLayout, isDicomTruncated } from '../dicom/dataset.ts';
import { XferError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import type { PlannedInstance } from './store-job-kind.ts';
import type { ScuInstance } from './scu.ts';

async function readBytes(store: Store, id: string, end: number): Promise<Buffer> {
  return buffer(await store.readRange(id, 0, end));
}

/** An instance of the store with what an association needs: SOP class and instance, transfer syntax. */
export async function planInstance(store: Store, id: string, size: number): Promise<PlannedInstance> {
  // Bounded: the prefix grows 4 times per round and stops at the file's size.
  for (let want = Math.min(FIRST_PREFIX, size); ; want = Math.min(want * 4, size)) {
    const bytes = await readBytes(store, id, want);
    try {
      const h = parseDicomHeader(bytes, { prefix: want < size });
      if (!h.sopClassUid) throw new XferError('BadFileFormat', `instance ${id} has no SOPClassUID: it cannot be sent over DICOM`);
      return { ID: id, Size: size, SOPClassUID: h.sopClassUid, SOPInstanceUID: h.sopInstanceUid, TransferSyntaxUID: h.transferSyntaxUid };
    } catch (e) {
      if (want >= size || !isDicomTruncated(e)) throw e;
    }
  }
}

export function scuInstance(p: PlannedInstance): ScuInstance {
  return { id: p.ID, sopClassUid: p.SOPClassUID, sopInstanceUid: p.SOPInstanceUID, transferSyntaxUid: p.TransferSyntaxUID };
}

/** The whole stored file of an instance. */
export function readInstanceFile(store: Store, id: string, size: number): Promise<Buffer> {
  return readBytes(store, id, size);
}

/** Where the data set starts in a whole stored file, and its transfer syntax (the codebase's parser). */
export function fileLayout(file: Buffer): { start: number; transferSyntaxUid: string } {
  const l = dataSetLayout(file);
  return { start: l.start, transferSyntaxUid: l.transferSyntaxUid };
}
