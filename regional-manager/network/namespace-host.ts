// A datacenter host standing in a network namespace (`ip netns`) rather than being the machine
// the manager runs on: its bridges, tunnels, taps, nftables rules and QEMU guests all live there,
// while the manager's own HTTP stays where it listens. `globalvm up` runs one such host per
// datacenter; an operator can do the same with `serve regional-manager --guest-network-netns`.
import { createHash } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { isExecutableOnPath } from "../../common/executables.ts";
import { DEFAULT_QEMU_USER, qemuIdentity } from "../compute/qemu/user.ts";

/** Where `ip netns add NAME` binds a namespace, and where nsenter finds it. */
export function namespacePath(netns: string): string {
  return `/run/netns/${netns}`;
}

/** What a namespace host needs that is missing, each named; empty when nothing is. */
export function missingForNamespaceHost(
  netns: string,
  facts: { exists: (path: string) => boolean; onPath: (program: string) => boolean } = {
    exists: existsSync,
    onPath: (program) => isExecutableOnPath(program),
  },
): string[] {
  const missing: string[] = [];
  if (!facts.exists(namespacePath(netns))) {
    missing.push(
      `the network namespace ${netns} (${namespacePath(netns)}; create it with ip netns add ${netns})`,
    );
  }
  if (!facts.onPath("nsenter")) missing.push("nsenter (util-linux), which starts QEMU in the namespace");
  if (!facts.onPath("setpriv")) {
    missing.push("setpriv (util-linux), which ties the endpoints' relays to the manager's life");
  }
  if (!facts.onPath("socat")) {
    missing.push(
      "socat (apt-get install socat), which relays guests' metadata requests out of the namespace and endpoints into it",
    );
  }
  return missing;
}

const SOCKET_BASE = "/run/globalvm";

/** Where the manager of `dataDir` keeps its metadata sockets (prepareMetadataSocketDir). */
export function metadataSocketDir(dataDir: string): string {
  return join(SOCKET_BASE, createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 16));
}

/**
 * The directory of a manager's per-instance metadata sockets. Outside its data dir, which QEMU's
 * user may not enter: root-owned, traversable by QEMU's group only, so other local users cannot
 * read a guest's metadata. One per data dir, so managers on one machine do not share it.
 */
export function prepareMetadataSocketDir(dataDir: string, qemuGid: number | undefined): string {
  const dir = metadataSocketDir(dataDir);
  mkdirSync(dir, { recursive: true });
  chmodSync(SOCKET_BASE, 0o711);
  if (qemuGid !== undefined) {
    chownSync(dir, process.getuid?.() ?? 0, qemuGid);
    chmodSync(dir, 0o710);
  } else {
    chmodSync(dir, 0o700);
  }
  return dir;
}

/**
 * What attaching guests to networks needs of this machine before any guest starts, for a manager
 * running its own guests and a host agent alike: the namespace checked, the user QEMU runs as
 * (owner of the taps and metadata sockets), and with a namespace the metadata socket directory.
 */
export function prepareGuestHost(options: {
  guestNetwork: { netns?: string } | undefined;
  qemuUser: string | undefined;
  dataDir: string;
}) {
  const netns = options.guestNetwork?.netns;
  if (netns) {
    const missing = missingForNamespaceHost(netns);
    if (missing.length > 0) throw new Error(`guest networking in a namespace needs ${missing.join("; ")}`);
  }
  const qemuOwner = options.guestNetwork
    ? qemuIdentity(options.qemuUser ?? DEFAULT_QEMU_USER, "tcg")
    : undefined;
  const metadataSockets = netns ? prepareMetadataSocketDir(options.dataDir, qemuOwner?.gid) : undefined;
  return {
    netns,
    qemuOwner,
    metadataSockets,
    /** The metadata service's socketDir option, when it must listen on unix sockets. */
    socketDir: metadataSockets
      ? { socketDir: { path: metadataSockets, ...(qemuOwner ? { group: qemuOwner.gid } : {}) } }
      : {},
  };
}
