// Kill -9 trials of flow 1 (an image uploaded to eu-west, a VM group created in us-east, the
// image pulled on demand and the guest booted): one process of the stack is killed at a random
// (seeded, printed) point and restarted on the same data dir, and every trial must converge —
// the operation succeeds, no chunk the target already stored crosses the network again, no VM
// exists twice, and the guest runs on the verified image, never on a partial one.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { uploadImage } from "../../client/upload.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { ensureGuestImage } from "../support/compute.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { type ChunkCounter, type ChunkRequest, startChunkCounter } from "./chunk-counter.ts";

export const SOURCE = "eu-west";
export const TARGET = "us-east";
export type FaultTarget = "control-plane" | typeof SOURCE | typeof TARGET;

/** Random bytes appended to the guest image per trial: the part that must cross the network. */
const TRIAL_RANDOM_BYTES = 8 << 20;

/** mulberry32: a small seeded generator, so a failing trial can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Digests asked of the source again although the target already held them. A chunk may be
 * asked again only when the earlier answer never reached its end (the source or the target
 * died mid-stream) or, when the target was killed, when it had not been sealed on disk by then.
 */
export function chunksSentAgain(
  requests: readonly ChunkRequest[],
  targetKill?: { at: number; storedAtKill: ReadonlySet<string> },
): string[] {
  const again: string[] = [];
  const last = new Map<string, ChunkRequest>();
  for (const request of [...requests].sort((a, b) => a.at - b.at)) {
    for (const digest of request.digests) {
      if (targetKill && request.at > targetKill.at && targetKill.storedAtKill.has(digest)) again.push(digest);
      const previous = last.get(digest);
      if (previous) {
        const lostWithTarget =
          targetKill !== undefined && previous.at <= targetKill.at && !targetKill.storedAtKill.has(digest);
        if (previous.completed && !lostWithTarget) again.push(digest);
      }
      last.set(digest, request);
    }
  }
  return [...new Set(again)];
}

export function argvOf(pid: string): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

function threadCountOf(pid: string): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * qemu processes of this stack, with the instance directory their overlay lives in. QEMU forks
 * for each guest connection to the metadata address (guestfwd runs the relay command through
 * glib, which forks twice, so the process that will exec the relay is reparented away from
 * QEMU). Until it execs, that process carries QEMU's own command line. A fork has one thread;
 * a running QEMU has several (RCU, vCPU, I/O), so a single-threaded one is not a VM.
 */
export function qemuProcessesUnder(dir: string): { pid: number; instanceDir: string }[] {
  const found: { pid: number; instanceDir: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = argvOf(entry);
    if (!argv[0]?.includes("qemu-system")) continue;
    if (threadCountOf(entry) < 2) continue;
    // The overlay's descriptor is labelled with its path (see command-line.ts).
    const label = argv.find((a) => a.includes(`opaque=${dir}/`) && a.endsWith("/overlay.qcow2"));
    if (!label) continue;
    const overlay = label.slice(label.indexOf("opaque=") + "opaque=".length, -"/overlay.qcow2".length);
    found.push({ pid: Number(entry), instanceDir: overlay });
  }
  return found;
}

export interface TrialOutcome {
  trial: number;
  phase: string;
  killAfterMs: number;
  totalMs: number;
  chunksAsked: number;
  uniqueChunks: number;
}

export interface FaultRun {
  stack: Stack;
  counter: ChunkCounter;
  seed: number;
  random: () => number;
  /** Reference durations from the clean warm-up run: the whole flow and the chunk transfer. */
  flowMs: number;
  transferMs: number;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function followOperation(stack: Stack, id: string, timeoutMs: number): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const { status, body } = await stack.call("GET", `/v1/operations/${id}?wait=5s`, stack.projectToken);
      last = body;
      if (status === 200 && body.done) return body;
    } catch {
      // The control plane is down for a moment (killed on purpose): ask again.
      await sleep(250);
    }
  }
  throw new Error(
    `operation ${id} did not finish within ${timeoutMs} ms; last seen: ${JSON.stringify(last)}\n${stack.logs()}`,
  );
}

function trialImage(dir: string, random: () => number, trial: number): { path: string; digest: string } {
  const tail = Buffer.allocUnsafe(TRIAL_RANDOM_BYTES);
  for (let at = 0; at < tail.length; at += 4) tail.writeUInt32LE(Math.floor(random() * 2 ** 32), at);
  // Bytes after the end of a qcow2 file are never read by QEMU: the guest boots the same.
  const data = Buffer.concat([readFileSync(ensureGuestImage()), tail]);
  const path = join(dir, `trial-${trial}.qcow2`);
  writeFileSync(path, data);
  return { path, digest: createHash("sha256").update(data).digest("hex") };
}

