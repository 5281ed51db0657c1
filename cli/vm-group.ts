// globalvm vm-group ls | show | create
import type { ApiClient, Schemas, VmGroup } from "../client/api.ts";
import { DEFAULT_NETWORK } from "../schemas/plain.ts";
import {
  type Command,
  CommandFailure,
  commandGroup,
  EXIT_OK,
  parseCommandLine,
  positionalArgs,
  UsageError,
} from "./command.ts";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  callApi,
  connect,
  expectAnswer,
  findByIdOrName,
  listAll,
  oneArgumentCommandLine,
  pageQuery,
  resolveConnection,
} from "./connection.ts";
import { formatFields, formatTable } from "./format.ts";
import { requireImage } from "./image-common.ts";
import { listCommand } from "./list-command.ts";
import { reportOperationEnd, watchOperation } from "./operation.ts";

type Instance = Schemas["Instance"];
type CreateVmGroup = Schemas["CreateVmGroup"];
type Distribution = NonNullable<CreateVmGroup["distribution"]>;
const ID_PATTERN = /^vmg_[0-9a-hjkmnp-tv-z]{26}$/;
const DISTRIBUTIONS: readonly Distribution[] = ["even", "any"];

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

const CREATE_USAGE = `Usage: globalvm vm-group create NAME --image IMAGE --region REGION --size N [options]

Declares a VM group (POST /v1/vm-groups): the orchestrator places it, moves its image where it
runs and starts its instances. Prints the operation that does it; --wait follows it to its end.

Options:
  --image IMAGE            the image its instances boot, by ID or name
  --region REGION          the region it runs in
  --size N                 how many instances (1 to 1000)
  --vcpus N                vCPUs of each instance (default 1)
  --memory-mb N            memory of each instance in MiB (default 256)
  --distribution even|any  a regional group, spread over the datacenters of REGION: even keeps
                           their counts within one of each other, any fills the datacenter that
                           holds the image first (default: the whole group in one datacenter;
                           fixed at creation)
  --network NETWORK        the network it joins, by ID or name (default: default)
  --spread-hosts           no two of its instances on one host of their datacenter
  --wait                   follow the operation until the group is ready (exit 1 if it fails)
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

/**
 * One line per exposed port and datacenter that made it reachable (a regional group's port has
 * one in each of its datacenters), or one saying it is not reachable yet.
 */
function endpointFields(group: VmGroup): [string, string][] {
  return group.expose.flatMap(({ port, protocol }): [string, string][] => {
    const endpoints = group.endpoints.filter((e) => e.port === port && e.protocol === protocol);
    if (endpoints.length === 0) return [["endpoint", `${port}/${protocol}  not reachable yet`]];
    return endpoints.map((e) => ["endpoint", `${port}/${protocol}  ${e.url}  (${e.datacenter})`]);
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

const CREATE_OPTIONS = {
  ...CONNECTION_OPTIONS,
  image: { type: "string" },
  region: { type: "string" },
  size: { type: "string" },
  vcpus: { type: "string" },
  "memory-mb": { type: "string" },
  distribution: { type: "string" },
  network: { type: "string" },
  "spread-hosts": { type: "boolean", default: false },
  wait: { type: "boolean", default: false },
} as const;

/** A whole number flag, or a usage error naming the flag. */
function countFlag(text: string | undefined, flag: string, fallback?: number): number {
  if (text === undefined) {
    if (fallback === undefined) throw new UsageError(`--${flag} is required`, CREATE_USAGE);
    return fallback;
  }
  if (!/^\d+$/.test(text))
    throw new UsageError(`--${flag} must be a whole number, not '${text}'`, CREATE_USAGE);
  return Number(text);
}

function distributionFlag(text: string | undefined): Distribution | undefined {
  if (text === undefined) return undefined;
  if (!(DISTRIBUTIONS as readonly string[]).includes(text)) {
    throw new UsageError(`--distribution must be ${DISTRIBUTIONS.join(" or ")}, not '${text}'`, CREATE_USAGE);
  }
  return text as Distribution;
}

const create: Command = {
  summary: "declare a VM group in a region (--distribution spreads it over the region's datacenters)",
  usage: CREATE_USAGE,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, CREATE_OPTIONS, CREATE_USAGE, true);
    const [name] = positionalArgs(positionals, ["NAME"], CREATE_USAGE) as [string];
    for (const flag of ["image", "region"] as const) {
      if (values[flag] === undefined) throw new UsageError(`--${flag} is required`, CREATE_USAGE);
    }
    const size = countFlag(values.size, "size");
    const machine = {
      vcpus: countFlag(values.vcpus, "vcpus", 1),
      memory_mb: countFlag(values["memory-mb"], "memory-mb", 256),
    };
    const distribution = distributionFlag(values.distribution);
    const client = connect(resolveConnection(values, process.env));
    const image = await requireImage(client, values.image as string);
    // The API checks every value and names the one that is wrong.
    const body: CreateVmGroup = {
      name,
      image: image.id,
      region: values.region as string,
      size,
      machine,
      spread_hosts: values["spread-hosts"],
      metadata: {},
      metadata_from: {},
      labels: {},
      expose: [],
      network: values.network ?? DEFAULT_NETWORK.name,
      ...(distribution ? { distribution } : {}),
    };
    const operation = expectAnswer(
      `create VM group ${name}`,
      await callApi(() => client.POST("/v1/vm-groups", { body })),
    );
    const where = distribution
      ? `over the datacenters of ${body.region} (${distribution})`
      : `in a datacenter of ${body.region}`;
    if (!values.wait) {
      process.stdout.write(
        values.json
          ? `${JSON.stringify(operation)}\n`
          : `declared VM group ${name} (${operation.target.id}) ${where}: operation ${operation.id} places and starts it (follow it: globalvm operation watch ${operation.id}; then globalvm vm-group show ${name})\n`,
      );
      return EXIT_OK;
    }
    const ended = await watchOperation(client, operation);
    const group = ended.state === "succeeded" ? await findVmGroup(client, operation.target.id) : undefined;
    return reportOperationEnd(
      ended,
      values.json,
      `VM group ${name} (${operation.target.id}) is ready in ${group ? datacentersOf(group) : "-"}`,
    );
  },
};

export const vmGroupCommand = commandGroup("vm-group", "create and inspect VM groups", {
  ls,
  show,
  create,
});
