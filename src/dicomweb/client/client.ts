// The HTTP client of one DICOMweb server of DicomWeb.Servers: its base URL on the node's HTTP layer (one
// keep-alive pool, TLS options, client certificate, timeout), Basic credentials or a bearer token, its
// HttpHeaders; a 401 under a token fetches a new token and tries once more. Errors are the layer's HttpError.
import type { Readable } from 'node:stream';
import type { Config, DicomWebServerConfig } from '../../config/types.ts';
import { DEFAULT_BODY_LIMIT, readBounded, readErrorAnswer } from '../../http/body.ts';
import { HttpEndpoint, type EndpointResponse } from '../../http/endpoint.ts';
import { codeOfAnswer, HttpError, transportError } from '../../http/errors.ts';
import { bearerTokenOf, type BearerToken } from './token.ts';

/** Answers asked per QIDO-RS page, and the most pages read (a million answers). */
const QIDO_PAGE = 1000;
const QIDO_PAGES = 1000;

export interface DicomWebCall {
  method: 'GET' | 'POST';
  /** Path under the server's base URL (`studies`, `studies/1.2/series`...), with its query. */
  path: string;
  headers?: Record<string, string>;
  /** Makes the body of one attempt (a second attempt after a 401 needs a fresh stream). */
  body?: () => Readable | Buffer;
  signal?: AbortSignal | undefined;
}

export class DicomWebClient {
  readonly name: string;
  readonly endpoint: HttpEndpoint;
  readonly #server: DicomWebServerConfig;
  readonly #token: BearerToken | undefined;

  constructor(server: DicomWebServerConfig, config: Pick<Config, 'HttpTimeout' | 'HttpsVerifyPeers' | 'HttpsCACertificates'>) {
    this.name = server.name;
    this.#server = server;
    this.#token = bearerTokenOf(server);
    const timeout = server.timeout ?? config.HttpTimeout;
    this.endpoint = new HttpEndpoint({
      url: server.url,
      username: server.username,
      password: server.password,
      owner: `DICOMweb server "${server.name}"`,
      timeoutMs: timeout > 0 ? timeout * 1000 : 0,
      tls: {
        verifyPeers: config.HttpsVerifyPeers,
        caFile: config.HttpsCACertificates,
        certificateFile: server.certificateFile,
        certificateKeyFile: server.certificateKeyFile,
        certificateKeyPassword: server.certificateKeyPassword,
      },
    });
  }

  /** The server's largest request in bytes (MaxRequestSize), or undefined without a cap. */
  get maxRequestBytes(): number | undefined {
    return this.#server.maxRequestSize > 0 ? this.#server.maxRequestSize * 1024 * 1024 : undefined;
  }

  /** One call; answers whatever status came (the caller reads or drops the body). Transport failures are thrown. */
  async call(c: DicomWebCall): Promise<EndpointResponse> {
    const first = await this.#once(c);
    if (first.statusCode !== 401 || !this.#token) return first;
    // The token expired early or was revoked: a new one, and one more try.
    first.body.resume();
    this.#token.invalidate();
    return this.#once(c);
  }

  /** A call that must succeed (2xx): its answer, or the HttpError of what came. */
  async ok(c: DicomWebCall, accepted: (status: number) => boolean = (s) => s >= 200 && s < 300): Promise<EndpointResponse> {
    const res = await this.call(c);
    if (accepted(res.statusCode)) return res;
    throw await this.httpError(c.method, c.path, res);
  }

  /** GET of a DICOM JSON answer (QIDO-RS, metadata); a 204 is an empty list. */
  async getJson(path: string, signal?: AbortSignal): Promise<unknown> {
    const res = await this.ok({ method: 'GET', path, headers: { accept: 'application/dicom+json, application/json' }, signal });
    const raw = await readBounded(res.body, DEFAULT_BODY_LIMIT);
    if (res.statusCode === 204 || raw.length === 0) return [];
    try {
      return JSON.parse(raw.toString('utf8')) as unknown;
    } catch {
      throw new HttpError({
        code: 'NetworkProtocol',
        method: 'GET',
        url: this.endpoint.urlOf(path),
        status: res.statusCode,
        details: `DICOMweb server "${this.name}" answered ${this.endpoint.urlOf(path)} with something that is not JSON`,
        badBody: true,
      });
    }
  }

  /**
   * Every answer of a QIDO-RS query, page by page (`limit`/`offset`): archives cap the answers of one query
   * (clouds at a few thousand, some at a hundred, whatever `limit` asks): the next page starts after what
   * came, and only an empty page ends the list.
   */
  async qidoAll(path: string, signal?: AbortSignal): Promise<unknown[]> {
    const out: unknown[] = [];
    const sep = path.includes('?') ? '&' : '?';
    // Bounded: at most QIDO_PAGES pages of QIDO_PAGE answers.
    for (let page = 0; page < QIDO_PAGES; page++) {
      const got = await this.getJson(`${path}${sep}limit=${QIDO_PAGE}&offset=${out.length}`, signal);
      const list = Array.isArray(got) ? got : [];
      // A server that ignores `offset` answers its first page again: that is the end too.
      if (list.length === 0 || (out.length > 0 && JSON.stringify(list[0]) === JSON.stringify(out[0]))) return out;
      out.push(...list);
    }
    return out;
  }

  /** The error of an answer that is not the one expected (its body read, at most the head of it). */
  async httpError(method: string, path: string, res: EndpointResponse): Promise<HttpError> {
    const e = await readErrorAnswer(res);
    const url = this.endpoint.urlOf(path);
    const text = e.text.toString('utf8').slice(0, 300).trim();
    return new HttpError({
      code: codeOfAnswer(res.statusCode, e.remote),
      method,
      url,
      status: res.statusCode,
      remote: e.remote,
      retryAfterMs: e.retryAfterMs,
      details: `DICOMweb server "${this.name}" answered ${method} ${url} with HTTP ${res.statusCode}${text ? `: ${text}` : ''}`,
    });
  }

  close(): Promise<void> {
    return this.endpoint.close();
  }

  async #once(c: DicomWebCall): Promise<EndpointResponse> {
    const headers: Record<string, string> = { ...this.endpoint.baseHeaders(), ...this.#server.httpHeaders, ...c.headers };
    if (this.#token) headers['authorization'] = `Bearer ${await this.#token.get()}`;
    try {
      return await this.endpoint.request({
        method: c.method,
        path: this.endpoint.path(c.path),
        headers,
        ...(c.body ? { body: c.body() } : {}),
        ...(c.signal ? { signal: c.signal } : {}),
      });
    } catch (e) {
      if (c.signal?.aborted) throw c.signal.reason;
      throw transportError(e, (i) => `DICOMweb server "${this.name}" (${this.endpoint.urlOf(c.path)}) cannot be reached: ${i.words}`);
    }
  }
}
