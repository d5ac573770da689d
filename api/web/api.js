// The public REST API (/v1), the signed-in user's token, and problem documents as errors.

const TOKEN_KEY = 'boxoffice.token';

/// An answer that is not 2xx: its problem document (RFC 9457), or what stands in for one.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code || '';
  }
}

/// The token and its claims (read, not verified: the server verifies), or null.
export function session() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const claims = decodeClaims(token);
  if (!claims) return null;
  if (claims.exp && claims.exp * 1000 < Date.now()) {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
  return { token, user: claims.sub || '?', role: claims.role || 'user', exp: claims.exp };
}

export function signIn(token) {
  if (!decodeClaims(token)) throw new Error('This is not a JWT: three base64url parts separated by dots.');
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function decodeClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const text = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/// One request. `body` is sent as JSON; every POST gets a fresh Idempotency-Key unless one is
/// given (a retry of the same action should pass the same key).
export async function api(method, path, { body, headers = {}, key, auth = true } = {}) {
  const h = { Accept: 'application/json', ...headers };
  const s = session();
  if (auth && s) h.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (method === 'POST') h['Idempotency-Key'] = key || newKey();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-cache',
    });
  } catch (e) {
    throw new ApiError(0, { title: 'The server cannot be reached', detail: String(e.message || e) });
  }
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    throw new ApiError(response.status, data && typeof data === 'object' ? data : { title: response.statusText });
  }
  return data;
}

export const get = (path, opts) => api('GET', path, opts);
export const post = (path, body, opts = {}) => api('POST', path, { ...opts, body });

/// A query string from the non-empty values of `params`.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

const eventCache = new Map();
/// An event's details, fetched once per page load (names for orders and tickets).
export function eventOnce(eventId) {
  if (!eventCache.has(eventId)) {
    eventCache.set(eventId, get(`/v1/events/${encodeURIComponent(eventId)}`).catch(() => null));
  }
  return eventCache.get(eventId);
}

/// Whether `POST /v1/auth/dev-token` exists (`boxoffice dev`): an empty body is refused by an
/// existing route (400) and not found otherwise (404).
export async function devTokensEnabled() {
  try {
    await post('/v1/auth/dev-token', {}, { auth: false });
    return true;
  } catch (e) {
    return e.status !== 404 && e.status !== 0;
  }
}
