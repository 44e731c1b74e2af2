// The DICOM server as the real command runs it (dicom-xfer serve): off unless DicomServerEnabled, its port
// and AET in /system, C-STORE and POST /instances giving the same IDs, a clear error for a port in use; and,
// on a server in this process, DicomScpTimeout and the bound on associations, with raw sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDicomHeader, simplifiedTags } from '../../src/dicom/parse.ts';
import { orthancIds } from '../../src/dicom/ids.ts';
import { encodePart10 } from '../../src/dicom/write.ts';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
import { serveFails } from '../helpers/cli.ts';
import { describe, listFiles, needs, REAL_DICOM } from '../helpers/data.ts';
import { dcmsend, echoscu, needsDcmtk } from '../helpers/dcmtk.ts';
import { startXferNode } from '../helpers/node.ts';
import { freePort, waitFor } from '../helpers/ports.ts';
import { dataSetOf, startScp } from './dimse-scp-common.ts';

/** Whether something accepts TCP connections on the loopback port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A TCP connection to the port that says nothing; resolves once connected. */
function silentSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function closed(s: Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

/** Peak resident memory of a process (VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN) * 1024;
}

/** A secondary capture instance in explicit VR little endian with `pixels` bytes of pixel data, written in pieces. */
async function writeBigInstance(path: string, pixels: number): Promise<void> {
  const uid = '1.2.826.0.1.3680043.10.1.99';
  const text = (group: number, element: number, vr: string, v: string) => ({
    group,
    element,
    vr,
    value: v.length % 2 ? `${v}${vr === 'UI' ? '\0' : ' '}` : v,
  });
  const head = encodePart10(
    [
      text(0x0008, 0x0016, 'UI', '1.2.840.10008.5.1.4.1.1.7'),
      text(0x0008, 0x0018, 'UI', `${uid}.3`),
      text(0x0008, 0x0060, 'CS', 'OT'),
      text(0x0010, 0x0010, 'PN', 'BIG^INSTANCE'),
      text(0x0010, 0x0020, 'LO', 'BIG1'),
      text(0x0020, 0x000d, 'UI', `${uid}.1`),
      text(0x0020, 0x000e, 'UI', `${uid}.2`),
    ],
    EXPLICIT_LE,
    '1.2.840.10008.5.1.4.1.1.7',
    `${uid}.3`,
  );
  const pixelHeader = Buffer.alloc(12);
  pixelHeader.writeUInt16LE(0x7fe0, 0);
  pixelHeader.writeUInt16LE(0x0010, 2);
  pixelHeader.write('OB', 4, 'latin1');
  pixelHeader.writeUInt32LE(pixels, 8);
  const fh = await open(path, 'w');
  try {
    await fh.write(Buffer.concat([head, pixelHeader]));
    const piece = Buffer.alloc(8 * 1024 * 1024, 0x5a);
    for (let left = pixels; left > 0; left -= piece.length) await fh.write(piece, 0, Math.min(piece.length, left));
  } finally {
    await fh.close();
  }
}

describe('dicom-xfer serve and its DICOM server', { skip: needs(REAL_DICOM) || needsDcmtk() }, () => {
  test('a node started without DicomServerEnabled opens no DICOM port', async () => {
    const dicomPort = await freePort();
    const node = await startXferNode({ config: { DicomPort: dicomPort } });
    try {
      assert.equal(await listening(dicomPort), false);
      const echo = await echoscu({ port: dicomPort, aet: 'DICOMXFER' });
      assert.notEqual(echo.code, 0);
    } finally {
      await node.stop();
    }
  });

  test('with DicomServerEnabled: /system shows its AET and port; C-STORE and POST /instances agree on IDs and elements', async () => {
    const dicomPort = await freePort();
    const node = await startXferNode({ config: { DicomServerEnabled: true, DicomPort: dicomPort, DicomAet: 'SITEA' } });
    try {
      const system = (await (await fetch(`${node.url}/system`)).json()) as Record<string, unknown>;
      assert.equal(system.DicomAet, 'SITEA');
      assert.equal(system.DicomPort, dicomPort);
      const echo = await echoscu({ port: dicomPort, aet: 'SITEA' });
      assert.equal(echo.code, 0, echo.stderr);
      const series = join(REAL_DICOM, 'Knix', 'Loc');
      const run = await dcmsend({ port: dicomPort, aet: 'SITEA' }, [series]);
      assert.equal(run.code, 0, run.stderr.slice(-2000));
      for (const file of await listFiles(series)) {
        const bytes = await readFile(file);
        const r = await fetch(`${node.url}/instances`, { method: 'POST', body: bytes });
        const answer = (await r.json()) as { ID: string; Status: string };
        assert.equal(answer.ID, orthancIds(parseDicomHeader(bytes)).instance);
        assert.equal(answer.Status, 'AlreadyStored', `${file} was not stored by the C-STORE`);
        const kept = Buffer.from(await (await fetch(`${node.url}/instances/${answer.ID}/file`)).arrayBuffer());
        // Element by element (dcmsend re-encodes group lengths; the bytes on the wire are checked against a
        // bit-preserving storescp in dimse-scp.test.ts).
        assert.deepEqual(simplifiedTags(dataSetOf(kept), 'full'), simplifiedTags(dataSetOf(bytes), 'full'));
      }
      // The DICOM server's figures in the node's metrics: the association and each C-STORE of dcmsend.
      const metrics = await (await fetch(`${node.url}/tools/metrics-prometheus`)).text();
      const files = await listFiles(series);
      assert.match(metrics, new RegExp(`^dicom_xfer_dicom_store_instances_total\\{calling_aet="DCMSEND"\\} ${files.length}$`, 'm'));
      assert.match(metrics, /^dicom_xfer_dicom_store_failures_total\{calling_aet="DCMSEND"\} 0$/m);
      const bytes = Number(/^dicom_xfer_dicom_store_bytes_total\{calling_aet="DCMSEND"\} (\d+)$/m.exec(metrics)?.[1]);
      assert.ok(bytes > 0);
      assert.match(metrics, /^dicom_xfer_dicom_associations_total 2$/m);
    } finally {
      await node.stop();
    }
  });

  test('a C-STORE of a 137 MB instance is streamed to disk: the peak memory of the node grows far less than the instance', async () => {
    const dicomPort = await freePort();
    const node = await startXferNode({ config: { DicomServerEnabled: true, DicomPort: dicomPort } });
    const dir = await mkdtemp(join(tmpdir(), 'dx-big-'));
    try {
      const file = join(dir, 'big.dcm');
      const pixels = 137 * 1024 * 1024;
      await writeBigInstance(file, pixels);
      const peakBefore = await peakRss(node.pid);
      const run = await dcmsend({ port: dicomPort, aet: 'DICOMXFER' }, [file]);
      assert.equal(run.code, 0, run.stderr.slice(-2000));
      const stats = (await (await fetch(`${node.url}/statistics`)).json()) as { CountInstances: number; TotalDiskSize: string };
      assert.equal(stats.CountInstances, 1);
      assert.ok(Number(stats.TotalDiskSize) > pixels);
      const grown = (await peakRss(node.pid)) - peakBefore;
      // Measured here: 53 MB for this instance, 58 MB for one of 400 MB (buffers the GC has not taken yet); an
      // instance held whole would add at least its 137 MB.
      assert.ok(grown < 100 * 1024 * 1024, `the node's peak memory grew by ${Math.round(grown / 1048576)} MB`);
    } finally {
      await node.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a DICOM port in use stops the start with a message that says so', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const dir = await mkdtemp(join(tmpdir(), 'dx-dicom-port-'));
    try {
      const config = join(dir, 'config.json');
      await writeFile(config, JSON.stringify({ DicomServerEnabled: true, DicomPort: port }));
      const run = await serveFails(['--port', String(await freePort()), '--data', join(dir, 'data'), '--config', config]);
      assert.notEqual(run.code, 0);
      assert.match(run.stderr, new RegExp(`DICOM port ${port} on 127\\.0\\.0\\.1 is already in use`));
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('DICOM server: silent associations and the bound on associations', { skip: needsDcmtk() }, () => {
  test('a connection silent for DicomScpTimeout is closed, and one that stopped in the middle of a PDU too', async () => {
    const h = await startScp({ DicomScpTimeout: 1 });
    try {
      const silent = await silentSocket(h.peer.port);
      const half = await silentSocket(h.peer.port);
      // The first bytes of an A-ASSOCIATE-RQ header that announces 200 bytes, then nothing.
      half.write(Buffer.from([0x01, 0x00, 0x00, 0x00, 0x00, 0xc8, 0x00, 0x01]));
      await Promise.race([
        Promise.all([closed(silent), closed(half)]),
        new Promise((_, reject) => setTimeout(() => reject(new Error('still open after 30 s')), 30_000)),
      ]);
      const echo = await echoscu(h.peer);
      assert.equal(echo.code, 0, echo.stderr);
    } finally {
      await h.close();
    }
  });

  test('beyond the bound, an association is refused as "local limit exceeded"; served again once the others end', async () => {
    const h = await startScp({ DicomScpTimeout: 0 }, { maxAssociations: 2 });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) sockets.push(await silentSocket(h.peer.port));
      await waitFor('the server to count the open connections', async () => h.server.open === 2, 10_000, 20);
      const refused = await echoscu(h.peer);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /Local Limit Exceeded/i);
      for (const s of sockets) s.destroy();
      await waitFor('the server to see them closed', async () => h.server.open === 0, 10_000, 20);
      const echo = await echoscu(h.peer);
      assert.equal(echo.code, 0, echo.stderr);
    } finally {
      for (const s of sockets) s.destroy();
      await h.close();
    }
  });
});
