// QEMU, run as an unprivileged user, attaches to its tap through /dev/net/tun. Opening that clone
// device grants nothing by itself: creating a tap needs CAP_NET_ADMIN, and attaching to an
// existing one needs to be its owner (the manager makes each tap owned by QEMU's user). That is
// why distributions ship it 0666 (systemd's udev rules). Hosts without those rules (minimal VMs,
// containers) leave it 0600, which only root can use: a root manager sets the usual mode once.
import { chmodSync, statSync } from "node:fs";

export const TUN_DEVICE = "/dev/net/tun";

/** What to do about the clone device's mode: nothing, or the mode to set (and why). */
export function tunModeChange(mode: number): number | undefined {
  return (mode & 0o666) === 0o666 ? undefined : (mode & 0o7777) | 0o666;
}

export function ensureTunUsableByAll(log: (line: string) => void = () => {}): void {
  const { mode } = statSync(TUN_DEVICE);
  const wanted = tunModeChange(mode);
  if (wanted === undefined) return;
  chmodSync(TUN_DEVICE, wanted);
  log(
    `${TUN_DEVICE} was ${(mode & 0o777).toString(8)}; set to ${(wanted & 0o777).toString(8)} as distributions ship it, so QEMU's unprivileged user can attach to its own tap`,
  );
}
