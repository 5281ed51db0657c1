// globalvm firewall-rule ls | create | delete: a network's ingress rules.
import type { ApiClient, FirewallRule, Network, Schemas } from "../client/api.ts";
import { DEFAULT_FIREWALL_PRIORITY } from "../schemas/firewall-rules.ts";
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
  resolveConnection,
} from "./connection.ts";
import { formatTable } from "./format.ts";
import { findNetwork } from "./network.ts";

type CreateFirewallRule = Schemas["CreateFirewallRule"];

const ID_PATTERN = /^fwr_[0-9a-hjkmnp-tv-z]{26}$/;

const LS_USAGE = `Usage: globalvm firewall-rule ls NETWORK [options]

Lists a network's ingress rules in the order they are evaluated (lowest priority first; the
first that matches decides). NETWORK is its ID or name.

Options:
${CONNECTION_HELP}
`;

const CREATE_USAGE = `Usage: globalvm firewall-rule create NETWORK NAME --action allow|deny --protocol tcp|udp|icmp|all
         (--source-cidr CIDR | --source-vm-group GROUP) [--ports 80,8000-8080] [--priority N] [options]

Adds an ingress rule to a network; running guests get it in every datacenter, without a
restart. Traffic no rule matches follows the network's default: \`default\` lets its own
instances talk, any other network denies what no rule allows.

Options:
  --action allow|deny      what a matching packet gets
  --protocol P             tcp, udp, icmp or all
  --source-cidr CIDR       packets from this IPv4 block (0.0.0.0/0: anywhere)
  --source-vm-group GROUP  packets from the instances of this VM group, wherever they run
  --ports LIST             destination ports or ranges, comma-separated (tcp and udp; default: all)
  --priority N             0..65535, lower first (default 1000)
  --description TEXT       what the rule is for
${CONNECTION_HELP}
`;

const DELETE_USAGE = `Usage: globalvm firewall-rule delete NETWORK RULE [options]

Deletes a rule (RULE is its ID or name); traffic it decided follows the next matching rule or
the network's default.

Options:
${CONNECTION_HELP}
`;

function source(rule: FirewallRule): string {
  return rule.source.cidr ?? `vm-group:${rule.source.vm_group}`;
}

async function networkOf(client: ApiClient, idOrName: string): Promise<Network> {
  const network = await findNetwork(client, idOrName);
  if (!network)
    throw new CommandFailure(`no network ${idOrName} in this project`, "see `globalvm network ls`");
  return network;
}

async function rulesOf(client: ApiClient, network: Network): Promise<FirewallRule[]> {
  return expectAnswer(
    `list the firewall rules of ${network.name}`,
    await callApi(() =>
      client.GET("/v1/networks/{id}/firewall-rules", { params: { path: { id: network.id } } }),
    ),
  ).items;
}

const ls: Command = {
  summary: "list a network's rules, in evaluation order",
  usage: LS_USAGE,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, CONNECTION_OPTIONS, LS_USAGE, true);
    const [networkName] = positionalArgs(positionals, ["NETWORK"], LS_USAGE) as [string];
    const client = connect(resolveConnection(values, process.env));
    const rules = await rulesOf(client, await networkOf(client, networkName));
    process.stdout.write(
      values.json
        ? `${JSON.stringify(rules)}\n`
        : formatTable(
            ["PRIORITY", "NAME", "ACTION", "PROTOCOL", "PORTS", "SOURCE", "ID"],
            rules.map((r) => [
              String(r.priority),
              r.name,
              r.action,
              r.protocol,
              r.ports.length > 0 ? r.ports.join(",") : "all",
              source(r),
              r.id,
            ]),
          ),
    );
    return EXIT_OK;
  },
};

const CREATE_OPTIONS = {
  ...CONNECTION_OPTIONS,
  action: { type: "string" },
  protocol: { type: "string" },
  "source-cidr": { type: "string" },
  "source-vm-group": { type: "string" },
  ports: { type: "string" },
  priority: { type: "string" },
  description: { type: "string" },
} as const;

