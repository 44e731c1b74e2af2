// The bandwidth policy as the dashboard's peers page shows it (GET /ui/api/bandwidth): the node's limit in
// force now (Transfers.RateLimit, or the RateSchedule entry that holds at the node's local time), the
// schedule with the entry in force marked, and each peer's own RateLimit beside the limit its transfers meet.
import type { Config, RateScheduleEntry } from '../config/types.ts';
import { entryHolds } from '../transfer/bandwidth/schedule.ts';

/** What the dashboard reads of the node's bandwidth policy (transfer/bandwidth/policy.ts), on the policy's clock. */
export interface BandwidthView {
  /** Mbit/s the node's transfers may use together now; 0 = none. */
  nodeLimitMbps(): number;
  /** Mbit/s in force for transfers with `peer` now (its limit and the node's); undefined = none. */
  limitMbps(peer: string): number | undefined;
  /** The policy's clock (ms since the epoch): the schedule reads the node's local time from it. */
  now(): number;
}

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;

/** "08:00" from minutes after midnight (1440: "24:00", the end of a day). */
function clockText(minutes: number): string {
  return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}

/** "Mon-Fri", "Sat, Sun" or "Mon, Wed-Fri": the days of an entry, runs of three or more as ranges, Monday first. */
export function daysText(days: readonly number[]): string {
  const order = [1, 2, 3, 4, 5, 6, 0].filter((d) => days.includes(d));
  const parts: string[] = [];
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && (order[j] as number) % 7 === ((order[j + 1] as number) + 6) % 7) j++;
    const first = DAY_NAMES[order[i] as number];
    const last = DAY_NAMES[order[j] as number];
    if (j - i >= 2) parts.push(`${first}-${last}`);
    else for (let k = i; k <= j; k++) parts.push(DAY_NAMES[order[k] as number] as string);
    i = j + 1;
  }
  return parts.join(', ');
}

/** `2026-12-07T09:30` in the node's local time, and the weekday: what the schedule reads of `at`. */
function localClock(at: number): { LocalTime: string; Day: string } {
  const d = new Date(at);
  const pad = (n: number) => String(n).padStart(2, '0');
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return { LocalTime: `${date}T${pad(d.getHours())}:${pad(d.getMinutes())}`, Day: DAY_NAMES[d.getDay()] as string };
}

function entryJson(e: RateScheduleEntry, active: boolean): Record<string, unknown> {
  return { Days: daysText(e.days), From: clockText(e.from), To: clockText(e.to), RateLimit: e.rateLimit, Active: active };
}

/**
 * The answer of GET /ui/api/bandwidth. `peers` are the configured peers with their own RateLimit (Mbit/s,
 * undefined for none). RateLimit 0 means no limit, as in the configuration.
 */
export function bandwidthStatus(
  config: Pick<Config, 'Transfers'>,
  view: BandwidthView,
  peers: readonly { name: string; rateLimit: number | undefined }[],
): Record<string, unknown> {
  const t = config.Transfers;
  const at = view.now();
  const when = new Date(at);
  const minute = when.getHours() * 60 + when.getMinutes();
  // The first entry that holds is the one in force, as the policy reads the schedule (schedule.ts).
  const active = t.RateSchedule.findIndex((e) => entryHolds(e, when.getDay(), minute));
  return {
    ...localClock(at),
    RateLimit: view.nodeLimitMbps(),
    Source: active >= 0 ? 'RateSchedule' : 'RateLimit',
    BaseRateLimit: t.RateLimit,
    Schedule: t.RateSchedule.map((e, i) => entryJson(e, i === active)),
    Peers: peers.map((p) => ({ Name: p.name, RateLimit: p.rateLimit ?? null, InForce: view.limitMbps(p.name) ?? null })),
  };
}
