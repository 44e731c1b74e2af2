// Configuration loading: Orthanc's own files load unchanged, peers normalise as Orthanc does, bad values are
// refused with the key named, flags win over the file, and docs/configuration.md matches the table.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  CONFIG_REFERENCE_PATH,
  configJsonSchema,
  configReferenceMarkdown,
  describeConfig,
  loadConfig,
  parseConfigText,
  type LoadedConfig,
} from '../../src/config/index.ts';
import { isXferError, type XferError } from '../../src/errors.ts';
import { ORTHANC_BINARY, orthancInstalled } from '../helpers/orthanc.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NO_ENV: NodeJS.ProcessEnv = {};

function parse(text: string, opts: Parameters<typeof parseConfigText>[2] = {}): LoadedConfig {
  return parseConfigText(text, '/cfg/test.json', { env: NO_ENV, baseDir: '/cfg', ...opts });
}

/** Runs `fn`, expects an XferError, and returns its message. */
function failure(fn: () => unknown, code?: XferError['code']): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isXferError(e), `expected an XferError, got ${String(e)}`);
    if (code) assert.equal(e.code, code);
    return e.message;
  }
  assert.fail('expected an error');
}

async function rejection(p: Promise<unknown>, code?: XferError['code']): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(isXferError(e), `expected an XferError, got ${String(e)}`);
    if (code) assert.equal(e.code, code);
    return e.message;
  }
  assert.fail('expected a rejection');
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dx-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('syntax', () => {
  test('accepts // and /* */ comments and trailing commas', () => {
    const { config, warnings } = parse(`{
      // the node's name
      "Name": "site-a", /* inline */
      "Transfers": {
        "Threads": 6, // more workers
      },
      "RegisteredUsers": { "alice": "pw", },
      "OrthancPeers": { "b": [ "http://b:8042", ], },
    }`);
    assert.equal(config.Name, 'site-a');
    assert.equal(config.Transfers.Threads, 6);
    assert.deepEqual(config.RegisteredUsers, { alice: 'pw' });
    assert.equal(config.OrthancPeers['b']?.url, 'http://b:8042/');
    assert.deepEqual(warnings, []);
  });

  test('a parse error names the file, line and column', () => {
    const msg = failure(() => parse('{\n  "Name": "x"\n  "HttpPort": 1\n}'), 'BadFileFormat');
    assert.match(msg, /\/cfg\/test\.json:3:3: invalid JSON: comma expected/);
  });

  test('a top level that is not an object is refused', () => {
    assert.match(
      failure(() => parse('[1, 2]'), 'BadFileFormat'),
      /expected a JSON object/,
    );
    assert.match(
      failure(() => parse('// only a comment\n'), 'BadFileFormat'),
      /expected a JSON object|invalid JSON/,
    );
  });

  test(`substitutes \${VAR} and \${VAR:-default} like Orthanc, but not inside comments`, () => {
    const { config, warnings } = parse(
      `{
        // "\${NOT_SET_IN_COMMENT}" is not looked at
        "Name": "\${DX_NAME}", "StorageDirectory": "\${DX_UNSET:-/data/x}", "HttpHost": "h\${DX_EMPTY:-y}" }`,
      { env: { DX_NAME: 'from-env', DX_EMPTY: '' } },
    );
    assert.equal(config.Name, 'from-env');
    assert.equal(config.StorageDirectory, '/data/x');
    assert.equal(config.HttpHost, 'h', 'a set but empty variable is used as it is, as Orthanc does');
    assert.deepEqual(warnings, []);
    const unset = parse(`{ "Name": "a\${DX_NOPE}b" }`);
    assert.equal(unset.config.Name, 'ab');
    assert.equal(unset.warnings.length, 1);
    assert.match(unset.warnings[0] ?? '', /DX_NOPE is not set/);
  });

  test('refuses a "__proto__" key instead of letting it replace a prototype', () => {
    const msg = failure(() => parse('{ "OrthancPeers": { "__proto__": ["http://evil/"] } }'));
    assert.match(msg, /OrthancPeers\.__proto__: "__proto__" is not allowed/);
  });

  test('a key given twice warns and the last one wins', () => {
    const { config, warnings } = parse('{ "HttpPort": 1000, "HttpPort": 2000 }');
    assert.equal(config.HttpPort, 2000);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /test\.json:1:21: HttpPort is given twice/);
  });
});

