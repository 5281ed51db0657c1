// The user's flow with guest networking across datacenters. It runs in the namespace standing
// for the WAN, with the control plane; each region's datacenter host is a namespace of its own,
// where its manager runs (listening on its underlay address) or, as under `globalvm up`, where
// the manager beside the control plane puts its guests and their networking. A `web` group
// serves HTTP in the first region; a `client` group in the last region takes web-0's address
// through metadata_from and its startup-script connects to it, then keeps talking to it while
// both managers are killed with -9 and started again; then both groups are deleted. Prints what
// the API and each host said at each step as one JSON line.
//
// usage: node test/network/network-stack-process.ts '<config JSON>'
//   config: { controlPlaneHost, regions: [{ name, netns, underlay, manager }] }

import { FETCH_WEB } from "../support/guest-scripts.ts";
import type { Stack } from "../support/stack.ts";
import { createGroup, createGuestImage, expectSucceeded, listInstances } from "../support/vm-groups.ts";
import { sh } from "./namespaces.ts";
import { readStackConfig, runAndReport, startNetworkStack, startWeb } from "./stack-hosts.ts";

const { config, first, last } = readStackConfig("network-stack-process.ts");

const CLIENT = [
  FETCH_WEB,
  // Then it tries its manager's host through its network NIC. The host holds no address on the
  // bridge, no route to guests, and its nftables rules drop what guests send it; this checks
  // the whole end to end; plan.test.ts checks what the rules say.
  'manager="$(wget -q -O - --header "Metadata-Flavor: Google" http://169.254.169.254/computeMetadata/v1/instance/attributes/manager)"',
  // eth1: the network NIC (eth0 is the metadata link).
  "ip route add 192.0.2.0/24 dev eth1",
  'host="$(echo "$manager" | cut -d: -f1)"; port="$(echo "$manager" | cut -d: -f2)"',
  'if ping -c 2 -W 2 "$host" >/dev/null; then guest-attribute net/host-ping reached; else guest-attribute net/host-ping refused; fi',
  `if printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$host" "$port" | grep -q HTTP; then guest-attribute net/host-http reached; else guest-attribute net/host-http refused; fi`,
  // Then it keeps talking to web while the test kills both managers with -9 and starts them
  // again; the count is published once a manager listens again.
  "guest-attribute net/talk started",
  "ok=0; failed=0",
  "for i in $(seq 1 40); do",
  `  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 "$web" 80 | grep -q hello-from-web; then ok=$((ok+1)); else failed=$((failed+1)); fi`,
  "  sleep 1",
  "done",
  'until guest-attribute net/talk "ok=$ok failed=$failed"; do sleep 1; done',
  // Then it follows whether web answers it, for the firewall step: each change is published
  // as net/fw "<count> ok|refused".
  'last=""; n=0',
  "while true; do",
  `  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 "$web" 80 | grep -q hello-from-web; then now=ok; else now=refused; fi`,
  '  if [ "$now" != "$last" ]; then n=$((n+1)); guest-attribute net/fw "$n $now" && last="$now"; fi',
  "  sleep 1",
  "done",
].join("\n");

/**
 * A guest of another project, on the same host as web, in a network with the same range: it
 * tries ICMP and TCP to web's address, on-link for it too.
 */
const intruder = (target: string) =>
  [
    `if ping -c 3 -W 2 ${target} >/dev/null; then guest-attribute net/ping reached; else guest-attribute net/ping refused; fi`,
    `if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${target} 80 | grep -q hello; then guest-attribute net/tcp reached; else guest-attribute net/tcp refused; fi`,
  ].join("\n");

/** Devices globalvm owns on each region's host, by `ip -j link`. */
function devicesByRegion(): Record<string, string[]> {
  return Object.fromEntries(
    config.regions.map((r) => {
      const links = JSON.parse(sh("ip", "-n", r.netns, "-j", "link", "show")) as Array<{ ifname: string }>;
      return [r.name, links.map((l) => l.ifname).filter((n) => /^gv[bxt]/.test(n) && n.length === 15)];
    }),
  );
}

