// globalvm network ls | show
import type { ApiClient, Network } from "../client/api.ts";
import { type Command, CommandFailure, commandGroup, EXIT_OK } from "./command.ts";
import {
  CONNECTION_HELP,
  callApi,
  expectAnswer,
  findByIdOrName,
  oneArgumentCommandLine,
  pageQuery,
} from "./connection.ts";
import { formatFields } from "./format.ts";
import { listCommand } from "./list-command.ts";

const ID_PATTERN = /^net_[0-9a-hjkmnp-tv-z]{26}$/;

const LS_USAGE = `Usage: globalvm network ls [options]

Lists the project's networks and their address ranges.

Options:
${CONNECTION_HELP}
`;

const SHOW_USAGE = `Usage: globalvm network show ID|NAME [options]

Shows one network: its range and the size of each datacenter's subnet.

Options:
${CONNECTION_HELP}
`;

function labels(network: Network): string {
  const entries = Object.entries(network.labels);
  return entries.length > 0 ? entries.map(([key, value]) => `${key}=${value}`).join(",") : "-";
}

const ls = listCommand({
  summary: "list the project's networks",
  usage: LS_USAGE,
  action: "list networks",
  page: (client, page_token) => client.GET("/v1/networks", { params: { query: pageQuery(page_token) } }),
  columns: ["NAME", "ID", "CIDR", "SUBNETS", "LABELS"],
  row: (n: Network) => [n.name, n.id, n.cidr, `/${n.subnet_prefix_length}`, labels(n)],
});

export async function findNetwork(client: ApiClient, idOrName: string): Promise<Network | undefined> {
  return (await findByIdOrName(
    "network",
    idOrName,
    ID_PATTERN,
    () => client.GET("/v1/networks/{id}", { params: { path: { id: idOrName } } }),
    () => client.GET("/v1/networks", { params: { query: { name: idOrName } } }),
  )) as Network | undefined;
}

const show: Command = {
  summary: "show one network, by ID or name",
  usage: SHOW_USAGE,
  async run(args) {
    const { argument: idOrName, json, client } = oneArgumentCommandLine(args, SHOW_USAGE, "ID|NAME");
    const network = await findNetwork(client, idOrName);
    if (!network)
      throw new CommandFailure(`no network ${idOrName} in this project`, "see `globalvm network ls`");
    const text = formatFields([
      ["id", network.id],
      ["name", network.name],
      ["cidr", network.cidr],
      [
        "subnets",
        `a /${network.subnet_prefix_length} per datacenter, given when the network first needs one there`,
      ],
      ["labels", labels(network)],
      ["firewall", await firewallSummary(client, network)],
      ["created", network.created_at],
    ]);
    process.stdout.write(json ? `${JSON.stringify(network)}\n` : text);
    return EXIT_OK;
  },
};

/** How many rules the network has, and what traffic no rule matches gets. */
async function firewallSummary(client: ApiClient, network: Network): Promise<string> {
  const rules = expectAnswer(
    `list the firewall rules of ${network.name}`,
    await callApi(() =>
      client.GET("/v1/networks/{id}/firewall-rules", { params: { path: { id: network.id } } }),
    ),
  ).items;
  const otherwise =
    network.name === "default"
      ? "allowed between the network's own instances, denied from elsewhere"
      : "denied";
  return `${rules.length} rule${rules.length === 1 ? "" : "s"} (globalvm firewall-rule ls ${network.name}); what none matches is ${otherwise}`;
}

export const networkCommand = commandGroup("network", "inspect networks", { ls, show });
