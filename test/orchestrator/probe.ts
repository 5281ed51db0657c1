// A test-only operation handler that does what handlers do (numbered steps, each recorded as
// progress, resumed from the last step the catalog holds) and writes every step it starts to a
// log file, so a test can count how often each step of each operation ran and in which process.
// What it does is chosen by the VM group's name: `flaky…` fails step 2 on its first two
// attempts, `doomed…` fails step 1 on every attempt; anything else just runs its steps.
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { eq } from "drizzle-orm";
import { vmGroups } from "../../api/catalog/schema.ts";
import type { OperationHandler } from "../../api/orchestrator/runner.ts";

export interface ProbeOptions {
  log: string;
  steps: number;
  stepMs: number;
}

export interface ProbeEvent {
  event: "attempt" | "start" | "done" | "fail";
  op: string;
  name: string;
  step: number;
  attempt: number;
  pid: number;
  at: number;
}

export function probeHandler(options: ProbeOptions): OperationHandler {
  return async (context) => {
    const { operation } = context;
    const [group] = await context.services.db
      .select({ name: vmGroups.name })
      .from(vmGroups)
      .where(eq(vmGroups.id, operation.targetId));
    const name = group?.name ?? "";
    const attempt = operation.attempts;
    const record = (event: ProbeEvent["event"], step: number) => {
      const line: ProbeEvent = {
        event,
        op: operation.id,
        name,
        step,
        attempt,
        pid: process.pid,
        at: Date.now(),
      };
      appendFileSync(options.log, `${JSON.stringify(line)}\n`);
    };
    const stepsDone = Number(/^step-(\d+)$/.exec(operation.progress.step ?? "")?.[1] ?? 0);
    record("attempt", stepsDone);
    for (let step = stepsDone + 1; step <= options.steps; step++) {
      await context.checkCancelled();
      record("start", step);
      await context.sleep(options.stepMs);
      const fails = name.startsWith("doomed") || (name.startsWith("flaky") && step === 2 && attempt <= 2);
      if (fails) {
        record("fail", step);
        throw new Error(`probe step ${step} failed on attempt ${attempt}`);
      }
      await context.progress({
        step: `step-${step}`,
        bytes_done: step * 1000,
        bytes_total: options.steps * 1000,
      });
      record("done", step);
    }
    return { steps: options.steps };
  };
}

export function readProbeLog(log: string): ProbeEvent[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as ProbeEvent);
}

/** How many times each step of each operation was started: `${op} ${step}` → count. */
export function stepStarts(events: ProbeEvent[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of events.filter((e) => e.event === "start")) {
    const key = `${e.op} ${e.step}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
