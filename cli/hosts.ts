// globalvm hosts [--datacenter NAME]: the hosts of one datacenter, or of every datacenter, as
// their managers last reported them (state, free capacity, guests, image cache).
import type { ApiClient, Host } from "../client/api.ts";
import { type Command, CommandFailure, EXIT_OK, parseCommandLine } from "./command.ts";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  callApi,
  connect,
  expectAnswer,
  listAll,
  pageQuery,
  resolveConnection,
} from "./connection.ts";
import { formatBytes, formatTable } from "./format.ts";
import { regionStatuses } from "./regions.ts";

const USAGE = `Usage: globalvm hosts [--datacenter NAME] [options]

Lists the hosts of one datacenter, or of every datacenter: each host's state (up, or down
also while its datacenter is not up), architecture, free vCPUs, memory and disk out of its
capacity, the guests it runs, and the image versions its cache holds. A datacenter without
host agents (its manager runs its guests itself) shows one line with no host.

Options:
  --datacenter NAME  only this datacenter's hosts
${CONNECTION_HELP}
`;

const OPTIONS = { ...CONNECTION_OPTIONS, datacenter: { type: "string" } } as const;

/** Every host of one datacenter; a CommandFailure when the datacenter does not exist. */
async function hostsOf(client: ApiClient, datacenter: string): Promise<Host[]> {
  const hosts: Host[] = [];
  let token: string | undefined;
  do {
    const answer = await callApi(() =>
      client.GET("/v1/datacenters/{name}/hosts", {
        params: { path: { name: datacenter }, query: pageQuery(token) },
      }),
    );
    if (answer.response.status === 404) {
      throw new CommandFailure(`no datacenter ${datacenter}`, "see `globalvm regions`");
    }
    const page = expectAnswer(`list the hosts of ${datacenter}`, answer);
    hosts.push(...page.items);
    token = page.next_page_token ?? undefined;
  } while (token);
  return hosts;
}

/** Every datacenter's name, region by region. */
async function allDatacenters(client: ApiClient): Promise<string[]> {
  const [regions, datacenters] = await Promise.all([
    listAll("list regions", (token) => client.GET("/v1/regions", { params: { query: pageQuery(token) } })),
    listAll("list datacenters", (token) =>
      client.GET("/v1/datacenters", { params: { query: pageQuery(token) } }),
    ),
  ]);
  return regionStatuses(regions, datacenters).flatMap((region) => region.datacenters.map((dc) => dc.name));
}

const MIB = 1024 * 1024;

/** "free/total" of one resource. */
function freeOf(free: number, total: number, format: (value: number) => string = String): string {
  return `${format(free)}/${format(total)}`;
}

export function hostRows(datacenters: { name: string; hosts: Host[] }[]): string[][] {
  return datacenters.flatMap(({ name, hosts }) =>
    hosts.length === 0
      ? [[name, "-", "-", "-", "-", "-", "-", "-", "-", "-"]]
      : hosts.map((host) => [
          name,
          host.name,
          host.state,
          host.arch,
          freeOf(host.free.vcpus, host.capacity.vcpus),
          freeOf(host.free.memory_mb, host.capacity.memory_mb, (mb) => formatBytes(mb * MIB)),
          freeOf(host.free.disk_bytes, host.capacity.disk_bytes, formatBytes),
          String(host.instance_count),
          `${host.cached_versions} (${formatBytes(host.cache_bytes)})`,
          host.last_seen_at,
        ]),
  );
}

export const hostsCommand: Command = {
  summary: "list the hosts of each datacenter",
  usage: USAGE,
  async run(args) {
    const { values } = parseCommandLine(args, OPTIONS, USAGE);
    const client = connect(resolveConnection(values, process.env));
    const names = values.datacenter !== undefined ? [values.datacenter] : await allDatacenters(client);
    const datacenters = await Promise.all(
      names.map(async (name) => ({ name, hosts: await hostsOf(client, name) })),
    );
    if (values.json) {
      process.stdout.write(`${JSON.stringify(datacenters.flatMap((dc) => dc.hosts))}\n`);
      return EXIT_OK;
    }
    process.stdout.write(
      formatTable(
        [
          "DATACENTER",
          "HOST",
          "STATE",
          "ARCH",
          "FREE VCPUS",
          "FREE MEMORY",
          "FREE DISK",
          "INSTANCES",
          "CACHED VERSIONS",
          "LAST SEEN",
        ],
        hostRows(datacenters),
      ),
    );
    return EXIT_OK;
  },
};
