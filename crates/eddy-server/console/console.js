// The console's page: logging in, the tabs, running what the editor holds (statements through
// /ksql, queries and PRINT streamed into the results), the session's SET properties, history,
// completion from the catalog, and the connected-car demo's view.

import * as api from "./api.js";
import { Editor } from "./editor.js";
import { KEYWORDS } from "./keywords.js";
import { Results } from "./results.js";
import { kindOf, offsetOf, errorPosition, propertyOf, statementAt, statements, tokens } from "./sql_text.js";
import { Catalog, Queries } from "./views.js";
import { escape } from "./html.js";

const HISTORY = "eddy.history";
const MAX_HISTORY = 100;
const REFRESH_MS = 2000;
const DEMO_SQL = "SELECT car, window_start, score, cause, version FROM car_alerts EMIT CHANGES;";
// Statements to start from, offered at the start of a statement (as ksqlDB's CLI snippets).
const TEMPLATES = [
  ["CREATE STREAM", "CREATE STREAM name (id STRING KEY, reading DOUBLE) WITH (kafka_topic='topic', value_format='JSON', partitions=1);"],
  ["CREATE TABLE", "CREATE TABLE name (id STRING PRIMARY KEY, reading DOUBLE) WITH (kafka_topic='topic', value_format='JSON', partitions=1);"],
  ["CREATE STREAM AS SELECT", "CREATE STREAM name AS SELECT * FROM source WHERE condition EMIT CHANGES;"],
  ["CREATE TABLE AS SELECT", "CREATE TABLE name AS SELECT id, COUNT(*) AS n FROM source WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY id EMIT CHANGES;"],
  ["INSERT INTO", "INSERT INTO target SELECT * FROM source;"],
  ["SELECT ... EMIT CHANGES", "SELECT * FROM source EMIT CHANGES;"],
].map(([label, insert]) => ({ label, insert, kind: "statement" }));
// After these words the next name is a stream or a table.
const SOURCE_CONTEXT = new Set(["FROM", "JOIN", "INTO", "DESCRIBE", "STREAM", "TABLE", "EXTENDED"]);

const $ = (selector) => document.querySelector(selector);
const properties = {};
let running = null; // {controller, queryId, results}


const catalog = new Catalog($("#catalog"));
const queries = new Queries($("#queries"), () => catalog.refresh().catch(() => {}));
const results = new Results($("#results"), () => stop(running));
const demo = new Results($("#demo-results"), () => stop(running), { series: "CAR" });

// Completion: names the statement around the caret can use, the likeliest first (models too,
// for the scoring functions' first argument).
function complete(before) {
  const all = tokens(before);
  const afterLast = all.slice(all.map((t) => t.text).lastIndexOf(";") + 1);
  if (afterLast.every((t) => t.type === "space" || t.type === "comment")) {
    // The start of a statement: a template, or a keyword.
    return [...TEMPLATES, ...KEYWORDS.map((k) => ({ label: k, kind: "keyword" }))];
  }
  const words = all.filter((t) => t.type === "word");
  const last = words.length ? words[words.length - 1].text.toUpperCase() : "";
  const statement = statementAt(editor.value, editor.caret)?.text || before;
  const named = new Set(tokens(statement).filter((t) => t.type === "word").map((t) => t.text.toUpperCase()));
  const sources = catalog.sources.map((s) => ({ label: s.name, kind: s.kind.toLowerCase() }));
  const used = catalog.sources.filter((s) => named.has(s.name.toUpperCase()));
  const columns = (used.length ? used : catalog.sources)
    .flatMap((s) => s.fields.map((f) => ({ label: f.name, kind: `column of ${s.name}` })));
  const functions = catalog.functions.map((f) => ({ label: f.name, kind: "function" }));
  // Models as a scoring function names them: 'name@version' or 'name@alias'.
  const models = catalog.models.flatMap((m) => [
    ...Object.keys(m.aliases || {}).map((a) => ({ label: `${m.name}@${a}`, kind: "model" })),
    ...(m.versions || []).map((v) => ({ label: `${m.name}@${v}`, kind: "model" })),
  ]);
  const keywords = KEYWORDS.map((k) => ({ label: k, kind: "keyword" }));
  return SOURCE_CONTEXT.has(last)
    ? [...sources, ...keywords]
    : [...columns, ...functions, ...models, ...sources, ...keywords];
}

const editor = new Editor($("#editor"), { complete, run: (all) => run(all) });

