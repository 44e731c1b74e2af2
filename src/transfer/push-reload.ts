// The push receiver's start: the transactions its state holds, taken back with their staging, and the
// removal of what no usable transaction owns (a damaged state, a create or a removal cut short by a crash).
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { XferError, isXferError } from '../errors.ts';
import type { PushTransactionState } from './push-state/types.ts';
import { resumeTransaction, type Transaction } from './push-transaction.ts';
import { StagingArea } from './staging.ts';

/** The usable transactions of `state` under `root`, least recently used first; the rest is removed. */
export async function reloadTransactions(root: string, state: PushTransactionState, log: Logger | undefined): Promise<Transaction[]> {
  const loaded: Transaction[] = [];
  for (const entry of await state.list()) {
    const id = entry.ok ? entry.tx.id : entry.id;
    try {
      if (!entry.ok) throw new XferError('BadFileFormat', entry.reason);
      loaded.push(await resumeTransaction(root, entry.tx));
    } catch (e) {
      const dir = join(root, id);
      log?.warn({ dir, err: isXferError(e) ? e.details : String(e) }, 'removing an unusable push transaction left by a previous run');
      await state.delete(id).catch(() => undefined);
      await StagingArea.discard(dir);
    }
  }
  loaded.sort((a, b) => a.lastActivity - b.lastActivity);
  const owned = new Set(loaded.map((t) => t.id));
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (owned.has(name)) continue;
    log?.info({ dir: join(root, name) }, 'removing staging that no push transaction owns');
    await StagingArea.discard(join(root, name));
  }
  return loaded;
}
