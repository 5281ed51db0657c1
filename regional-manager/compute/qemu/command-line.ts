// The qemu-system-x86_64 command line of one instance: a pure function of its launch plan, and
// the argv that runs it (niced, in a network namespace when there is one).
import type { Accelerator } from "../accelerator.ts";

export const METADATA_ADDRESS = "169.254.169.254";

/** A listener of the manager's: a loopback port, or a unix socket. */
export type RelayTarget = { host: string; port: number } | { socket: string };

export interface QemuLaunchPlan {
  instanceId: string;
  vcpus: number;
  memoryMb: number;
  accelerator: Accelerator;
  /** The stored image, read-only (QEMU gets it as the descriptor CHILD_FDS.image). */
  image: { path: string; format: "raw" | "qcow2" };
  /** The instance's copy-on-write disk (qcow2 over the stored image; descriptor CHILD_FDS.overlay). */
  overlayPath: string;
  /**
   * Where guest connections to 169.254.169.254:80 are relayed (the instance's metadata listener):
   * a loopback port, or a unix socket when QEMU runs in a network namespace of its own.
   */
  metadataEndpoint: RelayTarget;
  /** Where guest connections to 169.254.169.254:53 (DNS over TCP) are relayed, when the guest has DNS. */
  dnsEndpoint?: RelayTarget;
  /** A program that relays stdin/stdout to host:port, e.g. ["/bin/busybox", "nc"]. */
  relayCommand: readonly string[];
  /** The guest's NIC on its private network: an existing tap QEMU may open, and the guest's MAC. */
  privateNic?: { tap: string; mac: string };
}

/**
 * What QEMU inherits instead of opening anything by name: the stored image (read-only) and
 * the overlay, through -add-fd fdsets, and the listening QMP and console sockets. So QEMU,
 * run as an unprivileged user, needs no access to the manager's data dir.
 */
export const CHILD_FDS = { image: 3, overlay: 4, qmp: 5, console: 6 } as const;
const FDSETS = { image: 1, overlay: 2 } as const;

/**
 * The seccomp filter: obsolete system calls and scheduler/affinity control are denied. Spawning
 * and the "privilege" calls are not: guestfwd forks and execs the metadata relay per guest
 * connection, and the relay's child calls setsid(), which elevateprivileges=deny also denies.
 * Privileges are dropped instead by running QEMU as an unprivileged user (see user.ts).
 */
export const SANDBOX = "on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny";

/** Option values are comma-separated; a literal comma is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

export function buildQemuArgs(plan: QemuLaunchPlan): string[] {
  // guestfwd with "cmd:" runs the relay once per guest connection, so every HTTP request of the
  // guest reaches the instance's own listener; a chardev target would be one shared stream.
  const forward = (port: number, target: RelayTarget) =>
    `guestfwd=tcp:${METADATA_ADDRESS}:${port}-cmd:${escapeOptionValue(relayCommandLine(plan, target))}`;
  const netdev = [
    "user",
    "id=net0",
    // The guest's network is the link-local range, so 169.254.169.254 is on-link as on clouds.
    "net=169.254.0.0/16",
    // No route from the guest to the host or the outside: only the metadata address is reachable.
    "restrict=on",
    forward(80, plan.metadataEndpoint),
    // DNS at the metadata address, as on GCE. The user network forwards TCP only: the guest's
    // resolver asks over TCP.
    ...(plan.dnsEndpoint ? [forward(53, plan.dnsEndpoint)] : []),
  ].join(",");

  return [
    ...["-name", `guest=${escapeOptionValue(`globalvm-${plan.instanceId}`)}`],
    ...["-machine", "pc", "-accel", plan.accelerator],
    ...(plan.accelerator === "kvm" ? ["-cpu", "host"] : []),
    ...["-smp", String(plan.vcpus), "-m", String(plan.memoryMb)],
    ...["-nodefaults", "-no-user-config", "-display", "none"],
    // A guest reset ends the process, so a crash is seen instead of looping through reboots.
    "-no-reboot",
    // Paused until the manager has attached to the console, so no boot output is lost.
    "-S",
    ...["-sandbox", SANDBOX],
    ...["-chardev", `socket,id=qmp,fd=${CHILD_FDS.qmp},server=on,wait=off`],
    ...["-mon", "chardev=qmp,mode=control"],
    ...["-chardev", `socket,id=console,fd=${CHILD_FDS.console},server=on,wait=off`],
    ...["-serial", "chardev:console"],
    ...diskArgs(plan),
    ...["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"],
    // The private NIC comes second, so the guest's first NIC stays the metadata link. QEMU
    // opens the tap the manager made (owned by QEMU's user) and runs no ifup script.
    ...(plan.privateNic
      ? [
          ...["-netdev", `tap,id=net1,ifname=${plan.privateNic.tap},script=no,downscript=no`],
          ...["-device", `virtio-net-pci,netdev=net1,mac=${plan.privateNic.mac}`],
        ]
      : []),
  ];
}

/** The command relaying one guest connection (stdin/stdout) to `target`. */
function relayCommandLine(plan: QemuLaunchPlan, target: RelayTarget): string {
  // busybox nc speaks TCP only: a unix socket is reached with socat.
  return "socket" in target
    ? ["socat", "-", `UNIX-CONNECT:${target.socket}`].join(" ")
    : [...plan.relayCommand, target.host, String(target.port)].join(" ");
}

