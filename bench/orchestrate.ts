// npm run bench:orchestrate — what the orchestrator adds to starting VMs where their image is not.
//
// 1. A 64 MiB image (the guest image with seeded random bytes after it, so it still boots) is
//    uploaded to eu-west of a real stack (control plane + one manager per region, each its own
//    process). Timed: POST /v1/vm-groups (size 1, us-east) → the operation succeeded with its
//    instance ready. Against the sum of its parts measured in the same run on the same machine:
//    a bare transfer of the same image between two managers (the transfer service alone, the
//    pull asked directly with a signed token) + a bare boot of one guest from that image (the
//    compute driver alone: create, start, until the guest says it is ready). Target ≤ 1.3×.
// 2. BENCH_ORCHESTRATE_GROUPS (default 50) VM groups of size 1 created at once across the
//    three regions (small guests, the image already in each region): the time until all ready.
//
// 3. A datacenter of three host agents: many instances at once against the same boots by hand,
//    and the time to heal after a host is killed (bench/orchestrate-hosts.ts).
//
// Part 1 runs BENCH_ORCHESTRATE_RUNS times (default 3), each with an image of its own (other
// seeded bytes, so us-east lacks every one), and prints medians.
//
// Environment: BENCH_ORCHESTRATE_GROUPS, BENCH_ORCHESTRATE_MEMORY_MB (default 96),
// BENCH_ORCHESTRATE_RUNS, BENCH_HOSTS_INSTANCES (default 60), BENCH_ORCHESTRATE_PARTS (default
// "regions,hosts": either alone runs only that). Run it on a quiet machine: every figure is wall time.
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { uploadImage } from "../client/upload.ts";
import { createComputeDriver } from "../regional-manager/compute/index.ts";
import { MetadataService } from "../regional-manager/metadata/index.ts";
import {
  ensureGuestImage,
  guestSpec,
  PROBE_CACHE,
  PROBE_GUEST,
  waitForState,
} from "../test/support/compute.ts";
import { type Stack, startStack } from "../test/support/stack.ts";
import { createTestKeys, seededBytes, startManager, stopAllManagers } from "../test/support/transfer.ts";
import { waitForOperation } from "../test/support/vm-groups.ts";
import { benchHosts } from "./orchestrate-hosts.ts";
import { median } from "./stats.ts";

const IMAGE_BYTES = 64 << 20;
const GROUPS = Number(process.env.BENCH_ORCHESTRATE_GROUPS ?? 50);
const MEMORY_MB = Number(process.env.BENCH_ORCHESTRATE_MEMORY_MB ?? 96);
const REGIONS = ["eu-west", "us-east", "ap-south"];
const RUNS = Number(process.env.BENCH_ORCHESTRATE_RUNS ?? 3);
const TIMEOUT_MS = 15 * 60_000;

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** The guest image padded with seeded random bytes to 64 MiB: QEMU never reads past the qcow2 data. */
function benchImage(dir: string, seed: number): { path: string; digest: string; size: number } {
  const guest = readFileSync(ensureGuestImage());
  if (guest.length >= IMAGE_BYTES) throw new Error(`the guest image is already ${guest.length} bytes`);
  const data = Buffer.concat([guest, seededBytes(IMAGE_BYTES - guest.length, seed)]);
  const path = join(dir, `bench-64m-${seed}.qcow2`);
  writeFileSync(path, data);
  return { path, digest: createHash("sha256").update(data).digest("hex"), size: data.length };
}

/** The transfer alone: two transfer-service managers, the target asked to pull the whole image. */
async function bareTransfer(dir: string, image: { path: string; digest: string; size: number }) {
  const keys = await createTestKeys(dir);
  const source = await startManager({
    dataDir: join(dir, "bare-a"),
    datacenter: "dc-a",
    publicKeyFile: keys.publicKeyFile,
  });
  const target = await startManager({
    dataDir: join(dir, "bare-b"),
    datacenter: "dc-b",
    publicKeyFile: keys.publicKeyFile,
  });
  try {
    await uploadImage({
      path: image.path,
      managerUrl: source.url,
      token: await keys.token("bench", 1, "dc-a", "upload"),
      imageId: "bench",
      version: 1,
      format: "qcow2",
    });
    const token = await keys.token("bench", 1, "dc-a", "read");
    const started = performance.now();
    const response = await fetch(`${target.url}/_test/pull`, {
      method: "POST",
      body: JSON.stringify({
        imageId: "bench",
        version: 1,
        expectedDigest: image.digest,
        expectedSize: image.size,
        sources: [{ url: source.url, token }],
      }),
    });
    const answer = (await response.json()) as { state?: string };
    const ms = performance.now() - started;
    if (answer.state !== "available") throw new Error(`bare pull failed: ${JSON.stringify(answer)}`);
    return ms;
  } finally {
    await stopAllManagers();
  }
}

/** The boot alone: the qemu driver boots one guest from the image until it says it is ready. */
async function bareBoot(dir: string, imagePath: string) {
  const metadata = new MetadataService();
  const driver = createComputeDriver("qemu", {
    dataDir: join(dir, "bare-boot"),
    metadata,
    capacity: { vcpus: 2, memoryMb: 4096 },
    accelerator: "auto",
    probeGuest: PROBE_GUEST,
    probeCacheFile: PROBE_CACHE,
  });
  try {
    await driver.create(
      guestSpec("bench-bare", { image: { path: imagePath, format: "qcow2", id: "bench" }, memoryMb: 192 }),
    );
    const ready = waitForState(driver, "bench-bare", "ready", TIMEOUT_MS);
    const started = performance.now();
    await driver.start("bench-bare");
    await ready;
    const ms = performance.now() - started;
    await driver.delete("bench-bare");
    return ms;
  } finally {
    await driver.detach();
    await metadata.close();
  }
}

