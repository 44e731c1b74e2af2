// What the gateway's end-to-end test and its scenario share: the transfer syntaxes a scanner sends in (with
// storescu's option that proposes each), and a data set's fingerprint element by element.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';

/** storescu's option that proposes each transfer syntax a scanner sends in (beside the uncompressed ones). */
export const SCANNER_SYNTAXES: Readonly<Record<string, string>> = {
  '1.2.840.10008.1.2': '-xi',
  '1.2.840.10008.1.2.1': '-xe',
  '1.2.840.10008.1.2.1.99': '-xd',
  '1.2.840.10008.1.2.4.50': '-xy',
  '1.2.840.10008.1.2.4.51': '-xx',
  '1.2.840.10008.1.2.4.70': '-xs',
  '1.2.840.10008.1.2.4.90': '-xv',
  '1.2.840.10008.1.2.4.91': '-xw',
  '1.2.840.10008.1.2.5': '-xr',
};

/**
 * MD5 of a data set element by element, as dcmdump lists it (every value whole), the file meta group aside,
 * and with nothing of how sequences and items are delimited: the tools re-encode what they send and store
 * (a sequence of undefined length may come back with an explicit one), the same elements in other bytes.
 */
export function elementsMd5(file: string): string {
  const dump = spawnSync('dcmdump', ['-q', '+L', file], { encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 1024 * 1024 });
  if (dump.status !== 0) throw new Error(`dcmdump ${file}: ${dump.stderr}`);
  const lines = dump.stdout
    .split('\n')
    .filter((l) => /^\s*\(/.test(l) && !/^\s*\(0002,|^\s*\(fffe,e0[0d]d\)/.test(l))
    .map((l) => l.replace(/\s*#.*$/, '').replace(/(Sequence|Item) with (explicit|undefined) length/, '$1'));
  return createHash('md5').update(lines.join('\n')).digest('hex');
}
