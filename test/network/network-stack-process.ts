// The user's flow with guest networking across datacenters. It runs in the namespace standing
// for the WAN, with the control plane; each region's manager runs in its own namespace (its
// datacenter's host), listening on its underlay address and attaching guests to networks. A `web`
// group serves HTTP in the first region; a `client` group in the last region takes web-0's
// address through metadata_from and its startup-script connects to it. Prints what the API says
// of both groups as one JSON line.
//
// usage: node test/network/network-stack-process.ts '<config JSON>'
//   config: { controlPlaneHost, regions: [{ name, netns, underlay }] }
import { createGroup, expectSucceeded, listInstances } from "../e2e/vm-group-lifecycle-support.ts";
import { readStackConfig, runAndReport, startNetworkStack, startWeb } from "./stack-hosts.ts";

const { config, first, last } = readStackConfig("network-stack-process.ts");

// The peer's address arrives as the metadata value `web`; the script asks for it and connects.
const CLIENT = [
  'web="$(wget -q -O - --header "Metadata-Flavor: Google" http://169.254.169.254/computeMetadata/v1/instance/attributes/web)"',
  'guest-attribute net/peer "$web"',
  "ok=failed",
  "for i in $(seq 1 30); do",
  `  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$web" 80 | grep -q hello-from-web; then ok=ok; break; fi`,
  "  sleep 1",
  "done",
  "guest-attribute net/tcp $ok",
  // Then it tries its manager's host through its network NIC. The host holds no address on the
  // bridge, no route to guests, and its nftables rules drop what guests send it; this checks
  // the whole end to end; plan.test.ts checks what the rules say.
  'manager="$(wget -q -O - --header "Metadata-Flavor: Google" http://169.254.169.254/computeMetadata/v1/instance/attributes/manager)"',
  // eth1: the network NIC (eth0 is the metadata link).
  "ip route add 192.0.2.0/24 dev eth1",
  'host="$(echo "$manager" | cut -d: -f1)"; port="$(echo "$manager" | cut -d: -f2)"',
  'if ping -c 2 -W 2 "$host" >/dev/null; then guest-attribute net/host-ping reached; else guest-attribute net/host-ping refused; fi',
  `if printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$host" "$port" | grep -q HTTP; then guest-attribute net/host-http reached; else guest-attribute net/host-http refused; fi`,
].join("\n");

// Peers are learned from heartbeats: a second apart rather than ten.
const stack = await startNetworkStack("netstack", config, { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000" });
const result: Record<string, unknown> = {};
await runAndReport(stack, result, async () => {
  const { image, web } = await startWeb(stack, first);
  const client = await createGroup(stack, {
    name: "client",
    image,
    region: last,
    size: 1,
    metadata: { "startup-script": CLIENT, manager: new URL(stack.managerUrls[last] as string).host },
    metadata_from: { web: { vm_group: web.groupId, instance: 0, attribute: "address" } },
  });
  await expectSucceeded(stack, client.operationId, 300_000);
  const deadline = Date.now() + 120_000;
  let clients = await listInstances(stack, client.groupId);
  while (clients[0]?.guest_attributes["net/host-http"] === undefined && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    clients = await listInstances(stack, client.groupId);
  }
  result.web = await listInstances(stack, web.groupId);
  result.client = clients;
  result.groups = [
    (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body,
    (await stack.call("GET", `/v1/vm-groups/${client.groupId}`, stack.projectToken)).body,
  ];
});