describe("Orthanc's own configuration files", () => {
  test("Debian's /etc/orthanc/orthanc.json loads without error or warning", {
    skip: !existsSync('/etc/orthanc/orthanc.json'),
  }, async () => {
    const { config, warnings, ignored, files } = await loadConfig({ file: '/etc/orthanc/orthanc.json', env: NO_ENV });
    assert.deepEqual(warnings, []);
    assert.deepEqual(files, ['/etc/orthanc/orthanc.json']);
    assert.equal(config.Name, 'Orthanc');
    assert.equal(config.HttpPort, 8042);
    assert.equal(config.StorageDirectory, '/var/lib/orthanc/db-v6');
    assert.equal(config.SslEnabled, false);
    assert.equal(config.SslCertificate, '/etc/orthanc/certificate.pem', 'relative to the file, as Orthanc does');
    assert.equal(config.HttpsCACertificates, undefined, '"" means not set');
    assert.deepEqual(config.OrthancPeers, {});
    assert.ok(ignored.includes('DicomTlsEnabled') && ignored.includes('Plugins') && ignored.includes('IndexDirectory'));
    assert.equal(config.DicomServerEnabled, true, "Debian's file opens the DICOM port, as Orthanc does");
    assert.equal(config.DicomAet, 'ORTHANC');
    assert.equal(config.DicomPort, 4242);
  });

  test('the folder /etc/orthanc loads as Orthanc reads it: every .json file together', {
    skip: !existsSync('/etc/orthanc/credentials.json'),
  }, async () => {
    const { warnings, ignored, files } = await loadConfig({ file: '/etc/orthanc', env: NO_ENV });
    assert.deepEqual(warnings, []);
    assert.ok(files.includes('/etc/orthanc/credentials.json') && files.includes('/etc/orthanc/orthanc.json'));
    assert.ok(ignored.includes('Worklists') && ignored.includes('ServeFolders'));
  });

  test('the default configuration that Orthanc writes with --config loads without warnings', { skip: !orthancInstalled() }, async () => {
    const file = join(dir, 'orthanc-generated.json');
    await promisify(execFile)(ORTHANC_BINARY, [`--config=${file}`], { timeout: 30_000 });
    const { config, warnings } = await loadConfig({ file, env: NO_ENV });
    assert.deepEqual(warnings, []);
    assert.equal(config.HttpPort, 8042);
    assert.equal(config.StorageDirectory, join(dir, 'OrthancStorage'));
  });
});

