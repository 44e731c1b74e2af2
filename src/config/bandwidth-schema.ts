// The bandwidth policy's keys: `Transfers.RateLimit`, `Transfers.RateSchedule` (days and hours of the
// node's local time, each with its limit) and the `RateLimit` of a peer's object form, with their checks.
import { z } from 'zod';
import { TRANSFERS_DEFAULTS } from './defaults.ts';
import type { RateScheduleEntry } from './types.ts';

/** Marks an issue whose message is a whole sentence rather than an "expected ..." phrase. */
const PLAIN = { plain: true } as const;

/** Day names as the schedule spells them, in Date.getDay order (0 = Sunday). */
export const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;

/** Mbit/s of a limit: a number of at least 0, where 0 means none. */
export const rateMbps = () => {
  const expected = 'a number of at least 0 (Mbit/s; 0 means no limit)';
  return z.number({ error: expected }).min(0, { error: expected }).refine(Number.isFinite, { error: expected });
};

/** A peer's `RateLimit`: a number above 0 (leaving the key out means no limit). */
export const peerRateMbps = () => {
  const expected = 'a number above 0 (Mbit/s)';
  return z.number({ error: expected }).gt(0, { error: expected }).refine(Number.isFinite, { error: expected });
};

function dayIndex(name: string): number {
  return DAY_NAMES.findIndex((d) => d.toLowerCase() === name.trim().toLowerCase());
}

/**
 * The days `text` names ("Mon-Fri", "Sat,Sun", "Mon", "Fri-Mon" across the week's end), sorted; a string
 * with the problem when a name is not a day.
 */
export function parseDays(text: string): number[] | string {
  const days = new Set<number>();
  for (const part of text.split(',')) {
    const ends = part.split('-');
    if (ends.length > 2) return `"${part.trim()}" is not a day or a range of days such as "Mon-Fri"`;
    const idx = ends.map(dayIndex);
    const bad = ends.find((_e, k) => idx[k] === -1);
    if (bad !== undefined) return `unknown day "${bad.trim()}" (use ${DAY_NAMES.join(', ')})`;
    const [a = 0, b = a] = idx;
    for (let d = a, n = 0; n < 7; d = (d + 1) % 7, n++) {
      days.add(d);
      if (d === b) break;
    }
  }
  return [...days].sort((x, y) => x - y);
}

/** Minutes after midnight of "HH:MM" (00:00 to 24:00), or undefined when it is not such a time. */
export function parseClock(text: string): number | undefined {
  const m = /^([01]\d|2[0-4]):([0-5]\d)$/.exec(text);
  if (!m) return undefined;
  const minutes = Number(m[1]) * 60 + Number(m[2]);
  return minutes <= 24 * 60 ? minutes : undefined;
}

const entry = z
  .object(
    {
      Days: z.string({ error: 'a string of days such as "Mon-Fri" or "Sat,Sun"' }),
      From: z.string({ error: 'a time "HH:MM"' }),
      To: z.string({ error: 'a time "HH:MM"' }),
      RateLimit: rateMbps(),
    },
    { error: 'an object {"Days", "From", "To", "RateLimit"}' },
  )
  .strict()
  .transform((e, ctx): RateScheduleEntry => {
    const days = parseDays(e.Days);
    if (typeof days === 'string') ctx.issues.push({ code: 'custom', message: days, path: ['Days'], input: e.Days, params: PLAIN });
    const times = { From: parseClock(e.From), To: parseClock(e.To) };
    for (const key of ['From', 'To'] as const) {
      if (times[key] === undefined) {
        const message = `"${e[key]}" is not a time of day "HH:MM" from 00:00 to 24:00`;
        ctx.issues.push({ code: 'custom', message, path: [key], input: e[key], params: PLAIN });
      }
    }
    if (times.From !== undefined && times.From === times.To) {
      ctx.issues.push({
        code: 'custom',
        message: 'From and To are the same time: the entry would never apply',
        path: ['To'],
        input: e.To,
        params: PLAIN,
      });
    }
    return { days: typeof days === 'string' ? [] : days, from: times.From ?? 0, to: times.To ?? 0, rateLimit: e.RateLimit };
  });

/** `Transfers.RateSchedule`: a list of entries, the first that matches the local time wins. */
export const rateSchedule = () => z.array(entry, { error: 'a list of {"Days", "From", "To", "RateLimit"}' });

/** The rows of `Transfers.RateLimit` and `Transfers.RateSchedule` in the configuration table (schema.ts). */
export const RATE_LIMIT_SETTING = {
  schema: rateMbps(),
  type: 'number ≥ 0',
  default: TRANSFERS_DEFAULTS.RateLimit,
  unit: 'Mbit/s',
  meaning:
    'dicom-xfer: most the transfers of this node may use of the link together, in each direction: its push and pull jobs, counted ' +
    'on the wire (bodies and HTTP headers), and the chunk answers it serves to peers that pull from it (bodies); outside every ' +
    "RateSchedule entry. A peer's own `RateLimit` applies too. 0 means no limit.",
  source: 'dicom-xfer' as const,
};

export const RATE_SCHEDULE_SETTING = {
  schema: rateSchedule(),
  type: 'list of entries',
  default: TRANSFERS_DEFAULTS.RateSchedule,
  meaning:
    'dicom-xfer: limits by day and time in the node\'s local time, e.g. `[{"Days": "Mon-Fri", "From": "08:00", "To": "18:00", ' +
    '"RateLimit": 20}]`. Days: "Mon-Fri", "Sat,Sun", "Mon" (Sun Mon Tue Wed Thu Fri Sat); From and To: "HH:MM", To up to "24:00", ' +
    'a From later than To spans midnight (its Days are those of the start). The first entry that matches wins (RateLimit 0: no ' +
    'limit then); outside every entry Transfers.RateLimit applies. A change of limit takes effect within a tenth of a second, also ' +
    'in the middle of a transfer.',
  source: 'dicom-xfer' as const,
};