/** Declares an image in eu-west and uploads the file to its manager; returns the image's ID. */
async function uploadBenchImage(stack: Stack, name: string, path: string): Promise<string> {
  const created = await stack.call("POST", "/v1/images", stack.projectToken, {
    name,
    origin_region: "eu-west",
    format: "qcow2",
  });
  if (created.status !== 201)
    throw new Error(`image ${name}: ${created.status} ${JSON.stringify(created.body)}`);
  await uploadImage({
    path,
    managerUrl: created.body.upload.url,
    token: created.body.upload.token,
    imageId: created.body.id,
    version: 1,
    format: "qcow2",
  });
  return created.body.id as string;
}

async function createGroup(stack: Stack, name: string, image: string, region: string, memoryMb: number) {
  const created = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
    name,
    image,
    region,
    size: 1,
    machine: { vcpus: 1, memory_mb: memoryMb },
  });
  if (created.status !== 202) throw new Error(`${name}: ${created.status} ${JSON.stringify(created.body)}`);
  return created.body.id as string;
}

const PARTS = new Set((process.env.BENCH_ORCHESTRATE_PARTS ?? "regions,hosts").split(","));

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "gvm-bo-"));
  try {
    if (PARTS.has("regions")) await benchRegions(dir);
    if (PARTS.has("hosts") && !(await benchHosts(dir))) process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchRegions(dir: string) {
  console.log(
    `globalvm orchestration benchmark: ${IMAGE_BYTES / 2 ** 20} MiB images (guest + seeded random), ${RUNS} runs, medians`,
  );
  // Each datacenter offers more vCPUs than this host has cores (TCG guests mostly idle once
  // booted), or placement would refuse all but a few of the groups.
  const stack = await startStack({
    name: "bench-orch",
    regions: REGIONS,
    env: { GLOBALVM_MANAGER_VCPUS: String(Math.max(8, GROUPS)) },
  });
  try {
    // 1. Orchestrated, then the parts (the same machine, minutes apart, the same image).
    const orchestrated: number[] = [];
    const transfers: number[] = [];
    const boots: number[] = [];
    let imageId = "";
    for (let run = 0; run < RUNS; run++) {
      const image = benchImage(dir, 7 + run);
      const bare = join(dir, `bare-${run}`);
      mkdirSync(bare);
      imageId = await uploadBenchImage(stack, `bench-${run}`, image.path);
      const started = performance.now();
      const operation = await waitForOperation(
        stack,
        await createGroup(stack, `single-${run}`, imageId, "us-east", 192),
        TIMEOUT_MS,
      );
      orchestrated.push(performance.now() - started);
      if (operation.state !== "succeeded")
        throw new Error(`the group failed: ${JSON.stringify(operation.error)}`);
      transfers.push(await bareTransfer(bare, image));
      boots.push(await bareBoot(bare, image.path));
      const removal = await stack.call("DELETE", `/v1/vm-groups/${operation.target.id}`, stack.projectToken);
      await waitForOperation(stack, removal.body.id, TIMEOUT_MS);
      console.log(
        `  run ${run + 1}: orchestrated ${seconds(orchestrated[run] as number)}, transfer ${seconds(transfers[run] as number)}, boot ${seconds(boots[run] as number)}`,
      );
    }
    const orchestratedMs = median(orchestrated);
    const transferMs = median(transfers);
    const bootMs = median(boots);
    const ratio = orchestratedMs / (transferMs + bootMs);
    console.log(`POST /v1/vm-groups → ready (us-east lacks the image): ${seconds(orchestratedMs)}`);
    console.log(`  bare transfer manager → manager:                     ${seconds(transferMs)}`);
    console.log(`  bare boot of one guest:                              ${seconds(bootMs)}`);
    console.log(
      `  ratio orchestrated / (transfer + boot): ${ratio.toFixed(2)}x (target ≤ 1.3x) ${ratio <= 1.3 ? "ok" : "OVER TARGET"}`,
    );

    // 2. Many groups at once: the image is placed in every region first so only boots are timed.
    const replicated = await stack.call("POST", `/v1/images/${imageId}/replicas`, stack.projectToken, {
      region: "ap-south",
    });
    if (replicated.status >= 300)
      throw new Error(`replicate: ${replicated.status} ${JSON.stringify(replicated.body)}`);
    if (replicated.status === 202 && replicated.body?.id)
      await waitForOperation(stack, replicated.body.id, TIMEOUT_MS);
    const manyStarted = performance.now();
    const operations = await Promise.all(
      Array.from({ length: GROUPS }, (_, i) =>
        createGroup(stack, `many-${i}`, imageId, REGIONS[i % REGIONS.length] as string, MEMORY_MB),
      ),
    );
    const results = await Promise.all(operations.map((id) => waitForOperation(stack, id, TIMEOUT_MS)));
    const manyMs = performance.now() - manyStarted;
    const failed = results.filter((r) => r.state !== "succeeded");
    console.log(
      `${GROUPS} groups of 1 (${MEMORY_MB} MiB guests) across ${REGIONS.join(", ")} created at once → all ready: ${seconds(manyMs)}` +
        (failed.length ? ` — ${failed.length} FAILED: ${JSON.stringify(failed[0]?.error)}` : ""),
    );
    if (failed.length) process.exitCode = 1;
  } finally {
    await stack.stop();
  }
}

await main();