describe('OrthancPeers', () => {
  test('short forms [url] and [url, user, password]; the trailing slash is added', () => {
    const { config } = parse(`{ "OrthancPeers": {
      "one": ["http://127.0.0.1:8043"],
      "two": ["https://b.example.org/orthanc/", "alice", "secret"]
    } }`);
    assert.deepEqual(config.OrthancPeers['one'], {
      name: 'one',
      url: 'http://127.0.0.1:8043/',
      httpHeaders: {},
      userProperties: {},
    });
    assert.deepEqual(config.OrthancPeers['two'], {
      name: 'two',
      url: 'https://b.example.org/orthanc/',
      username: 'alice',
      password: 'secret',
      httpHeaders: {},
      userProperties: {},
    });
  });

  test('long form with Url or URL; RemoteSelf and other non-reserved keys are user properties', () => {
    const { config, warnings } = parse(`{ "OrthancPeers": {
      "b": {
        "Url": "https://b:8042",
        "Username": "alice", "Password": "pw",
        "HttpHeaders": { "Token": "t0k" },
        "CertificateFile": "certs/client.crt",
        "CertificateKeyFile": "/abs/client.key",
        "CertificateKeyPassword": "kp",
        "Pkcs11": false,
        "Timeout": 120,
        "RemoteSelf": "a",
        "Flag": true,
        "Count": 7
      },
      "c": { "URL": "http://c:8042/" }
    } }`);
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.OrthancPeers['b'], {
      name: 'b',
      url: 'https://b:8042/',
      username: 'alice',
      password: 'pw',
      httpHeaders: { Token: 't0k' },
      certificateFile: '/cfg/certs/client.crt',
      certificateKeyFile: '/abs/client.key',
      certificateKeyPassword: 'kp',
      timeout: 120,
      userProperties: { RemoteSelf: 'a', Flag: '1', Count: '7' },
    });
    assert.equal(config.OrthancPeers['c']?.url, 'http://c:8042/');
    assert.deepEqual(config.OrthancPeers['c']?.userProperties, {});
  });

  test('a URL that is not http(s) is an error naming the peer', () => {
    const msg = failure(() => parse('{ "OrthancPeers": { "pacs": { "Url": "ftp://pacs/" } } }'), 'BadFileFormat');
    assert.match(msg, /OrthancPeers\.pacs\.Url: expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/pacs\/"/);
    const short = failure(() => parse('{ "OrthancPeers": { "old": ["dicom://x"] } }'));
    assert.match(short, /OrthancPeers\.old\[0\]: expected an http:\/\/ or https:\/\/ URL/);
    const none = failure(() => parse('{ "OrthancPeers": { "nourl": { "Username": "a" } } }'));
    assert.match(none, /OrthancPeers\.nourl: expected an http:\/\/ or https:\/\/ URL under "Url"/);
  });

  test('malformed peers are refused with the reason', () => {
    assert.match(
      failure(() => parse('{ "OrthancPeers": { "p": ["http://p/", "user"] } }')),
      /OrthancPeers\.p: expected \[url\] or \[url, username, password\]/,
    );
    assert.match(
      failure(() => parse('{ "OrthancPeers": { "p": 42 } }')),
      /OrthancPeers\.p: expected .*, got 42/,
    );
    assert.match(
      failure(() => parse('{ "OrthancPeers": { "p": { "Url": "http://p/", "HttpHeaders": { "X": 1 } } } }')),
      /OrthancPeers\.p\.HttpHeaders\.X: expected a string, got 1/,
    );
    assert.match(
      failure(() => parse('{ "OrthancPeers": { "p": { "Url": "http://p/", "Extra": [1] } } }')),
      /OrthancPeers\.p\.Extra: expected a string, true, false or an integer/,
    );
    assert.match(
      failure(() => parse('{ "OrthancPeers": { "p": { "Url": "http://p/", "Password": "x" } } }')),
      /OrthancPeers\.p\.Password: a Password is given without a Username/,
    );
  });

  test('Pkcs11 true is accepted with a warning, since dicom-xfer cannot use it', () => {
    const { warnings } = parse('{ "OrthancPeers": { "p": { "Url": "http://p/", "Pkcs11": true } } }');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /OrthancPeers\.p\.Pkcs11 is ignored by dicom-xfer/);
  });
});

