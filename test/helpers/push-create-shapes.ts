// Push create bodies for the tests of the create's parsing: a well-formed one made of real DICOM files, and
// its variants with one value changed, dropped or of the wrong type, at every place of the body.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { listFiles } from './data.ts';

export interface CreateBody {
  Instances: { ID: string; Size: string; MD5: string }[];
  Buckets: { ID: string; Offset: string; Size: string }[][];
  Compression: string;
}

/** A create of the first `count` files under `dir`: each instance in one bucket, the first split in two. */
export async function realCreate(dir: string, count: number): Promise<CreateBody> {
  const files = (await listFiles(dir)).slice(0, count);
  const Instances: CreateBody['Instances'] = [];
  for (const f of files) {
    const data = await readFile(f);
    const md5 = createHash('md5').update(data).digest('hex');
    // Any lowercase hex with dashes is an ID the create takes; one per file, from its bytes.
    const sha = createHash('sha1').update(data).digest('hex');
    const ID = [0, 8, 16, 24, 32].map((i) => sha.slice(i, i + 8)).join('-');
    Instances.push({ ID, Size: String(data.length), MD5: md5 });
  }
  const Buckets = Instances.map((i) => [{ ID: i.ID, Offset: '0', Size: i.Size }]);
  const first = Instances[0];
  if (first) {
    const half = Math.floor(Number(first.Size) / 2);
    Buckets[0] = [{ ID: first.ID, Offset: '0', Size: String(half) }];
    Buckets.push([{ ID: first.ID, Offset: String(half), Size: String(Number(first.Size) - half) }]);
  }
  return { Instances, Buckets, Compression: 'none' };
}

/** Values put in place of one member: wrong types, bad strings, edge numbers, and dropping it. */
const VALUES: unknown[] = [
  undefined,
  null,
  12,
  1.5,
  true,
  '',
  '0',
  '12',
  '-1',
  '1e3',
  ' 12',
  '0x10',
  '9007199254740991',
  '9007199254740992',
  'ABCDEF',
  'abc-DEF',
  '0123456789abcdef0123456789abcdef',
  '0123456789ABCDEF0123456789ABCDEF',
  'x'.repeat(129),
  'a'.repeat(129),
  [],
  {},
  ['0'],
  'gzip',
  'zstd',
  'bzip2',
];

/** `body` with the member at `path` set to `value` (dropped when undefined). */
function withValue(body: CreateBody, path: (string | number)[], value: unknown): unknown {
  const copy = structuredClone(body) as unknown as Record<string | number, unknown>;
  let at: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (value === undefined) delete at[last];
  else at[last] = value;
  return copy;
}

/** Every variant of `body`: each value of VALUES at each member path, then a few whole-body shapes. */
export function variants(body: CreateBody): { name: string; body: unknown }[] {
  const paths: (string | number)[][] = [['Instances'], ['Buckets'], ['Compression'], ['Instances', 0], ['Buckets', 1], ['Buckets', 1, 0]];
  for (const key of ['ID', 'Size', 'MD5']) paths.push(['Instances', 1, key]);
  for (const key of ['ID', 'Offset', 'Size']) paths.push(['Buckets', 0, 0, key]);
  const out: { name: string; body: unknown }[] = [];
  for (const path of paths) {
    for (const value of VALUES)
      out.push({ name: `${path.join('.')} = ${JSON.stringify(value) ?? 'dropped'}`, body: withValue(body, path, value) });
  }
  out.push({ name: 'an array', body: [body] }, { name: 'a string', body: JSON.stringify(body) }, { name: 'null', body: null });
  out.push({ name: 'extra keys', body: { ...body, Extra: 1, Instances: body.Instances.map((i) => ({ ...i, Extra: [1] })) } });
  out.push({ name: 'no instances, no buckets', body: { ...body, Instances: [], Buckets: [] } });
  out.push({ name: 'an empty bucket', body: { ...body, Buckets: [...body.Buckets, []] } });
  return out;
}
