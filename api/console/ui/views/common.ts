import { ApiError } from "../api.ts";
import { h } from "../dom.ts";

export type View = (root: HTMLElement, signal: AbortSignal) => void;

/** A refusal or failure, said in one line above the view's last good state. */
export function failure(error: unknown): HTMLElement {
  const text =
    error instanceof ApiError
      ? `${error.status} ${error.problem.code ?? ""}: ${error.message}${
          error.status === 403 ? " (the console needs a project token with the read scope)" : ""
        }`
      : `The control plane cannot be reached (${String(error)}); retrying.`;
  return h("p", { class: "error", role: "alert" }, text);
}

/** Holds a view's latest answers and renders once all of them arrived, and on each change. */
export function joined<T extends Record<string, unknown>>(
  keys: (keyof T)[],
  render: (values: T) => void,
): { set<K extends keyof T>(key: K, value: T[K]): void } {
  const values: Partial<T> = {};
  return {
    set(key, value) {
      values[key] = value;
      if (keys.every((k) => values[k] !== undefined)) render(values as T);
    },
  };
}
