// Who QEMU runs as. A QEMU that a guest subverted has the rights of its user: when the manager
// runs as root, QEMU runs as an unprivileged user, which owns nothing it needs (the disks and
// sockets are inherited descriptors; see command-line.ts).
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";

/** The user QEMU runs as by default when the manager is root. */
export const DEFAULT_QEMU_USER = "nobody";

export interface ProcessIdentity {
  uid: number;
  gid: number;
}

/**
 * The identity to spawn QEMU with, or undefined to keep the manager's own: a manager that is
 * not root cannot change it, and "root" is the operator's explicit choice to keep it. Under
 * KVM the group is the one owning /dev/kvm, so the user needs no membership of its own.
 */
export function chooseQemuIdentity(facts: {
  managerUid: number;
  user: string;
  account: ProcessIdentity;
  kvmGid?: number | undefined;
}): ProcessIdentity | undefined {
  if (facts.managerUid !== 0 || facts.user === "root") return undefined;
  if (facts.account.uid === 0) {
    throw new Error(`the QEMU user ${facts.user} has uid 0; name an unprivileged user`);
  }
  return { uid: facts.account.uid, gid: facts.kvmGid ?? facts.account.gid };
}

/** The uid and gid of a user name, as the system's user database (NSS included) knows it. */
export function lookUpUser(user: string): ProcessIdentity {
  const id = (flag: string) => {
    try {
      return Number(
        execFileSync("id", [flag, "--", user], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }),
      );
    } catch {
      throw new Error(`the QEMU user ${JSON.stringify(user)} does not exist on this host`);
    }
  };
  return { uid: id("-u"), gid: id("-g") };
}

/** The identity QEMU is spawned with on this host, for this accelerator. */
export function qemuIdentity(user: string, accelerator: string): ProcessIdentity | undefined {
  const managerUid = process.getuid?.() ?? -1;
  if (managerUid !== 0 || user === "root") return undefined;
  return chooseQemuIdentity({
    managerUid,
    user,
    account: lookUpUser(user),
    kvmGid: accelerator === "kvm" ? statSync("/dev/kvm").gid : undefined,
  });
}