describe('validation', () => {
  test('a wrong type is refused with the key, what was expected and what was given, at its line', () => {
    const msg = failure(() => parse('{\n  "HttpPort": "abc"\n}'), 'BadFileFormat');
    assert.match(msg, /\/cfg\/test\.json:2:15: HttpPort: expected an integer between 1 and 65535, got "abc"/);
  });

  test('every bad key is reported at once', () => {
    const msg = failure(() =>
      parse(`{
        "HttpPort": 70000,
        "SaveJobs": "yes",
        "RegisteredUsers": { "alice": 5 },
        "LogLevel": "loud",
        "Transfers": { "Threads": -1, "PeerCommitTimeout": 1.5 }
      }`),
    );
    assert.match(msg, /HttpPort: expected an integer between 1 and 65535, got 70000/);
    assert.match(msg, /SaveJobs: expected true or false, got "yes"/);
    assert.match(msg, /RegisteredUsers\.alice: expected a string, got 5/);
    assert.match(msg, /LogLevel: expected one of "trace", .*, got "loud"/);
    assert.match(msg, /Transfers\.Threads: expected an integer of at least 1; 0 is not allowed, got -1/);
    assert.match(msg, /Transfers\.PeerCommitTimeout: expected an integer of at least 0 \(seconds\), got 1\.5/);
    assert.equal(msg.split('\n').length, 6);
  });

  test('0 is refused for Threads, BucketSize, CacheSize, MaxPushTransactions and CommitThreadsCount', () => {
    for (const key of ['Threads', 'BucketSize', 'CacheSize', 'MaxPushTransactions', 'CommitThreadsCount']) {
      const msg = failure(() => parse(`{ "Transfers": { "${key}": 0 } }`), 'BadFileFormat');
      assert.match(msg, new RegExp(`Transfers\\.${key}: expected an integer of at least 1.*0 is not allowed, got 0`));
    }
    const { config } = parse('{ "Transfers": { "MaxHttpRetries": 0, "PeerConnectivityTimeout": 0 } }');
    assert.equal(config.Transfers.MaxHttpRetries, 0);
  });

  test('Transfers must be an object', () => {
    assert.match(
      failure(() => parse('{ "Transfers": [] }')),
      /Transfers: expected an object, got \[\]/,
    );
  });

  test('SslEnabled without SslCertificate is refused', () => {
    assert.match(
      failure(() => parse('{ "SslEnabled": true }')),
      /SslCertificate: a certificate file is required/,
    );
    const { config } = parse('{ "SslEnabled": true, "SslCertificate": "tls/server.pem" }');
    assert.equal(config.SslCertificate, '/cfg/tls/server.pem');
  });

  test('MaxThreads defaults to 64 or Threads if larger, and may not be set below Threads', () => {
    assert.equal(parse('{}').config.Transfers.MaxThreads, 64);
    assert.equal(parse('{ "Transfers": { "Threads": 80 } }').config.Transfers.MaxThreads, 80);
    assert.match(
      failure(() => parse('{ "Transfers": { "Threads": 8, "MaxThreads": 4 } }')),
      /Transfers\.MaxThreads: expected at least Transfers\.Threads \(8\), got 4/,
    );
  });
});

describe('unknown and ignored keys', () => {
  test('unknown keys warn once each with their path; known Orthanc keys stay quiet', () => {
    const { warnings, ignored } = parse(`{
      "Foo": 1,
      "DicomAet": "SITEA", "DicomPort": 4242, "IndexDirectory": "/x", "Plugins": ["/p"], "LuaScripts": [],
      "DicomModalities": { "m": ["M", "127.0.0.1", 104] }, "MySQL": { "EnableIndex": true },
      "Transfers": { "Foo": true, "Threads": 2 }
    }`);
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0] ?? '', /test\.json:2:7: unknown key Foo, ignored/);
    assert.match(warnings[1] ?? '', /test\.json:5:22: unknown key Transfers\.Foo, ignored/);
    assert.deepEqual(ignored, ['IndexDirectory', 'Plugins', 'LuaScripts', 'MySQL']);
  });

  test('a key in the wrong case is warned with a suggestion', () => {
    const { warnings, config } = parse('{ "httpPort": 9000, "Transfers": { "bucketsize": 1 } }');
    assert.equal(config.HttpPort, 8042);
    assert.match(warnings[0] ?? '', /unknown key httpPort, ignored \(did you mean HttpPort\?\)/);
    assert.match(warnings[1] ?? '', /unknown key Transfers\.bucketsize, ignored \(did you mean BucketSize\?\)/);
  });

  test('an ignored Orthanc key whose value matters gets a note', () => {
    const quiet = parse('{ "HttpProxy": "", "OrthancPeersInDatabase": false, "SslVerifyPeers": false }');
    assert.deepEqual(quiet.warnings, []);
    const { warnings } = parse('{ "HttpProxy": "proxy:3128", "OrthancPeersInDatabase": true }');
    assert.equal(warnings.length, 2);
    assert.match(warnings[0] ?? '', /HttpProxy is ignored by dicom-xfer: outgoing HTTP calls do not go through a proxy/);
    assert.match(warnings[1] ?? '', /OrthancPeersInDatabase is ignored by dicom-xfer/);
  });
});

