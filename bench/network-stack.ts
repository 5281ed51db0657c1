// The third part of bench/network.ts, through the real stack: how long from `POST /v1/vm-groups`
// of a `client` group to its guest's first TCP connection to a `web` group's instance in another
// datacenter, whose address it is handed through metadata_from. It runs in the namespace standing
// for the WAN, with the control plane; each region's manager runs in its own namespace with
// --guest-network-underlay, as in test/network/network-stack-process.ts. Managers keep their
// default heartbeat: what a user waits for is part of the figure.
//
// usage: node bench/network-stack.ts '<config JSON>'
//   config: { controlPlaneHost, runs, regions: [{ name, netns, underlay }] }
// prints one JSON line: { runs: [{ ready_ms, succeeded_ms, connected_ms, attempts }], error? }

import {
  type NetworkStackConfig,
  readStackConfig,
  runAndReport,
  startNetworkStack,
  startWeb,
} from "../test/network/stack-hosts.ts";
import { createGroup, expectSucceeded, listInstances } from "../test/support/vm-groups.ts";
import { GUEST_MACHINE } from "./network-wiring.ts";

const { config, first, last } = readStackConfig<NetworkStackConfig & { runs: number }>("network-stack.ts");

// Tries every 0.2 s from the moment its NIC is up, and counts: the host cannot read the guest's
// clock, so the host times the attribute's arrival and the count says how long the guest waited.
const CLIENT = [
  'web="$(wget -q -O - --header "Metadata-Flavor: Google" http://169.254.169.254/computeMetadata/v1/instance/attributes/web)"',
  "n=0",
  "while [ $n -lt 1500 ]; do",
  "  n=$((n + 1))",
  `  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 "$web" 80 2>/dev/null | grep -q hello-from-web; then`,
  "    guest-attribute bench/connected $n; exit 0",
  "  fi",
  "  sleep 0.2",
  "done",
  "guest-attribute bench/connected failed",
].join("\n");

const machine = { vcpus: GUEST_MACHINE.vcpus, memory_mb: GUEST_MACHINE.memoryMb };
const stack = await startNetworkStack("benchnet", config);
const close = () => stack.stop().finally(() => process.exit(130));
process.on("SIGINT", close);
process.on("SIGTERM", close);

const result: { runs: Record<string, number | string>[]; error?: string; logs?: string } = { runs: [] };
await runAndReport(stack, result, async () => {
  const { image, web } = await startWeb(stack, first, { machine });
  for (let until = Date.now() + 180_000; ; ) {
    const [instance] = await listInstances(stack, web.groupId);
    if (instance?.guest_attributes["net/serving"] === "yes") break;
    if (Date.now() > until) throw new Error("web never served");
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  for (let run = 1; run <= config.runs; run++) {
    const started = performance.now();
    const since = () => Math.round(performance.now() - started);
    const client = await createGroup(stack, {
      name: `client-${run}`,
      image,
      region: last,
      size: 1,
      machine,
      metadata: { "startup-script": CLIENT },
      metadata_from: { web: { vm_group: web.groupId, instance: 0, attribute: "address" } },
    });
    const measured: Record<string, number | string> = {};
    const succeeded = expectSucceeded(stack, client.operationId, 300_000).then(() => {
      measured.succeeded_ms = since();
    });
    // Polled every 0.1 s: the figure is the host's, so it includes the report's way to the API.
    for (let until = Date.now() + 300_000; measured.connected_ms === undefined; ) {
      const [instance] = await listInstances(stack, client.groupId);
      if (instance?.state === "ready") measured.ready_ms ??= since();
      const attempts = instance?.guest_attributes["bench/connected"];
      if (attempts !== undefined) {
        measured.connected_ms = since();
        measured.attempts = attempts;
      } else if (Date.now() > until) {
        throw new Error(`client-${run} never connected`);
      } else {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await succeeded;
    result.runs.push(measured);
    // One client at a time: an idle guest still costs a TCG host CPU time the next one needs.
    const removal = await stack.call("DELETE", `/v1/vm-groups/${client.groupId}`, stack.projectToken);
    if (removal.status !== 202) throw new Error(`delete client-${run}: ${removal.status}`);
    await expectSucceeded(stack, removal.body.id, 300_000);
  }
});
