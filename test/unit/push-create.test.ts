// The push create read by hand (src/protocol/push-create.ts) against the schema it stands in for: for a
// create of real DICOM files and each variant with one member changed, the same value or the same error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isXferError } from '../../src/errors.ts';
import { readPushCreate } from '../../src/protocol/push-create.ts';
import { parsePushCreate } from '../../src/protocol/wire.ts';
import { REAL_DICOM, describe, needs } from '../helpers/data.ts';
import { realCreate, variants } from '../helpers/push-create-shapes.ts';

/** What a parser makes of a body: its value, or the code and message of the error it throws. */
function outcome(parse: (b: unknown) => unknown, body: unknown): unknown {
  try {
    return { value: parse(body) };
  } catch (e) {
    assert.ok(isXferError(e), `not an XferError: ${String(e)}`);
    return { code: e.code, message: e.message, http: e.http };
  }
}

describe('push create read by hand', { skip: needs(REAL_DICOM) }, () => {
  test('a create of real files: the same value as the schema, other keys left out', async () => {
    const body = await realCreate(REAL_DICOM, 60);
    const read = readPushCreate(body);
    assert.deepEqual(read, parsePushCreate(body));
    assert.equal(read.Instances.length, 60);
    assert.equal(read.Instances[0]?.Size, Number(body.Instances[0]?.Size));
    assert.deepEqual(Object.keys(read.Instances[0] ?? {}), ['ID', 'Size', 'MD5']);
  });

  test('every variant with one member changed: the same value, or the same error code and message', async () => {
    const body = await realCreate(REAL_DICOM, 4);
    let refused = 0;
    let taken = 0;
    for (const v of variants(body)) {
      const expected = outcome(parsePushCreate, v.body);
      assert.deepEqual(outcome(readPushCreate, v.body), expected, v.name);
      if ('value' in (expected as object)) taken++;
      else refused++;
    }
    // Both kinds are exercised: variants the schema takes and variants it refuses.
    assert.ok(taken >= 10 && refused >= 100, `${taken} taken, ${refused} refused`);
  });
});
