// A globalvm stack whose datacenters are network namespaces: the control plane runs where its
// caller runs (the namespace standing for the WAN), and each region's manager either in its own
// namespace, listening on its underlay address, or beside the control plane putting its guests
// and their networking in its namespace (as `globalvm up` does). Shared by
// network-stack-process.ts and bench/network-stack.ts, which take the hosts as JSON from argv.

import { SERVE } from "../support/guest-scripts.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { createGroup, createGuestImage, expectSucceeded } from "../support/vm-groups.ts";

export interface RegionHost {
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
  const hostOf = (region: string) => config.regions.find((r) => r.name === region) as RegionHost;
  return startStack({
    name,
    regions: config.regions.map((r) => r.name),
    controlPlaneHost: config.controlPlaneHost,
    managerPrefix: (region) =>
      hostOf(region).manager === "beside" ? [] : ["ip", "netns", "exec", hostOf(region).netns],
    managerArgs: (region) => {
      const host = hostOf(region);
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
