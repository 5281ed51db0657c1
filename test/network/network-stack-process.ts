// The user's flow with guest networking across datacenters. It runs in the namespace standing
// for the WAN, with the control plane; each region's datacenter host is a namespace of its own,
// where its manager runs (listening on its underlay address) or, as under `globalvm up`, where
// the manager beside the control plane puts its guests and their networking. A `web`
// group serves HTTP in the first region; a `client` group in the last region takes web-0's
// address through metadata_from and its startup-script connects to it, then keeps talking to it
// while both managers are killed with -9 and started again; then both groups are deleted. Prints
// what the API and each host said at each step as one JSON line.
//
// usage: node test/network/network-stack-process.ts '<config JSON>'
//   config: { controlPlaneHost, regions: [{ name, netns, underlay, manager }] }
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
} from "../e2e/vm-group-lifecycle-support.ts";
import { startStack } from "../support/stack.ts";
import { sh } from "./namespaces.ts";

interface RegionHost {
  name: string;
  netns: string;
  underlay: string;
  /**
   * "host": the manager runs inside the host's namespace; "beside": it runs here (in the WAN's
   * namespace, as `globalvm up` runs managers) and puts its guests' networking and QEMU in the
   * host's namespace with --guest-network-netns.
   */
  manager: "host" | "beside";
}
const parsed = JSON.parse(process.argv[2] ?? "null") as {
  controlPlaneHost: string;
  regions: RegionHost[];
} | null;
if (!parsed) throw new Error("usage: network-stack-process.ts '<config JSON>'");
const config = parsed;
const hostOf = (region: string) => config.regions.find((r) => r.name === region) as RegionHost;
const first = (config.regions[0] as RegionHost).name;
const last = (config.regions.at(-1) as RegionHost).name;

const SERVE = [
  "mkdir -p /www && echo hello-from-web >/www/index.html",
  "httpd -h /www -p 80 && guest-attribute net/serving yes",
].join("\n");

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
  // Then it keeps talking to web while the test kills both managers with -9 and starts them
  // again; the count is published once a manager listens again.
  "guest-attribute net/talk started",
  "ok=0; failed=0",
  "for i in $(seq 1 40); do",
  `  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 "$web" 80 | grep -q hello-from-web; then ok=$((ok+1)); else failed=$((failed+1)); fi`,
  "  sleep 1",
  "done",
  'until guest-attribute net/talk "ok=$ok failed=$failed"; do sleep 1; done',
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
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = (await listInstances(stack, groupId))[0]?.guest_attributes[key];
    if (value !== undefined && accept(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`guest attribute ${key} is ${value ?? "unset"} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const stack = await startStack({
  name: "netstack",
  regions: config.regions.map((r) => r.name),
  controlPlaneHost: config.controlPlaneHost,
  managerPrefix: (region) =>
    hostOf(region).manager === "host" ? ["ip", "netns", "exec", hostOf(region).netns] : [],
  managerArgs: (region) => {
    const host = hostOf(region);
    return host.manager === "host"
      ? ["--host", host.underlay, "--guest-network-underlay", host.underlay]
      : [
          ...["--host", config.controlPlaneHost],
          ...["--guest-network-underlay", host.underlay, "--guest-network-netns", host.netns],
        ];
  },
  // Peers are learned from heartbeats: a second apart rather than ten.
  env: { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000" },
});
const result: Record<string, unknown> = {};
try {
  const image = await createGuestImage(stack, "guest", first);
  const web = await createGroup(stack, {
    name: "web",
    image,
    region: first,
    size: 1,
    metadata: { "startup-script": SERVE },
  });
  await expectSucceeded(stack, web.operationId, 300_000);
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
} catch (error) {
  result.error = String(error);
  result.logs = stack.logs();
} finally {
  await stack.stop();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