describe('defaults and overrides', () => {
  test("defaults equal the plugin's and Orthanc's", () => {
    const { config, warnings } = parse('{}', { baseDir: '/work' });
    assert.deepEqual(warnings, []);
    // The plugin's defaults (docs/protocol.md#configuration), then dicom-xfer's extensions. One differs:
    // MaxPushTransactions (the plugin's is 4), so that many senders share a receiver's link at once.
    assert.deepEqual(config.Transfers, {
      Threads: 4,
      BucketSize: 4096,
      CacheSize: 512,
      MaxPushTransactions: 32,
      MaxHttpRetries: 0,
      PeerConnectivityTimeout: 2,
      PeerCommitTimeout: 600,
      CommitThreadsCount: 1,
      MaxThreads: 64,
      IdleTransactionTimeout: 3600,
      RetryBudget: 120,
      IdleBeforeEviction: 60,
      PushAdmissionWait: 20,
      PushTransactionsMemory: 64,
      Extensions: true,
      BucketSpans: true,
      Zstd: true,
      MaxPushInstances: 100_000,
      MaxRequestsInFlight: 0,
      MaxInFlightSize: 0,
      RateLimit: 0,
      RateSchedule: [],
    });
    assert.deepEqual(config, {
      Name: 'dicom-xfer',
      HttpPort: 8042,
      HttpHost: '127.0.0.1',
      StorageDirectory: '/work/dicom-xfer-data',
      RemoteAccessAllowed: false,
      AuthenticationEnabled: false,
      RegisteredUsers: {},
      SslEnabled: false,
      HttpTimeout: 60,
      HttpAllowedHosts: [],
      HttpMaxConnections: 512,
      HttpRequestMinimumRate: 100,
      HttpsVerifyPeers: true,
      StableAge: 60,
      OverwriteInstances: false,
      MaximumStorageSize: 0,
      MaximumZipEntries: 20_000,
      MaximumZipUncompressedSize: 4096,
      MaximumInflationRatio: 200,
      ConcurrentJobs: 2,
      JobsHistorySize: 10,
      SaveJobs: true,
      HttpDescribeErrors: true,
      OrthancPeers: {},
      DicomServerEnabled: false,
      DicomAet: 'DICOMXFER',
      DicomPort: 4242,
      DicomCheckCalledAet: false,
      DicomCheckModalityHost: false,
      DicomAlwaysAllowEcho: true,
      DicomAlwaysAllowStore: true,
      DicomAlwaysAllowFind: false,
      DicomAlwaysAllowMove: false,
      DicomScuTimeout: 10,
      DicomScpTimeout: 30,
      DicomStorageCommitmentTimeout: 600,
      DicomModalities: {},
      Routes: [],
      DicomWeb: { Enable: true, Root: '/dicom-web/', Servers: {} },
      LogLevel: 'info',
      Transfers: config.Transfers,
    });
  });

  test('AuthenticationEnabled and HttpHost follow RemoteAccessAllowed unless given', () => {
    const open = parse('{ "RemoteAccessAllowed": true, "RegisteredUsers": { "a": "b" } }');
    assert.equal(open.config.AuthenticationEnabled, true);
    assert.equal(open.config.HttpHost, '0.0.0.0');
    assert.deepEqual(open.warnings, []);
    const closed = parse('{ "RemoteAccessAllowed": false }');
    assert.equal(closed.config.AuthenticationEnabled, false);
    assert.equal(closed.config.HttpHost, '127.0.0.1');
    const explicit = parse('{ "RemoteAccessAllowed": true, "AuthenticationEnabled": false, "HttpHost": "10.0.0.5" }');
    assert.equal(explicit.config.AuthenticationEnabled, false);
    assert.equal(explicit.config.HttpHost, '10.0.0.5');
    assert.match(explicit.warnings.join('\n'), /anyone who reaches this node/);
    const noUsers = parse('{ "RemoteAccessAllowed": true }');
    assert.match(noUsers.warnings.join('\n'), /RegisteredUsers is empty: no user can log in/);
    // An override of RemoteAccessAllowed moves the derived defaults too.
    const flipped = parse('{ "RegisteredUsers": { "a": "b" } }', { overrides: { RemoteAccessAllowed: true } });
    assert.equal(flipped.config.AuthenticationEnabled, true);
    assert.equal(flipped.config.HttpHost, '0.0.0.0');
  });

  test('overrides win over the file; Transfers, OrthancPeers and RegisteredUsers merge entry by entry', () => {
    const { config } = parse(
      `{ "HttpPort": 8042, "Name": "file", "StorageDirectory": "data",
         "Transfers": { "Threads": 2, "BucketSize": 1024 },
         "OrthancPeers": { "b": ["http://b/"], "c": ["http://c/"] },
         "RegisteredUsers": { "alice": "1" } }`,
      {
        overrides: {
          HttpPort: 9000,
          Name: undefined,
          StorageDirectory: 'other',
          Transfers: { Threads: 16 },
          OrthancPeers: { c: ['http://c2:8042'] },
          RegisteredUsers: { bob: '2' },
        },
      },
    );
    assert.equal(config.HttpPort, 9000);
    assert.equal(config.Name, 'file', 'an undefined override means "not given"');
    assert.equal(config.StorageDirectory, resolve(process.cwd(), 'other'), 'override paths are relative to the current directory');
    assert.equal(config.Transfers.Threads, 16);
    assert.equal(config.Transfers.BucketSize, 1024);
    assert.deepEqual(Object.keys(config.OrthancPeers), ['b', 'c']);
    assert.equal(config.OrthancPeers['c']?.url, 'http://c2:8042/');
    assert.deepEqual(config.RegisteredUsers, { alice: '1', bob: '2' });
  });

  test('a bad override is refused as coming from the command line; HttpPort 0 is allowed there only', () => {
    const msg = failure(() => parse('{}', { overrides: { HttpPort: Number.NaN } }), 'BadParameterType');
    assert.match(msg, /^Bad type for a parameter: command line: HttpPort: expected an integer between 0 and 65535, got NaN$/);
    assert.equal(parse('{}', { overrides: { HttpPort: 0 } }).config.HttpPort, 0);
    assert.match(
      failure(() => parse('{ "HttpPort": 0 }')),
      /HttpPort: expected an integer between 1 and 65535, got 0/,
    );
  });
});

