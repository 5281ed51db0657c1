// What the end of an instance's VM process means for its state.
import type { InstanceState } from "./types.ts";

export interface VmEnd {
  /** The manager asked for it (stop or delete). */
  requested: boolean;
  /** The reason QEMU gave in its SHUTDOWN event, if one arrived ("guest-shutdown", "guest-reset", ...). */
  shutdownReason: string | undefined;
  /** The guest reported a panic (GUEST_PANICKED). */
  panicked: boolean;
  exitCode: number | null;
  signal: string | null;
}

export function classifyVmEnd(end: VmEnd): {
  state: Extract<InstanceState, "stopped" | "failed">;
  reason: string;
} {
  if (end.requested) return { state: "stopped", reason: "stopped by the manager" };
  if (end.panicked) return { state: "failed", reason: "the guest kernel panicked" };
  switch (end.shutdownReason) {
    case "guest-shutdown":
      return { state: "stopped", reason: "the guest powered off" };
    case "guest-reset":
      // The VM runs with -no-reboot and the guest kernel with panic=-1: a reset is a crash or a
      // reboot nobody asked for, and either way the instance is no longer doing its job.
      return { state: "failed", reason: "the guest reset itself (kernel panic or reboot)" };
    case "guest-panic":
      return { state: "failed", reason: "the guest kernel panicked" };
    case "host-signal":
      return { state: "failed", reason: "the VM process was ended by a signal on the host" };
    case undefined:
      break;
    default:
      return { state: "failed", reason: `the VM shut down unexpectedly (${end.shutdownReason})` };
  }
  if (end.signal) return { state: "failed", reason: `the VM process was killed by ${end.signal}` };
  if (end.exitCode !== null && end.exitCode !== 0) {
    return { state: "failed", reason: `the VM process exited with status ${end.exitCode}` };
  }
  return { state: "failed", reason: "the VM process ended without a shutdown" };
}
