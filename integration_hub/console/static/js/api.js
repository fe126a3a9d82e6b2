// The hub's REST API, called with the admin token in an Authorization header.
//
// The token lives in sessionStorage: it survives a reload of the tab but not closing it,
// and no other tab or site sees it. The trade-off: a script running in this origin could
// read it (an HttpOnly cookie could not be read), but a cookie would be sent on
// cross-site requests too and need CSRF defences; a header is sent only by this code.
// The strict CSP (no inline or foreign scripts) is what keeps other scripts out.
const TOKEN_KEY = "integration-hub.console.token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  set token(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(httpStatus, status, reason, message) {
    super(message || `HTTP ${httpStatus}`);
    this.httpStatus = httpStatus;
    this.status = status;
    this.reason = reason;
  }
}

export async function call(method, path, body, token = session.token) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  const init = { method, headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(response.status, "", "", `the hub answered HTTP ${response.status} with a body that is not JSON`);
  }
  if (!response.ok) {
    const error = data.error || {};
    const reason = (error.details || []).map((d) => d.reason).find(Boolean) || "";
    throw new ApiError(response.status, error.status || "", reason, error.message || `HTTP ${response.status}`);
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body = {}) => call("POST", path, body);
export const patch = (path, body) => call("PATCH", path, body);
export const remove = (path) => call("DELETE", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of [value].flat()) if (item !== undefined && item !== "") search.append(key, item);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
