// globalvm serve host-agent: one machine of a datacenter running the guests its manager
// places on it (regional-manager/host-agent/service.ts).
import { hostname } from "node:os";
import { NameSchema } from "../schemas/common.ts";
import { type Command, CommandFailure, closeOnSignal, parseCommandLine, UsageError } from "./command.ts";
import { guestNetworkOptions } from "./guest-network-flags.ts";

export const HOST_AGENT_USAGE = `Usage: globalvm serve host-agent --datacenter D --manager URL --data-dir DIR
                                 [--name NAME] [--vcpus N] [--memory-mb N] [--cache-bytes N]
                                 [--guest-network-underlay ADDRESS [--guest-network-netns NAME]]

One host of a datacenter: registers with the datacenter's manager (started with --host-agents),
runs the guests the manager places on it with QEMU, serves them their metadata, and keeps a
cache of the image versions they boot from, fetched from the manager's store chunk by chunk
(only what the cache lacks, every chunk verified). Guests keep running when it stops and are
taken over by the next start; guests the manager no longer assigns here are removed.

Options:
  --datacenter D     the datacenter this host belongs to
  --manager URL      the datacenter's regional manager
  --data-dir DIR     image cache and guests (made 0700; refused if other users can write to it)
  --name NAME        this host's name in the datacenter (default: the machine's hostname)
  --vcpus N          vCPUs offered to guests (default: this machine's cores)
  --memory-mb N      memory offered to guests, in MiB (default: this machine's)
  --cache-bytes N    most bytes of images the cache keeps; least recently used versions no
                     guest boots from go first (default 20 GiB)
  --qemu-user U      when run as root, the user QEMU runs as (default nobody)
  --guest-network-underlay ADDRESS
                     attach guests to their networks on this host: a bridge per network, a
                     tap per guest, a VXLAN tunnel from ADDRESS (this host's address toward
                     the other hosts, of this datacenter and others) and nftables rules (needs
                     root or CAP_NET_ADMIN). The manager tells the host where the other
                     tunnels end and each network's firewall. An instance keeps its address
                     when it is recreated on another host. Without it guests run isolated.
  --guest-network-netns NAME
                     with --guest-network-underlay: this host is the network namespace NAME
                     (ip netns add NAME): bridges, tunnels, taps, rules and QEMU live there.
                     Needs nsenter and socat.
  -h, --help         show this help

Environment:
  GLOBALVM_MANAGER_CREDENTIAL  a manager credential of the datacenter (POST /v1/manager-credentials)
`;

function wholeNumber(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`--${flag} must be a whole number above 0, not '${text}'`, HOST_AGENT_USAGE);
  }
  return Number(text);
}

export const hostAgentCommand: Command = {
  summary: "run one host of a datacenter: the guests its manager places here",
  usage: HOST_AGENT_USAGE,
  async run(args) {
    const { values } = parseCommandLine(
      args,
      {
        datacenter: { type: "string" },
        manager: { type: "string" },
        "data-dir": { type: "string" },
        name: { type: "string" },
        vcpus: { type: "string" },
        "memory-mb": { type: "string" },
        "cache-bytes": { type: "string" },
        "qemu-user": { type: "string" },
        "guest-network-underlay": { type: "string" },
        "guest-network-netns": { type: "string" },
      },
      HOST_AGENT_USAGE,
    );
    for (const flag of ["datacenter", "manager", "data-dir"] as const) {
      if (!values[flag]) throw new UsageError(`serve host-agent needs --${flag}`, HOST_AGENT_USAGE);
    }
    const name = values.name ?? hostname().toLowerCase();
    if (!NameSchema.safeParse(name).success) {
      throw new UsageError(
        `--name: ${JSON.stringify(name)} is not a host name (lowercase letters, digits and '-', starting with a letter)`,
        HOST_AGENT_USAGE,
      );
    }
    const credential = process.env.GLOBALVM_MANAGER_CREDENTIAL;
    if (!credential) {
      throw new UsageError(
        "set GLOBALVM_MANAGER_CREDENTIAL to a manager credential of the datacenter",
        HOST_AGENT_USAGE,
      );
    }
    const vcpus = wholeNumber("vcpus", values.vcpus);
    const memoryMb = wholeNumber("memory-mb", values["memory-mb"]);
    const cacheBytes = wholeNumber("cache-bytes", values["cache-bytes"]);
    const network = guestNetworkOptions(
      values["guest-network-underlay"],
      values["guest-network-netns"],
      HOST_AGENT_USAGE,
    );
    const { startHostAgent } = await import("../regional-manager/host-agent/service.ts");
    const agent = await startHostAgent({
      name,
      datacenter: values.datacenter as string,
      managerUrl: values.manager as string,
      credential,
      dataDir: values["data-dir"] as string,
      capacity: {
        ...(vcpus !== undefined ? { vcpus } : {}),
        ...(memoryMb !== undefined ? { memory_mb: memoryMb } : {}),
      },
      ...(cacheBytes !== undefined ? { cacheLimitBytes: cacheBytes } : {}),
      ...(values["qemu-user"] ? { qemuUser: values["qemu-user"] } : {}),
      ...network,
    }).catch((error: unknown) => {
      throw new CommandFailure(
        `host agent ${name}: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    console.log(`globalvm host agent ${name} of ${values.datacenter}, manager ${values.manager}`);
    closeOnSignal(() => agent.close());
    return new Promise<number>(() => {});
  },
};
