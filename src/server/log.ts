// The node's logger: JSON lines on stderr for supervisors and log collectors, readable lines (pino-pretty)
// when stderr is a terminal, written synchronously either way.
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';

export type LogFormat = 'json' | 'pretty';

/** Environment variable that forces a format: "json" or "pretty" (anything else: by the terminal). */
export const LOG_FORMAT_ENV = 'DICOM_XFER_LOG_FORMAT';

/** JSON unless stderr is a terminal; DICOM_XFER_LOG_FORMAT=json or pretty decides otherwise. */
export function logFormat(stderrIsTTY: boolean, env: NodeJS.ProcessEnv = process.env): LogFormat {
  const forced = env[LOG_FORMAT_ENV]?.trim().toLowerCase();
  if (forced === 'json' || forced === 'pretty') return forced;
  return stderrIsTTY ? 'pretty' : 'json';
}

/** What the node uses of pino-pretty: its formatter of one JSON line. */
interface PinoPretty {
  prettyFactory(options: Record<string, unknown>): (line: string) => string;
}

/**
 * pino-pretty when it is installed; an install without it logs JSON on a terminal too. Loaded through
 * require, as it is a CommonJS package, and only when a terminal asks for it.
 */
function loadPinoPretty(): PinoPretty | undefined {
  try {
    const mod = createRequire(import.meta.url)('pino-pretty') as Partial<PinoPretty>;
    return typeof mod.prettyFactory === 'function' ? (mod as PinoPretty) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A logger writing to stderr. Written synchronously: an asynchronous destination is flushed again at
 * exit, and when nobody reads the node's stderr any more (the terminal or the supervisor that started it
 * is gone), that flush retries the broken pipe for ever and the node never exits on SIGTERM.
 * Synchronous, the first failed write turns logging off, and there is nothing left to flush. The pretty
 * format keeps this: each line is formatted, then written through the same synchronous destination.
 */
export function createNodeLogger(opts: { level: string; name: string; format: LogFormat; env?: NodeJS.ProcessEnv }): Logger {
  const dest = pino.destination({ dest: 2, sync: true });
  const options = { level: opts.level, base: { node: opts.name } };
  const pretty = opts.format === 'pretty' ? loadPinoPretty() : undefined;
  if (!pretty) {
    const logger = pino(options, dest);
    if (opts.format === 'pretty') logger.debug('pino-pretty is not installed: logging JSON lines');
    return logger;
  }
  const env = opts.env ?? process.env;
  const format = pretty.prettyFactory({
    colorize: env['NO_COLOR'] === undefined || env['NO_COLOR'] === '',
    translateTime: 'SYS:HH:MM:ss.l',
    // one node per terminal: its name, pid and host say nothing there
    ignore: 'pid,hostname,node',
    singleLine: true,
  });
  return pino(options, { write: (line: string) => dest.write(format(line)) });
}
