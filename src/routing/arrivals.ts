// Where every instance that enters the node is announced, with where it came from: the input of the
// routing rules (Origin, CallingAet) and of the instance's metadata (RemoteAET). Each ingest path (POST
// /instances, the DICOM server's C-STORE, a committed push from a peer, a pull job) calls its sink once the
// store holds the instances.

/** Where an instance came from. */
export type ArrivalOrigin =
  /** Orthanc's REST API (POST /instances). */
  | { kind: 'rest'; remoteIp?: string; user?: string }
  /** A C-STORE to the node's DICOM server. */
  | { kind: 'dicom'; callingAet: string; calledAet: string; remoteIp: string }
  /** A transfer from a peer: the peer's name under OrthancPeers, or '' when the sender is not one of them. */
  | { kind: 'peer'; peer: string };

export interface Arrival {
  /** Orthanc ID of the instance. */
  instanceId: string;
  origin: ArrivalOrigin;
  /** The store already held the same instance (a repeat: routes must not send it again). */
  alreadyStored: boolean;
}

export interface ArrivalSink {
  /**
   * Records that the store now holds these instances. Durable when the promise resolves: the caller
   * answers its client (HTTP 200, C-STORE success, commit done) only after. Rejects only when the record
   * cannot be written; the instances stay stored.
   */
  arrived(arrivals: readonly Arrival[]): Promise<void>;
}

/** A sink that records nothing (a node without routes, tests of an ingest path alone). */
export const IGNORE_ARRIVALS: ArrivalSink = { arrived: async () => {} };

/** The arrivals of what a commit stored: new instances, and those the store already held (repeats). */
export function committedArrivals(
  result: { stored: readonly string[]; alreadyStored: readonly string[] },
  origin: ArrivalOrigin,
): Arrival[] {
  return [
    ...result.stored.map((instanceId) => ({ instanceId, origin, alreadyStored: false })),
    ...result.alreadyStored.map((instanceId) => ({ instanceId, origin, alreadyStored: true })),
  ];
}
