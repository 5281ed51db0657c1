// Diagnostics in the shape Terraform shows them: severity, summary, detail and the
// attribute path Terraform underlines in the configuration.

import { ApiError } from "../../client/api.ts";

/**
 * A path into a resource's value: a string step is an attribute (or block) name, a number
 * an index into a list, set or tuple, and `{ key }` a key of a map or map-nested block.
 */
export type AttributePath = (string | number | { key: string })[];

export interface Diagnostic {
  severity: "error" | "warning";
  summary: string;
  detail?: string;
  path?: AttributePath;
}

export class Diagnostics {
  readonly items: Diagnostic[] = [];

  error(summary: string, detail?: string, path?: AttributePath): this {
    this.items.push({ severity: "error", summary, ...(detail ? { detail } : {}), ...(path ? { path } : {}) });
    return this;
  }

  warning(summary: string, detail?: string, path?: AttributePath): this {
    this.items.push({
      severity: "warning",
      summary,
      ...(detail ? { detail } : {}),
      ...(path ? { path } : {}),
    });
    return this;
  }

  append(other: Diagnostics | Diagnostic[]): this {
    this.items.push(...(other instanceof Diagnostics ? other.items : other));
    return this;
  }

  get hasErrors(): boolean {
    return this.items.some((item) => item.severity === "error");
  }
}

/** Throw from a resource method to fail it with a diagnostic (optionally on an attribute). */
export class DiagnosticError extends Error {
  readonly detail: string | undefined;
  readonly path: AttributePath | undefined;

  constructor(summary: string, options: { detail?: string; path?: AttributePath; cause?: unknown } = {}) {
    super(summary, options.cause === undefined ? undefined : { cause: options.cause });
    this.detail = options.detail;
    this.path = options.path;
  }
}

export function diagnosticFromError(error: unknown, summaryPrefix?: string): Diagnostic {
  // The API client's ApiErrors carry the same summary, detail and path.
  if (error instanceof DiagnosticError || error instanceof ApiError) {
    return {
      severity: "error",
      summary: error.message,
      ...(error.detail ? { detail: error.detail } : {}),
      ...(error.path ? { path: error.path } : {}),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return summaryPrefix
    ? { severity: "error", summary: summaryPrefix, detail: message }
    : { severity: "error", summary: message };
}

type ProtoStep = { attribute_name: string } | { element_key_int: number } | { element_key_string: string };

export function attributePathToProto(path: AttributePath): { steps: ProtoStep[] } {
  return {
    steps: path.map((step) => {
      if (typeof step === "string") return { attribute_name: step };
      if (typeof step === "number") return { element_key_int: step };
      return { element_key_string: step.key };
    }),
  };
}

export function diagnosticToProto(diagnostic: Diagnostic): Record<string, unknown> {
  return {
    severity: diagnostic.severity === "error" ? "ERROR" : "WARNING",
    summary: diagnostic.summary,
    detail: diagnostic.detail ?? "",
    ...(diagnostic.path?.length ? { attribute: attributePathToProto(diagnostic.path) } : {}),
  };
}