/** QEMU processes running an instance (its command line names the guest). */
function qemuProcessesOf(instanceId: string): number {
  try {
    return Number(sh("pgrep", "-c", "-f", `guest=globalvm-${instanceId}`).trim());
  } catch {
    return 0; // pgrep exits 1 when it finds none
  }
}

async function waitForAttribute(
  groupId: string,
  key: string,
  timeoutMs: number,
  accept: (value: string) => boolean = () => true,
  as: Stack = stack,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = (await listInstances(as, groupId))[0]?.guest_attributes[key];
    if (value !== undefined && accept(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`guest attribute ${key} is ${value ?? "unset"} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// Peers are learned from heartbeats: a second apart rather than ten. Three one-vCPU guests on a
// two-core machine: the managers offer more vCPUs than it has.
const stack = await startNetworkStack("netstack", config, {
  GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000",
  GLOBALVM_MANAGER_VCPUS: "8",
});
const result: Record<string, unknown> = {};
await runAndReport(stack, result, async () => {
  const { image, web } = await startWeb(stack, first);
  const webAddress = (await listInstances(stack, web.groupId))[0]?.network_ip as string;

  // Project B, on web's host, in a network of its own with the same range.
  const projectB = await stack.call("POST", "/v1/projects", stack.adminToken, { name: "intruders" });
  const tokenB = await stack.call("POST", `/v1/projects/${projectB.body.id}/tokens`, stack.adminToken, {
    name: "b",
  });
  const asB = { ...stack, projectToken: tokenB.body.secret as string };
  const networkB = await asB.call("POST", "/v1/networks", asB.projectToken, {
    name: "b-net",
    cidr: "10.128.0.0/16",
  });
  if (networkB.status !== 201)
    throw new Error(`network: ${networkB.status} ${JSON.stringify(networkB.body)}`);
  const imageB = await createGuestImage(asB, "guest", first);
  // B's first instance gets B's first address, web's: it comes and goes, and the address is
  // not given again at once, so the intruder's differs and no guest of B holds web's.
  const firstOfB = await createGroup(asB, {
    name: "first",
    image: imageB,
    region: first,
    size: 1,
    network: "b-net",
  });
  await expectSucceeded(asB, firstOfB.operationId, 300_000);
  const held = (await listInstances(asB, firstOfB.groupId))[0]?.network_ip;
  if (held !== webAddress) throw new Error(`B's first instance has ${held}, not web's ${webAddress}`);
  const gone = await asB.call("DELETE", `/v1/vm-groups/${firstOfB.groupId}`, asB.projectToken);
  await expectSucceeded(asB, gone.body.id, 180_000);
  const intruderGroup = await createGroup(asB, {
    name: "intruder",
    image: imageB,
    region: first,
    size: 1,
    network: "b-net",
    metadata: { "startup-script": intruder(webAddress) },
  });
  const client = await createGroup(stack, {
    name: "client",
    image,
    region: last,
    size: 1,
    metadata: { "startup-script": CLIENT, manager: new URL(stack.managerUrls[last] as string).host },
    metadata_from: { web: { vm_group: web.groupId, instance: 0, attribute: "address" } },
  });
  await expectSucceeded(stack, client.operationId, 300_000);
  await expectSucceeded(asB, intruderGroup.operationId, 300_000);
  await waitForAttribute(client.groupId, "net/host-http", 120_000).catch(() => undefined);
  await waitForAttribute(intruderGroup.groupId, "net/tcp", 120_000, () => true, asB).catch(() => undefined);
  result.intruder = await listInstances(asB, intruderGroup.groupId);
  // Its host keeps only web's network: B's bridge, tunnel and tap go with B's last guest.
  const removal = await asB.call("DELETE", `/v1/vm-groups/${intruderGroup.groupId}`, asB.projectToken);
  await expectSucceeded(asB, removal.body.id, 180_000);
  result.web = await listInstances(stack, web.groupId);
  result.client = await listInstances(stack, client.groupId);
  result.groups = [
    (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body,
    (await stack.call("GET", `/v1/vm-groups/${client.groupId}`, stack.projectToken)).body,
  ];

  // kill -9 of both managers while the client talks to web: the kernel carries the traffic.
  await waitForAttribute(client.groupId, "net/talk", 60_000);
  await Promise.all(config.regions.map((r) => stack.kill(r.name)));
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await Promise.all(config.regions.map((r) => stack.restart(r.name)));
  const talk = await waitForAttribute(client.groupId, "net/talk", 180_000, (v) => v !== "started");
  const instances = [
    ...(await listInstances(stack, web.groupId)),
    ...(await listInstances(stack, client.groupId)),
  ];
  result.afterRestart = {
    talk,
    instances,
    devices: devicesByRegion(),
    qemus: Object.fromEntries(instances.map((i) => [i.id, qemuProcessesOf(i.id)])),
  };

  // A rule of the default network denying web's port 80 to the client group: it reaches web's
  // host in another datacenter (its nftables) within 2 s, the client's guest is refused, and
  // deleting the rule lets it through again. Nothing is restarted.
  await waitForAttribute(client.groupId, "net/fw", 60_000, (v) => v.endsWith(" ok"));
  const network = (await stack.call("GET", "/v1/networks?name=default", stack.projectToken)).body.items[0];
  const clientAddress = (await listInstances(stack, client.groupId))[0]?.network_ip as string;
  const webHost = config.regions.find((r) => r.name === first)?.netns as string;
  const webRules = () => sh("ip", "netns", "exec", webHost, "nft", "list", "table", "inet", "globalvm");
  const started = Date.now();
  const rule = await stack.call("POST", `/v1/networks/${network.id}/firewall-rules`, stack.projectToken, {
    name: "no-client-on-80",
    priority: 100,
    action: "deny",
    protocol: "tcp",
    ports: ["80"],
    source: { vm_group: "client" },
  });
  if (rule.status !== 201) throw new Error(`firewall rule: ${rule.status} ${JSON.stringify(rule.body)}`);
  // nft lists a set of one element as the element alone.
  const denial = new RegExp(`ip saddr ${clientAddress.replaceAll(".", "\\.")} tcp dport 80 drop`);
  while (!denial.test(webRules())) {
    if (Date.now() - started > 30_000) throw new Error(`the rule never reached web's host:\n${webRules()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const onWebHostMs = Date.now() - started;
  await waitForAttribute(client.groupId, "net/fw", 60_000, (v) => v.endsWith(" refused"));
  const guestRefusedMs = Date.now() - started;
  const removed = Date.now();
  const deletion = await stack.call(
    "DELETE",
    `/v1/networks/${network.id}/firewall-rules/${rule.body.id}`,
    stack.projectToken,
  );
  if (deletion.status !== 204) throw new Error(`rule deletion: ${deletion.status}`);
  const restored = await waitForAttribute(client.groupId, "net/fw", 60_000, (v) => v.endsWith(" ok"));
  result.firewall = { onWebHostMs, guestRefusedMs, guestRestoredMs: Date.now() - removed, restored };

  // Deleting the groups takes everything down: taps, bridges, tunnels and rules.
  for (const group of [client.groupId, web.groupId]) {
    const removal = await stack.call("DELETE", `/v1/vm-groups/${group}`, stack.projectToken);
    await expectSucceeded(stack, removal.body.id, 180_000);
  }
  result.afterDelete = {
    devices: devicesByRegion(),
    nftTables: Object.fromEntries(
      config.regions.map((r) => [r.name, sh("ip", "netns", "exec", r.netns, "nft", "list", "tables")]),
    ),
  };
});
