// Which limit Transfers.RateSchedule puts in force at a given moment of the node's local time: the first
// entry whose days and hours hold it, else Transfers.RateLimit.
import type { RateScheduleEntry } from '../../config/types.ts';

const DAY_MINUTES = 24 * 60;

/** Whether `entry` holds minute `minute` of weekday `day` (0 = Sunday); an entry past midnight ends on the next day. */
export function entryHolds(entry: RateScheduleEntry, day: number, minute: number): boolean {
  if (entry.from < entry.to) return entry.days.includes(day) && minute >= entry.from && minute < entry.to;
  // From later than To: from From to midnight on its days, then from midnight to To on the day after.
  const before = (day + 6) % 7;
  return (entry.days.includes(day) && minute >= entry.from) || (entry.days.includes(before) && minute < entry.to);
}

/**
 * The Mbit/s in force at `when` (read in the process's local time zone: the wall clock, so a change of
 * daylight saving time moves nothing but the clock itself); 0 means none.
 */
export function scheduledLimit(schedule: readonly RateScheduleEntry[], base: number, when: Date): number {
  const day = when.getDay();
  const minute = when.getHours() * 60 + when.getMinutes();
  for (const e of schedule) if (entryHolds(e, day, minute % DAY_MINUTES)) return e.rateLimit;
  return base;
}
