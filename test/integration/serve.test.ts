// `dicom-xfer serve` as people run it: configuration errors and warnings, loopback by default,
// Basic authentication, HTTPS, one process per storage directory, and a clean stop on SIGTERM.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import { selfSigned } from '../helpers/pki.ts';
import { serveFails } from '../helpers/cli.ts';
import { BIN, startXferNode, type XferNode } from '../helpers/node.ts';
import { freePort } from '../helpers/ports.ts';
import { needs, REAL_DICOM } from '../helpers/data.ts';

const CT = join(REAL_DICOM, 'Brainix/Flair/IM-0001-0001.dcm');
const _run = promisify(execFile);

/** Local address of the listening TCP socket on `port`, read from the kernel's table. */
async function listeningAddresses(port: number): Promise<string[]> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (!local || cols[3] !== '0A') continue; // 0A = LISTEN
      const [addr, p] = local.split(':');
      if (p === hexPort && addr) out.push(addr);
    }
  }
  return out;
}

describe('serve', () => {
  const nodes: XferNode[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const n of nodes) await n.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('a wrong type in the configuration is refused, naming the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-serve-'));
    dirs.push(dir);
    const cfg = join(dir, 'bad.json');
    await writeFile(cfg, '{\n  // comments are fine\n  "HttpPort": "abc",\n  "Transfers": { "Threads": -1 }\n}\n');
    const r = await serveFails(['--config', cfg, '--data', join(dir, 'data')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /HttpPort/);
    assert.match(r.stderr, /Transfers\.Threads/);
    assert.equal(existsSync(join(dir, 'data', 'index.sqlite')), false, 'nothing created');
  });

  test('unknown keys are warned about, and flags override the file', async () => {
    const port = await freePort();
    const node = await startXferNode({ config: { HttpPort: 1, NoSuchKey: true, Name: 'from-file' }, port });
    nodes.push(node);
    assert.match(node.log(), /NoSuchKey/);
    const system = (await (await fetch(`${node.url}/system`)).json()) as Record<string, unknown>;
    assert.equal(system.HttpPort, port, '--port wins over HttpPort');
    assert.equal(system.Name, 'from-file');
  });

  test('listens on loopback only unless remote access is allowed', async () => {
    const node = nodes[0] as XferNode;
    const addrs = await listeningAddresses(node.port);
    assert.deepEqual(addrs, ['0100007F'], `listening on ${addrs.join(',')}`);
  });

  test('HTTP Basic authentication with RegisteredUsers', async () => {
    const node = await startXferNode({
      config: { AuthenticationEnabled: true, RegisteredUsers: { alice: 'orthanctest' } },
      auth: { username: 'alice', password: 'orthanctest' },
    });
    nodes.push(node);
    const none = await fetch(`${node.url}/system`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    const body = (await none.json()) as Record<string, unknown>;
    assert.equal(body.HttpStatus, 401);
    const bad = await fetch(`${node.url}/system`, {
      headers: { authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` },
    });
    assert.equal(bad.status, 401);
    const good = await fetch(`${node.url}/statistics`, {
      headers: { authorization: `Basic ${Buffer.from('alice:orthanctest').toString('base64')}` },
    });
    assert.equal(good.status, 200);
  });

  test('HTTPS with SslCertificate (a PEM holding certificate and key)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-tls-'));
    dirs.push(dir);
    const { key, crt } = selfSigned(dir, 'IP:127.0.0.1,DNS:localhost');
    const pem = join(dir, 'both.pem');
    await writeFile(pem, (await readFile(crt, 'utf8')) + (await readFile(key, 'utf8')));
    const node = await startXferNode({ config: { SslEnabled: true, SslCertificate: pem }, https: true });
    nodes.push(node);
    const ca = await readFile(crt, 'utf8');
    const dispatcher = new Agent({ connect: { ca } });
    const r = await undiciFetch(`https://127.0.0.1:${node.port}/system`, { dispatcher });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as Record<string, unknown>).IsHttpServerSecure, true);
    await assert.rejects(undiciFetch(`https://127.0.0.1:${node.port}/system`), 'an unknown CA is refused');
    await dispatcher.close();
  });

  test('a second node on the same storage directory is refused', async () => {
    const node = nodes[0] as XferNode;
    const r = await serveFails(['--data', node.dataDir, '--port', String(await freePort())]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /in use by another dicom-xfer process \(pid \d+\)/);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'a message, not a stack');
  });

  test('after a kill -9 the storage directory can be used at once', async () => {
    const first = await startXferNode();
    await first.kill();
    dirs.push(first.dir);
    // The pid file that the killed node left stays; the OS lock went with the process.
    assert.ok(existsSync(join(first.dataDir, 'dicom-xfer.lock')));
    const again = await startXferNode({ dir: first.dir });
    nodes.push(again);
    assert.equal((await fetch(`${again.url}/system`)).status, 200);
    const r = await serveFails(['--data', first.dataDir, '--port', String(await freePort())]);
    assert.match(r.stderr, new RegExp(`in use by another dicom-xfer process \\(pid ${again.pid}\\)`));
  });

  test('a pid file left by an earlier version, naming a live process, does not block', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-serve-pid-'));
    dirs.push(dir);
    await mkdir(join(dir, 'data'), { recursive: true });
    // What an earlier version wrote, with a pid that is alive: this test's own process.
    await writeFile(join(dir, 'data', 'dicom-xfer.lock'), String(process.pid));
    const node = await startXferNode({ dir });
    nodes.push(node);
    assert.equal((await fetch(`${node.url}/system`)).status, 200);
  });

  test('SIGTERM lets an in-flight upload finish, then closes the database and exits 0', { skip: needs(CT) }, async () => {
    const node = await startXferNode();
    const file = await readFile(CT);
    const half = Math.floor(file.length / 2);
    const answer = new Promise<string>((resolve, reject) => {
      let got = '';
      const s = connect(node.port, '127.0.0.1', () => {
        s.write(`POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${file.length}\r\n\r\n`);
        s.write(file.subarray(0, half));
      });
      s.on('data', (d) => {
        got += d.toString();
        if (got.includes('"Status"')) s.end();
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      // Once the stop has begun, the rest of the body arrives.
      setTimeout(() => {
        process.kill(node.pid, 'SIGTERM');
        setTimeout(() => s.write(file.subarray(half)), 500);
      }, 300);
    });
    const got = await answer;
    assert.match(got.split('\r\n')[0] ?? '', /^HTTP\/1\.1 200/);
    assert.match(got, /"Status": "Success"/);
    const code = await node.stop({ keep: true });
    assert.equal(code, 0);
    assert.ok(!existsSync(join(node.dataDir, 'dicom-xfer.lock')), 'lock released');
    // The stored instance is there after a restart.
    dirs.push(node.dir);
    const again = await startXferNode({ dir: node.dir });
    nodes.push(again);
    const stats = (await (await fetch(`${again.url}/statistics`)).json()) as Record<string, unknown>;
    assert.equal(stats.CountInstances, 1);
  });

  test('a node whose stderr nobody reads any more still stops on SIGTERM', async () => {
    // Its first log line after the reader went away is the one of the stop itself; it used to be
    // retried for ever at exit (about one run in three). Several nodes, one after the other.
    for (let round = 0; round < 6; round++) {
      const dir = await mkdtemp(join(tmpdir(), 'dx-serve-epipe-'));
      dirs.push(dir);
      const port = await freePort();
      const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--data', join(dir, 'data')], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('the node did not start')), 20_000);
          child.stderr.on('data', (d: Buffer) => {
            if (d.toString().includes('listening')) {
              clearTimeout(t);
              resolve();
            }
          });
        });
        assert.equal((await fetch(`http://127.0.0.1:${port}/system`)).status, 200);
        // The reader goes away: every write to the node's stdout and stderr now fails (EPIPE).
        child.stdout.destroy();
        child.stderr.destroy();
        process.kill(child.pid as number, 'SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const code = await Promise.race([
          exited,
          new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still running'), 15_000))),
        ]);
        clearTimeout(timer);
        assert.equal(code, 0, `round ${round}`);
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      }
    }
  });
});
