// A minimal ZIP writer for tests that upload archives: stored entries, or deflated ones given already
// compressed (so that a test can describe an archive that inflates far beyond its size).
import { crc32 } from 'node:zlib';

/** A ZIP archive holding `entries` uncompressed. */
export function storedZip(entries: { name: string; data: Buffer }[]): Buffer {
  return zipOf(entries.map((e) => ({ name: e.name, data: e.data, size: e.data.length, crc: crc32(e.data), method: 0 })));
}

/** An entry whose `data` is raw deflate of `size` bytes with the CRC-32 `crc`. */
export interface DeflatedEntry {
  name: string;
  data: Buffer;
  size: number;
  crc: number;
}

/** A ZIP archive of entries already deflated (method 8). */
export function deflatedZip(entries: DeflatedEntry[]): Buffer {
  return zipOf(entries.map((e) => ({ ...e, method: 8 })));
}

function zipOf(entries: (DeflatedEntry & { method: number })[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const crc = e.crc;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(e.method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(e.data.length, 18);
    local.writeUInt32LE(e.size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(e.method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(e.data.length, 20);
    central.writeUInt32LE(e.size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, e.data);
    centrals.push(central, name);
    offset += local.length + name.length + e.data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}
