// The shape of one configuration key in the table (schema.ts and the tables beside it): its schema,
// default, unit, meaning and where it comes from.
import type { z } from 'zod';
import type { Config } from './types.ts';

/** Where a key comes from: Orthanc's core, the Transfers Accelerator plugin, or dicom-xfer itself. */
export type SettingSource = 'orthanc' | 'transfers-plugin' | 'dicom-xfer';

/** A default computed from other, already-filled keys (e.g. AuthenticationEnabled from RemoteAccessAllowed). */
export interface Derived<T, C> {
  readonly derive: (filled: C) => T;
  /** How the docs describe the rule. */
  readonly text: string;
}

export interface Setting<T, C = Config> {
  /** Validates the file's value and turns it into the loaded form. Error messages are "expected" phrases. */
  readonly schema: z.ZodType<T>;
  /** Short type for the docs. */
  readonly type: string;
  /** A value, a rule, or undefined when the key is optional and has no default. */
  readonly default: T | Derived<T, C> | undefined;
  readonly unit?: string;
  readonly meaning: string;
  readonly source: SettingSource;
  /** A filesystem path: a relative one is resolved against the folder of the file that holds it. */
  readonly path?: boolean;
  /** A looser schema for values given on the command line (HttpPort 0 there means "any free port"). */
  readonly overrideSchema?: z.ZodType<T>;
}

export function isDerived<T, C>(d: T | Derived<T, C> | undefined): d is Derived<T, C> {
  return typeof d === 'object' && d !== null && 'derive' in d && typeof d.derive === 'function';
}