/** Uploads a fresh image to the source region; returns its id and whole digest. */
async function uploadTrialImage(run: FaultRun, trial: number) {
  const { stack } = run;
  const file = trialImage(stack.dir, run.random, trial);
  const image = await stack.call("POST", "/v1/images", stack.projectToken, {
    name: `trial-${trial}`,
    origin_region: SOURCE,
    format: "qcow2",
  });
  if (image.status !== 201) throw new Error(`image: ${image.status} ${JSON.stringify(image.body)}`);
  await uploadImage({
    path: file.path,
    // Straight to the manager: the ticket names the counting proxy, which only needs to see pulls.
    managerUrl: stack.managerUrls[SOURCE] as string,
    token: image.body.upload.token,
    imageId: image.body.id,
    version: 1,
    format: "qcow2",
  });
  rmSync(file.path);
  return { id: image.body.id as string, digest: file.digest };
}

async function createGroup(run: FaultRun, trial: number, imageId: string) {
  const created = await run.stack.call(
    "POST",
    "/v1/vm-groups",
    run.stack.projectToken,
    {
      name: `trial-${trial}`,
      image: imageId,
      region: TARGET,
      size: 1,
      machine: { vcpus: 1, memory_mb: 160 },
    },
    { "idempotency-key": `trial-${trial}` },
  );
  if (created.status !== 202) throw new Error(`vm group: ${created.status} ${JSON.stringify(created.body)}`);
  return { operation: created.body.id as string, group: created.body.target.id as string };
}

export async function startFaultRun(name: string): Promise<FaultRun> {
  const seed = Number(process.env.GLOBALVM_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`[faults ${name}] seed ${seed} (replay with GLOBALVM_FAULT_SEED=${seed})`);
  let controlPlane = "";
  const counter = await startChunkCounter(() => controlPlane);
  const stack = await startStack({
    // Short: the guests' sockets live under the stack's directory (a unix path is ≤ 107 bytes).
    name: `f-${name}`,
    regions: [SOURCE, TARGET],
    controlPlaneFor: (region, url) => {
      controlPlane = url;
      return region === SOURCE ? counter.controlPlaneUrl : url;
    },
  });
  const run: FaultRun = {
    stack,
    counter,
    seed,
    random: seededRandom(seed),
    flowMs: 0,
    transferMs: 0,
    async stop() {
      await stack.stop();
      await counter.close();
    },
  };
  try {
    await warmUp(run, name);
  } catch (error) {
    await run.stop();
    throw error;
  }
  return run;
}

/**
 * A clean run first: the target then holds the guest image's chunks (only each trial's random
 * tail moves afterwards), and its durations bound where the kills fall.
 */
async function warmUp(run: FaultRun, name: string) {
  const { stack, counter } = run;
  const image = await uploadTrialImage(run, 0);
  const started = Date.now();
  const { operation, group } = await createGroup(run, 0, image.id);
  const done = await followOperation(stack, operation, 300_000);
  if (done.state !== "succeeded") throw new Error(`warm-up run ${done.state}: ${JSON.stringify(done.error)}`);
  run.flowMs = Date.now() - started;
  const asked = counter.requests.filter((r) => r.imageId === image.id);
  const firstAsked = Math.min(...asked.map((r) => r.at));
  run.transferMs = Math.max(200, ...asked.map((r) => (r.endedAt ?? r.at) - firstAsked));
  await deleteGroup(run, group);
  console.log(`[faults ${name}] clean flow ${run.flowMs} ms, chunk transfer ${run.transferMs} ms`);
}

async function deleteGroup(run: FaultRun, group: string) {
  const removal = await run.stack.call("DELETE", `/v1/vm-groups/${group}`, run.stack.projectToken);
  if (removal.status !== 202) throw new Error(`delete: ${removal.status} ${JSON.stringify(removal.body)}`);
  const done = await followOperation(run.stack, removal.body.id, 120_000);
  if (done.state !== "succeeded") throw new Error(`delete ${done.state}: ${JSON.stringify(done.error)}`);
}

function storedDigests(dataDir: string): Promise<Set<string>> {
  return ImageStore.open(join(dataDir, "store")).then(async (store) => {
    const digests = new Set(store.chunks.digests());
    await store.close();
    return digests;
  });
}

/** The backing file of a running instance's overlay (qemu-img reads it while qemu holds it). */
function backingFileOf(instanceDir: string): string {
  const info = JSON.parse(
    execFileSync("qemu-img", ["info", "-U", "--output=json", join(instanceDir, "overlay.qcow2")], {
      encoding: "utf8",
    }),
  ) as { "full-backing-filename"?: string; "backing-filename"?: string };
  return info["full-backing-filename"] ?? info["backing-filename"] ?? "";
}

async function targetReplicaWhenAvailable(stack: Stack, imageId: string, timeoutMs: number): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const replicas = (await stack.call("GET", `/v1/images/${imageId}`, stack.projectToken)).body.replicas;
    const replica = replicas.find((r: any) => r.datacenter === `${TARGET}-a`);
    if (replica?.state === "available" || Date.now() > deadline) return replica;
    await sleep(500);
  }
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * One trial: a fresh image, a group of one in the target region, `victim` killed at a seeded
 * point and restarted; returns what was measured, throws with the reason when it did not converge.
 */
