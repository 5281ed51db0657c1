// Kill -9 trials in a datacenter of three host agents (issue #17): while a VM group of three is
// being created, the manager or one host agent is killed at a random (seeded, printed) point and
// restarted after a short random pause. Every trial must converge: the create succeeds, the
// group is ready with exactly its size of ready instances, distinct ordinals, and each instance
// runs exactly one QEMU guest on this machine (a killed agent's guests keep running until it
// returns and removes the stale ones: a bounded wait), and none once the group is deleted.
import { cpSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../support/stack.ts";
import { createGuestImage, type InstanceView, listInstances } from "../support/vm-groups.ts";
import {
  assignedHosts,
  followOperation,
  freePort,
  guestCounts,
  logLinesAbout,
  untilGuestsAre,
} from "./host-trials.ts";
import { seededRandom } from "./trials.ts";

const REGION = "eu-west";
const DC = `${REGION}-a`;
const HOSTS = ["host-1", "host-2", "host-3"];
const SIZE = 3;
const MACHINE = { vcpus: 1, memory_mb: 96 };
/** Manager and agent kills alternate: three of each. */
const VICTIMS = ["manager", "agent", "manager", "agent", "manager", "agent"] as const;
/** How long a killed agent's stale guest, or a deleted group's guest, may take to go. */
const GUESTS_SETTLE_MS = 30_000;
const CREATE_TIMEOUT_MS = 150_000;

interface HostTrialOutcome {
  trial: number;
  killed: string;
  atMs: number;
  pauseMs: number;
  /** From the kill until the create had succeeded and every instance was listed ready. */
  convergedAfterMs: number;
  /** From the operation's success until every instance ran exactly one guest. */
  singleGuestAfterMs: number;
  /** Hosts of the instances once converged. */
  hosts: string[];
  deleteMs: number;
}

let stack: Stack;
let seed: number;
let random: () => number;
let imageId: string;
/** The clean create's duration: kills fall within it. */
let flowMs = 0;
const outcomes: HostTrialOutcome[] = [];
/** The host the control plane lists an instance on (null while its manager reports none). */
const hostOf = (instance: InstanceView) => (instance as InstanceView & { host: string | null }).host;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function hostsUp(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const answer = await stack.call("GET", `/v1/datacenters/${DC}/hosts`, stack.adminToken);
    if (answer.status === 200 && answer.body.items.filter((h: any) => h.state === "up").length === 3) return;
    await sleep(500);
  }
  throw new Error(`the three hosts are not up after ${timeoutMs} ms\n${stack.logs()}`);
}

async function createGroup(name: string): Promise<{ operation: string; group: string }> {
  const created = await stack.call(
    "POST",
    "/v1/vm-groups",
    stack.projectToken,
    { name, image: imageId, region: REGION, size: SIZE, machine: MACHINE },
    { "idempotency-key": `fh-${seed}-${name}` },
  );
  if (created.status !== 202) throw new Error(`vm group: ${created.status} ${JSON.stringify(created.body)}`);
  return { operation: created.body.id as string, group: created.body.target.id as string };
}

async function deleteGroup(group: string): Promise<void> {
  const removal = await stack.call("DELETE", `/v1/vm-groups/${group}`, stack.projectToken);
  if (removal.status !== 202) throw new Error(`delete: ${removal.status} ${JSON.stringify(removal.body)}`);
  const done = await followOperation(stack, removal.body.id, 120_000);
  if (done.state !== "succeeded") throw new Error(`delete ${done.state}: ${JSON.stringify(done.error)}`);
}

