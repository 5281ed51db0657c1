// The operation runner on pg-boss, in-process on both catalogs, with the probe handler: how fast
// an enqueued operation starts, long-polls that answer on every change, retries with backoff that
// resume from the recorded step, giving up with a clear error, and cancelling pending and running
// operations.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningControlPlane, startControlPlane } from "../../api/server.ts";
import { CATALOG_KINDS, createTestDatabaseUrl } from "../support/catalogs.ts";
import { probeHandler, readProbeLog, stepStarts } from "./probe.ts";
import {
  ADMIN_TOKEN,
  call,
  createProbeOperation,
  followOperation,
  prepareTenant,
  type Tenant,
  waitForOperation,
} from "./support.ts";

const STEPS = 4;
const STEP_MS = 400;
const MAX_ATTEMPTS = 3;

describe.each(CATALOG_KINDS)("operation runner on pg-boss (%s)", (kind) => {
  let dir: string;
  let log: string;
  let controlPlane: RunningControlPlane;
  let tenant: Tenant;
  const lines: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "globalvm-runner-"));
    log = join(dir, "probe.log");
    controlPlane = await startControlPlane({
      catalog: kind === "postgres" ? { databaseUrl: await createTestDatabaseUrl() } : { dataDir: dir },
      dataDir: dir,
      port: 0,
      adminToken: ADMIN_TOKEN,
      handlers: { "create-vm-group": probeHandler({ log, steps: STEPS, stepMs: STEP_MS }) },
      concurrency: 2,
      retry: { maxAttempts: MAX_ATTEMPTS, retryDelaySeconds: 1 },
      log: (line) => lines.push(line),
    });
    tenant = await prepareTenant(controlPlane.url);
  }, 120_000);

  afterAll(async () => {
    await controlPlane?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const url = () => controlPlane.url;
  const eventsOf = (op: string) => readProbeLog(log).filter((e) => e.op === op);

  it("starts an operation at once; ?wait answers on every change; progress never goes back", async () => {
    const created = await createProbeOperation(controlPlane.url, tenant, "plain-1");
    const seen = await followOperation(url(), tenant.token, created.id, 30_000);
    // From the operation's commit (its created_at) to the handler being called.
    const firstAttempt = eventsOf(created.id).find((e) => e.event === "attempt");
    const startedMs = (firstAttempt?.at ?? Number.NaN) - Date.parse(created.created_at);
    console.log(`[${kind}] enqueued → handler called after ${startedMs} ms`);
    expect(startedMs).toBeLessThan(1_000);
    const final = seen.at(-1)?.operation;
    expect(final).toMatchObject({ state: "succeeded", result: { steps: STEPS }, error: null });
    expect(final.progress).toMatchObject({ step: "done", bytes_done: STEPS * 1000 });
    // Every change answered a waiting long-poll: none waited out its 20 s, and the steps (each
    // STEP_MS apart) were all seen, in order. The last step and the end may come as one answer.
    expect(Math.max(...seen.map((s) => s.waitedMs))).toBeLessThan(5_000);
    const steps = seen.map((s) => s.operation.progress.step).filter((s, i, all) => s && s !== all[i - 1]);
    expect(steps.filter((s) => s !== "step-4")).toEqual(["step-1", "step-2", "step-3", "done"]);
    expect([...stepStarts(eventsOf(created.id)).values()]).toEqual([1, 1, 1, 1]);
  }, 60_000);

  it("retries a failing step with backoff and resumes from the last recorded step", async () => {
    const created = await createProbeOperation(controlPlane.url, tenant, "flaky-1");
    const seen = await followOperation(controlPlane.url, tenant.token, created.id, 60_000);
    expect(seen.at(-1)?.operation).toMatchObject({ state: "succeeded", error: null });
    // While it waited for its next attempt, the operation said why.
    expect(seen.map((s) => s.operation.error?.code)).toContain("retrying");
    const events = eventsOf(created.id);
    const attempts = events.filter((e) => e.event === "attempt");
    expect(attempts.map((e) => [e.attempt, e.step])).toEqual([
      [1, 0],
      [2, 1],
      [3, 1],
    ]);
    // Step 1 was done once: later attempts resumed after it. Step 2 ran on each attempt.
    const starts = stepStarts(events);
    expect([1, 2, 3, 4].map((step) => starts.get(`${created.id} ${step}`))).toEqual([1, 3, 1, 1]);
    // pg-boss's exponential backoff from 1 s: the first retry waits at least 1 s, the second 2 s.
    const failures = events.filter((e) => e.event === "fail").map((e) => e.at);
    const gaps = [1, 2].map((i) => (attempts[i]?.at ?? 0) - (failures[i - 1] ?? 0));
    console.log(`[${kind}] waits before retries: ${gaps.join(" ms, ")} ms`);
    expect(gaps[0]).toBeGreaterThanOrEqual(1_000);
    expect(gaps[1]).toBeGreaterThanOrEqual(2_000);
  }, 90_000);

  it("gives up after the last attempt with an error that says why", async () => {
    const created = await createProbeOperation(controlPlane.url, tenant, "doomed-1");
    const seen = await followOperation(controlPlane.url, tenant.token, created.id, 60_000);
    expect(seen.at(-1)?.operation).toMatchObject({
      state: "failed",
      error: {
        code: "gave_up",
        message: `gave up after ${MAX_ATTEMPTS} attempts: probe step 1 failed on attempt ${MAX_ATTEMPTS}`,
      },
    });
    const attempts = eventsOf(created.id).filter((e) => e.event === "attempt");
    expect(attempts.map((e) => e.attempt)).toEqual([1, 2, 3]);
  }, 90_000);

  it("cancels a pending operation before it runs and a running one at its next step", async () => {
    // Two workers: a and b keep both busy, so c waits in the queue.
    const a = await createProbeOperation(controlPlane.url, tenant, "cancel-a");
    const b = await createProbeOperation(controlPlane.url, tenant, "cancel-b");
    for (const op of [a, b]) {
      const running = await waitForOperation(
        url(),
        tenant.token,
        op.id,
        (o) => o.state === "running",
        10_000,
      );
      expect(running.state).toBe("running");
    }
    const c = await createProbeOperation(controlPlane.url, tenant, "cancel-c");
    const pending = await call(controlPlane.url, "GET", `/v1/operations/${c.id}`, tenant.token);
    expect(pending.body.state).toBe("pending");
    const cancelledPending = await call(
      controlPlane.url,
      "POST",
      `/v1/operations/${c.id}/cancel`,
      tenant.token,
    );
    expect(cancelledPending.body).toMatchObject({ state: "cancelled", done: true });

    const d = await createProbeOperation(controlPlane.url, tenant, "cancel-d");
    // Once d has done its first step, cancel it.
    const atStep1 = await waitForOperation(
      url(),
      tenant.token,
      d.id,
      (o) => o.progress.step === "step-1",
      30_000,
    );
    expect(atStep1.state).toBe("running");
    const cancelRunning = await call(controlPlane.url, "POST", `/v1/operations/${d.id}/cancel`, tenant.token);
    expect(cancelRunning.body.state).toBe("running");
    const ended = await followOperation(controlPlane.url, tenant.token, d.id, 30_000);
    expect(ended.at(-1)?.operation).toMatchObject({ state: "cancelled", error: { code: "cancelled" } });
    const dStarts = stepStarts(eventsOf(d.id));
    expect(dStarts.size).toBeLessThan(STEPS);

    // With the workers free again, c still never ran, and stays cancelled.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(eventsOf(c.id)).toEqual([]);
    const after = await call(controlPlane.url, "GET", `/v1/operations/${c.id}`, tenant.token);
    expect(after.body.state).toBe("cancelled");
  }, 90_000);
});
