// The SQL editor: a textarea under a highlighted copy of its text, a completion list, and a mark
// at the position of the last statement error.

import { tokens } from "./sql_text.js";
import { KEYWORDS } from "./keywords.js";
import { escape } from "./html.js";

const KEYWORD_SET = new Set(KEYWORDS);
const MAX_COMPLETIONS = 12;


export class Editor {
  // `root`: the editor's element; `complete(textBefore)`: the suggestions for the word before the
  // caret, each {label, kind}; `run(all)`: Ctrl+Enter (the statement at the caret) or
  // Ctrl+Shift+Enter (the whole script).
  constructor(root, { complete, run }) {
    this.root = root;
    this.complete = complete;
    this.run = run;
    this.highlight = root.querySelector(".highlight");
    this.text = root.querySelector("textarea");
    this.list = root.querySelector(".completions");
    this.error = null;
    this.suggestions = [];
    this.selected = 0;
    this.text.addEventListener("input", () => { this.error = null; this.render(); this.suggest(false); });
    this.text.addEventListener("scroll", () => this.syncScroll());
    this.text.addEventListener("keydown", (e) => this.key(e));
    this.text.addEventListener("blur", () => setTimeout(() => this.close(), 150));
    this.list.addEventListener("mousedown", (e) => {
      const item = e.target.closest("li");
      if (item) { e.preventDefault(); this.accept(Number(item.dataset.index)); }
    });
    this.render();
  }

  get value() { return this.text.value; }

  set value(text) {
    this.text.value = text;
    this.error = null;
    this.render();
  }

  get caret() { return this.text.selectionStart; }

  // Marks `length` characters at `offset` (from the start of the text) as the error's place.
  markError(offset, message) {
    this.error = offset < 0 ? null : { offset, message };
    this.render();
  }

  render() {
    const text = this.text.value;
    const error = this.error;
    let html = "";
    let marked = false;
    for (const t of tokens(text)) {
      let cls = t.type;
      if (t.type === "word" && KEYWORD_SET.has(t.text.toUpperCase())) cls = "keyword";
      let inner = escape(t.text);
      if (error && !marked && t.type !== "space" && t.end > error.offset) {
        marked = true;
        inner = `<mark class="error-mark" title="${escape(error.message)}">${inner}</mark>`;
      }
      html += `<span class="t-${cls}">${inner}</span>`;
    }
    if (error && !marked) html += `<mark class="error-mark" title="${escape(error.message)}"> </mark>`;
    // A trailing newline needs a character after it to take its height.
    this.highlight.innerHTML = html + " ";
    this.syncScroll();
  }

  syncScroll() {
    this.highlight.scrollTop = this.text.scrollTop;
    this.highlight.scrollLeft = this.text.scrollLeft;
  }

  key(e) {
    const open = this.suggestions.length > 0;
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      e.preventDefault();
      this.close();
      this.run(e.shiftKey);
    } else if (e.ctrlKey && (e.key === " " || e.code === "Space")) {
      e.preventDefault();
      this.suggest(true);
    } else if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      const n = this.suggestions.length;
      this.selected = (this.selected + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      this.showList();
    } else if (open && (e.key === "Tab" || e.key === "Enter")) {
      e.preventDefault();
      this.accept(this.selected);
    } else if (open && e.key === "Escape") {
      this.close();
    }
  }

  // The word being typed before the caret.
  word() {
    const before = this.text.value.slice(0, this.caret);
    const m = /[A-Za-z0-9_$@]*$/.exec(before);
    return m ? m[0] : "";
  }

  // Opens the list for the word before the caret (`always`: even for no word yet). A suggestion's
  // `insert` (a template) replaces the word; else its label does.
  suggest(always) {
    const word = this.word();
    if (!always && word.length === 0) return this.close();
    const before = this.text.value.slice(0, this.caret - word.length);
    const prefix = word.toUpperCase();
    const seen = new Set();
    this.suggestions = this.complete(before)
      .filter((s) => s.label.toUpperCase().startsWith(prefix) && s.label.toUpperCase() !== prefix)
      .filter((s) => !seen.has(s.label) && seen.add(s.label))
      .slice(0, MAX_COMPLETIONS);
    this.selected = 0;
    this.showList();
  }

  showList() {
    if (this.suggestions.length === 0) return this.close();
    this.list.innerHTML = this.suggestions.map((s, i) =>
      `<li data-index="${i}" class="${i === this.selected ? "selected" : ""}">` +
      `<span class="label">${escape(s.label)}</span><span class="kind">${escape(s.kind)}</span></li>`).join("");
    // Below the caret's line, at its column (the editor's font is monospaced).
    const before = this.text.value.slice(0, this.caret);
    const lines = before.split("\n");
    const style = getComputedStyle(this.text);
    const lineHeight = parseFloat(style.lineHeight) || 18;
    const charWidth = this.charWidth();
    const top = lines.length * lineHeight + parseFloat(style.paddingTop) - this.text.scrollTop;
    const left = (lines[lines.length - 1].length - this.word().length) * charWidth +
      parseFloat(style.paddingLeft) - this.text.scrollLeft;
    this.list.style.top = `${top}px`;
    this.list.style.left = `${Math.max(0, left)}px`;
    this.list.hidden = false;
  }

  charWidth() {
    if (!this.measured) {
      const probe = document.createElement("span");
      probe.textContent = "0".repeat(100);
      probe.style.font = getComputedStyle(this.text).font;
      probe.style.visibility = "hidden";
      probe.style.position = "absolute";
      document.body.appendChild(probe);
      this.measured = probe.getBoundingClientRect().width / 100;
      probe.remove();
    }
    return this.measured;
  }

  accept(index) {
    const s = this.suggestions[index];
    if (!s) return;
    const word = this.word();
    const at = this.caret - word.length;
    const text = this.text.value;
    const insert = s.insert || s.label;
    this.text.value = text.slice(0, at) + insert + text.slice(this.caret);
    this.text.selectionStart = this.text.selectionEnd = at + insert.length;
    this.close();
    this.render();
    this.text.focus();
  }

  close() {
    this.suggestions = [];
    this.list.hidden = true;
  }
}
