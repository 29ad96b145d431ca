// Talking to the server: the keys this tab holds (sessionStorage), JSON calls that turn an error
// body into an Error carrying the server's own message, and Server-Sent Events over fetch (POST
// bodies and Authorization headers, which EventSource cannot send).

const API_KEY = 'semantic.apiKey';
const ADMIN_KEY = 'semantic.adminKey';

export const keys = {
  get api() {
    return sessionStorage.getItem(API_KEY) || '';
  },
  get admin() {
    return sessionStorage.getItem(ADMIN_KEY) || '';
  },
  set(api, admin) {
    for (const [name, value] of [[API_KEY, api], [ADMIN_KEY, admin]]) {
      if (value) sessionStorage.setItem(name, value);
      else sessionStorage.removeItem(name);
    }
  },
};

/** An API error: the HTTP status and the server's message. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const listeners = new Set();
/** Called with every ApiError (the shell shows 401s as "enter a key"). */
export function onApiError(f) {
  listeners.add(f);
}

function headers(opts) {
  const out = {};
  if (opts.raw !== undefined) out['content-type'] = 'application/octet-stream';
  else if (opts.body !== undefined) out['content-type'] = 'application/json';
  if (keys.api) out.authorization = `Bearer ${keys.api}`;
  if (opts.admin && keys.admin) out['x-admin-key'] = keys.admin;
  return out;
}

async function failure(res) {
  const text = await res.text();
  let message = text || res.statusText;
  let code;
  try {
    const body = JSON.parse(text);
    const e = body.error || body;
    message = e.message || (typeof body.error === 'string' ? body.error : null) || body.reason || message;
    code = e.code || e.type;
  } catch {
    // not JSON: the text as it is
  }
  const err = new ApiError(res.status, `${message} (HTTP ${res.status})`, code);
  for (const f of listeners) f(err);
  return err;
}

async function send(path, opts) {
  try {
    const body = opts.raw !== undefined ? opts.raw : opts.body === undefined ? undefined : JSON.stringify(opts.body);
    return await fetch(path, {
      method: opts.method || (body === undefined ? 'GET' : 'POST'),
      headers: headers(opts),
      body,
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `the server did not answer (${e.message}); is it still running?`);
  }
}

/** A JSON call; resolves to the body, rejects with an ApiError. */
export async function api(path, opts = {}) {
  const res = await send(path, opts);
  if (!res.ok) throw await failure(res);
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

/** The body as text (Prometheus metrics, YAML). */
export async function text(path, opts = {}) {
  const res = await send(path, opts);
  if (!res.ok) throw await failure(res);
  return res.text();
}

/** The body as a Blob (a file to download); `opts.raw` sends a Blob or File as the body. */
export async function blob(path, opts = {}) {
  const res = await send(path, opts);
  if (!res.ok) throw await failure(res);
  return res.blob();
}

/**
 * Server-Sent Events: calls onEvent(name, data) for each event (name 'message' when the server
 * names none; data parsed as JSON when it is JSON). Resolves when the stream ends.
 */
export async function sse(path, opts, onEvent) {
  const res = await send(path, opts);
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      dispatch(block, onEvent);
    }
  }
  if (buffer.trim()) dispatch(buffer, onEvent);
}

function dispatch(block, onEvent) {
  let name = 'message';
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (!data.length) return;
  const raw = data.join('\n');
  let parsed = raw;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // `[DONE]` and other plain text
  }
  onEvent(name, parsed);
}
