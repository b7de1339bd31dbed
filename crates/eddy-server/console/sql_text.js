// SQL text as the console reads it: tokens (for highlighting and completion), the statements of a
// script, and where the server's "line L:C:" error positions fall.

// One token: {type, text, start, end}; type is one of space, comment, string, identifier (quoted),
// number, word, punct.
export function tokens(text) {
  const out = [];
  let i = 0;
  while (i < text.length) {
    const start = i;
    const c = text[i];
    let type;
    if (/\s/.test(c)) {
      while (i < text.length && /\s/.test(text[i])) i++;
      type = "space";
    } else if (c === "-" && text[i + 1] === "-") {
      while (i < text.length && text[i] !== "\n") i++;
      type = "comment";
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 2;
      type = "comment";
    } else if (c === "'" || c === '"' || c === "`") {
      // A quote is escaped by doubling it; an unclosed one runs to the end.
      i++;
      while (i < text.length) {
        if (text[i] === c) {
          if (text[i + 1] === c) i += 2;
          else { i++; break; }
        } else i++;
      }
      type = c === "'" ? "string" : "identifier";
    } else if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(text[i + 1] || ""))) {
      while (i < text.length && /[0-9.eE]/.test(text[i])) i++;
      type = "number";
    } else if (/[A-Za-z_$@]/.test(c)) {
      while (i < text.length && /[A-Za-z0-9_$@]/.test(text[i])) i++;
      type = "word";
    } else {
      i++;
      type = "punct";
    }
    out.push({ type, text: text.slice(start, i), start, end: i });
  }
  return out;
}

// The statements of a script, each {text, start, end}: split at semicolons outside strings and
// comments, the semicolon kept; blank ones left out.
export function statements(text) {
  const out = [];
  let start = 0;
  const push = (end) => {
    const piece = text.slice(start, end);
    if (tokens(piece).some((t) => t.type !== "space" && t.type !== "comment")) {
      out.push({ text: piece.trim(), start, end });
    }
    start = end;
  };
  for (const t of tokens(text)) {
    if (t.type === "punct" && t.text === ";") push(t.end);
  }
  push(text.length);
  return out;
}

// The statement the caret at `pos` is in (or just after).
export function statementAt(text, pos) {
  const all = statements(text);
  return all.find((s) => pos <= s.end) || all[all.length - 1];
}

// The offset in `text` of the server's 1-based "line L:C" position, or -1.
export function offsetOf(text, line, column) {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const next = text.indexOf("\n", offset);
    if (next < 0) return -1;
    offset = next + 1;
  }
  return Math.min(offset + column - 1, text.length);
}

// The position a server error message names ("line 1:8: Syntax Error ..."), or null.
export function errorPosition(message) {
  const m = /^line (\d+):(\d+):/.exec(message || "");
  return m ? { line: Number(m[1]), column: Number(m[2]) } : null;
}

// The kind of statement: how the console runs it.
export function kindOf(statement) {
  const words = tokens(statement).filter((t) => t.type === "word").map((t) => t.text.toUpperCase());
  switch (words[0]) {
    case "SELECT": return "query";
    case "PRINT": return "print";
    case "SET": return "set";
    case "UNSET": return "unset";
    default: return "ksql";
  }
}

// `SET 'name' = 'value';` or `UNSET 'name';`: the property's name and value (unquoted), or null.
export function propertyOf(statement) {
  const strings = tokens(statement).filter((t) => t.type === "string")
    .map((t) => t.text.slice(1, -1).replaceAll("''", "'"));
  return strings.length ? { name: strings[0], value: strings[1] } : null;
}
