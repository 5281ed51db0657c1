import { type IdKind, idSchema } from "../schemas/common.ts";
import { errors } from "./errors.ts";

// A page token is the last ID of the previous page, wrapped so clients treat it as opaque.
export function encodePageToken(lastId: string): string {
  return Buffer.from(JSON.stringify({ after: lastId })).toString("base64url");
}

export function decodePageToken(token: string | undefined, kind: IdKind): string | undefined {
  if (token === undefined || token === "") return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { after?: unknown };
    const after = idSchema(kind).safeParse(parsed.after);
    if (after.success) return after.data;
  } catch {}
  throw errors.invalidPageToken();
}

/** Rows fetched with limit pageSize + 1 tell whether another page follows. */
export function toPage<Row extends { id: string }, Item>(
  rows: Row[],
  pageSize: number,
  map: (row: Row) => Item,
) {
  const items = rows.slice(0, pageSize);
  const last = items.at(-1);
  return {
    items: items.map(map),
    next_page_token: rows.length > pageSize && last ? encodePageToken(last.id) : null,
  };
}

/** Same as toPage for tables keyed by name. */
export function encodeNameToken(lastName: string): string {
  return Buffer.from(JSON.stringify({ after_name: lastName })).toString("base64url");
}

export function decodeNameToken(token: string | undefined): string | undefined {
  if (token === undefined || token === "") return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { after_name?: unknown };
    if (typeof parsed.after_name === "string" && parsed.after_name.length <= 63) return parsed.after_name;
  } catch {}
  throw errors.invalidPageToken();
}
