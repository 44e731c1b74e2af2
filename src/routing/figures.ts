// What GET /routes shows of each rule besides its configuration, read from the routes database: the
// instances waiting for their group to be stable, the batches being sent and their jobs, what was sent or
// failed, and the last error; and the arrival metadata of an instance in Orthanc's names.
import { z } from 'zod';
import { formatOrthancTimestamp } from '../protocol/progress.ts';
import type { RoutesDb } from './db.ts';

export interface RouteFigures {
  /** Instances matched and waiting for their group to be stable. */
  QueuedInstances: number;
  /** Groups (studies, series) waiting to be stable. */
  WaitingBatches: number;
  /** Batches being sent, and the jobs that send them. */
  SendingBatches: number;
  InFlightJobs: string[];
  /** Instances every destination confirmed (or Alternate did). */
  SentInstances: number;
  DoneBatches: number;
  FailedInstances: number;
  FailedBatches: number;
  LastError?: string;
  LastErrorTime?: string;
}

const Count = z.object({ n: z.number().int() });
const ErrorRow = z.object({ last_error: z.string(), updated_at: z.number() });
const JobRow = z.object({ job: z.string() });

export function routeFigures(db: RoutesDb, rule: string): RouteFigures {
  const count = (sql: string, ...args: unknown[]): number => Count.parse(db.prepare(sql).get(rule, ...args)).n;
  const matches = (state: string) => count('SELECT COUNT(*) AS n FROM matches WHERE rule = ? AND state = ?', state);
  const batches = (state: string) => count('SELECT COUNT(*) AS n FROM batches WHERE rule = ? AND state = ?', state);
  const out: RouteFigures = {
    QueuedInstances: matches('waiting'),
    WaitingBatches: count("SELECT COUNT(DISTINCT group_key) AS n FROM matches WHERE rule = ? AND state = 'waiting'"),
    SendingBatches: batches('sending'),
    InFlightJobs: db
      .prepare(
        `SELECT s.job FROM sends s JOIN batches b ON b.id = s.batch WHERE b.rule = ? AND s.state = 'running' AND s.job IS NOT NULL
         ORDER BY s.updated_at`,
      )
      .all(rule)
      .map((r) => JobRow.parse(r).job),
    SentInstances: matches('sent'),
    DoneBatches: batches('done'),
    FailedInstances: matches('failed'),
    FailedBatches: batches('failed'),
  };
  const last = db
    .prepare('SELECT last_error, updated_at FROM batches WHERE rule = ? AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1')
    .get(rule);
  if (last !== undefined) {
    const e = ErrorRow.parse(last);
    out.LastError = e.last_error;
    out.LastErrorTime = formatOrthancTimestamp(e.updated_at);
  }
  return out;
}

const ArrivalRow = z.object({
  origin: z.string(),
  peer: z.string().nullable(),
  calling_aet: z.string().nullable(),
  called_aet: z.string().nullable(),
  remote_ip: z.string().nullable(),
  http_user: z.string().nullable(),
  received_at: z.number(),
});

/** Orthanc's Origin metadata for each origin kind (a transfer from a peer is a plugin's doing there). */
const ORTHANC_ORIGIN: Record<string, string> = { dicom: 'DicomProtocol', rest: 'RestApi', peer: 'Plugins' };

/** Orthanc's ISO basic date-time in UTC, as in its ReceptionDate: 20240131T235959. */
function isoBasic(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, '');
}

/**
 * The metadata Orthanc keeps of an instance's reception, by Orthanc's names (ReceptionDate, Origin,
 * RemoteAET, CalledAET, RemoteIP, HttpUsername), plus the peer's name (dicom-xfer's TransfersPeer); undefined
 * when the instance's arrival was not recorded.
 */
export function arrivalMetadata(db: RoutesDb, instance: string): Record<string, string> | undefined {
  const raw = db.prepare('SELECT * FROM arrivals WHERE instance = ?').get(instance);
  if (raw === undefined) return undefined;
  const a = ArrivalRow.parse(raw);
  const out: Record<string, string> = { Origin: ORTHANC_ORIGIN[a.origin] ?? 'Unknown', ReceptionDate: isoBasic(a.received_at) };
  // As Orthanc 1.10 writes them: RemoteAET always ('' unless DICOM), HttpUsername for every REST upload.
  out['RemoteAET'] = a.calling_aet ?? '';
  if (a.called_aet !== null) out['CalledAET'] = a.called_aet;
  if (a.remote_ip !== null) out['RemoteIP'] = a.remote_ip;
  if (a.origin === 'rest') out['HttpUsername'] = a.http_user ?? '';
  if (a.peer !== null) out['TransfersPeer'] = a.peer;
  return out;
}
