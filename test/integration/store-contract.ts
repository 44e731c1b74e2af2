// The contract every store keeps (src/store/types.ts), as one suite that each store's test file runs with
// its own store: listing, size and MD5, look-ups, byte ranges, ingest verdicts, and all-or-nothing commits.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { orthancIds } from '../../src/dicom/ids.ts';
import { readDicomHeaderFromFile } from '../../src/dicom/parse.ts';
import type { OrthancIds } from '../../src/dicom/types.ts';
import { isXferError, type ErrorCode } from '../../src/errors.ts';
import { writeCtSlice, writeMultiframe } from '../../src/generate/index.ts';
import type { StagedInstance, Store } from '../../src/store/types.ts';
import { describe, needs, REAL_DICOM } from '../helpers/data.ts';

export interface StoreUnderTest {
  store: Store;
  /** Closes the store and stops and removes whatever it needed. */
  close(): Promise<void>;
}

export interface ContractOptions {
  /** A reason to skip the suite (e.g. Orthanc is not installed), or false. */
  skip?: string | false;
}

const REAL = REAL_DICOM;
/** Real files of three different patients, small and large. */
const REAL_FILES = ['2019-06-17-VedranZdesic.dcm', '2020-08-12-Christopher.dcm', '2022-03-08-RicSmi.dcm'];

interface Sample {
  path: string;
  bytes: Buffer;
  md5: string;
  ids: OrthancIds;
}

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

async function sample(path: string): Promise<Sample> {
  const bytes = await readFile(path);
  return { path, bytes, md5: md5(bytes), ids: orthancIds(await readDicomHeaderFromFile(path)) };
}