beforeAll(async () => {
  seed = Number(process.env.GLOBALVM_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
  random = seededRandom(seed);
  console.log(`[faults hosts] seed ${seed} (replay with GLOBALVM_FAULT_SEED=${seed})`);
  // The agents keep the manager URL they were started with: a restarted manager takes it again.
  const port = await freePort();
  stack = await startStack({
    // Short: guests' unix sockets live under the stack's directory (a path is ≤ 107 bytes).
    name: "fh",
    regions: [REGION],
    hostsPerRegion: HOSTS.length,
    hostArgs: () => ["--vcpus", "4", "--memory-mb", "1024"],
    managerArgs: () => ["--port", String(port)],
    // A killed agent is down after 6 s without a sync (it long-polls 2 s at a time).
    env: { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000", GLOBALVM_HOST_DOWN_AFTER_MS: "6000" },
  });
  await hostsUp(60_000);
  imageId = await createGuestImage(stack, "guest", REGION);
  // A clean create first: every host caches the image, and its duration bounds the kill points.
  const started = Date.now();
  const { operation, group } = await createGroup("warm");
  const done = await followOperation(stack, operation, CREATE_TIMEOUT_MS);
  if (done.state !== "succeeded")
    throw new Error(`warm-up create ${done.state}: ${JSON.stringify(done.error)}`);
  flowMs = Date.now() - started;
  const ids = (await listInstances(stack, group)).map((i) => i.id);
  await untilGuestsAre(ids, 1, GUESTS_SETTLE_MS);
  await deleteGroup(group);
  await untilGuestsAre(ids, 0, GUESTS_SETTLE_MS);
  console.log(`[faults hosts] clean create of ${SIZE} instances: ${flowMs} ms`);
}, 240_000);

afterAll(async () => {
  console.log(`[faults hosts] seed ${seed}: ${JSON.stringify(outcomes)}`);
  // For a look at a failed run after the stack's directory is gone.
  const keep = process.env.GLOBALVM_FAULT_KEEP_LOGS;
  if (keep && stack) cpSync(stack.logsDir, keep, { recursive: true });
  await stack?.stop();
});

async function runTrial(trial: number, kind: "manager" | "agent"): Promise<HostTrialOutcome> {
  await hostsUp(30_000);
  const atMs = Math.floor(random() * flowMs);
  // Up to 5 s down: with a sync every ≤ 2 s and 6 s to be called down, some agent kills outlast
  // the host's down time (its instances are recreated elsewhere) and some do not.
  const pauseMs = Math.floor(random() * (kind === "agent" ? 5000 : 2000));
  const pick = random();
  const name = `t${trial}`;
  const { operation, group } = await createGroup(name);
  await sleep(atMs);
  let victim: string = REGION;
  if (kind === "agent") {
    // The host that runs, or will run, an instance of the group; any host when none has one yet.
    const assigned = assignedHosts(stack, DC);
    const candidates = assigned.length > 0 ? assigned : HOSTS;
    victim = `${REGION}/${candidates[Math.floor(pick * candidates.length)]}`;
  }
  const label = `trial ${trial} (kill ${victim} ${atMs} ms into the create, down ${pauseMs} ms, seed ${seed})`;
  console.log(`[faults hosts] ${label}`);
  const killedAt = Date.now();
  await stack.kill(victim);
  await sleep(pauseMs);
  await stack.restart(victim);

  let ids: string[] = [];
  try {
    const done = await followOperation(stack, operation, CREATE_TIMEOUT_MS).catch((error: Error) => {
      throw new Error(`${label}: ${error.message}\n${logLinesAbout(stack, [group, operation])}`);
    });
    if (done.state !== "succeeded") {
      throw new Error(
        `${label}: create ${done.state}: ${JSON.stringify(done.error)}\n${logLinesAbout(stack, [group, operation, "stopped syncing"])}`,
      );
    }
    const view = await stack.call("GET", `/v1/vm-groups/${group}`, stack.projectToken);
    // A manager killed after the create succeeded leaves its instances `unknown` while its
    // datacenter is down, and `starting` until their hosts sync again: for a moment, never
    // `failed`.
    let members = await listInstances(stack, group);
    const readyBy = Date.now() + 20_000;
    while (members.some((m) => m.state !== "ready") && Date.now() < readyBy) {
      const failed = members.find((m) => m.state === "failed");
      if (failed) throw new Error(`${label}: failed after the create succeeded: ${JSON.stringify(failed)}`);
      await sleep(500);
      members = await listInstances(stack, group);
    }
    const convergedAt = Date.now();
    ids = members.map((m) => m.id);
    const seen = members.map((m) => `${m.name} ${m.id} ${m.state} #${m.ordinal} ${hostOf(m)}`);
    if (view.body.state !== "ready") throw new Error(`${label}: group ${view.body.state}; ${seen}`);
    if (members.length !== SIZE || members.some((m) => m.state !== "ready"))
      throw new Error(`${label}: instances ${JSON.stringify(seen)}`);
    if (new Set(members.map((m) => m.ordinal)).size !== SIZE)
      throw new Error(`${label}: ordinals repeat: ${JSON.stringify(seen)}`);

    // A stale guest of a killed agent goes once it is back; a duplicate that stays fails.
    const singleGuestAfterMs = await untilGuestsAre(ids, 1, GUESTS_SETTLE_MS).catch((error: Error) => {
      throw new Error(`${label}: ${error.message}\n${logLinesAbout(stack, ids)}`);
    });
    await sleep(2000);
    const counts = guestCounts(ids);
    for (const member of members) {
      const guests = counts[member.id] ?? [];
      if (guests.length !== 1)
        throw new Error(`${label}: ${member.id} runs ${guests.length} guests: ${JSON.stringify(guests)}`);
      // The one guest runs on the host the control plane names.
      const host = hostOf(member);
      if (!host || !guests[0]?.overlay?.includes(`/${DC}-${host}/`))
        throw new Error(`${label}: ${member.id} listed on ${host}, its guest is ${guests[0]?.overlay}`);
    }

    const deleting = Date.now();
    await deleteGroup(group);
    await untilGuestsAre(ids, 0, GUESTS_SETTLE_MS).catch((error: Error) => {
      throw new Error(`${label}: after the delete, ${error.message}\n${logLinesAbout(stack, ids)}`);
    });
    return {
      trial,
      killed: victim,
      atMs,
      pauseMs,
      convergedAfterMs: convergedAt - killedAt,
      singleGuestAfterMs,
      hosts: members.map((m) => hostOf(m) as string),
      deleteMs: Date.now() - deleting,
    };
  } catch (error) {
    // Leave the stack clean for the next trial: one failure must not fail the rest.
    await deleteGroup(group).catch(() => {});
    if (ids.length > 0) await untilGuestsAre(ids, 0, GUESTS_SETTLE_MS).catch(() => {});
    throw error;
  }
}

describe("kill -9 of the manager or a host agent while a VM group is created", () => {
  VICTIMS.forEach((kind, index) => {
    const trial = index + 1;
    it(`trial ${trial} (${kind}) converges with one guest per instance`, async () => {
      const outcome = await runTrial(trial, kind);
      outcomes.push(outcome);
      console.log(`[faults hosts] ${JSON.stringify(outcome)}`);
      expect(outcome.hosts).toHaveLength(SIZE);
    }, 240_000);
  });
});
