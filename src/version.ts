// The version of dicom-xfer, read once from package.json, and the implementation UID its files carry.
import { readFileSync } from 'node:fs';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

/** dicom-xfer's Implementation Class UID, written in the file meta group of the files it makes. */
export const IMPLEMENTATION_CLASS_UID = '2.25.302611372940719441913466592372541936431';
