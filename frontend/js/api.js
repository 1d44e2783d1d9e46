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

/** `fetch` a JSON endpoint; throws ApiError (with `status` and the body's `detail`) unless 2xx. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, null, `The API did not answer (${error.message})`);
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
