import type { z } from "@hono/zod-openapi";

/** One invalid field of a request: where it is (`machine.vcpus`, `chunks[0].length`) and what is wrong. */
export interface FieldError {
  path: string;
  message: string;
}

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

/**
 * The field errors of a request part that failed its schema: a body's and a path's or query's
 * fields are named as they are, a header's as `header.<name>`.
 */
export function requestFieldErrors(error: z.ZodError, target: string): FieldError[] {
  return fieldErrorsOf(error, ["json", "param", "query"].includes(target) ? undefined : target);
}

/** The detail of a validation refusal: every invalid field and what is wrong with it. */
export function validationDetail(errors: readonly FieldError[]): string {
  return `Invalid request: ${errors.map((e) => `${e.path || "(body)"}: ${e.message}`).join("; ")}`;
}
