// The C-STORE side of the DICOM server: the data set bytes of one C-STORE are streamed, behind a Part 10
// header made from the command, into a file of the staging room while hashed; the file then takes the path
// of POST /instances (structure check, store) and the arrival is announced before the SCU hears success.
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { ingestSpooled, sniffUpload, spool, uploadRoom, type SpooledFile } from '../api/ingest.ts';
import { parseDicomHeader, readDicomHeaderFromFile } from '../dicom/parse.ts';
import type { DicomHeader } from '../dicom/types.ts';
import { encodeDataSet, latin1, type RawElement } from '../dicom/write.ts';
import { XferError, isXferError } from '../errors.ts';
import { IMPLEMENTATION_CLASS_UID } from '../version.ts';
import type { ArrivalSink } from '../routing/arrivals.ts';
import type { IngestResult, Store } from '../store/types.ts';

/** ImplementationVersionName of the files the DICOM server writes (SH: at most 16 characters). */
const IMPLEMENTATION_VERSION = 'DICOMXFER_SCP';

/** C-STORE statuses (PS3.4 B.2.3) the server answers. */
export const STORE_STATUS = {
  Success: 0x0000,
  /** Refused: out of resources (the disk is full). */
  OutOfResources: 0xa700,
  /** Error: cannot understand (not DICOM, truncated, not the instance the command names). */
  CannotUnderstand: 0xc000,
  /** Failure: processing failure (the store or the arrival record failed). */
  ProcessingFailure: 0x0110,
} as const;

function uidValue(uid: string): Uint8Array {
  return latin1(uid.length % 2 ? `${uid}\0` : uid);
}

function textValue(s: string): Uint8Array {
  return latin1(s.length % 2 ? `${s} ` : s);
}

/**
 * The 128-byte preamble, "DICM" and the file meta group of a received instance: SOP class and instance
 * from the command, the transfer syntax of the accepted presentation context, the node as implementation
 * and the calling AET as source.
 */
export function part10Header(sopClassUid: string, sopInstanceUid: string, transferSyntaxUid: string, callingAet: string): Buffer {
  const elements: RawElement[] = [
    { group: 0x0002, element: 0x0001, vr: 'OB', value: Uint8Array.of(0, 1) },
    { group: 0x0002, element: 0x0002, vr: 'UI', value: uidValue(sopClassUid) },
    { group: 0x0002, element: 0x0003, vr: 'UI', value: uidValue(sopInstanceUid) },
    { group: 0x0002, element: 0x0010, vr: 'UI', value: uidValue(transferSyntaxUid) },
    { group: 0x0002, element: 0x0012, vr: 'UI', value: uidValue(IMPLEMENTATION_CLASS_UID) },
    { group: 0x0002, element: 0x0013, vr: 'SH', value: textValue(IMPLEMENTATION_VERSION) },
  ];
  if (callingAet.trim() !== '') elements.push({ group: 0x0002, element: 0x0016, vr: 'AE', value: textValue(callingAet.trim()) });
  const meta = encodeDataSet(elements);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(meta.length, 0);
  const groupLength = encodeDataSet([{ group: 0x0002, element: 0x0000, vr: 'UL', value: length }]);
  const preamble = Buffer.alloc(132);
  preamble.write('DICM', 128, 'latin1');
  return Buffer.concat([preamble, groupLength, meta]);
}

/** What came of the bytes of one C-STORE once the SCU sent its last fragment. */
export type Received = { spooled: SpooledFile; error?: undefined } | { spooled?: undefined; error: unknown };

/** Pauses and resumes what feeds the bytes (the association's socket), so a slow disk holds the sender back. */
export interface Flow {
  pause(): void;
  resume(): void;
}

/**
 * One C-STORE's data set on its way to a staging file. `writable` is what the DIMSE library writes the
 * fragments into; `received` settles once it has ended (or was abandoned) and the file is on disk.
 */
export class IncomingInstance {
  readonly writable: Writable;
  readonly received: Promise<Received>;
  #failed = false;
  #bytes = 0;

