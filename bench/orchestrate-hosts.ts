// Part 3 of npm run bench:orchestrate — a datacenter of three host agents.
//
// a. BENCH_HOSTS_INSTANCES (default 60) instances of 1 vCPU in one VM group, created at once
//    over 3 hosts of one datacenter → the operation succeeded with every guest ready. Against
//    the same boots started by hand on the same machine: three compute drivers (one per host,
//    the QEMU driver agents run) each starting its share of guests from the image file at once,
//    until every guest says it is ready. Target ≤ 1.2×.
// b. Healing: a group of 3 spread over the 3 hosts; one agent is killed (SIGKILL) and the time
//    until its instance is ready on another host is printed, with the down-after it includes.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
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
import { createGuestImage, listInstances, waitForOperation } from "../test/support/vm-groups.ts";

const INSTANCES = Number(process.env.BENCH_HOSTS_INSTANCES ?? 60);
const HOSTS = 3;
const MEMORY_MB = Number(process.env.BENCH_ORCHESTRATE_MEMORY_MB ?? 96);
const DOWN_AFTER_MS = 6_000;
const TIMEOUT_MS = 20 * 60_000;

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function createGroup(stack: Stack, body: Record<string, unknown>): Promise<string> {
  const created = await stack.call("POST", "/v1/vm-groups", stack.projectToken, body);
  if (created.status !== 202) throw new Error(`group: ${created.status} ${JSON.stringify(created.body)}`);
  return created.body.id as string;
}

/** The same boots by hand: one driver per host, each starting its share at once. */
async function bootsByHand(dir: string, imagePath: string): Promise<number> {
  const hosts = Array.from({ length: HOSTS }, (_, h) => {
    const metadata = new MetadataService();
    const driver = createComputeDriver("qemu", {
      dataDir: join(dir, `hand-${h}`),
      metadata,
      capacity: { vcpus: INSTANCES, memoryMb: INSTANCES * MEMORY_MB },
      accelerator: "auto",
      probeGuest: PROBE_GUEST,
      probeCacheFile: PROBE_CACHE,
    });
    // One waiter per guest, all at once: not a leak.
    driver.setMaxListeners(INSTANCES + 10);
    return { driver, metadata };
  });
  const ids = Array.from({ length: INSTANCES }, (_, i) => ({ id: `hand-${i}`, host: hosts[i % HOSTS] }));
  try {
    for (const { id, host } of ids) {
      await host?.driver.create(
        guestSpec(id, { image: { path: imagePath, format: "qcow2", id: "bench" }, memoryMb: MEMORY_MB }),
      );
    }
    const started = performance.now();
    await Promise.all(
      ids.map(async ({ id, host }) => {
        if (!host) return;
        const ready = waitForState(host.driver, id, "ready", TIMEOUT_MS);
        await host.driver.start(id);
        await ready;
      }),
    );
    return performance.now() - started;
  } finally {
    for (const { id, host } of ids) await host?.driver.delete(id).catch(() => {});
    for (const host of hosts) {
      await host.driver.detach();
      await host.metadata.close();
    }
  }
}

