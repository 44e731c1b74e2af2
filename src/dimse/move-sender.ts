// What the DICOM server's C-MOVE asks of the node: send stored instances to the modality of DicomModalities
// that has the move destination's AET, with the SCU, reporting the counts as each instance is answered.
import type { Config } from '../config/types.ts';
import { XferError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { maxAssociations, modalityByAet, scuTarget } from './modality.ts';
import { storeInstances, type ScuInstance } from './scu.ts';
import { fileLayout, planInstance, readInstanceFile, scuInstance } from './scu-read.ts';
import type { MoveProgress, MoveSender } from './services.ts';

export interface ModalitySenderDeps {
  config: Pick<Config, 'DicomModalities' | 'DicomAet' | 'DicomScuTimeout'>;
  store: Store;
}

/** The MoveSender of the node: one send per C-MOVE, not a job (the C-MOVE's association waits for it). */
export function createModalitySender(deps: ModalitySenderDeps): MoveSender {
  return {
    async sendTo(destinationAet, instanceIds, progress, signal) {
      const modality = modalityByAet(deps.config, destinationAet);
      if (!modality) throw new XferError('UnknownResource', `no modality of DicomModalities has the AET "${destinationAet}"`);
      const counts: MoveProgress = { remaining: instanceIds.length, completed: 0, failed: 0, warning: 0 };
      const found = await deps.store.findInstances(instanceIds);
      const sizes = new Map<string, number>();
      const planned: ScuInstance[] = [];
      for (const id of new Set(instanceIds)) {
        const info = found.get(id);
        if (!info) {
          // Deleted since the C-FIND that named it: counted as a failed sub-operation.
          counts.failed++;
          counts.remaining--;
          continue;
        }
        sizes.set(id, info.size);
        try {
          planned.push(scuInstance(await planInstance(deps.store, id, info.size)));
        } catch {
          counts.failed++;
          counts.remaining--;
        }
      }
      counts.remaining = planned.length;
      progress({ ...counts });
      await storeInstances(scuTarget(deps.config, modality), planned, {
        associations: maxAssociations(modality),
        signal,
        layout: fileLayout,
        read: (i) => readInstanceFile(deps.store, i.id, sizes.get(i.id) ?? 0),
        outcome: async (o) => {
          counts.remaining--;
          if (o.kind === 'success') counts.completed++;
          else if (o.kind === 'warning') counts.warning++;
          else counts.failed++;
          progress({ ...counts });
        },
      });
      return { ...counts };
    },
  };
}
