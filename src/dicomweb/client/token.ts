// The bearer token of a DICOMweb server (BearerTokenFile or BearerTokenCommand): read from its file again
// whenever the file changes, or got from its command and got again before it expires and after a 401.
// The token itself is never logged nor put in an error message.
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import type { DicomWebServerConfig } from '../../config/types.ts';
import { XferError } from '../../errors.ts';

/** Seconds a token of the command is used when neither it nor TokenLifetime says. */
const DEFAULT_LIFETIME_SECONDS = 3000;
/** Longest wait for the command; its output past this size is refused. */
const COMMAND_TIMEOUT_MS = 60_000;
const COMMAND_OUTPUT_LIMIT = 64 * 1024;

export interface BearerToken {
  /** The token to send now (refreshed first when it is about to expire). */
  get(): Promise<string>;
  /** The server refused the token (401): the next `get` fetches a new one. */
  invalidate(): void;
}

/** The token source of a server, or undefined when it has none. */
export function bearerTokenOf(server: DicomWebServerConfig, now: () => number = Date.now): BearerToken | undefined {
  if (server.bearerTokenFile) return new FileToken(server.bearerTokenFile, server.name);
  if (server.bearerTokenCommand) return new CommandToken(server.bearerTokenCommand, server.tokenLifetime, server.name, now);
  return undefined;
}

class FileToken implements BearerToken {
  readonly #file: string;
  readonly #server: string;
  #token: string | undefined;
  #stamp = '';

  constructor(file: string, server: string) {
    this.#file = file;
    this.#server = server;
  }

  async get(): Promise<string> {
    try {
      const s = await stat(this.#file);
      // Read again when the file changed (an outside tool refreshed it), not at every request.
      const stamp = `${s.mtimeMs}/${s.size}/${s.ino}`;
      if (this.#token === undefined || stamp !== this.#stamp) {
        const token = (await readFile(this.#file, 'utf8')).trim();
        if (token === '') throw new XferError('Unauthorized', `the BearerTokenFile of DICOMweb server "${this.#server}" is empty`);
        this.#token = token;
        this.#stamp = stamp;
      }
      return this.#token;
    } catch (e) {
      if (e instanceof XferError) throw e;
      throw new XferError('InexistentFile', `the BearerTokenFile of DICOMweb server "${this.#server}" cannot be read: ${this.#file}`);
    }
  }

  invalidate(): void {
    this.#token = undefined;
  }
}

class CommandToken implements BearerToken {
  readonly #command: string[];
  readonly #lifetime: number | undefined;
  readonly #server: string;
  readonly #now: () => number;
  #token: { value: string; refreshAt: number } | undefined;
  #pending: Promise<string> | undefined;

  constructor(command: string[], lifetime: number | undefined, server: string, now: () => number) {
    this.#command = command;
    this.#lifetime = lifetime;
    this.#server = server;
    this.#now = now;
  }

  get(): Promise<string> {
    const t = this.#token;
    if (t && this.#now() < t.refreshAt) return Promise.resolve(t.value);
    // One run of the command at a time, whatever the requests waiting for it.
    this.#pending ??= this.#run().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  invalidate(): void {
    this.#token = undefined;
  }

  async #run(): Promise<string> {
    const [program = '', ...args] = this.#command;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(program, args, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: COMMAND_OUTPUT_LIMIT, encoding: 'utf8' }, (err, stdout) => {
        if (err) {
          reject(new XferError('Unauthorized', `the BearerTokenCommand of DICOMweb server "${this.#server}" failed: ${err.message}`));
        } else resolve(stdout);
      });
    });
    const { token, expiresIn } = parseTokenOutput(out);
    if (token === '') throw new XferError('Unauthorized', `the BearerTokenCommand of DICOMweb server "${this.#server}" printed no token`);
    const lifetime = expiresIn ?? this.#lifetime ?? DEFAULT_LIFETIME_SECONDS;
    // Refreshed ahead of its expiry: a minute before, or a fifth of its life for short-lived tokens.
    const margin = Math.min(60, lifetime / 5);
    this.#token = { value: token, refreshAt: this.#now() + (lifetime - margin) * 1000 };
    return token;
  }
}

/** A command's output: the plain token, or OAuth's JSON `{"access_token", "expires_in"}`. */
export function parseTokenOutput(out: string): { token: string; expiresIn: number | undefined } {
  const text = out.trim();
  if (text.startsWith('{')) {
    try {
      const o = JSON.parse(text) as Record<string, unknown>;
      const token = typeof o['access_token'] === 'string' ? o['access_token'].trim() : '';
      const e = o['expires_in'];
      const expiresIn =
        typeof e === 'number' && Number.isFinite(e) && e > 0 ? e : typeof e === 'string' && Number(e) > 0 ? Number(e) : undefined;
      return { token, expiresIn };
    } catch {
      // Not JSON after all: the text is the token.
    }
  }
  return { token: text, expiresIn: undefined };
}
