// Runs guests of private networks inside the network namespace it is started in (the test
// starts it with `ip netns exec`, standing for one datacenter's host): a QEMU driver and the
// metadata service, as a manager has them. It reads its plan as JSON from argv, boots the guests
// of each stage in turn once the previous stage's guests have published the awaited guest
// attributes, prints every guest's attributes as one JSON line, deletes the guests and exits.
//
// usage: node test/network/guest-network-process.ts <dataDir> <plan JSON>
import { createComputeDriver } from "../../regional-manager/compute/index.ts";
import type { GuestNetworkInterface } from "../../regional-manager/compute/types.ts";
import { MetadataService } from "../../regional-manager/metadata/index.ts";
import { guestSpec } from "../support/compute.ts";

export interface GuestPlan {
  instanceId: string;
  networkInterface: GuestNetworkInterface;
  startupScript: string;
  /** Guest attributes this guest publishes when its script is done. */
  awaits: string[];
}

const [dataDir, planJson] = process.argv.slice(2);
if (!dataDir || !planJson) throw new Error("usage: guest-network-process.ts <dataDir> <plan JSON>");
const stages = JSON.parse(planJson) as GuestPlan[][];
const deadlineMs = Number(process.env.GUEST_NETWORK_TIMEOUT_MS ?? 240_000);

const metadata = new MetadataService();
const driver = createComputeDriver("qemu", {
  dataDir,
  metadata,
  capacity: { vcpus: 8, memoryMb: 2048 },
  accelerator: "tcg",
});

const results: Record<string, Record<string, string>> = {};
const consoles: Record<string, string> = {};
try {
  for (const stage of stages) {
    for (const guest of stage) {
      await driver.create(
        guestSpec(guest.instanceId, {
          memoryMb: 160,
          metadata: { "startup-script": guest.startupScript },
          networkInterface: guest.networkInterface,
        }),
      );
      await driver.start(guest.instanceId);
    }
    const until = Date.now() + deadlineMs;
    const pending = () =>
      stage.filter((g) =>
        g.awaits.some((key) => driver.status(g.instanceId).guestAttributes[key] === undefined),
      );
    while (pending().length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
    for (const guest of stage) results[guest.instanceId] = driver.status(guest.instanceId).guestAttributes;
    if (pending().length > 0) break;
  }
} finally {
  for (const instance of driver.list()) {
    consoles[instance.instanceId] = driver.consoleLog(instance.instanceId);
    await driver.delete(instance.instanceId).catch(() => undefined);
  }
  await metadata.close();
  process.stdout.write(`${JSON.stringify({ results, consoles })}\n`);
}
