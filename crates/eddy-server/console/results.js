// A query's results as they arrive: a table (pause, resume, stop, a row limit) and a live chart of
// one numeric column over arrival time or over a time column (WINDOWSTART), a line per series.

import { escape } from "./html.js";

const NUMERIC = /^(INTEGER|INT|BIGINT|DOUBLE|DECIMAL|FLOAT|REAL)/i;
const TIME_COLUMN = /^(WINDOWSTART|WINDOWEND|WINDOW_START|ROWTIME|TS)$/i;
const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8590c", "#1098ad", "#c2255c", "#5c940d"];
const MAX_POINTS = 2000;

function cell(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

const PANEL = `
  <div class="toolbar">
    <button class="pause" disabled>Pause</button>
    <button class="stop" disabled>Stop</button>
    <label>Rows kept <input class="limit" type="number" min="1" value="1000"></label>
    <span class="status muted"></span>
  </div>
  <div class="chart" hidden>
    <label>Chart <select class="y"></select></label>
    <label>over <select class="x"></select></label>
    <label>by <select class="series"></select></label>
    <canvas></canvas>
  </div>
  <div class="table-wrap"><table class="rows"></table></div>`;

export class Results {
  // `root`: the (empty) element the panel is made in; `onStop`: called when the user stops the
  // query; `chart`: the chart's series column when the query has it ({series: "CAR"}).
  constructor(root, onStop, chart = {}) {
    this.root = root;
    root.innerHTML = PANEL;
    this.onStop = onStop;
    this.table = root.querySelector("table.rows");
    this.status = root.querySelector(".status");
    this.limit = root.querySelector("input.limit");
    this.pauseButton = root.querySelector("button.pause");
    this.stopButton = root.querySelector("button.stop");
    this.chart = new Chart(root.querySelector(".chart"), chart.series);
    this.pauseButton.addEventListener("click", () => this.togglePause());
    this.stopButton.addEventListener("click", () => this.onStop());
    this.clear();
  }

  clear() {
    this.columns = [];
    this.types = [];
    this.rows = 0;
    this.held = [];
    this.paused = false;
    this.table.innerHTML = "";
    this.table.dataset.rows = "0";
    this.chart.reset([], []);
    this.setRunning(false);
    this.say("");
  }

  say(text) {
    this.status.textContent = text;
  }

  setRunning(running) {
    this.stopButton.disabled = !running;
    this.pauseButton.disabled = !running;
    this.pauseButton.textContent = "Pause";
    this.paused = false;
  }

  // A query's header: its columns and their types.
  start(columns, types) {
    this.columns = columns;
    this.types = types || [];
    this.table.innerHTML = `<thead><tr>${columns.map((c) => `<th>${escape(c)}</th>`).join("")}</tr></thead><tbody></tbody>`;
    this.chart.reset(columns, this.types);
    this.setRunning(true);
  }

  // PRINT's lines: one column.
  startLines(title) {
    this.start([title], ["STRING"]);
  }

  add(row) {
    if (this.paused) {
      this.held.push(row);
      this.say(`paused: ${this.held.length} rows held`);
      return;
    }
    this.append(row);
  }

  append(row) {
    const values = Array.isArray(row) ? row : [row];
    const body = this.table.tBodies[0];
    const tr = document.createElement("tr");
    for (const v of values) {
      const td = document.createElement("td");
      td.textContent = cell(v);
      if (typeof v === "number") td.className = "number";
      tr.appendChild(td);
    }
    body.appendChild(tr);
    const limit = Math.max(1, Number(this.limit.value) || 1000);
    while (body.rows.length > limit) body.deleteRow(0);
    this.rows++;
    this.table.dataset.rows = String(this.rows);
    this.chart.add(values);
    this.say(`${this.rows} rows`);
  }

  togglePause() {
    this.paused = !this.paused;
    this.pauseButton.textContent = this.paused ? "Resume" : "Pause";
    if (!this.paused) {
      const held = this.held;
      this.held = [];
      held.forEach((r) => this.append(r));
    }
  }

  finish(message) {
    this.setRunning(false);
    this.say(`${this.rows} rows${message ? ` — ${message}` : ""}`);
  }
}

// A line chart drawn on a canvas: y from a numeric column, x from arrival time or a time column,
// one line per value of the series column (none: one line).
class Chart {
  // `series`: the column to draw a line per value of, when a query has it.
  constructor(root, series) {
    this.root = root;
    this.series = series;
    this.canvas = root.querySelector("canvas");
    this.yPick = root.querySelector("select.y");
    this.xPick = root.querySelector("select.x");
    this.seriesPick = root.querySelector("select.series");
    for (const pick of [this.yPick, this.xPick, this.seriesPick]) {
      pick.addEventListener("change", () => this.redo());
    }
    this.reset([], []);
  }

  reset(columns, types) {
    this.columns = columns;
    this.rows = [];
    const numeric = columns.filter((c, i) => NUMERIC.test(types[i] || ""));
    const options = (list, first) => first.concat(list).map(([value, label]) =>
      `<option value="${escape(value)}">${escape(label)}</option>`).join("");
    this.yPick.innerHTML = options(numeric.map((c) => [c, c]), []);
    // A score or a value rather than an id or a time, when there is one.
    const y = numeric.find((c) => !TIME_COLUMN.test(c) && !/ID$/i.test(c)) || numeric[0];
    if (y) this.yPick.value = y;
    const times = columns.filter((c, i) => TIME_COLUMN.test(c) && NUMERIC.test(types[i] || "") || /TIMESTAMP/i.test(types[i] || ""));
    this.xPick.innerHTML = options(times.map((c) => [c, c]), [["", "arrival time"]]);
    if (times.some((c) => /WINDOW/i.test(c))) this.xPick.value = times.find((c) => /WINDOW/i.test(c));
    const texts = columns.filter((c, i) => /STRING|VARCHAR/i.test(types[i] || ""));
    this.seriesPick.innerHTML = options(texts.map((c) => [c, c]), [["", "one series"]]);
    if (texts.includes(this.series)) this.seriesPick.value = this.series;
    this.root.hidden = numeric.length === 0;
    this.draw();
  }

  add(values) {
    this.rows.push({ at: Date.now(), values });
    if (this.rows.length > MAX_POINTS) this.rows.shift();
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }
  }

  redo() { this.draw(); }

  points() {
    const y = this.columns.indexOf(this.yPick.value);
    const x = this.columns.indexOf(this.xPick.value);
    const s = this.columns.indexOf(this.seriesPick.value);
    if (y < 0) return new Map();
    const series = new Map();
    for (const r of this.rows) {
      const yv = Number(r.values[y]);
      const xv = x < 0 ? r.at : (typeof r.values[x] === "number" ? r.values[x] : Date.parse(r.values[x]));
      if (!Number.isFinite(yv) || !Number.isFinite(xv)) continue;
      const key = s < 0 ? "" : String(r.values[s]);
      if (!series.has(key)) series.set(key, []);
      series.get(key).push([xv, yv]);
    }
    return series;
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 220;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const series = this.points();
    let count = 0;
    const all = [];
    for (const pts of series.values()) { count += pts.length; all.push(...pts); }
    canvas.dataset.points = String(count);
    if (all.length === 0) {
      g.fillStyle = "#888";
      g.fillText("no points yet", 12, 20);
      return;
    }
    const [left, right, top, bottom] = [56, 12, 12, 24];
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const px = (x) => left + (x - x0) / (x1 - x0) * (width - left - right);
    const py = (y) => height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom);
    g.strokeStyle = "#ccc";
    g.beginPath();
    g.moveTo(left, top);
    g.lineTo(left, height - bottom);
    g.lineTo(width - right, height - bottom);
    g.stroke();
    g.fillStyle = "#555";
    g.font = "11px sans-serif";
    g.fillText(y1.toPrecision(4), 4, top + 8);
    g.fillText(y0.toPrecision(4), 4, height - bottom);
    const time = (x) => new Date(x).toLocaleTimeString();
    g.fillText(time(x0), left, height - 6);
    g.fillText(time(x1), width - right - 60, height - 6);
    let i = 0;
    for (const [key, pts] of series) {
      const color = COLORS[i++ % COLORS.length];
      g.strokeStyle = color;
      g.fillStyle = color;
      pts.sort((a, b) => a[0] - b[0]);
      // A gap of more than a twentieth of the x range breaks the line (a series that paused).
      const gap = (x1 - x0) / 20;
      g.beginPath();
      pts.forEach(([x, y], j) => (j && x - pts[j - 1][0] <= gap ? g.lineTo(px(x), py(y)) : g.moveTo(px(x), py(y))));
      g.stroke();
      for (const [x, y] of pts) g.fillRect(px(x) - 1.5, py(y) - 1.5, 3, 3);
      if (key && i <= COLORS.length) g.fillText(key, width - right - 90, top + 12 * i);
    }
  }
}
