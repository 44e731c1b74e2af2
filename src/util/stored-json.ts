// State this node wrote earlier and reads back (SQLite rows, files on disk) goes through a schema: a
// value damaged, or written by an incompatible version, is reported with the field at fault, never used.
import type { z } from 'zod';
import { XferError } from '../errors.ts';

/** Where the first problem of a failed parse lies, as `a.b[2].c: message`. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
  return path.length > 0 ? `${path}: ${issue.message}` : issue.message;
}

/** The pair that every persisted kind of value goes through: text out, checked value back in. */
export interface StoredCodec<T> {
  toJSON(value: T): string;
  /** Throws BadFileFormat naming `what` and the field at fault when the text is not JSON or not valid. */
  fromJSON(text: string): T;
}

export function storedCodec<S extends z.ZodType>(schema: S, what: string): StoredCodec<z.output<S>> {
  return {
    toJSON: (value) => JSON.stringify(value),
    fromJSON: (text) => readStored(schema, text, what),
  };
}

/** Parses `text` as JSON and checks it against `schema`; BadFileFormat with `what` and the field otherwise. */
export function readStored<S extends z.ZodType>(schema: S, text: string, what: string): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new XferError('BadFileFormat', `${what} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const r = schema.safeParse(value);
  if (!r.success) throw new XferError('BadFileFormat', `${what}: ${describeIssue(r.error)}`, { cause: r.error });
  return r.data;
}
