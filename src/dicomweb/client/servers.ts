// The DICOMweb servers of DicomWeb.Servers: their names, one client each (made on first use, kept for its
// keep-alive pool and its token), closed with the node.
import type { Config, DicomWebServerConfig } from '../../config/types.ts';
import { XferError } from '../../errors.ts';
import { DicomWebClient } from './client.ts';

export class DicomWebServers {
  readonly #config: Config;
  readonly #clients = new Map<string, DicomWebClient>();

  constructor(config: Config) {
    this.#config = config;
  }

  names(): string[] {
    return Object.keys(this.#config.DicomWeb.Servers).sort();
  }

  has(name: string): boolean {
    return Object.hasOwn(this.#config.DicomWeb.Servers, name);
  }

  /** The server of that name; UnknownResource when DicomWeb.Servers has none. */
  get(name: string): DicomWebServerConfig {
    const s = this.has(name) ? this.#config.DicomWeb.Servers[name] : undefined;
    if (!s) throw new XferError('UnknownResource', `DICOMweb server "${name}" is not configured (DicomWeb.Servers)`);
    return s;
  }

  client(name: string): DicomWebClient {
    let c = this.#clients.get(name);
    if (!c) {
      c = new DicomWebClient(this.get(name), this.#config);
      this.#clients.set(name, c);
    }
    return c;
  }

  async close(): Promise<void> {
    const all = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}
