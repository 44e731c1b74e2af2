// The DICOM network keys: DicomModalities in Orthanc's two forms, with Orthanc's defaults, and bad entries
// refused with their path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText, type LoadedConfig } from '../../src/config/index.ts';
import { isXferError } from '../../src/errors.ts';

function parse(text: string): LoadedConfig {
  return parseConfigText(text, '/cfg/test.json', { env: {}, baseDir: '/cfg' });
}

/** Runs `fn`, expects an XferError, and returns its message. */
function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isXferError(e), `expected an XferError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected an error');
}

test("DicomModalities: Orthanc's two forms, its defaults, and a bad entry named by its path", () => {
  const { config } = parse(`{ "DicomModalities": {
    "pacs": ["ORTHANC", "127.0.0.1", 4242],
    "ge": ["GE_AET", "10.0.0.7", "104", "GE"],
    "store-only": { "AET": "ARCHIVE", "Host": "archive.local", "Port": 11112, "AllowFind": false, "AllowNAction": false,
                    "LocalAet": "GATEWAY", "Timeout": 30, "MaximumAssociations": 4 }
  } }`);
  assert.deepEqual(config.DicomModalities['pacs'], {
    name: 'pacs',
    aet: 'ORTHANC',
    host: '127.0.0.1',
    port: 4242,
    manufacturer: 'Generic',
    allowEcho: true,
    allowFind: true,
    allowMove: true,
    allowGet: true,
    allowStore: true,
    allowStorageCommitment: true,
  });
  assert.equal(config.DicomModalities['ge']?.port, 104);
  assert.equal(config.DicomModalities['ge']?.manufacturer, 'GE');
  const so = config.DicomModalities['store-only'];
  assert.equal(so?.allowFind, false);
  assert.equal(so?.allowStorageCommitment, false, 'AllowNAction false turns storage commitment off');
  assert.equal(so?.localAet, 'GATEWAY');
  assert.equal(so?.timeout, 30);
  assert.equal(so?.maximumAssociations, 4);
  assert.match(
    failure(() => parse('{ "DicomModalities": { "x": ["WAY_TOO_LONG_AE_TITLE", "h", 104] } }')),
    /DicomModalities\.x\[0\].*AE title/,
  );
  assert.match(
    failure(() => parse('{ "DicomModalities": { "x": ["A", "h", 70000] } }')),
    /DicomModalities\.x\[2\].*TCP port/,
  );
  assert.match(
    failure(() => parse('{ "DicomModalities": { "x": { "AET": "A", "Host": "h" } } }')),
    /DicomModalities\.x.*Port/,
  );
  assert.match(
    failure(() => parse('{ "DicomModalities": { "x": 5 } }')),
    /DicomModalities\.x/,
  );
  assert.match(
    failure(() => parse('{ "DicomAet": "" }')),
    /DicomAet/,
  );
});
