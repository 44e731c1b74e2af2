// The `PostgreSQL` key: the plugin's section loads with its defaults, a URI replaces the separate keys,
// EnableStorage and contradictions are refused with the key named, and the plugin's tuning keys are accepted.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/index.ts';
import { isXferError } from '../../src/errors.ts';

const parse = (text: string) => parseConfigText(text, '/cfg/test.json', { env: {}, baseDir: '/cfg' });

function failure(text: string): string {
  try {
    parse(text);
  } catch (e) {
    assert.ok(isXferError(e), `expected an XferError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected an error');
}

describe('the PostgreSQL key', () => {
  test('absent: no PostgreSQL; the plugin section as Orthanc has it loads with the defaults, without warnings', () => {
    assert.equal(parse('{}').config.PostgreSQL, undefined);
    const { config, warnings } = parse(`{ "PostgreSQL": {
      "EnableIndex": true, "Host": "db.example", "Database": "dx", "Username": "u", "Password": "p",
      "IndexConnectionsCount": 5, "TransactionMode": "ReadCommitted" } }`);
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.PostgreSQL, {
      enableIndex: true,
      host: 'db.example',
      port: 5432,
      database: 'dx',
      username: 'u',
      password: 'p',
      enableSsl: false,
      maximumConnectionRetries: 10,
      connectionRetryInterval: 5,
      lock: true,
    });
    const uri = parse('{ "PostgreSQL": { "ConnectionUri": "postgresql://u:p@h:5433/d?sslmode=require", "Lock": false } }');
    assert.equal(uri.config.PostgreSQL?.connectionUri, 'postgresql://u:p@h:5433/d?sslmode=require');
    assert.equal(uri.config.PostgreSQL?.lock, false);
    assert.equal(uri.config.PostgreSQL?.enableIndex, false);
  });

  test('EnableStorage, a URI beside Host, a bad URI, a relative CA path and unknown keys are refused by name', () => {
    assert.match(failure('{ "PostgreSQL": { "EnableIndex": true, "EnableStorage": true } }'), /PostgreSQL\.EnableStorage.*not supported/);
    assert.match(failure('{ "PostgreSQL": { "ConnectionUri": "postgres://h/d", "Host": "h" } }'), /PostgreSQL\.Host.*ConnectionUri/);
    assert.match(failure('{ "PostgreSQL": { "ConnectionUri": "mysql://h/d" } }'), /PostgreSQL\.ConnectionUri.*postgres:\/\//);
    assert.match(failure('{ "PostgreSQL": { "SslRootCertificate": "ca.pem" } }'), /PostgreSQL\.SslRootCertificate.*absolute path/);
    assert.match(failure('{ "PostgreSQL": { "Hots": "h" } }'), /PostgreSQL\.Hots.*unknown key/);
    assert.match(failure('{ "PostgreSQL": { "Port": 0 } }'), /PostgreSQL\.Port/);
  });
});
