// --guest-network-underlay and --guest-network-netns, as a manager and a host agent take them:
// both attach guests to their networks on the machine (or namespace) they run them on.
import { parseIpv4 } from "../schemas/ipv4.ts";
import { UsageError } from "./command.ts";

export function guestNetworkOptions(
  underlay: string | undefined,
  netns: string | undefined,
  usage: string,
): { guestNetwork?: { underlayAddress: string; netns?: string } } {
  if (netns !== undefined && underlay === undefined) {
    throw new UsageError("--guest-network-netns needs --guest-network-underlay", usage);
  }
  if (netns !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(netns)) {
    throw new UsageError(`--guest-network-netns: ${JSON.stringify(netns)} is not a namespace name`, usage);
  }
  if (underlay === undefined) return {};
  if (parseIpv4(underlay) === undefined) {
    throw new UsageError(
      `--guest-network-underlay: ${JSON.stringify(underlay)} is not an IPv4 address`,
      usage,
    );
  }
  return { guestNetwork: { underlayAddress: underlay, ...(netns !== undefined ? { netns } : {}) } };
}
