import type { z } from "@hono/zod-openapi";
import type { FieldError } from "./errors.ts";

function pathText(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/** Zod issues → one error per failing field; unknown keys are named one by one. */
export function fieldErrorsOf(error: z.ZodError, prefix?: string): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of error.issues) {
    const base = prefix ? [prefix, ...issue.path] : issue.path;
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push({ path: pathText([...base, key]), message: "unknown field" });
    } else {
      out.push({ path: pathText(base), message: issue.message });
    }
  }
  return out;
}
