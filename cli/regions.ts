// globalvm regions: every region and its datacenters, with their managers' status.
import type { Schemas } from "../client/api.ts";
import { type Command, EXIT_OK, parseCommandLine } from "./command.ts";
import { CONNECTION_HELP, CONNECTION_OPTIONS, connect, listAll, resolveConnection } from "./connection.ts";
import { formatTable } from "./format.ts";

type Region = Schemas["Region"];
type Datacenter = Schemas["Datacenter"];

export interface RegionStatus<D> {
  name: string;
  display_name: string;
  /** up when one of its datacenters is up. */
  status: Datacenter["status"];
  datacenters: D[];
}

const STATUS_RANK: Datacenter["status"][] = ["up", "degraded", "down", "unknown"];

/** Regions with their datacenters; a region is as available as its best datacenter. */
export function regionStatuses<D extends Pick<Datacenter, "region" | "status">>(
  regions: Pick<Region, "name" | "display_name">[],
  datacenters: D[],
): RegionStatus<D>[] {
  return regions.map((region) => {
    const held = datacenters.filter((dc) => dc.region === region.name);
    const best = STATUS_RANK.find((status) => held.some((dc) => dc.status === status)) ?? "unknown";
    return { name: region.name, display_name: region.display_name, status: best, datacenters: held };
  });
}

const USAGE = `Usage: globalvm regions [options]

Lists regions and their datacenters: each manager's status (up, degraded, down, unknown),
URL and last heartbeat.

Options:
${CONNECTION_HELP}
`;

export const regionsCommand: Command = {
  summary: "list regions and their datacenters' status",
  usage: USAGE,
  async run(args) {
    const { values } = parseCommandLine(args, CONNECTION_OPTIONS, USAGE);
    const client = connect(resolveConnection(values, process.env));
    const query = (page_token: string | undefined) => ({
      params: { query: { page_size: 200, ...(page_token ? { page_token } : {}) } },
    });
    const [regions, datacenters] = await Promise.all([
      listAll("list regions", (token) => client.GET("/v1/regions", query(token))),
      listAll("list datacenters", (token) => client.GET("/v1/datacenters", query(token))),
    ]);
    const statuses = regionStatuses(regions, datacenters);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(statuses)}\n`);
      return EXIT_OK;
    }
    const rows = statuses.flatMap((region) =>
      region.datacenters.length === 0
        ? [[region.name, region.status, "-", "-", "-", "-"]]
        : region.datacenters.map((dc) => [
            region.name,
            region.status,
            dc.name,
            dc.status,
            dc.manager_url ?? "-",
            dc.last_heartbeat_at ?? "never",
          ]),
    );
    process.stdout.write(
      formatTable(["REGION", "STATUS", "DATACENTER", "DC STATUS", "MANAGER", "LAST HEARTBEAT"], rows),
    );
    return EXIT_OK;
  },
};
