// Text to HTML for the API reference: everything the document says is text, escaped here.

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for an element's content or a quoted attribute value. */
export function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (ch) => ENTITIES[ch] as string);
}

/** A value as compact JSON, escaped, in a <code>. */
export function codeJson(value: unknown): string {
  return `<code>${escapeHtml(JSON.stringify(value))}</code>`;
}

/**
 * A description as HTML: escaped, `backticks` as code, blank lines as paragraph breaks.
 * Nothing else of Markdown is interpreted, so no link or markup can come from the text.
 */
export function prose(text: unknown, className = "desc"): string {
  if (typeof text !== "string" || text.trim() === "") return "";
  const paragraphs = text
    .trim()
    .split(/\n\s*\n/)
    .map((paragraph) => escapeHtml(paragraph).replace(/`([^`\n]+)`/g, "<code>$1</code>"));
  return paragraphs.map((p) => `<p class="${className}">${p}</p>`).join("");
}

/** An anchor id made of safe characters only. */
export function anchor(prefix: string, name: string): string {
  return `${prefix}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}
