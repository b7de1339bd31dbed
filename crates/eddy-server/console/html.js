// Text put into the page's HTML: escaped, so a name or a value from the server is never markup.

export function escape(text) {
  return String(text ?? "").replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}