/**
 * The disk as an explicit chain of two nodes: the stored image, read-only and (where its
 * format has one) with no backing, and the overlay, whose backing is that node. Whatever
 * either header names, QEMU follows no other file. The opaque labels say which file each
 * descriptor is (and let the manager recognize its QEMU after a restart; see process.ts).
 */
function diskArgs(plan: QemuLaunchPlan): string[] {
  const blockdev = (options: Record<string, unknown>) => ["-blockdev", JSON.stringify(options)];
  return [
    ...["-add-fd", `fd=${CHILD_FDS.image},set=${FDSETS.image},opaque=${escapeOptionValue(plan.image.path)}`],
    ...[
      "-add-fd",
      `fd=${CHILD_FDS.overlay},set=${FDSETS.overlay},opaque=${escapeOptionValue(plan.overlayPath)}`,
    ],
    ...blockdev({
      driver: "file",
      "node-name": "image-file",
      filename: `/dev/fdset/${FDSETS.image}`,
      "read-only": true,
    }),
    ...blockdev({
      driver: plan.image.format,
      "node-name": "image",
      file: "image-file",
      "read-only": true,
      ...(plan.image.format === "qcow2" ? { backing: null } : {}),
    }),
    ...blockdev({ driver: "file", "node-name": "overlay-file", filename: `/dev/fdset/${FDSETS.overlay}` }),
    ...blockdev({ driver: "qcow2", "node-name": "overlay", file: "overlay-file", backing: "image" }),
    ...["-device", "virtio-blk-pci,drive=overlay"],
  ];
}

/**
 * qemu-img arguments creating the instance's overlay over the stored image. With -u and the
 * size given, qemu-img does not open the image (nor anything its header might name); the
 * name recorded in the overlay is informative only, as QEMU is given the chain explicitly.
 */
export function buildOverlayArgs(
  imagePath: string,
  imageFormat: string,
  virtualSize: number,
  overlayPath: string,
): string[] {
  return [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-u",
    "-b",
    imagePath,
    "-F",
    imageFormat,
    overlayPath,
    String(virtualSize),
  ];
}

/**
 * The niceness guests run at. Busy guests must never starve the processes that manage them: a
 * host agent that misses its syncs is called down and its guests are moved (60 TCG guests
 * booting on 2 cores left a control plane unanswered for over a minute at the same priority).
 */
export const GUEST_NICENESS = 10;

/**
 * QEMU's argv: run directly, or entering a network namespace first (then nsenter sets the
 * user); through `nice` either way, which, like nsenter, execs QEMU in the same process.
 */
export function qemuCommand(
  qemuBinary: string,
  args: readonly string[],
  identity: { uid: number; gid: number } | undefined,
  netns: string | undefined,
): string[] {
  const nice = ["nice", "-n", String(GUEST_NICENESS)];
  if (!netns) return [...nice, qemuBinary, ...args];
  return [
    ...nice,
    "nsenter",
    `--net=/run/netns/${netns}`,
    // --setgid also drops the supplementary groups.
    ...(identity ? [`--setuid=${identity.uid}`, `--setgid=${identity.gid}`] : []),
    "--",
    qemuBinary,
    ...args,
  ];
}
