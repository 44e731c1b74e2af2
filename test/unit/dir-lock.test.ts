// The storage directory's lock within one process: a second holder is refused, a release frees it, and a
// pid file left by an earlier version (naming this live process) blocks nothing.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PID_FILE, lockDirectory } from '../../src/util/dir-lock.ts';

test('one holder at a time; release frees the directory and removes the pid file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dx-dir-lock-'));
  try {
    await writeFile(join(dir, PID_FILE), String(process.pid));
    const first = lockDirectory(dir);
    assert.equal(await readFile(join(dir, PID_FILE), 'utf8'), String(process.pid));
    assert.throws(() => lockDirectory(dir), /already open in this process/);
    first.release();
    first.release(); // idempotent
    assert.equal(existsSync(join(dir, PID_FILE)), false);
    const again = lockDirectory(dir);
    again.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
