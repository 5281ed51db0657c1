// The qemu-system-x86_64 command line of one instance: a pure function of its launch plan.
import type { Accelerator } from "../accelerator.ts";

export const METADATA_ADDRESS = "169.254.169.254";

export interface QemuLaunchPlan {
  instanceId: string;
  vcpus: number;
  memoryMb: number;
  accelerator: Accelerator;
  /** The instance's copy-on-write disk (qcow2 over the stored image). */
  overlayPath: string;
  qmpSocket: string;
  serialSocket: string;
  /** Where guest connections to 169.254.169.254:80 are relayed (the instance's metadata listener). */
  metadataEndpoint: { host: string; port: number };
  /** A program that relays stdin/stdout to host:port, e.g. ["/bin/busybox", "nc"]. */
  relayCommand: readonly string[];
}

/** Option values are comma-separated; a literal comma is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

export function buildQemuArgs(plan: QemuLaunchPlan): string[] {
  const { host, port } = plan.metadataEndpoint;
  // guestfwd with "cmd:" runs the relay once per guest connection, so every HTTP request of the
  // guest reaches the instance's own listener; a chardev target would be one shared stream.
  const relay = [...plan.relayCommand, host, String(port)].join(" ");
  const netdev = [
    "user",
    "id=net0",
    // The guest's network is the link-local range, so 169.254.169.254 is on-link as on clouds.
    "net=169.254.0.0/16",
    // No route from the guest to the host or the outside: only the metadata address is reachable.
    "restrict=on",
    `guestfwd=tcp:${METADATA_ADDRESS}:80-cmd:${escapeOptionValue(relay)}`,
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
    ...["-chardev", `socket,id=qmp,path=${escapeOptionValue(plan.qmpSocket)},server=on,wait=off`],
    ...["-mon", "chardev=qmp,mode=control"],
    ...["-chardev", `socket,id=console,path=${escapeOptionValue(plan.serialSocket)},server=on,wait=off`],
    ...["-serial", "chardev:console"],
    ...["-drive", `file=${escapeOptionValue(plan.overlayPath)},format=qcow2,if=virtio,cache=writeback`],
    ...["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"],
  ];
}

/** qemu-img arguments creating the instance's overlay on top of the (read-only) stored image. */
export function buildOverlayArgs(imagePath: string, imageFormat: string, overlayPath: string): string[] {
  return ["create", "-q", "-f", "qcow2", "-b", imagePath, "-F", imageFormat, overlayPath];
}
