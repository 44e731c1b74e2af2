// Throw-away certificates for HTTPS tests, made by openssl: a CA, a server certificate for 127.0.0.1 and a
// client certificate whose key is encrypted with CLIENT_KEY_PASSWORD; or one self-signed certificate.
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pki {
  dir: string;
  caFile: string;
  serverKey: string;
  serverCert: string;
  clientCert: string;
  /** Encrypted with CLIENT_KEY_PASSWORD. */
  clientKey: string;
}

export const CLIENT_KEY_PASSWORD = 'key-secret';

/** Makes the files in a new temporary folder (`dir`, to be removed by the caller). */
export async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'dx-pki-'));
  const f = (n: string) => join(dir, n);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  ossl('req', '-x509', ...ec, '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=dicom-xfer test CA');
  await writeFile(f('server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  ossl('req', ...ec, '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  ossl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.pem'),
    '-days',
    '2',
    '-extfile',
    f('server.ext'),
  );
  ossl(
    'req',
    ...ec,
    '-keyout',
    f('client.key'),
    '-passout',
    `pass:${CLIENT_KEY_PASSWORD}`,
    '-out',
    f('client.csr'),
    '-subj',
    '/CN=peer-client',
  );
  ossl(
    'x509',
    '-req',
    '-in',
    f('client.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('client.pem'),
    '-days',
    '2',
  );
  return {
    dir,
    caFile: f('ca.pem'),
    serverKey: f('server.key'),
    serverCert: f('server.pem'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}

/**
 * A self-signed certificate for localhost (RSA, two days) in `dir`: `key.pem` and `crt.pem`, with the
 * subjectAltName `san` when given (such as `IP:127.0.0.1`).
 */
export function selfSigned(dir: string, san?: string): { key: string; crt: string } {
  const key = join(dir, 'key.pem');
  const crt = join(dir, 'crt.pem');
  const ext = san === undefined ? [] : ['-addext', `subjectAltName=${san}`];
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=localhost', ...ext],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return { key, crt };
}
