// What the DICOM server asks of the rest of the node beyond the store: sending to a modality for
// C-MOVE, and taking the storage commitment reports (N-EVENT-REPORT) that modalities send back.

/** Counts of a C-MOVE as its pending answers report them. */
export interface MoveProgress {
  remaining: number;
  completed: number;
  failed: number;
  warning: number;
}

export interface MoveSender {
  /**
   * Sends the instances (Orthanc IDs) to the modality of DicomModalities whose AET is `destinationAet`,
   * reporting progress as instances go; resolves with the final counts. Rejects with an XferError
   * UnknownResource when no modality has that AET (the SCP answers 0xA801, "move destination unknown").
   */
  sendTo(
    destinationAet: string,
    instanceIds: readonly string[],
    progress: (p: MoveProgress) => void,
    signal: AbortSignal,
  ): Promise<MoveProgress>;
}

/** One storage commitment result, as a modality reported it in an N-EVENT-REPORT. */
export interface CommitmentReport {
  /** The AET that sent the report. */
  callingAet: string;
  transactionUid: string;
  /** SOP Instance UIDs the modality took responsibility for. */
  committed: string[];
  /** SOP Instance UIDs it refused, with the failure reason code (0x0110, 0x0112, ...). */
  failed: { sopInstanceUid: string; reason: number }[];
}

export interface CommitmentSink {
  /** Takes a report; the SCP answers the N-EVENT-REPORT with success once this resolves. */
  report(r: CommitmentReport): Promise<void>;
}
