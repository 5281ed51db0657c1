// A control plane killed with SIGKILL in the middle of an operation resumes it once it is
// started again: on PGlite on the same data dir, on Postgres on the same database. Steps the
// catalog recorded as done before the kill are not run again; bytes never go backwards.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CATALOG_KINDS, createTestDatabaseUrl } from "../support/catalogs.ts";
import { readProbeLog, stepStarts } from "./probe.ts";
import {
  createProbeOperation,
  followOperation,
  type ProbeProcess,
  prepareTenant,
  startProbeProcess,
  waitForOperation,
} from "./support.ts";

const STEPS = 4;

describe.each(CATALOG_KINDS)("a control plane killed mid-operation (%s)", (kind) => {
  const dir = mkdtempSync(join(tmpdir(), "globalvm-kill-"));
  const log = join(dir, "probe.log");
  let current: ProbeProcess | undefined;
  afterAll(async () => {
    await current?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("resumes the operation after a restart, without redoing the recorded steps", async () => {
    const env: Record<string, string> = {
      PROBE_LOG: log,
      PROBE_STEPS: String(STEPS),
      PROBE_STEP_MS: "1500",
      ...(kind === "postgres" ? { DATABASE_URL: await createTestDatabaseUrl() } : { PROBE_DATA_DIR: dir }),
    };
    current = await startProbeProcess(env);
    const first = current;
    const tenant = await prepareTenant(first.url);
    const created = await createProbeOperation(first.url, tenant, "plain-killed");

    const atStep2 = await waitForOperation(
      first.url,
      tenant.token,
      created.id,
      (o) => o.progress.step === "step-2",
      30_000,
    );
    expect(atStep2.state).toBe("running");
    await first.kill();
    const killedAt = Date.now();
    const pidBefore = first.child.pid;

    current = await startProbeProcess(env);
    const seen = await followOperation(current.url, tenant.token, created.id, 90_000);
    expect(seen.at(-1)?.operation).toMatchObject({
      state: "succeeded",
      progress: { step: "done", bytes_done: STEPS * 1000 },
    });

    const events = readProbeLog(log).filter((e) => e.op === created.id);
    const resumed = events.find((e) => e.event === "attempt" && e.pid !== pidBefore);
    expect(resumed?.step).toBeGreaterThanOrEqual(2);
    console.log(
      `[${kind}] resumed ${(resumed?.at ?? Number.NaN) - killedAt} ms after the kill (restart included)`,
    );
    const starts = stepStarts(events);
    // Steps 1 and 2 were recorded before the kill: run once. Step 3 may have been in flight.
    expect(starts.get(`${created.id} 1`)).toBe(1);
    expect(starts.get(`${created.id} 2`)).toBe(1);
    expect(starts.get(`${created.id} 4`)).toBe(1);
    expect(events.filter((e) => e.event === "done" && e.pid !== pidBefore).map((e) => e.step)).toContain(
      STEPS,
    );
  }, 240_000);

  it("fails the operation with a clear error when its last attempt dies with the process", async () => {
    const lastDir = mkdtempSync(join(dir, "last-"));
    const env: Record<string, string> = {
      PROBE_LOG: log,
      PROBE_STEPS: String(STEPS),
      PROBE_STEP_MS: "1500",
      PROBE_MAX_ATTEMPTS: "1",
      ...(kind === "postgres"
        ? { DATABASE_URL: await createTestDatabaseUrl() }
        : { PROBE_DATA_DIR: lastDir }),
    };
    await current?.stop();
    current = await startProbeProcess(env);
    const tenant = await prepareTenant(current.url);
    const created = await createProbeOperation(current.url, tenant, "plain-last-attempt");
    await waitForOperation(
      current.url,
      tenant.token,
      created.id,
      (o) => o.progress.step === "step-1",
      30_000,
    );
    await current.kill();

    current = await startProbeProcess(env);
    const seen = await followOperation(current.url, tenant.token, created.id, 90_000);
    // PGlite fails the dead attempt over at start; Postgres finds it by its missed heartbeat.
    const reason = kind === "pglite" ? "the control plane running it stopped" : "job heartbeat timeout";
    expect(seen.at(-1)?.operation).toMatchObject({
      state: "failed",
      error: { code: "gave_up", message: `gave up after 1 attempt: ${reason}` },
    });
    expect(readProbeLog(log).filter((e) => e.op === created.id && e.event === "attempt")).toHaveLength(1);
  }, 240_000);
});
