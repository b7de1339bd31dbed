// The server's REST API as the console calls it: statements (/ksql), queries and PRINT streamed
// line by line (/query-stream), and the caller's credentials, kept for the browser tab's session.

const CREDENTIALS = "eddy.credentials";

// The Authorization header the console sends, or null (authentication off, or not logged in).
function authorization() {
  return sessionStorage.getItem(CREDENTIALS);
}

// Remembers a user and password (Basic) or a token (Bearer) for this tab.
export function logIn({ user, password, token }) {
  const header = token ? `Bearer ${token}` : `Basic ${btoa(`${user}:${password}`)}`;
  sessionStorage.setItem(CREDENTIALS, header);
}

export function logOut() {
  sessionStorage.removeItem(CREDENTIALS);
}

// An error the server answered: its message, code and HTTP status (401: log in).
export class ServerError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error_code;
    this.statementText = body && body.statementText;
  }
}

async function call(method, path, body, accept = "application/json", signal) {
  // Marks the request as the page's own: the server then sends no challenge on a 401, which would
  // open the browser's login dialog instead of the console's.
  const headers = { Accept: accept, "X-Requested-With": "XMLHttpRequest" };
  const auth = authorization();
  if (auth) headers.Authorization = auth;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) {
    let answer = null;
    try { answer = await response.json(); } catch { /* not JSON */ }
    throw new ServerError(response.status, answer);
  }
  return response;
}

export async function get(path) {
  return (await call("GET", path)).json();
}

// Runs statements; the server's entities.
export async function ksql(statements, properties = {}) {
  const response = await call("POST", "/ksql", { ksql: statements, streamsProperties: properties });
  return response.json();
}

// Streams a query (or PRINT): `onHeader` gets the header ({queryId, columnNames, columnTypes}),
// `onRow` each row (an array), until the query ends or `signal` aborts. PRINT's lines come to
// `onRow` as strings.
export async function stream(sql, properties, { onHeader, onRow, signal }) {
  const response = await call("POST", "/query-stream", { sql, properties },
    "application/vnd.ksqlapi.delimited.v1", signal);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let header = null;
  const line = (text) => {
    if (!text.trim()) return;
    let value;
    try { value = JSON.parse(text); } catch { value = text; }
    if (!header && value && !Array.isArray(value) && typeof value === "object" && value.queryId !== undefined) {
      header = value;
      onHeader(value);
    } else if (value && typeof value === "object" && !Array.isArray(value) && value.message) {
      throw new ServerError(200, value);
    } else {
      onRow(value);
    }
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      line(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
    }
  }
  line(buffer);
}

export async function closeQuery(queryId) {
  await call("POST", "/close-query", { queryId });
}
