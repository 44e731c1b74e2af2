// The push-transaction state contract run against the files implementation (manifest, bucket log and
// outcomes beside the staging), and what only files can go through: a crash between two of its writes.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { FilePushState } from '../../src/transfer/push-state/files.ts';
import { describe } from '../helpers/data.ts';
import { runPushStateContract } from './push-state-contract.ts';

runPushStateContract('files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dx-push-state-'));
  return {
    open: () => FilePushState.open({ dir: join(dir, 'push'), outcomesDir: join(dir, 'push-outcomes') }),
    async damage(id) {
      // A size written as a number where the manifest keeps the wire's decimal string.
      const file = join(dir, 'push', id, 'manifest.json');
      const m = JSON.parse(await readFile(file, 'utf8')) as { Create: { Instances: { Size: unknown }[] } };
      (m.Create.Instances[0] as { Size: unknown }).Size = 10;
      await writeFile(file, JSON.stringify(m));
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('push-transaction state in files', () => {
  const body = {
    Instances: [{ ID: '0123456789abcdef', Size: 10, MD5: '0123456789abcdef0123456789abcdef' }],
    Buckets: [[{ ID: '0123456789abcdef', Offset: 0, Size: 10 }]],
    Compression: 'none' as const,
  };

  test('a commit whose outcome was written but whose manifest a crash left: the outcome wins at reading', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-push-state-'));
    const opts = { dir: join(dir, 'push'), outcomesDir: join(dir, 'push-outcomes') };
    try {
      const state = await FilePushState.open(opts);
      const id = randomUUID();
      await state.create({ id, createdAt: Date.now(), create: body });
      await state.recordBuckets(id, [0], Date.now());
      const manifest = join(opts.dir, id, 'manifest.json');
      await copyFile(manifest, `${manifest}.saved`);
      await state.finishCommit({ ID: id, State: 'Success', At: Date.now() });
      await state.close();
      // The crash: the manifest is back as if its removal never happened.
      await copyFile(`${manifest}.saved`, manifest);
      const again = await FilePushState.open(opts);
      assert.deepEqual(await again.list(), []);
      assert.equal((await again.outcome(id))?.State, 'Success');
      assert.deepEqual((await readdir(join(opts.dir, id))).sort(), ['manifest.json.saved']);
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('unreadable outcome files and leftovers are removed at opening, with a log line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dx-push-state-'));
    const opts = { dir: join(dir, 'push'), outcomesDir: join(dir, 'push-outcomes') };
    try {
      const first = await FilePushState.open(opts);
      const id = randomUUID();
      await first.finishCommit({ ID: id, State: 'Success', At: Date.now() });
      const kept = randomUUID();
      await first.finishCommit({ ID: kept, State: 'Failure', Details: 'x', At: Date.now() });
      await first.close();
      await writeFile(join(opts.outcomesDir, `${id}.json`), '{"ID": "');
      await writeFile(join(opts.outcomesDir, `${kept}.json.tmp`), '{}');
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push((JSON.parse(chunk.toString()) as { msg: string }).msg);
          done();
        },
      });
      const again = await FilePushState.open({ ...opts, logger: pino(sink) });
      assert.equal(await again.outcome(id), undefined);
      assert.equal((await again.outcome(kept))?.Details, 'x');
      assert.deepEqual(await readdir(opts.outcomesDir), [`${kept}.json`]);
      assert.deepEqual(lines, ['removing an unreadable commit outcome']);
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