function remember(statement) {
  const list = JSON.parse(localStorage.getItem(HISTORY) || "[]").filter((s) => s !== statement);
  list.unshift(statement);
  localStorage.setItem(HISTORY, JSON.stringify(list.slice(0, MAX_HISTORY)));
  renderHistory();
}

function renderHistory() {
  const list = JSON.parse(localStorage.getItem(HISTORY) || "[]");
  $("#history").innerHTML = list.map((s, i) =>
    `<li><button class="link" data-index="${i}" title="${escape(s)}">${escape(s.length > 80 ? `${s.slice(0, 77)}...` : s)}</button></li>`).join("");
}

function renderProperties() {
  const entries = Object.entries(properties);
  $("#properties").innerHTML = entries.map(([k, v]) =>
    `<li><code>${escape(k)}</code> = <code>${escape(v)}</code> <button class="link unset" data-name="${escape(k)}">unset</button></li>`).join("") ||
    `<li class="muted">none (SET 'name'='value'; sets one)</li>`;
}

// One line of the messages list: the statement and what came of it.
function message(statement, text, isError) {
  const li = document.createElement("li");
  li.className = isError ? "error" : "ok";
  li.innerHTML = `<code>${escape(statement)}</code><div class="text">${escape(text)}</div>`;
  $("#messages").prepend(li);
}

// What a statement's entities say, shortly.
function describeEntities(entities) {
  return (entities || []).map((e) => {
    switch (e["@type"]) {
      case "currentStatus": return e.commandStatus?.message || e.commandStatus?.status || "done";
      case "streams": return e.streams.map((s) => s.name).join(", ") || "no streams";
      case "tables": return e.tables.map((s) => s.name).join(", ") || "no tables";
      case "queries": return e.queries.map((q) => `${q.id} (${q.state})`).join(", ") || "no queries";
      default: return JSON.stringify(e, null, 1);
    }
  }).join("\n");
}

// Marks the error's position in the editor: the server's position is within the statement sent.
function showError(statement, err) {
  message(statement.text, err.message, true);
  const at = errorPosition(err.message);
  if (at) {
    const inStatement = offsetOf(statement.text, at.line, at.column);
    const lead = editor.value.slice(statement.start).search(/\S/);
    editor.markError(inStatement < 0 ? -1 : statement.start + Math.max(0, lead) + inStatement, err.message);
  }
}

async function runOne(statement) {
  remember(statement.text);
  switch (kindOf(statement.text)) {
    case "set": {
      const p = propertyOf(statement.text);
      if (!p || p.value === undefined) throw new Error("SET 'name' = 'value'; expected");
      await api.get(`/is_valid_property/${encodeURIComponent(p.name)}`);
      const before = properties[p.name];
      properties[p.name] = p.value;
      renderProperties();
      message(statement.text, `Successfully changed local property '${p.name}'${before === undefined ? "" : ` from '${before}'`} to '${p.value}'.`);
      return;
    }
    case "unset": {
      const p = propertyOf(statement.text);
      if (!p || !(p.name in properties)) throw new Error(`Cannot unset a property that was never set: ${p ? p.name : "?"}`);
      delete properties[p.name];
      renderProperties();
      message(statement.text, `Successfully unset local property '${p.name}'.`);
      return;
    }
    case "query":
    case "print":
      return stream(statement.text, results);
    default: {
      const entities = await api.ksql(statement.text, properties);
      message(statement.text, describeEntities(entities));
      refreshSoon();
    }
  }
}

// Streams a query or PRINT into `view` with the session's properties and `extra`, stopping the
// one running; `seen` also gets each row.
async function stream(sql, view, extra = {}, seen = () => {}) {
  await stop(running);
  const controller = new AbortController();
  const current = { controller, queryId: null, results: view };
  running = current;
  view.clear();
  view.say("starting...");
  if (kindOf(sql) === "print") view.startLines(sql);
  try {
    await api.stream(sql, { ...properties, ...extra }, {
      signal: controller.signal,
      onHeader: (h) => {
        current.queryId = h.queryId;
        view.start(h.columnNames, h.columnTypes);
      },
      onRow: (row) => { view.add(row); seen(row); },
    });
    view.finish("query ended");
  } catch (err) {
    if (err.name === "AbortError") view.finish("stopped");
    else { view.finish(err.message); throw err; }
  } finally {
    if (running === current) running = null;
  }
}