  constructor(dir: string, header: Buffer, flow: Flow) {
    const pipe = new PassThrough({ highWaterMark: 1024 * 1024 });
    pipe.write(header);
    pipe.on('error', () => undefined); // the spool reads the stream's errors; none may go unheard
    this.writable = new Writable({
      // Finishing must not destroy the pipe the spool still reads: only an abandoned data set does.
      autoDestroy: false,
      write: (chunk: Buffer, _encoding, done) => {
        this.#bytes += chunk.length;
        // Once the spool has failed, the rest of the data set is read and dropped: the SCU still gets its
        // answer, on an association that stays usable.
        if (!this.#failed && !pipe.write(chunk)) {
          flow.pause();
          pipe.once('drain', () => flow.resume());
        }
        done();
      },
      final: (done) => {
        pipe.end();
        // An ended stream says no more 'drain': the sender is let go now, the pipe holds what is left.
        flow.resume();
        done();
      },
      destroy: (err, done) => {
        if (!pipe.writableEnded) pipe.destroy(err ?? new XferError('NetworkProtocol', 'the association ended during the data set'));
        done(null);
      },
    });
    this.received = uploadRoom(dir)
      .then((room) => spool(pipe, dir, room, sniffUpload(false)))
      .then(
        (spooled): Received => ({ spooled }),
        (error: unknown): Received => {
          this.#failed = true;
          pipe.resume();
          flow.resume();
          return { error };
        },
      );
  }

  /** Bytes of the data set received so far (the Part 10 header aside). */
  get bytes(): number {
    return this.#bytes;
  }
}

/** Where a stored instance came from, for the arrival record. */
export interface StoreOrigin {
  callingAet: string;
  calledAet: string;
  remoteIp: string;
}

/** The outcome of one C-STORE: the status to answer and, when stored, what the store says. */
export interface StoreOutcome {
  status: number;
  comment?: string;
  result?: IngestResult;
}

/** The status of a failure that happened on the way to the store. */
export function failureStatus(e: unknown): StoreOutcome {
  const comment = e instanceof Error ? e.message : String(e);
  if (isXferError(e, 'FullStorage')) return { status: STORE_STATUS.OutOfResources, comment };
  if (isXferError(e, 'BadFileFormat')) return { status: STORE_STATUS.CannotUnderstand, comment };
  return { status: STORE_STATUS.ProcessingFailure, comment };
}

async function headerOf(spooled: SpooledFile): Promise<DicomHeader> {
  try {
    return parseDicomHeader(spooled.head);
  } catch {
    // A header longer than the head kept in memory: read from the file.
    return readDicomHeaderFromFile(spooled.path);
  }
}

/**
 * Takes a received data set into the store, as POST /instances does, after checking that it is the
 * instance the command named; announces the arrival. The staging file is the store's afterwards, or removed.
 */
export async function storeReceived(
  store: Store,
  arrivals: ArrivalSink,
  received: Received,
  sopInstanceUid: string,
  origin: StoreOrigin,
): Promise<StoreOutcome> {
  const { spooled } = received;
  if (spooled === undefined) return failureStatus(received.error);
  let result: IngestResult;
  try {
    const header = await headerOf(spooled);
    if (header.sopInstanceUid !== sopInstanceUid.trim()) {
      throw new XferError(
        'BadFileFormat',
        `the data set holds SOP instance ${header.sopInstanceUid}, the command names ${sopInstanceUid.trim()}`,
      );
    }
    result = await ingestSpooled(store, spooled);
  } catch (e) {
    await unlink(spooled.path).catch(() => undefined);
    return failureStatus(e);
  }
  try {
    await arrivals.arrived([
      { instanceId: result.ids.instance, origin: { kind: 'dicom', ...origin }, alreadyStored: result.status === 'AlreadyStored' },
    ]);
  } catch (e) {
    // Stored, but not recorded for the routes: the SCU is told to send again (it will be AlreadyStored).
    return { ...failureStatus(e), status: STORE_STATUS.ProcessingFailure, result };
  }
  return { status: STORE_STATUS.Success, result };
}

/** The staging folder of incoming C-STOREs, emptied of what a previous run left there. */
export async function openIncomingDir(store: Store): Promise<string> {
  const dir = join(store.stagingRoot(), 'dicom-in');
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(dir)) await unlink(join(dir, name)).catch(() => undefined);
  return dir;
}