const create: Command = {
  summary: "add an ingress rule to a network",
  usage: CREATE_USAGE,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, CREATE_OPTIONS, CREATE_USAGE, true);
    const [networkName, name] = positionalArgs(positionals, ["NETWORK", "NAME"], CREATE_USAGE) as [
      string,
      string,
    ];
    for (const flag of ["action", "protocol"] as const) {
      if (values[flag] === undefined) throw new UsageError(`--${flag} is required`, CREATE_USAGE);
    }
    if ((values["source-cidr"] === undefined) === (values["source-vm-group"] === undefined)) {
      throw new UsageError("give one of --source-cidr and --source-vm-group", CREATE_USAGE);
    }
    const priority = values.priority === undefined ? undefined : Number(values.priority);
    if (priority !== undefined && !/^\d+$/.test(values.priority as string)) {
      throw new UsageError(
        `--priority must be a number from 0 to 65535, not '${values.priority}'`,
        CREATE_USAGE,
      );
    }
    const client = connect(resolveConnection(values, process.env));
    const network = await networkOf(client, networkName);
    // The API checks every value and names the one that is wrong.
    const body: CreateFirewallRule = {
      name,
      action: values.action as CreateFirewallRule["action"],
      protocol: values.protocol as CreateFirewallRule["protocol"],
      source:
        values["source-cidr"] !== undefined
          ? { cidr: values["source-cidr"] }
          : { vm_group: values["source-vm-group"] },
      direction: "ingress",
      ports: values.ports !== undefined ? values.ports.split(",").map((p) => p.trim()) : [],
      priority: priority ?? DEFAULT_FIREWALL_PRIORITY,
      description: values.description ?? "",
    };
    const rule = expectAnswer(
      `create firewall rule ${name} in ${network.name}`,
      await callApi(() =>
        client.POST("/v1/networks/{id}/firewall-rules", {
          params: { path: { id: network.id } },
          body,
        }),
      ),
    );
    process.stdout.write(
      values.json
        ? `${JSON.stringify(rule)}\n`
        : `created ${rule.name} (${rule.id}) in ${network.name}: ${rule.action} ${rule.protocol} ${rule.ports.length > 0 ? rule.ports.join(",") : "all ports"} from ${source(rule)}, priority ${rule.priority}\n`,
    );
    return EXIT_OK;
  },
};

const remove: Command = {
  summary: "delete a rule, by ID or name",
  usage: DELETE_USAGE,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, CONNECTION_OPTIONS, DELETE_USAGE, true);
    const [networkName, ruleName] = positionalArgs(positionals, ["NETWORK", "RULE"], DELETE_USAGE) as [
      string,
      string,
    ];
    const client = connect(resolveConnection(values, process.env));
    const network = await networkOf(client, networkName);
    const rule = (await rulesOf(client, network)).find((r) =>
      ID_PATTERN.test(ruleName) ? r.id === ruleName : r.name === ruleName,
    );
    if (!rule) {
      throw new CommandFailure(
        `no firewall rule ${ruleName} in network ${network.name}`,
        `see \`globalvm firewall-rule ls ${network.name}\``,
      );
    }
    const answer = await callApi(() =>
      client.DELETE("/v1/networks/{id}/firewall-rules/{rule_id}", {
        params: { path: { id: network.id, rule_id: rule.id } },
      }),
    );
    if (answer.response.status !== 204) expectAnswer(`delete firewall rule ${rule.name}`, answer);
    process.stdout.write(
      values.json ? `${JSON.stringify({ deleted: rule.id })}\n` : `deleted ${rule.name} (${rule.id})\n`,
    );
    return EXIT_OK;
  },
};

export const firewallRuleCommand = commandGroup("firewall-rule", "a network's ingress rules", {
  ls,
  create,
  delete: remove,
});
