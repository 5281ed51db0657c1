// The guests of one host of bench/network.ts. It runs inside the network namespace standing for
// that host (started with `ip netns exec`, as test/network/guest-network-process.ts is), because
// QEMU opens its tap in the namespace it starts in. It boots the guests of its plan with the
// manager's QEMU driver and metadata service, then stays up: the bench drives the guests through
// their metadata (one JSON line per change on stdin) and follows their guest attributes (one JSON
// line per change on stdout), so globalvm's and the bare host's guests can take turns.
//
// usage: node bench/network-guests.ts <dataDir> <plan JSON>
//   stdin:  {"instanceId": ID, "metadata": {KEY: VALUE}}  merged into the guest's metadata
//   stdout: {"instanceId": ID, "state": STATE, "attributes": {...}} whenever either changes,
//           and last {"consoles": {ID: TAIL}} once the guests are deleted (stdin closed or a signal)
import { createInterface } from "node:readline";
import { createComputeDriver } from "../regional-manager/compute/index.ts";
import { MetadataService } from "../regional-manager/metadata/index.ts";
import { guestSpec } from "../test/support/compute.ts";
import { type BenchGuest, GUEST_MACHINE } from "./network-wiring.ts";

const [dataDir, planJson] = process.argv.slice(2);
if (!dataDir || !planJson) throw new Error("usage: network-guests.ts <dataDir> <plan JSON>");
const guests = JSON.parse(planJson) as BenchGuest[];

const metadataService = new MetadataService();
const driver = createComputeDriver("qemu", {
  dataDir,
  metadata: metadataService,
  capacity: { vcpus: 8, memoryMb: 4096 },
  accelerator: "tcg",
});
const metadata = new Map(guests.map((g) => [g.instanceId, { ...g.metadata }]));

let closing: Promise<void> | undefined;
function close(): Promise<void> {
  closing ??= (async () => {
    clearInterval(watch);
    const consoles: Record<string, string> = {};
    for (const instance of driver.list()) {
      consoles[instance.instanceId] = driver.consoleLog(instance.instanceId, { tailBytes: 3_000 });
      await driver.delete(instance.instanceId).catch(() => undefined);
    }
    await metadataService.close();
    process.stdout.write(`${JSON.stringify({ consoles })}\n`);
    process.exit(0);
  })();
  return closing;
}
process.on("SIGINT", close);
process.on("SIGTERM", close);

// Polled rather than evented: a fifth of a second is nothing beside a transfer of seconds.
const seen = new Map<string, string>();
const watch = setInterval(() => {
  for (const instance of driver.list()) {
    const line = JSON.stringify({
      instanceId: instance.instanceId,
      state: instance.state,
      attributes: instance.guestAttributes,
    });
    if (seen.get(instance.instanceId) === line) continue;
    seen.set(instance.instanceId, line);
    process.stdout.write(`${line}\n`);
  }
}, 200);

createInterface({ input: process.stdin })
  .on("line", (line) => {
    const { instanceId, metadata: changes } = JSON.parse(line) as {
      instanceId: string;
      metadata: Record<string, string>;
    };
    const merged = { ...metadata.get(instanceId), ...changes };
    metadata.set(instanceId, merged);
    driver.setMetadata(instanceId, merged).catch((error: unknown) => {
      process.stderr.write(`setMetadata ${instanceId}: ${error}\n`);
    });
  })
  .on("close", close);

try {
  for (const guest of guests) {
    await driver.create(
      guestSpec(guest.instanceId, {
        ...GUEST_MACHINE,
        metadata: guest.metadata,
        networkInterface: guest.networkInterface,
      }),
    );
    await driver.start(guest.instanceId);
  }
} catch (error) {
  process.stderr.write(`network-guests: ${error}\n`);
  await close();
}
