// `dicom-xfer serve`: runs a node with the embedded store, or beside an Orthanc (--orthanc), until Ctrl-C or
// SIGTERM. The node's code is loaded only when the command runs, so other commands start quickly.
import type { Command } from 'commander';
import type { RunningNode, ServeFlags } from '../node.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run a node with the embedded store (DICOM files plus a SQLite index), or beside an Orthanc (--orthanc)')
    .option('--port <port>', 'HTTP port (HttpPort, default 8042)')
    .option('--host <address>', 'address to listen on (default 127.0.0.1, or all when RemoteAccessAllowed)')
    .option('--data <dir>', 'storage directory (StorageDirectory, default ./dicom-xfer-data)')
    .option('--config <file>', 'Orthanc-style JSON configuration file (comments allowed); env DICOM_XFER_CONFIG')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent')
    .option('--orthanc <url>', "keep the DICOM in this Orthanc, through its REST API (replaces the file's OrthancStore)")
    .option('--orthanc-username <user>', 'Basic credentials for --orthanc')
    .option('--orthanc-password <password>', 'Basic credentials for --orthanc')
    .option('--proxy', 'with --orthanc: forward every request dicom-xfer does not answer to Orthanc (OrthancStore.Proxy)')
    .action(async (flags: ServeFlags) => {
      let node: RunningNode;
      try {
        const { startNode } = await import('../node.ts');
        node = await startNode(flags);
      } catch (e) {
        process.stderr.write(`dicom-xfer serve: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exitCode = 1;
        return;
      }
      process.stderr.write(`dicom-xfer listening on ${node.url} (Ctrl-C to stop)\n`);
      // A failure inside one request or job must not stop the node: log it and carry on.
      process.on('unhandledRejection', (reason) => node.logger.error({ err: reason }, 'unhandled rejection'));
      process.on('uncaughtException', (err) => node.logger.error({ err }, 'uncaught exception'));
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          node.logger.warn({ signal: sig }, 'second signal: exiting now');
          process.exit(130);
        }
        node.logger.info({ signal: sig }, 'stopping: letting in-flight requests finish');
        node.stop().then(
          () => process.exit(0),
          (e: unknown) => {
            node.logger.error({ err: e }, 'error while stopping');
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
}
