// The DicomWeb section: the Orthanc DICOMweb plugin's two forms of a server, the token and size keys, paths
// relative to the file, and bad entries refused with their path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText, type LoadedConfig } from '../../src/config/index.ts';
import { isXferError } from '../../src/errors.ts';

function parse(text: string): LoadedConfig {
  return parseConfigText(text, '/cfg/test.json', { env: {}, baseDir: '/cfg' });
}

function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isXferError(e), `expected an XferError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected an error');
}

test("DicomWeb.Servers: the plugin's two forms, the cloud keys, files relative to the configuration", () => {
  const { config } = parse(`{ "DicomWeb": { "Root": "/dw/", "Servers": {
    "plain": ["http://archive:8042/dicom-web"],
    "basic": ["https://archive/dicom-web/", "alice", "secret"],
    "cloud": { "Url": "https://cloud/dicomWeb/", "HttpHeaders": { "X-Tenant": "a" }, "CertificateFile": "c.pem",
               "Timeout": 30, "BearerTokenCommand": ["print-token", "--json"], "TokenLifetime": 600, "MaxRequestSize": 1000 },
    "file": { "Url": "https://f/", "BearerTokenFile": "token.txt" }
  } } }`);
  const dw = config.DicomWeb;
  assert.equal(dw.Enable, true);
  assert.equal(dw.Root, '/dw/');
  assert.deepEqual(dw.Servers['plain'], { name: 'plain', url: 'http://archive:8042/dicom-web/', httpHeaders: {}, maxRequestSize: 0 });
  assert.deepEqual(dw.Servers['basic'], {
    name: 'basic',
    url: 'https://archive/dicom-web/',
    username: 'alice',
    password: 'secret',
    httpHeaders: {},
    maxRequestSize: 0,
  });
  assert.deepEqual(dw.Servers['cloud'], {
    name: 'cloud',
    url: 'https://cloud/dicomWeb/',
    httpHeaders: { 'X-Tenant': 'a' },
    certificateFile: '/cfg/c.pem',
    timeout: 30,
    bearerTokenCommand: ['print-token', '--json'],
    tokenLifetime: 600,
    maxRequestSize: 1000,
  });
  assert.equal(dw.Servers['file']?.bearerTokenFile, '/cfg/token.txt');
});

test('DicomWeb: bad entries are refused naming their path', () => {
  assert.match(
    failure(() => parse('{ "DicomWeb": { "Servers": { "a": ["ftp://x/"] } } }')),
    /DicomWeb.*Servers.*a/,
  );
  assert.match(
    failure(() => parse('{ "DicomWeb": { "Servers": { "a": { "Url": "http://x/", "MaxRequestSize": -1 } } } }')),
    /MaxRequestSize/,
  );
  assert.match(
    failure(() =>
      parse('{ "DicomWeb": { "Servers": { "a": { "Url": "http://x/", "BearerTokenFile": "t", "BearerTokenCommand": ["c"] } } } }'),
    ),
    /not both/,
  );
  assert.match(
    failure(() => parse('{ "DicomWeb": { "Root": "dicom-web" } }')),
    /Root/,
  );
});