async function stop(query) {
  if (!query) return;
  query.controller.abort();
  if (query.queryId) await api.closeQuery(query.queryId).catch(() => {});
  if (running === query) running = null;
}

async function run(all) {
  const text = editor.value;
  const list = all ? statements(text) : [statementAt(text, editor.caret)].filter(Boolean);
  editor.markError(-1);
  for (const s of list) {
    try {
      await runOne(s);
    } catch (err) {
      if (err.status === 401) return showLogin();
      showError(s, err);
      return;
    }
  }
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 300);
}

async function refresh() {
  try {
    await Promise.all([catalog.refresh(), queries.refresh()]);
    $("#connection").textContent = "";
  } catch (err) {
    if (err.status === 401) return showLogin();
    $("#connection").textContent = `server: ${err.message}`;
  }
}

function showTab(name) {
  for (const tab of document.querySelectorAll("nav button[data-tab]")) {
    tab.classList.toggle("active", tab.dataset.tab === name);
  }
  for (const panel of document.querySelectorAll("main > section")) {
    panel.hidden = panel.id !== `tab-${name}`;
  }
}

function showLogin(reason) {
  $("#login").hidden = false;
  $("#login .error").textContent = reason || "";
  $("#login input[name=user]").focus();
}

async function start() {
  let info;
  try {
    info = await api.get("/info");
  } catch (err) {
    if (err.status === 401) return showLogin();
    $("#connection").textContent = `server: ${err.message}`;
    return;
  }
  $("#login").hidden = true;
  const server = info.KsqlServerInfo || {};
  $("#server").textContent = `${server.serverStatus || ""} · service ${server.ksqlServiceId || ""} · ${server.version || ""}`;
  await Promise.all([refresh(), catalog.refreshFunctions()]);
  document.body.dataset.ready = "1";
  setInterval(() => { if (document.visibilityState === "visible") refresh(); }, REFRESH_MS);
}

$("nav").addEventListener("click", (e) => {
  const tab = e.target.closest("button[data-tab]");
  if (tab) showTab(tab.dataset.tab);
});
$("#run-statement").addEventListener("click", () => run(false));
$("#run-script").addEventListener("click", () => run(true));
$("#history").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-index]");
  if (!b) return;
  editor.value = JSON.parse(localStorage.getItem(HISTORY) || "[]")[Number(b.dataset.index)] || "";
});
$("#properties").addEventListener("click", (e) => {
  const b = e.target.closest("button.unset");
  if (!b) return;
  delete properties[b.dataset.name];
  renderProperties();
});
$("#catalog").addEventListener("click", async (e) => {
  const b = e.target.closest("button.describe-function");
  if (!b) return;
  const entity = (await api.ksql(`DESCRIBE FUNCTION ${b.dataset.name};`))[0];
  $("#function-detail").textContent = JSON.stringify(entity, null, 2);
});
$("#login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  api.logIn({ user: form.get("user"), password: form.get("password"), token: form.get("token") });
  try {
    await api.get("/info");
  } catch (err) {
    api.logOut();
    return showLogin(err.status === 401 ? "Wrong user, password or token." : err.message);
  }
  start();
});
$("#log-out").addEventListener("click", () => { api.logOut(); location.reload(); });
// The demo's alerts per car: how many, and the last one's window, score, cause and version.
const perCar = new Map();
function renderCars() {
  const cars = [...perCar.entries()].sort((a, b) => b[1].count - a[1].count);
  $("#demo-cars tbody").innerHTML = cars.map(([car, a]) =>
    `<tr><td>${escape(car)}</td><td class="number">${a.count}</td><td>${escape(new Date(a.window).toISOString().slice(11, 19))}</td>` +
    `<td class="number">${escape(a.score)}</td><td>${escape(a.cause)}</td><td class="number">${escape(a.version)}</td></tr>`).join("");
}
let carsPending = false;
$("#demo-start").addEventListener("click", () => {
  perCar.clear();
  renderCars();
  // Every alert so far, then each as it comes.
  stream(DEMO_SQL, demo, { "auto.offset.reset": "earliest" }, ([car, window, score, cause, version]) => {
    const a = perCar.get(car) || { count: 0 };
    perCar.set(car, { count: a.count + 1, window, score, cause, version });
    if (!carsPending) {
      carsPending = true;
      requestAnimationFrame(() => { carsPending = false; renderCars(); });
    }
  }).catch((err) => demo.say(err.message));
});

renderHistory();
renderProperties();
showTab("editor");
start();
