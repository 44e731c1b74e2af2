// The dicom-xfer command line: one sub-command per module, each registering itself on the program.
import { Command } from 'commander';
import { registerFind } from './find.ts';
import { registerGenerate } from './generate.ts';
import { registerImport } from './import.ts';
import { registerJobs } from './jobs.ts';
import { registerPeers } from './peers.ts';
import { registerPull, registerSend } from './send.ts';
import { registerServe } from './serve.ts';
import { VERSION } from '../version.ts';

const program = new Command();
program
  .name('dicom-xfer')
  .description("Moves DICOM studies between sites, fast and with nothing lost; speaks Orthanc's Transfers Accelerator protocol.")
  .version(VERSION, '-V, --version', 'print the version of dicom-xfer')
  .showHelpAfterError();

registerServe(program);
registerImport(program);
registerGenerate(program);
registerFind(program);
registerSend(program);
registerPull(program);
registerJobs(program);
registerPeers(program);

await program.parseAsync(process.argv);