describe('loadConfig', () => {
  test('a missing file is an error naming the path', async () => {
    const missing = join(dir, 'nope.json');
    const msg = await rejection(loadConfig({ file: missing, env: NO_ENV }), 'InexistentFile');
    assert.ok(msg.includes(missing), msg);
  });

  test('DICOM_XFER_CONFIG names the file when no flag does; a flag wins', async () => {
    const a = join(dir, 'a.json');
    const b = join(dir, 'b.json');
    await writeFile(a, '{ "Name": "from-env" }');
    await writeFile(b, '{ "Name": "from-flag" }');
    const env = { DICOM_XFER_CONFIG: a };
    assert.equal((await loadConfig({ env })).config.Name, 'from-env');
    assert.equal((await loadConfig({ file: b, env })).config.Name, 'from-flag');
    const msg = await rejection(loadConfig({ env: { DICOM_XFER_CONFIG: join(dir, 'gone.json') } }), 'InexistentFile');
    assert.match(msg, /gone\.json \(from DICOM_XFER_CONFIG\)/);
    const none = await loadConfig({ env: NO_ENV });
    assert.deepEqual(none.files, []);
    assert.equal(none.config.Name, 'dicom-xfer');
  });

  test('relative paths resolve against the folder of the configuration file', async () => {
    const sub = join(dir, 'site');
    await mkdir(sub, { recursive: true });
    const file = join(sub, 'dicom-xfer.json');
    await writeFile(file, '{ "StorageDirectory": "store", "HttpsCACertificates": "../ca.pem" }');
    const { config } = await loadConfig({ file, env: NO_ENV });
    assert.equal(config.StorageDirectory, join(sub, 'store'));
    assert.equal(config.HttpsCACertificates, join(dir, 'ca.pem'));
    await writeFile(file, '{}');
    assert.equal((await loadConfig({ file, env: NO_ENV })).config.StorageDirectory, join(sub, 'dicom-xfer-data'));
  });

  test('errors from a file name that file, line and column', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, '{\n  // comment\n  "Transfers": { "BucketSize": "big" }\n}\n');
    const msg = await rejection(loadConfig({ file, env: NO_ENV }), 'BadFileFormat');
    assert.ok(msg.includes(`${file}:3:32: Transfers.BucketSize: expected an integer of at least 1 (KB)`), msg);
  });

  test('a folder is read whole; a key defined in two of its files is an error', async () => {
    const folder = join(dir, 'conf.d');
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, '10-main.json'), '{ "Name": "folder", "Transfers": { "Threads": 3 } }');
    await writeFile(join(folder, '20-users.json'), '{ "RegisteredUsers": { "u": "p" } }');
    await writeFile(join(folder, 'notes.txt'), 'not json');
    const { config, files } = await loadConfig({ file: folder, env: NO_ENV });
    assert.equal(config.Name, 'folder');
    assert.equal(config.Transfers.Threads, 3);
    assert.deepEqual(config.RegisteredUsers, { u: 'p' });
    assert.equal(files.length, 2);
    await writeFile(join(folder, '30-dup.json'), '{ "Name": "again" }');
    const msg = await rejection(loadConfig({ file: folder, env: NO_ENV }), 'BadFileFormat');
    assert.match(msg, /30-dup\.json:1:3: Name is already defined in .*10-main\.json/);
  });
});

