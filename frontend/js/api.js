// Thin fetch wrappers for the REST API: JSON in, JSON out, errors as values with the HTTP status.

export class ApiError extends Error {
  constructor(status, detail, message) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

function describe(status, detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg).join("; ");
  return `HTTP ${status}`;
}

// When the server sets PRUNESCOPE_API_TOKEN, writes need `Authorization: Bearer`. The token is asked for on the
// first 401 (app.js supplies the prompt), kept in this browser, and the refused request is sent again.
const TOKEN_KEY = "prunescope-api-token";
let tokenPrompt = null;

export function setTokenPrompt(prompt) {
  tokenPrompt = prompt;
}

function storedToken() {
  try { return localStorage.getItem(TOKEN_KEY); } catch { return null; }
}

function storeToken(token) {
  try { localStorage.setItem(TOKEN_KEY, token); } catch { /* private mode: asked again next time */ }
}

/** `fetch` a JSON endpoint; throws ApiError (with `status` and the body's `detail`) unless 2xx. */
export async function api(path, { method = "GET", body, signal, refused = false } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const token = method !== "GET" ? storedToken() : null;
  if (token) init.headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, null, `The API did not answer (${error.message})`);
  }
  if (response.status === 401 && method !== "GET" && tokenPrompt) {
    const entered = await tokenPrompt({ refused: Boolean(token) || refused });
    if (entered) {
      storeToken(entered);
      return api(path, { method, body, signal, refused: true });
    }
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && "detail" in data ? data.detail : null;
    throw new ApiError(response.status, detail, describe(response.status, detail));
  }
  return data;
}

export const isAbort = (error) => error && error.name === "AbortError";

// GET /api/options (statuses, option lists, defaults, JSON schema) changes only with a server upgrade: one
// request per page load, shared by the router and every page.
let catalog = null;

/** The API's catalog; a failed load is not cached, so the next call asks again. */
export function loadCatalog() {
  if (!catalog) {
    catalog = api("/api/options");
    catalog.catch(() => { catalog = null; });
  }
  return catalog;
}
