// Flow 1 survives kill -9 of the target manager at random (seeded, printed) points: see trials.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultRun, runTrial, startFaultRun, TARGET, type TrialOutcome } from "./trials.ts";

const TRIALS = 10;
let run: FaultRun;
const outcomes: TrialOutcome[] = [];

beforeAll(async () => {
  run = await startFaultRun("tgt");
}, 400_000);

afterAll(async () => {
  console.log(`[faults target-manager] ${JSON.stringify(outcomes)}`);
  await run?.stop();
});

describe("kill -9 of the target manager during flow 1", () => {
  for (let trial = 1; trial <= TRIALS; trial++) {
    it(`trial ${trial} converges`, async () => {
      const outcome = await runTrial(run, trial, TARGET);
      outcomes.push(outcome);
      console.log(`[faults] ${JSON.stringify(outcome)}`);
      expect(outcome.uniqueChunks).toBeGreaterThan(0);
    }, 300_000);
  }
});
