// A stand-alone regional manager process for the restart test: it starts one guest from the
// data dir it is given, prints "READY <pid>" once the guest is ready, and then runs until it is
// killed — the test kills it with SIGKILL, as a crash would.
//
// usage: node test/compute/manager-process.ts <dataDir> <instanceId>
import { createComputeDriver } from "../../regional-manager/compute/index.ts";
import { MetadataService } from "../../regional-manager/metadata/index.ts";
import { guestSpec, PROBE_CACHE, PROBE_GUEST, waitForState } from "../support/compute.ts";

const [dataDir, instanceId] = process.argv.slice(2);
if (!dataDir || !instanceId) throw new Error("usage: manager-process.ts <dataDir> <instanceId>");

const metadata = new MetadataService();
const driver = createComputeDriver("qemu", {
  dataDir,
  metadata,
  capacity: { vcpus: 2, memoryMb: 1024 },
  accelerator: "auto",
  probeGuest: PROBE_GUEST,
  probeCacheFile: PROBE_CACHE,
});
await driver.create(guestSpec(instanceId, { metadata: { role: "survivor" } }));
const ready = waitForState(driver, instanceId, "ready", 120_000);
const started = await driver.start(instanceId);
await ready;
process.stdout.write(`READY ${started.pid}\n`);
setInterval(() => {}, 60_000);
