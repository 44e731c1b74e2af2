// A modality of DicomModalities as a destination (destinations/types.ts): what a job hands instances to, and
// what the dashboard's peers page lists with its status (reachable: a C-ECHO answered within a few seconds).
// Also the directory of every destination of the node, transfers peers and modalities together, for the page.
import type { Config } from '../config/types.ts';
import type { Destination, DestinationDirectory, DestinationStatus, SendRequest, SendTask } from '../destinations/types.ts';
import { XferError } from '../errors.ts';
import type { Store } from '../store/types.ts';
import { maxAssociations, modalityAddress, modalityNamed, scuTarget } from './modality.ts';
import { echo } from './scu.ts';
import { planInstance } from './scu-read.ts';
import type { PlannedInstance } from './store-job-kind.ts';
import { sendPlanned } from './store-job.ts';

/** What a send to a modality keeps between runs: its plan (the UIDs each association needs). */
export interface ModalityState {
  plan: PlannedInstance[];
}

/** Seconds the status of a modality waits for its C-ECHO. */
const STATUS_ECHO_SECONDS = 3;

export interface ModalityDestinationDeps {
  config: Config;
  store: Store;
}

export class ModalityDestination implements Destination<ModalityState> {
  readonly description: string;
  readonly #deps: ModalityDestinationDeps;
  readonly #name: string;

  constructor(deps: ModalityDestinationDeps, name: string) {
    this.#deps = deps;
    this.#name = name;
    this.description = `modality "${name}" (${modalityAddress(modalityNamed(deps.config, name))})`;
  }

  async send(request: SendRequest, task: SendTask<ModalityState>): Promise<void> {
    const modality = modalityNamed(this.#deps.config, this.#name);
    let state = task.loadPrivate();
    if (!state) {
      const plan: PlannedInstance[] = [];
      for (const i of request.instances) plan.push(await planInstance(this.#deps.store, i.ID, i.Size));
      state = { plan };
      await task.savePrivate(state);
    }
    task.setContent({ RemoteAet: modality.aet, Associations: maxAssociations(modality) });
    const failed = await sendPlanned(this.#deps, task, modality, scuTarget(this.#deps.config, modality), state.plan);
    if (failed.length > 0) {
      const first = failed[0];
      throw new XferError(
        'NetworkProtocol',
        `${failed.length} instances refused by ${this.description}, first ${first?.ID} (${first?.Reason})`,
      );
    }
  }

  /** A C-STORE leaves nothing to undo at the modality. */
  async abandon(): Promise<void> {}
}

/** The modalities of DicomModalities as destinations. */
export class ModalityDirectory implements DestinationDirectory<ModalityState> {
  readonly #deps: ModalityDestinationDeps;

  constructor(deps: ModalityDestinationDeps) {
    this.#deps = deps;
  }

  names(): string[] {
    return Object.keys(this.#deps.config.DicomModalities).sort();
  }

  get(name: string): ModalityDestination {
    if (!Object.hasOwn(this.#deps.config.DicomModalities, name))
      throw new XferError('UnknownResource', `modality "${name}" is not configured`);
    return new ModalityDestination(this.#deps, name);
  }

  async statusAll(): Promise<DestinationStatus[]> {
    const { config } = this.#deps;
    return Promise.all(
      this.names().map(async (name): Promise<DestinationStatus> => {
        const m = modalityNamed(config, name);
        const started = Date.now();
        let error: string | undefined;
        try {
          if (!m.allowEcho) throw new XferError('ForbiddenAccess', 'C-ECHO is not allowed to this modality (AllowEcho)');
          await echo(
            scuTarget(config, m, {
              timeoutSeconds: Math.min(STATUS_ECHO_SECONDS, m.timeout ?? config.DicomScuTimeout) || STATUS_ECHO_SECONDS,
            }),
          );
        } catch (e) {
          error = e instanceof XferError ? (e.details ?? e.message) : String(e);
        }
        return {
          Name: name,
          Kind: 'dicom-modality',
          Url: `dicom://${modalityAddress(m)}`,
          Reachable: error === undefined,
          RttMs: error === undefined ? Date.now() - started : null,
          Status: 'dicom',
          AET: m.aet,
          ...(error !== undefined ? { Error: error } : {}),
        };
      }),
    );
  }
}

/** What the dashboard reads of the node's destinations: every kind's names and statuses, one list. */
export type DestinationListing = Pick<DestinationDirectory<unknown>, 'names' | 'statusAll'>;

/** Several directories as one listing (transfers peers, then modalities), each kind asked at once. */
export function combinedListing(...dirs: DestinationListing[]): DestinationListing {
  return {
    names: () => [...new Set(dirs.flatMap((d) => d.names()))].sort(),
    statusAll: async () => (await Promise.all(dirs.map((d) => d.statusAll()))).flat(),
  };
}
