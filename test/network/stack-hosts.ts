// A globalvm stack whose datacenters are network namespaces: the control plane runs where its
// caller runs (the namespace standing for the WAN), and each region's manager either in its own
// namespace, listening on its underlay address, or beside the control plane putting its guests
// and their networking in its namespace (as `globalvm up` does). Shared by
// network-stack-process.ts and bench/network-stack.ts, which take the hosts as JSON from argv.

import { SERVE } from "../support/guest-scripts.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { createGroup, createGuestImage, expectSucceeded } from "../support/vm-groups.ts";

export interface RegionHost {
  /** The region's name; hosts of one region are its datacenters, in order (`<region>-a`, `-b`, …). */
  name: string;
  netns: string;
  underlay: string;
  /**
   * "host" (default): the manager runs inside the host's namespace; "beside": it runs here and
   * puts its guests' networking and QEMU in the host's namespace (--guest-network-netns).
   */
  manager?: "host" | "beside";
}

export interface NetworkStackConfig {
  controlPlaneHost: string;
  regions: RegionHost[];
}

/** The config in argv[2], and its first and last regions (where `web` and `client` go). */
export function readStackConfig<T extends NetworkStackConfig>(usage: string) {
  const config = JSON.parse(process.argv[2] ?? "null") as T | null;
  if (!config) throw new Error(`usage: ${usage} '<config JSON>'`);
  return {
    config,
    first: (config.regions[0] as RegionHost).name,
    last: (config.regions.at(-1) as RegionHost).name,
  };
}

export function startNetworkStack(
  name: string,
  config: NetworkStackConfig,
  env?: Record<string, string>,
): Promise<Stack> {
  const regions = [...new Set(config.regions.map((r) => r.name))];
  const hostsOf = (region: string) => config.regions.filter((r) => r.name === region);
  // The stack names a region's datacenters <region>-a, -b, …: the nth host of the region is the nth.
  const hostOf = (region: string, datacenter: string) =>
    hostsOf(region)[datacenter.charCodeAt(datacenter.length - 1) - 97] as RegionHost;
  return startStack({
    name,
    regions,
    controlPlaneHost: config.controlPlaneHost,
    datacentersPerRegion: Math.max(...regions.map((region) => hostsOf(region).length)),
    managerPrefix: (region, datacenter) => {
      const host = hostOf(region, datacenter);
      return host.manager === "beside" ? [] : ["ip", "netns", "exec", host.netns];
    },
    managerArgs: (region, datacenter) => {
      const host = hostOf(region, datacenter);
      return host.manager === "beside"
        ? [
            ...["--host", config.controlPlaneHost],
            ...["--guest-network-underlay", host.underlay, "--guest-network-netns", host.netns],
          ]
        : ["--host", host.underlay, "--guest-network-underlay", host.underlay];
    },
    ...(env ? { env } : {}),
  });
}

/**
 * Uploads the guest image in `region` and creates a `web` group of one serving there (more of
 * the group's body in `body`); returns once the operation succeeded.
 */
export async function startWeb(stack: Stack, region: string, body: Record<string, unknown> = {}) {
  const image = await createGuestImage(stack, "guest", region);
  const web = await createGroup(stack, {
    name: "web",
    image,
    region,
    size: 1,
    metadata: { "startup-script": SERVE },
    ...body,
  });
  await expectSucceeded(stack, web.operationId, 300_000);
  return { image, web };
}

/** Runs the flow, then stops the stack and prints `result` as one JSON line (with the error and logs if it threw). */
export async function runAndReport(
  stack: Stack,
  result: { error?: string; logs?: string },
  flow: () => Promise<void>,
): Promise<void> {
  try {
    await flow();
  } catch (error) {
    result.error = String(error);
    result.logs = stack.logs();
  } finally {
    await stack.stop();
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
}

/** Lets any source reach TCP `port` of the `default` network's instances (the outside needs a rule). */
export async function allowFromAnywhere(stack: Stack, port: number): Promise<void> {
  const networks = await stack.call("GET", "/v1/networks", stack.projectToken);
  const network = (networks.body.items as { id: string; name: string }[]).find((n) => n.name === "default");
  const rule = await stack.call("POST", `/v1/networks/${network?.id}/firewall-rules`, stack.projectToken, {
    name: `from-anywhere-${port}`,
    action: "allow",
    protocol: "tcp",
    ports: [String(port)],
    source: { cidr: "0.0.0.0/0" },
  });
  if (rule.status !== 201) throw new Error(`rule: ${rule.status} ${JSON.stringify(rule.body)}`);
}
