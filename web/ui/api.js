// Calls to the node, all same-origin (the browser adds the Basic credentials it was given), with Orthanc's
// JSON error turned into an Error whose message says what went wrong.

/** The node's root, from the dashboard's own address (/ui/ under it). */
export const ROOT = new URL('../', document.baseURI);

export class ApiError extends Error {
  constructor(status, body) {
    const msg = body && typeof body === 'object' ? body.Details || body.Message || `HTTP ${status}` : `HTTP ${status}`;
    super(msg);
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(new URL(path.replace(/^\//, ''), ROOT), init);
  const text = await res.text();
  let parsed;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = text;
  }
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body ?? {});
export const put = (path, body) => call('PUT', path, body);
export const del = (path) => call('DELETE', path);

/** POST /jobs/{id}/{action} for pause, resume, cancel, resubmit. */
export const jobAction = (id, action) => post(`/jobs/${encodeURIComponent(id)}/${action}`);