export async function benchHosts(dir: string): Promise<boolean> {
  const stack = await startStack({
    name: "bh", // short: guests' socket paths live under it (at most 107 bytes)
    regions: ["eu-west"],
    hostsPerRegion: HOSTS,
    // Each host offers a third of the instances' vCPUs: TCG guests mostly idle once booted.
    hostArgs: () => [
      "--vcpus",
      String(Math.ceil(INSTANCES / HOSTS) + 1),
      "--memory-mb",
      String((Math.ceil(INSTANCES / HOSTS) + 1) * (MEMORY_MB + 64)),
    ],
    env: { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000", GLOBALVM_HOST_DOWN_AFTER_MS: String(DOWN_AFTER_MS) },
  });
  let ok = true;
  try {
    for (let tries = 0; tries < 120; tries++) {
      const hosts = await stack.call("GET", "/v1/datacenters/eu-west-a/hosts", stack.adminToken);
      if (hosts.body?.items?.filter((h: { state: string }) => h.state === "up").length === HOSTS) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const imageId = await createGuestImage(stack, "guest", "eu-west");
    // Every host fetches the image once before the timed create: what is timed is placing and booting.
    const warm = await waitForOperation(
      stack,
      await createGroup(stack, {
        name: "warm",
        image: imageId,
        region: "eu-west",
        size: HOSTS,
        spread_hosts: true,
        machine: { vcpus: 1, memory_mb: MEMORY_MB },
      }),
      TIMEOUT_MS,
    );
    if (warm.state !== "succeeded") throw new Error(`warm-up failed: ${JSON.stringify(warm.error)}`);
    await waitForOperation(
      stack,
      (await stack.call("DELETE", `/v1/vm-groups/${warm.target.id}`, stack.projectToken)).body.id,
      TIMEOUT_MS,
    );

    const started = performance.now();
    const many = await waitForOperation(
      stack,
      await createGroup(stack, {
        name: "many",
        image: imageId,
        region: "eu-west",
        size: INSTANCES,
        machine: { vcpus: 1, memory_mb: MEMORY_MB },
      }),
      TIMEOUT_MS,
    );
    const orchestratedMs = performance.now() - started;
    if (many.state !== "succeeded") {
      console.log(`  ${INSTANCES} instances over ${HOSTS} hosts FAILED: ${JSON.stringify(many.error)}`);
      return false;
    }
    const perHost = new Map<string, number>();
    for (const i of (await listInstances(stack, many.target.id)) as unknown as { host: string }[])
      perHost.set(i.host, (perHost.get(i.host) ?? 0) + 1);
    await waitForOperation(
      stack,
      (await stack.call("DELETE", `/v1/vm-groups/${many.target.id}`, stack.projectToken)).body.id,
      TIMEOUT_MS,
    );

    const hand = join(dir, "hand");
    mkdirSync(hand);
    const handMs = await bootsByHand(hand, ensureGuestImage());
    const ratio = orchestratedMs / handMs;
    ok = ratio <= 1.2;
    console.log(
      `${INSTANCES} instances of 1 vCPU over ${HOSTS} hosts (${[...perHost.entries()].map(([h, n]) => `${h}: ${n}`).join(", ")}), created at once → all ready: ${seconds(orchestratedMs)}`,
    );
    console.log(`  the same ${INSTANCES} boots by hand, ${HOSTS} drivers at once:       ${seconds(handMs)}`);
    console.log(`  ratio: ${ratio.toFixed(2)}x (target ≤ 1.2x) ${ok ? "ok" : "OVER TARGET"}`);

    // b. Healing after a host is killed.
    const heal = await waitForOperation(
      stack,
      await createGroup(stack, {
        name: "heal",
        image: imageId,
        region: "eu-west",
        size: HOSTS,
        spread_hosts: false,
        machine: { vcpus: 1, memory_mb: MEMORY_MB },
      }),
      TIMEOUT_MS,
    );
    const [victim] = (await listInstances(stack, heal.target.id)) as unknown as {
      id: string;
      host: string;
    }[];
    if (!victim) throw new Error("the heal group has no instance");
    await stack.kill(`eu-west/${victim.host}`);
    const killed = performance.now();
    const deadline = Date.now() + TIMEOUT_MS;
    let healedMs = Number.NaN;
    while (Date.now() < deadline) {
      const now = (
        (await listInstances(stack, heal.target.id)) as unknown as {
          id: string;
          host: string;
          state: string;
        }[]
      ).find((i) => i.id === victim.id);
      if (now?.state === "ready" && now.host !== victim.host) {
        healedMs = performance.now() - killed;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    console.log(
      `heal: agent of ${victim.host} killed (SIGKILL) → its instance ready on another host: ${seconds(healedMs)} (of which ${seconds(DOWN_AFTER_MS)} is the down-after)`,
    );
    return ok;
  } finally {
    await stack.stop();
  }
}
