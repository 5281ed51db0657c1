// Following operations and conditions on a running stack (the end-to-end tests), and looking at
// which datacenters hold which image versions (replication, image updates).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Stack } from "./stack.ts";

/** A replica as `datacenter@version:state`, sorted, so a test can compare where an image is held. */
export const heldBy = (image: any) =>
  image.replicas.map((r: any) => `${r.datacenter}@${r.version}:${r.state}`).sort() as string[];

/**
 * Long-polls an operation until it is done. When it is not done in time, the error shows its
 * last state, what `diagnose` adds about it (say, the instances of its VM group), and the
 * stack's logs.
 */
export async function waitForStackOperation(
  stack: Stack,
  id: string,
  timeoutMs: number,
  diagnose: (last: unknown) => Promise<string[]> = async () => [],
) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const { body } = await stack.call("GET", `/v1/operations/${id}?wait=10s`, stack.projectToken);
    if (body.done) return body;
    last = body;
  }
  const details = await diagnose(last);
  throw new Error(
    `operation ${id} did not finish in ${timeoutMs} ms: ${JSON.stringify(last)}\n${details.join("\n")}\n${stack.logs()}`,
  );
}

/**
 * Probes bound to the stack a test file starts in `beforeAll` (hence a getter: the stack does not
 * exist yet when the file's top level runs). Failures carry the stack's logs.
 */
export function stackProbes(getStack: () => Stack, options: { operationTimeoutMs: number }) {
  /** Long-polls an operation until it is done. */
  function waitForOperation(id: string, timeoutMs = options.operationTimeoutMs) {
    return waitForStackOperation(getStack(), id, timeoutMs);
  }

  /** Checks every half second until `check` gives a value. */
  async function waitUntil<T>(
    what: string,
    check: () => Promise<T | undefined>,
    timeoutMs = 60_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const value = await check();
      if (value !== undefined) return value;
      await sleep(500);
    }
    throw new Error(`timed out waiting until ${what}:\n${getStack().logs()}`);
  }

  async function imageOf(id: string) {
    const stack = getStack();
    return (await stack.call("GET", `/v1/images/${id}`, stack.projectToken)).body;
  }

  /** Whether a datacenter's manager stores the version (its record and its assembled image file). */
  function storeHolds(datacenter: string, imageId: string, version: number): boolean {
    return existsSync(join(getStack().dir, datacenter, "store", "versions", imageId, `${version}.json`));
  }

  return { waitForOperation, waitUntil, imageOf, storeHolds };
}