export async function runTrial(run: FaultRun, trial: number, victim: FaultTarget): Promise<TrialOutcome> {
  const { stack, counter } = run;
  const image = await uploadTrialImage(run, trial);
  // Half the kills fall inside the chunk transfer, the others anywhere in the flow.
  let phase = run.random() < 0.5 ? "transfer" : "flow";
  let killAfterMs = Math.floor(run.random() * (phase === "transfer" ? run.transferMs : run.flowMs));
  // GLOBALVM_FAULT_KILL_MS=120 puts trial n's kill at 120 + 2n ms into the transfer: a narrow
  // window, trial after trial, to replay a failure seen there.
  const pinned = Number(process.env.GLOBALVM_FAULT_KILL_MS);
  if (pinned > 0) {
    phase = "transfer";
    killAfterMs = pinned + 2 * trial;
  }
  console.log(`[faults] trial ${trial}: kill ${victim} ${killAfterMs} ms into the ${phase}`);
  const started = Date.now();
  const { operation, group } = await createGroup(run, trial, image.id);
  if (phase === "transfer") {
    const deadline = Date.now() + 120_000;
    while (!counter.requests.some((r) => r.imageId === image.id) && Date.now() < deadline) await sleep(20);
  }
  await sleep(killAfterMs);
  const killedAt = Date.now();
  await stack.kill(victim);
  const storedAtKill = victim === TARGET ? await storedDigests(join(stack.dir, `${TARGET}-a`)) : undefined;
  await stack.restart(victim);

  try {
    return await checkTrial(run, trial, victim, {
      image,
      phase,
      killAfterMs,
      started,
      operation,
      group,
      killedAt,
      storedAtKill,
    });
  } catch (error) {
    // Leave the stack clean for the next trial: one failure must not fail the rest.
    await deleteGroup(run, group).catch(() => {});
    throw error;
  }
}

async function checkTrial(
  run: FaultRun,
  trial: number,
  victim: FaultTarget,
  at: {
    image: { id: string; digest: string };
    phase: string;
    killAfterMs: number;
    started: number;
    operation: string;
    group: string;
    killedAt: number;
    storedAtKill: Set<string> | undefined;
  },
): Promise<TrialOutcome> {
  const { stack, counter } = run;
  const { image, phase, killAfterMs, started, operation, group, killedAt, storedAtKill } = at;
  const done = await followOperation(stack, operation, 240_000);
  const describe = `trial ${trial} (kill ${victim} ${killAfterMs} ms into ${phase}, seed ${run.seed})`;
  if (done.state !== "succeeded") {
    throw new Error(`${describe}: operation ${done.state}: ${JSON.stringify(done.error)}\n${stack.logs()}`);
  }

  const asked = counter.requests.filter((r) => r.imageId === image.id);
  const again = chunksSentAgain(asked, storedAtKill ? { at: killedAt, storedAtKill } : undefined);
  if (again.length > 0) throw new Error(`${describe}: ${again.length} stored chunks were sent again`);
  if (asked.length === 0) throw new Error(`${describe}: no chunk of the new image was asked of the source`);

  const members = (await stack.call("GET", `/v1/vm-groups/${group}/instances`, stack.projectToken)).body
    .items;
  if (members.length !== 1 || members[0].state !== "ready") {
    throw new Error(`${describe}: instances ${JSON.stringify(members.map((m: any) => [m.name, m.state]))}`);
  }
  const instanceId = members[0].id as string;
  const qemu = qemuProcessesUnder(stack.dir);
  if (qemu.length !== 1 || !qemu[0]?.instanceDir.endsWith(instanceId)) {
    throw new Error(
      `${describe}: qemu processes ${JSON.stringify(qemu)} for instance ${instanceId}\n${stack.logs()}`,
    );
  }

  // The guest's disk is backed by the image registered under the target's local ID, whose bytes
  // hash to the uploaded image's digest: a partial or unverified image cannot be under it.
  // A report sent while the control plane was down is lost; the control plane asks the manager
  // again for replicas left "transferring" (datacenter-watch.ts), so the catalog catches up.
  const targetReplica = await targetReplicaWhenAvailable(stack, image.id, 30_000);
  if (targetReplica?.state !== "available")
    throw new Error(`${describe}: target replica ${JSON.stringify(targetReplica)}`);
  const backing = backingFileOf(qemu[0].instanceDir);
  if (!backing.endsWith(`/images/${targetReplica.local_id}.img`)) {
    throw new Error(`${describe}: the guest boots ${backing}, not the replica ${targetReplica.local_id}`);
  }
  if (sha256File(backing) !== image.digest) throw new Error(`${describe}: the booted image's digest differs`);

  await deleteGroup(run, group);
  if (qemuProcessesUnder(stack.dir).length !== 0)
    throw new Error(`${describe}: a qemu process outlived its group`);
  return {
    trial,
    phase,
    killAfterMs,
    totalMs: Date.now() - started,
    chunksAsked: asked.reduce((n, r) => n + r.digests.length, 0),
    uniqueChunks: new Set(asked.flatMap((r) => r.digests)).size,
  };
}
