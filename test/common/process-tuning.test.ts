import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const TUNING = join(import.meta.dirname, "../../common/process-tuning.ts");

/*
 * What a manager's heap meets while it receives an upload: a few MB of live objects, and a
 * fresh 64 KiB buffer outside the heap for every piece of the body, each dropped at once.
 * Prints the number of full (major) collections that 1 GiB of such pieces caused.
 */
const CHURN = `
const { PerformanceObserver, constants } = require("node:perf_hooks");
globalThis.live = Array.from({ length: 200000 }, (_, i) => ({ i, s: "x" + i }));
let majors = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
}).observe({ entryTypes: ["gc"] });
(async () => {
  if (process.argv[1]) await import(process.argv[1]);
  for (let i = 0; i < 16384; i++) {
    Buffer.allocUnsafeSlow(65536)[0] = i;
    if (i % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  console.log(majors);
})();
`;

async function majorCollections(importing?: string): Promise<number> {
  const { stdout } = await run(process.execPath, ["-e", CHURN, ...(importing ? [importing] : [])]);
  return Number(stdout.trim());
}

describe("process tuning of the processes that serve images", () => {
  it("sets libuv's thread pool unless the user did", async () => {
    const script = `import(process.argv[1]).then(() => console.log(process.env.UV_THREADPOOL_SIZE))`;
    const { stdout: ours } = await run(process.execPath, ["-e", script, TUNING]);
    expect(ours.trim()).toBe("16");
    const { stdout: theirs } = await run(process.execPath, ["-e", script, TUNING], {
      env: { ...process.env, UV_THREADPOOL_SIZE: "6" },
    });
    expect(theirs.trim()).toBe("6");
  });

  it("keeps short-lived buffers outside the heap from forcing a full collection every few MiB", async () => {
    const untuned = await majorCollections();
    const tuned = await majorCollections(TUNING);
    // Measured here: 15 untuned, 1-2 tuned.
    expect(untuned).toBeGreaterThanOrEqual(8);
    expect(tuned).toBeLessThanOrEqual(untuned / 3);
  });
});
