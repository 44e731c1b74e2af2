// What the DICOM server tests share: a DicomServer over a real embedded store in a temporary folder, on a
// free loopback port, with a sink that records every arrival it announces; and the data set of a file with
// its meta group set aside, to compare what was sent with what was stored.
import { mkdtemp, rm } from 'node:fs/promises';
import dimse from 'dcmjs-dimse';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import type { ConfigOverrides } from '../../src/config/types.ts';
import { dataSetLayout } from '../../src/dicom/dataset.ts';
import { DicomServer } from '../../src/dimse/server.ts';
import type { CommitmentSink, MoveSender } from '../../src/dimse/services.ts';
import type { Arrival, ArrivalSink } from '../../src/routing/arrivals.ts';
import { EmbeddedStore } from '../../src/store/embedded/store.ts';
import { OrthancStore } from '../../src/store/orthanc/store.ts';
import type { Peer } from '../helpers/dcmtk.ts';

export interface ScpHarness {
  server: DicomServer;
  store: EmbeddedStore;
  /** Every arrival announced, in order. */
  arrivals: Arrival[];
  /** How the dcmtk tools reach the server. */
  peer: Peer;
  close(): Promise<void>;
}

export interface HarnessOptions {
  move?: MoveSender;
  commitments?: CommitmentSink;
  /** Replaces the recording sink (e.g. one that fails). */
  arrivals?: ArrivalSink;
  maxAssociations?: number;
}

export async function startScp(overrides: ConfigOverrides = {}, opts: HarnessOptions = {}): Promise<ScpHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-scp-'));
  const { config } = await loadConfig({
    overrides: { StorageDirectory: join(dir, 'data'), DicomServerEnabled: true, DicomPort: 0, ...overrides },
  });
  const store = await EmbeddedStore.open(config.StorageDirectory, {});
  const arrivals: Arrival[] = [];
  const sink: ArrivalSink = opts.arrivals ?? {
    arrived: async (a) => {
      arrivals.push(...a);
    },
  };
  const server = new DicomServer({
    config,
    store,
    logger: pino({ level: process.env.DX_TEST_LOG ?? 'silent' }),
    arrivals: sink,
    move: opts.move,
    commitments: opts.commitments,
    maxAssociations: opts.maxAssociations,
  });
  await server.listen();
  return {
    server,
    store,
    arrivals,
    peer: { port: server.port, aet: config.DicomAet },
    async close() {
      await server.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A DicomServer over an Orthanc store (the node in front of a real Orthanc), on a free loopback port. */
export async function startScpOnOrthanc(
  orthancUrl: string,
  overrides: ConfigOverrides = {},
): Promise<Omit<ScpHarness, 'store' | 'arrivals'>> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-scp-orthanc-'));
  const { config } = await loadConfig({
    overrides: { StorageDirectory: join(dir, 'data'), DicomServerEnabled: true, DicomPort: 0, ...overrides },
  });
  const logger = pino({ level: process.env.DX_TEST_LOG ?? 'silent' });
  const store = await OrthancStore.open({ url: orthancUrl, storageDirectory: config.StorageDirectory, logger });
  const server = new DicomServer({ config, store, logger });
  await server.listen();
  return {
    server,
    peer: { port: server.port, aet: config.DicomAet },
    async close() {
      await server.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The bytes of a file's data set: everything after its file meta group (the whole file for a raw data set). */
export function dataSetOf(file: Uint8Array): Buffer {
  return Buffer.from(file.subarray(dataSetLayout(file).start));
}

/** The transfer syntax a file declares in its meta group. */
export function syntaxOf(file: Uint8Array): string {
  return dataSetLayout(file).transferSyntaxUid;
}

const { Client, Dataset } = dimse;
type Request = InstanceType<typeof dimse.requests.Request>;

/** What a dcmjs-dimse client saw of one association: rejected or not, each request's response statuses. */
export interface ClientRun {
  rejected: boolean;
  statuses: number[][];
  error?: string;
}

/** Sends `requests` on one association from `callingAet` with dcmjs-dimse's client (given up after 60 s). */
export function sendRequests(peer: Peer, callingAet: string, requests: Request[]): Promise<ClientRun> {
  return new Promise((resolve) => {
    const client = new Client();
    const run: ClientRun = { rejected: false, statuses: requests.map(() => []) };
    requests.forEach((r, i) => {
      r.on('response', (response: InstanceType<typeof dimse.responses.Response>) => run.statuses[i]?.push(response.getStatus()));
      client.addRequest(r);
    });
    const timer = setTimeout(() => resolve({ ...run, error: 'timed out' }), 60_000);
    client.on('associationRejected', () => {
      run.rejected = true;
    });
    client.on('networkError', (e: Error) => {
      run.error = e.message;
    });
    client.on('closed', () => {
      clearTimeout(timer);
      resolve(run);
    });
    client.send(peer.host ?? '127.0.0.1', peer.port, callingAet, peer.aet);
  });
}

/**
 * A data set that sends the given bytes as they are (no encoding by the library): for the tests that send
 * what dcmtk never would, a truncated data set or one that names another instance.
 */
export class RawDataset extends Dataset {
  readonly #bytes: Buffer;
  constructor(bytes: Buffer, sopClassUid: string, sopInstanceUid: string, transferSyntaxUid: string) {
    super({ SOPClassUID: sopClassUid, SOPInstanceUID: sopInstanceUid }, transferSyntaxUid);
    this.#bytes = bytes;
  }

  override getDenaturalizedDataset(): Buffer {
    return this.#bytes;
  }
}
