// The console's side panels: the catalog (streams and tables with their schemas, topics, formats
// and row rates), the running queries (state, rates, lag, skipped records, the last error,
// terminate), functions and models. Rates are the change of the server's counters between two
// refreshes.

import { get, ksql } from "./api.js";
import { escape } from "./html.js";


function typeOf(field) {
  const s = field.schema || {};
  return s.type === "STRUCT" || s.type === "ARRAY" || s.type === "MAP" ? s.type : (s.type || "");
}

// Counters seen at the previous refresh, to turn them into rates.
class Rates {
  constructor() { this.seen = new Map(); }
  rate(key, total) {
    const now = Date.now();
    const before = this.seen.get(key);
    this.seen.set(key, { total, at: now });
    if (!before || now <= before.at) return null;
    return Math.max(0, (total - before.total) / ((now - before.at) / 1000));
  }
}

const fmtRate = (r) => (r === null ? "…" : `${r < 10 ? r.toFixed(1) : Math.round(r)}/s`);

// The catalog: what completion knows too (sources and their columns).
export class Catalog {
  constructor(root) {
    this.root = root;
    this.sources = [];  // {name, kind, topic, keyFormat, valueFormat, fields: [{name, type, key}], rate}
    this.functions = [];
    this.models = [];
    this.rates = new Rates();
  }

  async refresh() {
    const [streams, tables] = await Promise.all([ksql("SHOW STREAMS;"), ksql("SHOW TABLES;")]);
    const listed = [
      ...(streams[0]?.streams || []).map((s) => ({ ...s, kind: "STREAM" })),
      ...(tables[0]?.tables || []).map((t) => ({ ...t, kind: "TABLE" })),
    ];
    const described = await Promise.all(listed.map((s) =>
      ksql(`DESCRIBE \`${s.name}\` EXTENDED;`).then((e) => e[0]?.sourceDescription).catch(() => null)));
    this.sources = listed.map((s, i) => {
      const d = described[i] || {};
      const consumed = Number(/messages-consumed-total: (\d+)/.exec(d.statistics || "")?.[1] || 0);
      return {
        name: s.name,
        kind: s.kind,
        topic: s.topic,
        keyFormat: s.keyFormat,
        valueFormat: s.valueFormat,
        fields: (d.fields || []).map((f) => ({ name: f.name, type: typeOf(f), key: f.type === "KEY" })),
        rate: this.rates.rate(s.name, consumed),
      };
    });
    this.render();
  }

  async refreshFunctions() {
    const [fns, models] = await Promise.all([
      ksql("SHOW FUNCTIONS;").then((e) => e[0]?.functions || []).catch(() => []),
      get("/models").then((m) => m.models || []).catch(() => []),
    ]);
    this.functions = fns;
    this.models = models;
    this.renderFunctions();
  }

  render() {
    const list = this.root.querySelector(".sources");
    list.innerHTML = this.sources.map((s) => `
      <details class="source" data-name="${escape(s.name)}">
        <summary><span class="kind">${s.kind}</span> <b>${escape(s.name)}</b>
          <span class="muted">${escape(s.topic)} · ${escape(s.keyFormat)}/${escape(s.valueFormat)} · read ${fmtRate(s.rate)}</span></summary>
        <table class="schema">${s.fields.map((f) => `<tr><td>${escape(f.name)}</td><td>${escape(f.type)}${f.key ? " (key)" : ""}</td></tr>`).join("")}</table>
      </details>`).join("") || `<p class="muted">No streams or tables yet.</p>`;
  }

  renderFunctions() {
    const fns = this.root.querySelector(".functions");
    fns.innerHTML = this.functions.map((f) =>
      `<li><button class="link describe-function" data-name="${escape(f.name)}">${escape(f.name)}</button> <span class="muted">${escape(f.category || f.type || "")}</span></li>`).join("");
    const models = this.root.querySelector(".models");
    models.innerHTML = this.models.map((m) => {
      const name = m.name;
      const versions = (m.versions || []).join(", ");
      const aliases = Object.entries(m.aliases || {}).map(([a, v]) => `${a}→${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
      return `<li><b>${escape(name)}</b> <span class="muted">versions ${escape(versions)} ${escape(aliases)}</span></li>`;
    }).join("") || `<li class="muted">No models.</li>`;
  }
}

// The running queries, with terminate.
export class Queries {
  // `onTerminated`: after a query was terminated (the catalog changes).
  constructor(root, onTerminated) {
    this.root = root;
    this.rates = new Rates();
    this.onTerminated = onTerminated;
    root.addEventListener("click", async (e) => {
      const button = e.target.closest("button.terminate");
      if (!button) return;
      button.disabled = true;
      try {
        await ksql(`TERMINATE ${button.dataset.id};`);
        await this.refresh();
        this.onTerminated();
      } catch (err) {
        button.disabled = false;
        this.root.querySelector(".error").textContent = err.message;
      }
    });
  }

  async refresh() {
    const listed = (await ksql("SHOW QUERIES;"))[0]?.queries || [];
    const [lags, explained] = await Promise.all([
      get("/lag").catch(() => ({ queries: [] })),
      Promise.all(listed.map((q) => ksql(`EXPLAIN ${q.id};`)
        .then((e) => e[0]?.queryDescription).catch(() => null))),
    ]);
    const lag = new Map((lags.queries || []).map((l) => [l.queryId, l]));
    const rows = listed.map((q, i) => {
      const d = explained[i] || {};
      const stats = d.statistics || {};
      const errors = d.queryErrors || [];
      const l = lag.get(q.id);
      return `<tr data-id="${escape(q.id)}" data-state="${escape(q.state)}">
        <td>${escape(q.id)}</td>
        <td><span class="state state-${escape(String(q.state).toLowerCase())}">${escape(q.state)}</span></td>
        <td>${escape((q.sinks || []).join(", "))}</td>
        <td class="number">${fmtRate(this.rates.rate(`${q.id}/in`, stats.consumed || 0))}</td>
        <td class="number">${fmtRate(this.rates.rate(`${q.id}/out`, stats.produced || 0))}</td>
        <td class="number">${l ? (l.error ? "?" : l.total) : ""}</td>
        <td class="number">${(stats.skippedRecords || 0) + (stats.expressionErrors || 0)}</td>
        <td class="last-error">${escape(errors.length ? errors[errors.length - 1].errorMessage : "")}</td>
        <td><button class="terminate" data-id="${escape(q.id)}">Terminate</button></td>
      </tr>
      <tr class="statement"><td colspan="9"><code>${escape(q.queryString)}</code></td></tr>`;
    });
    this.root.querySelector("tbody").innerHTML = rows.join("") ||
      `<tr><td colspan="9" class="muted">No persistent queries.</td></tr>`;
  }
}
