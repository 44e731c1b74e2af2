// A gzip bucket corrupted in flight is reported as a corrupt body (400), not as a wrong length (500),
// wherever the flipped byte falls, as the plugin (which inflates before it checks the length) does.
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { isXferError } from '../../src/errors.ts';
import { createGunzipStream, createLengthCheck } from '../../src/protocol/compression.ts';
import { generatedDicom, needs, REAL_DICOM } from '../helpers/data.ts';

/** A real MR slice, or without the real files a generated CT slice (about 525 KB). */
const file = async (): Promise<string> =>
  needs(REAL_DICOM) ? join(await generatedDicom(), 'ct/study01/series02/IM0001.dcm') : join(REAL_DICOM, 'Brainix/Flair/IM-0001-0001.dcm');

async function inflateChecked(gz: Buffer, expected: number): Promise<unknown> {
  try {
    await pipeline(
      Readable.from([gz]),
      createGunzipStream(),
      createLengthCheck(expected, undefined, 1024 * 1024),
      async (s: AsyncIterable<Buffer>) => {
        for await (const _ of s) void _;
      },
    );
    return undefined;
  } catch (e) {
    return e;
  }
}

test('a flipped byte anywhere in a gzip bucket gives BadFileFormat', async () => {
  const raw = await readFile(await file());
  const gz = gzipSync(raw, { level: 6 });
  let checked = 0;
  // Every 97th byte, the header and the trailer included.
  for (let at = 0; at < gz.length; at += at < 32 || at > gz.length - 16 ? 1 : 97) {
    if (at >= 4 && at <= 9) continue; // mtime, extra flags and OS: informative, any value is valid
    const bad = Buffer.from(gz);
    bad[at] = (bad[at] as number) ^ 0x5a;
    const err = await inflateChecked(bad, raw.length);
    assert.ok(isXferError(err), `byte ${at}: ${String(err)}`);
    assert.equal(err.code, 'BadFileFormat', `byte ${at}: ${err.code} ${err.details}`);
    checked++;
  }
  assert.ok(checked > 100);
  assert.equal(await inflateChecked(gz, raw.length), undefined, 'the intact bucket passes');
  const short = await inflateChecked(gz, raw.length + 1);
  assert.ok(isXferError(short, 'NetworkProtocol'), 'a valid gzip of the wrong size is a length error');
});