describe('reference', () => {
  test('describeConfig lists every key once with a meaning', () => {
    const rows = describeConfig();
    const keys = rows.map((r) => r.key);
    assert.equal(new Set(keys).size, keys.length);
    for (const k of ['HttpPort', 'OrthancPeers', 'Transfers.BucketSize', 'Transfers.RetryBudget', 'LogLevel']) {
      assert.ok(keys.includes(k), k);
    }
    for (const r of rows) assert.ok(r.meaning.length > 10, r.key);
    assert.equal(rows.find((r) => r.key === 'Transfers.BucketSize')?.unit, 'KB');
    assert.equal(rows.find((r) => r.key === 'AuthenticationEnabled')?.default, 'same as RemoteAccessAllowed');
  });

  test('configJsonSchema describes every top-level key and the Transfers keys', () => {
    const schema = configJsonSchema() as { properties: Record<string, { properties?: Record<string, unknown> }> };
    assert.ok(schema.properties['HttpPort']);
    assert.ok(schema.properties['Transfers']?.properties?.['BucketSize']);
  });

  test(`${CONFIG_REFERENCE_PATH} is up to date with the table`, async () => {
    const onDisk = await readFile(join(ROOT, CONFIG_REFERENCE_PATH), 'utf8');
    assert.equal(
      onDisk,
      configReferenceMarkdown(),
      `regenerate with: node --import tsx -e "import('./src/config/reference.ts').then(m => ` +
        `require('fs').writeFileSync('${CONFIG_REFERENCE_PATH}', m.configReferenceMarkdown()))"`,
    );
  });
});