async function drain(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, text?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isXferError(e), `an XferError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (text) assert.ok(e.message.includes(text), `"${e.message}" names ${text}`);
    return true;
  });
}

/** Registers the contract suite for one store; `makeStore` gives a fresh, empty store. */
export function runStoreContract(name: string, makeStore: () => Promise<StoreUnderTest>, opts: ContractOptions = {}): void {
  describe(`store contract: ${name}`, { skip: opts.skip || needs(REAL_DICOM) }, () => {
    let sut: StoreUnderTest;
    let store: Store;
    let work: string;
    /** Four slices of one generated CT series. */
    const ct: Sample[] = [];
    /** A generated multi-frame instance of about 12.6 MB. */
    let big: Sample;
    const real: Sample[] = [];
    let counter = 0;

    /** A private copy of a file (ingest and commit consume theirs). */
    async function copy(s: Sample | string, dir = work): Promise<string> {
      const path = join(dir, `f${counter++}.dcm`);
      await copyFile(typeof s === 'string' ? s : s.path, path);
      return path;
    }

    async function ingest(s: Sample) {
      const path = await copy(s);
      return store.ingestFile(path, s.bytes.length, s.md5);
    }

    /** Copies of the samples in a fresh folder under the store's staging root. */
    async function stage(list: readonly Sample[]): Promise<StagedInstance[]> {
      const dir = join(store.stagingRoot(), `contract-${counter++}`);
      await mkdir(dir, { recursive: true });
      const out: StagedInstance[] = [];
      for (const s of list) out.push({ id: s.ids.instance, path: await copy(s, dir), size: s.bytes.length, md5: s.md5 });
      return out;
    }

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'dx-contract-'));
      for (let i = 0; i < 4; i++) {
        const path = join(work, `ct${i}.dcm`);
        await writeCtSlice(path, { seed: 4242, index: i, slices: 4 });
        ct.push(await sample(path));
      }
      const bigPath = join(work, 'big.dcm');
      await writeMultiframe(bigPath, { seed: 4243, frames: 24 });
      big = await sample(bigPath);
      for (const f of REAL_FILES) real.push(await sample(join(REAL, f)));
      sut = await makeStore();
      store = sut.store;
    });

    after(async () => {
      await sut?.close();
      if (work) await rm(work, { recursive: true, force: true });
    });

    test('ingest answers Success, then AlreadyStored for the same instance, with the Orthanc IDs', async () => {
      for (const s of [...ct.slice(0, 2), real[0] as Sample, big]) {
        const first = await ingest(s);
        assert.equal(first.status, 'Success');
        assert.deepEqual(first.ids, s.ids);
      }
      const again = await ingest(ct[0] as Sample);
      assert.equal(again.status, 'AlreadyStored');
      assert.deepEqual(again.ids, (ct[0] as Sample).ids);
    });

    test('ingest refuses a file that is not DICOM with BadFileFormat, and stores nothing', async () => {
      const path = join(work, `junk${counter++}.dcm`);
      await writeFile(path, Buffer.from('this is not a DICOM file, only some text of no use to anyone'.repeat(20)));
      await rejectsWith(store.ingestFile(path, (await stat(path)).size, md5(await readFile(path))), 'BadFileFormat');
    });

    test('listInstances expands patients, studies and series to sorted instance IDs', async () => {
      const a = ct[0] as Sample;
      const series = ct
        .slice(0, 2)
        .map((s) => s.ids.instance)
        .sort();
      assert.deepEqual(await store.listInstances('Series', a.ids.series), series);
      assert.deepEqual(await store.listInstances('Study', a.ids.study), series);
      assert.deepEqual(await store.listInstances('Patient', a.ids.patient), series);
      assert.deepEqual(await store.listInstances('Instance', a.ids.instance), [a.ids.instance]);
      const r = real[0] as Sample;
      assert.deepEqual(await store.listInstances('Study', r.ids.study), [r.ids.instance]);
    });

    test('listInstances rejects unknown resources with UnknownResource', async () => {
      const absent = (ct[3] as Sample).ids;
      await rejectsWith(store.listInstances('Series', absent.study), 'UnknownResource');
      await rejectsWith(store.listInstances('Instance', absent.instance), 'UnknownResource');
      await rejectsWith(store.listInstances('Patient', 'not-an-id'), 'UnknownResource');
      // An ID of another level is not a resource of this one.
      await rejectsWith(store.listInstances('Study', (ct[0] as Sample).ids.series), 'UnknownResource');
    });

    test('instanceInfo gives the size and MD5 of the stored file', async () => {
      for (const s of [ct[0] as Sample, real[0] as Sample, big]) {
        assert.deepEqual(await store.instanceInfo(s.ids.instance), { id: s.ids.instance, size: s.bytes.length, md5: s.md5 });
      }
      await rejectsWith(store.instanceInfo((ct[3] as Sample).ids.instance), 'UnknownResource');
    });

    test('findInstances answers the present ones and ignores absent ones', async () => {
      const present = [ct[1] as Sample, big];
      const ids = [(ct[3] as Sample).ids.instance, ...present.map((s) => s.ids.instance), 'nonsense'];
      const found = await store.findInstances(ids);
      assert.deepEqual([...found.keys()].sort(), present.map((s) => s.ids.instance).sort());
      for (const s of present) assert.deepEqual(found.get(s.ids.instance), { id: s.ids.instance, size: s.bytes.length, md5: s.md5 });
      assert.equal((await store.findInstances([])).size, 0);
    });

    test('readRange streams exactly the bytes asked for', async () => {
      const small = real[0] as Sample;
      const n = small.bytes.length;
      for (const [a, b] of [
        [0, n],
        [0, 1],
        [128, 1000],
        [n - 7, n],
        [5, 5],
      ] as const) {
        assert.ok(
          Buffer.compare(await drain(await store.readRange(small.ids.instance, a, b)), small.bytes.subarray(a, b)) === 0,
          `${a}-${b}`,
        );
      }
      // Pieces of a large instance, several at once, as the buckets of a split instance are read.
      const B = 1024 * 1024;
      const N = big.bytes.length;
      const ranges: [number, number][] = [
        [0, B],
        [5 * B, 6 * B],
        [N - B, N],
        [3 * B + 17, 7 * B + 3],
        [0, N],
      ];
      const got = await Promise.all(ranges.map(([a, b]) => store.readRange(big.ids.instance, a, b).then(drain)));
      ranges.forEach(([a, b], i) => {
        assert.ok((got[i] as Buffer).equals(big.bytes.subarray(a, b)), `${a}-${b}`);
      });
    });

    test('readRange refuses ranges outside the file and absent instances', async () => {
      const s = real[0] as Sample;
      await rejectsWith(store.readRange(s.ids.instance, 0, s.bytes.length + 1), 'ParameterOutOfRange');
      await rejectsWith(store.readRange(s.ids.instance, 10, 5), 'ParameterOutOfRange');
      await rejectsWith(store.readRange(s.ids.instance, -1, 5), 'ParameterOutOfRange');
      await rejectsWith(store.readRange(big.ids.instance, big.bytes.length - 10, big.bytes.length + 10), 'ParameterOutOfRange');
      await rejectsWith(store.readRange((ct[3] as Sample).ids.instance, 0, 10), 'UnknownResource');
    });

    test('readRangeInto, where the store has it, fills the buffer with the bytes readRange gives', async (t) => {
      const into = store.readRangeInto?.bind(store);
      if (!into) {
        t.skip('this store reads ranges as streams only');
        return;
      }
      const s = real[0] as Sample;
      const n = s.bytes.length;
      const N = big.bytes.length;
      const B = 1024 * 1024;
      for (const [sample, a, b] of [
        [s, 0, n],
        [s, 128, 1000],
        [s, n - 7, n],
        [s, 5, 5],
        [big, 3 * B + 17, 7 * B + 3],
        [big, 0, N],
      ] as const) {
        const target = Buffer.alloc(b - a, 0xee);
        await into(sample.ids.instance, a, target);
        assert.ok(target.equals(sample.bytes.subarray(a, b)), `${a}-${b}`);
      }
      await rejectsWith(into(s.ids.instance, 0, Buffer.alloc(n + 1)), 'ParameterOutOfRange');
      await rejectsWith(into(s.ids.instance, -1, Buffer.alloc(5)), 'ParameterOutOfRange');
      await rejectsWith(into((ct[3] as Sample).ids.instance, 0, Buffer.alloc(10)), 'UnknownResource');
    });

    test('stagingRoot is a directory that staged files can be written to', async () => {
      assert.ok((await stat(store.stagingRoot())).isDirectory());
    });

    test('a commit with a bad MD5 stores nothing, names the instance and leaves the staged files', async () => {
      const staged = await stage([ct[2] as Sample, ct[3] as Sample, real[1] as Sample]);
      const bad = staged[1] as StagedInstance;
      bad.md5 = '0123456789abcdef0123456789abcdef';
      await rejectsWith(store.commitStaged(staged), 'CorruptedFile', bad.id);
      assert.equal((await store.findInstances(staged.map((s) => s.id))).size, 0);
      for (const s of staged) assert.ok(existsSync(s.path), 'staged file left on failure');
    });

    test('a commit with a file that is not DICOM stores nothing', async () => {
      const staged = await stage([ct[2] as Sample, real[1] as Sample]);
      const junk = join(store.stagingRoot(), `junk-${counter++}`);
      const bytes = Buffer.alloc(4096, 7);
      await writeFile(junk, bytes);
      const fake = '01234567-89abcdef-01234567-89abcdef-01234567';
      staged.push({ id: fake, path: junk, size: bytes.length, md5: md5(bytes) });
      await rejectsWith(store.commitStaged(staged), 'CorruptedFile', fake);
      assert.equal((await store.findInstances(staged.map((s) => s.id))).size, 0);
    });

    test('a commit of a file holding another instance than declared stores nothing', async () => {
      const staged = await stage([ct[2] as Sample, real[1] as Sample]);
      (staged[0] as StagedInstance).id = (ct[3] as Sample).ids.instance;
      await rejectsWith(store.commitStaged(staged), 'CorruptedFile', (ct[3] as Sample).ids.instance);
      assert.equal((await store.findInstances([(ct[2] as Sample).ids.instance, (real[1] as Sample).ids.instance])).size, 0);
    });

    test('a good commit stores every instance, reports those already there, and consumes the staged files', async () => {
      const fresh = [ct[2] as Sample, ct[3] as Sample, real[1] as Sample, real[2] as Sample];
      const old = [ct[0] as Sample];
      const staged = await stage([...fresh, ...old]);
      const result = await store.commitStaged(staged);
      assert.deepEqual(result.stored, fresh.map((s) => s.ids.instance).sort());
      assert.deepEqual(
        result.alreadyStored,
        old.map((s) => s.ids.instance),
      );
      const found = await store.findInstances(staged.map((s) => s.id));
      for (const s of [...fresh, ...old]) assert.equal(found.get(s.ids.instance)?.md5, s.md5);
      for (const s of staged) assert.ok(!existsSync(s.path), 'staged file consumed');
      assert.deepEqual(await store.listInstances('Series', (ct[0] as Sample).ids.series), ct.map((s) => s.ids.instance).sort());
      const r = real[2] as Sample;
      assert.ok((await drain(await store.readRange(r.ids.instance, 0, r.bytes.length))).equals(r.bytes));
    });
  });
}
