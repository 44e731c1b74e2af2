// The paths of the transfers protocol and of the few Orthanc routes a transfer calls on a peer, spelled
// once for the client (transfer/peer-api.ts) and the server routes. Chunk paths are in chunk-url.ts.

/** `POST`: resources to instances with size and MD5 (docs/protocol.md#lookup). */
export const LOOKUP_PATH = '/transfers/lookup';
/** `POST`: creates a push transaction; its answer's `Path` is the base of the calls below. */
export const PUSH_PATH = '/transfers/push';
/** `POST`: asks a node to pull resources (a pull job there). */
export const PULL_PATH = '/transfers/pull';
/** `POST`: asks a node to send resources (a push job there, or a pull by the peer in pull mode). */
export const SEND_PATH = '/transfers/send';
/** `GET`: the extensions a dicom-xfer node lists (an Orthanc answers 404). */
export const CAPABILITIES_PATH = '/transfers/capabilities';
/** `POST` (extension dedupe): which instances the receiver holds with the same MD5. */
export const HAVE_PATH = '/transfers/have';

/** A push transaction's path, as a receiver names it in its create answer. */
export function pushTransactionPath(id: string): string {
  return `${PUSH_PATH}/${id}`;
}

/** `PUT`: one bucket (`7`) or a span of buckets (`3-9`, extension bucket-span) of a push transaction. */
export function bucketPath(transaction: string, segment: string): string {
  return `${transaction}/${segment}`;
}

/** `POST`: commits a push transaction. */
export function commitPath(transaction: string): string {
  return `${transaction}/commit`;
}

/** `GET` (extension resume): the buckets a push transaction holds. */
export function heldBucketsPath(transaction: string): string {
  return `${transaction}/buckets`;
}

/** `GET` (extension async-commit): where a transaction stands, answered when a commit ends or after `waitSeconds`. */
export function commitStatePath(transaction: string, waitSeconds: number): string {
  return waitSeconds > 0 ? `${transaction}/state?wait=${waitSeconds}` : `${transaction}/state`;
}

/** Orthanc's `GET`: the MD5 of an instance's DICOM file, as bare text. */
export function instanceMd5Path(id: string): string {
  return `/instances/${id}/attachments/dicom/md5`;
}

/** Orthanc's `POST`: a control on a job (`/jobs/{id}` as its handle gave it). */
export function jobControlPath(job: string, action: 'pause' | 'resume' | 'cancel' | 'resubmit'): string {
  return `${job}/${action}`;
}
