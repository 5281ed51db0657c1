// Two control-plane processes on one Postgres database share the operations: each step of each
// operation runs exactly once, whichever process the operation was created through.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabaseUrl } from "../support/catalogs.ts";
import { readProbeLog, stepStarts } from "./probe.ts";
import {
  createProbeOperation,
  followOperation,
  type ProbeProcess,
  prepareTenant,
  startProbeProcess,
} from "./support.ts";

const STEPS = 3;
const OPERATIONS = 8;

describe("two control planes on one Postgres", () => {
  const dir = mkdtempSync(join(tmpdir(), "globalvm-two-"));
  const log = join(dir, "probe.log");
  const processes: ProbeProcess[] = [];
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("never run the same step twice", async () => {
    const env = {
      DATABASE_URL: await createTestDatabaseUrl(),
      PROBE_LOG: log,
      PROBE_STEPS: String(STEPS),
      PROBE_STEP_MS: "300",
      PROBE_CONCURRENCY: "2",
    };
    processes.push(await startProbeProcess(env));
    const [a] = processes as [ProbeProcess];
    const tenant = await prepareTenant(a.url);
    processes.push(await startProbeProcess(env));
    const urls = processes.map((p) => p.url);

    const created = [];
    for (let i = 0; i < OPERATIONS; i++) {
      created.push(await createProbeOperation(urls[i % 2] as string, tenant, `plain-${i}`));
    }
    // Followed through the other process than the one each was created through.
    const ended = await Promise.all(
      created.map((op, i) => followOperation(urls[(i + 1) % 2] as string, tenant.token, op.id, 90_000)),
    );
    expect(ended.map((seen) => seen.at(-1)?.operation.state)).toEqual(Array(OPERATIONS).fill("succeeded"));

    const events = readProbeLog(log);
    const starts = stepStarts(events);
    expect(starts.size).toBe(OPERATIONS * STEPS);
    expect([...starts.values()].every((count) => count === 1)).toBe(true);
    // Both processes did part of the work.
    const pids = new Set(events.filter((e) => e.event === "attempt").map((e) => e.pid));
    expect(pids).toEqual(new Set(processes.map((p) => p.child.pid)));
  }, 240_000);
});
