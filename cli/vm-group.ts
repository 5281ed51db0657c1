// globalvm vm-group ls | show
import type { ApiClient, Schemas, VmGroup } from "../client/api.ts";
import { type Command, CommandFailure, commandGroup, EXIT_OK } from "./command.ts";
import { CONNECTION_HELP, findByIdOrName, listAll, oneArgumentCommandLine, pageQuery } from "./connection.ts";
import { formatFields, formatTable } from "./format.ts";
import { listCommand } from "./list-command.ts";

type Instance = Schemas["Instance"];
const ID_PATTERN = /^vmg_[0-9a-hjkmnp-tv-z]{26}$/;

const LS_USAGE = `Usage: globalvm vm-group ls [options]

Lists the project's VM groups: where they are placed, their size and state.

Options:
${CONNECTION_HELP}
`;

const SHOW_USAGE = `Usage: globalvm vm-group show ID|NAME [options]

Shows one VM group, where its exposed ports are reachable (endpoints), its instances (state,
network IP, address, datacenter and host) and the guest attributes each guest published.

Options:
${CONNECTION_HELP}
`;

function placement(group: {
  region: string | null;
  placement: { regions: string[] } | null;
  distribution: string | null;
}): string {
  if (group.region) return group.distribution ? `${group.region} (${group.distribution})` : group.region;
  return group.placement ? `policy(${group.placement.regions.join(",")})` : "-";
}

/** Where its instances run: its one datacenter, or every one a regional group spans. */
function datacentersOf(group: Pick<VmGroup, "datacenter" | "datacenters">): string {
  if (group.datacenter) return group.datacenter;
  return group.datacenters.length > 0 ? group.datacenters.join(",") : "-";
}

async function findVmGroup(client: ApiClient, idOrName: string): Promise<VmGroup | undefined> {
  return (await findByIdOrName(
    "VM group",
    idOrName,
    ID_PATTERN,
    () => client.GET("/v1/vm-groups/{id}", { params: { path: { id: idOrName } } }),
    () => client.GET("/v1/vm-groups", { params: { query: { name: idOrName } } }),
  )) as VmGroup | undefined;
}

function describeVmGroup(group: VmGroup, instances: Instance[]): string {
  const fields: [string, string][] = [
    ["id", group.id],
    ["name", group.name],
    ["state", group.state],
    ["image", `${group.image}${group.image_version ? ` (version ${group.image_version})` : ""}`],
    ["network", group.network],
    ["placement", placement(group)],
    [group.distribution ? "datacenters" : "datacenter", datacentersOf(group)],
    ["size", String(group.size)],
    ["machine", `${group.machine.vcpus} vCPU, ${group.machine.memory_mb} MiB`],
    ["spread hosts", group.spread_hosts ? "yes: no two instances on one host" : "no"],
    ...endpointFields(group),
  ];
  const table = formatTable(
    ["NAME", "ID", "DATACENTER", "HOST", "STATE", "NETWORK IP", "ADDRESS"],
    instances.map((i) => [
      i.name,
      i.id,
      i.datacenter,
      i.host ?? "-",
      i.state,
      i.network_ip ?? "-",
      i.address ?? "-",
    ]),
  );
  return `${formatFields(fields)}\ninstances:\n${instances.length > 0 ? table : "  none\n"}${guestAttributes(instances)}`;
}

/** One line per exposed port: where its datacenter made it reachable, if it has yet. */
function endpointFields(group: VmGroup): [string, string][] {
  return group.expose.map(({ port, protocol }) => {
    const endpoint = group.endpoints.find((e) => e.port === port && e.protocol === protocol);
    return ["endpoint", `${port}/${protocol}  ${endpoint?.url ?? "not reachable yet"}`];
  });
}

/** A guest's value as one line, with no control character reaching the terminal. */
function printable(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
  return /[\u0000-\u001f\u007f]/.test(value) ? JSON.stringify(value) : value;
}

/** What each guest published (its startup-script's results among them), one line per value. */
function guestAttributes(instances: Instance[]): string {
  const lines = instances.flatMap((i) =>
    Object.entries(i.guest_attributes)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, value]) => [i.name, key, printable(value)]),
  );
  if (lines.length === 0) return "";
  return `guest attributes:\n${formatTable(["INSTANCE", "KEY", "VALUE"], lines)}`;
}

const ls = listCommand({
  summary: "list the project's VM groups",
  usage: LS_USAGE,
  action: "list VM groups",
  page: (client, page_token) => client.GET("/v1/vm-groups", { params: { query: pageQuery(page_token) } }),
  columns: ["NAME", "ID", "PLACEMENT", "DATACENTER", "SIZE", "STATE"],
  row: (g) => [g.name, g.id, placement(g), datacentersOf(g), String(g.size), g.state],
});

const show: Command = {
  summary: "show one VM group and its instances, by ID or name",
  usage: SHOW_USAGE,
  async run(args) {
    const { argument: idOrName, json, client } = oneArgumentCommandLine(args, SHOW_USAGE, "ID|NAME");
    const group = await findVmGroup(client, idOrName);
    if (!group)
      throw new CommandFailure(`no VM group ${idOrName} in this project`, "see `globalvm vm-group ls`");
    const instances = await listAll(`list the instances of ${group.name}`, (page_token) =>
      client.GET("/v1/vm-groups/{id}/instances", {
        params: { path: { id: group.id }, query: pageQuery(page_token) },
      }),
    );
    process.stdout.write(
      json ? `${JSON.stringify({ ...group, instances })}\n` : describeVmGroup(group, instances),
    );
    return EXIT_OK;
  },
};

export const vmGroupCommand = commandGroup("vm-group", "inspect VM groups", { ls, show });
