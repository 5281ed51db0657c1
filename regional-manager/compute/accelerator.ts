// Which accelerator QEMU should use. KVM is chosen only when a probe guest really boots under
// it: on some hosts /dev/kvm exists and opens, yet guests hang (or QEMU aborts) under it, so the
// device alone proves nothing. TCG (software emulation) is the fallback that always works.
import { spawn } from "node:child_process";
import { accessSync, constants, readFileSync, statSync, writeFileSync } from "node:fs";
import { release } from "node:os";

export type Accelerator = "kvm" | "tcg";

/** A Linux kernel (and initramfs) whose console prints `marker` once it has booted. */
export interface ProbeGuest {
  kernel: string;
  initrd?: string;
  /** Kernel command line; must send the console to ttyS0. */
  append?: string;
  /** Text on the serial console that proves the guest booted. */
  marker?: string;
}

export interface AcceleratorChoice {
  accelerator: Accelerator;
  /** Why KVM was or was not chosen. */
  reason: string;
}

export interface AcceleratorProbeOptions {
  qemuBinary: string;
  /** Without a probe guest KVM cannot be shown to work, so TCG is chosen. */
  probeGuest?: ProbeGuest;
  timeoutMs?: number;
  /** Remembers the choice across manager starts (a failing probe costs its whole timeout). */
  cacheFile?: string;
  kvmDevice?: string;
}

export const DEFAULT_PROBE_MARKER = "Run /init as init process";

/** The choice from a probe's outcome: a pure rule, kept apart from running the probe. */
export function chooseAccelerator(kvm: {
  available: boolean;
  booted: boolean;
  detail: string;
}): AcceleratorChoice {
  if (!kvm.available) return { accelerator: "tcg", reason: `KVM unavailable: ${kvm.detail}` };
  if (!kvm.booted) return { accelerator: "tcg", reason: `KVM probe guest did not boot: ${kvm.detail}` };
  return { accelerator: "kvm", reason: `KVM probe guest booted: ${kvm.detail}` };
}

export async function probeAccelerator(options: AcceleratorProbeOptions): Promise<AcceleratorChoice> {
  const kvmDevice = options.kvmDevice ?? "/dev/kvm";
  try {
    accessSync(kvmDevice, constants.R_OK | constants.W_OK);
  } catch (error) {
    return chooseAccelerator({
      available: false,
      booted: false,
      detail: `${kvmDevice}: ${(error as Error).message}`,
    });
  }
  const guest = options.probeGuest;
  if (!guest)
    return chooseAccelerator({ available: true, booted: false, detail: "no probe guest configured" });

  const cacheKey = probeCacheKey(options.qemuBinary, guest);
  const cached = options.cacheFile ? readCachedChoice(options.cacheFile, cacheKey) : undefined;
  if (cached) return cached;

  const outcome = await bootProbeGuest(options.qemuBinary, guest, options.timeoutMs ?? 15_000);
  const choice = chooseAccelerator({ available: true, ...outcome });
  if (options.cacheFile) writeFileSync(options.cacheFile, `${JSON.stringify({ key: cacheKey, choice })}\n`);
  return choice;
}

function probeCacheKey(qemuBinary: string, guest: ProbeGuest): string {
  const kernelStamp = (() => {
    try {
      const stat = statSync(guest.kernel);
      return `${stat.size}@${stat.mtimeMs}`;
    } catch {
      return "missing";
    }
  })();
  // A new host kernel, QEMU or probe guest may change the outcome.
  return [release(), qemuBinary, guest.kernel, kernelStamp, guest.append ?? "", guest.marker ?? ""].join("|");
}

function readCachedChoice(cacheFile: string, key: string): AcceleratorChoice | undefined {
  try {
    const cached = JSON.parse(readFileSync(cacheFile, "utf8")) as {
      key?: string;
      choice?: AcceleratorChoice;
    };
    if (
      cached.key === key &&
      (cached.choice?.accelerator === "kvm" || cached.choice?.accelerator === "tcg")
    ) {
      return { ...cached.choice, reason: `${cached.choice.reason} (cached)` };
    }
  } catch {
    // No cache yet, or an unreadable one: probe again.
  }
  return undefined;
}

function bootProbeGuest(
  qemuBinary: string,
  guest: ProbeGuest,
  timeoutMs: number,
): Promise<{ booted: boolean; detail: string }> {
  const marker = guest.marker ?? DEFAULT_PROBE_MARKER;
  const args = [
    ...["-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", "128", "-smp", "1"],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio"],
    ...["-kernel", guest.kernel],
    ...(guest.initrd ? ["-initrd", guest.initrd] : []),
    ...["-append", guest.append ?? "console=ttyS0 panic=-1"],
  ];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(qemuBinary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let stderr = "";
    let settled = false;
    const finish = (booted: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      resolve({ booted, detail });
    };
    const timer = setTimeout(
      () => finish(false, `no "${marker}" on its console within ${timeoutMs} ms`),
      timeoutMs,
    );
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output = (output + chunk).slice(-4096);
      if (output.includes(marker)) finish(true, `reached "${marker}" in ${Date.now() - started} ms`);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-2048);
    });
    child.on("error", (error) => finish(false, `cannot run ${qemuBinary}: ${error.message}`));
    child.on("exit", (code, signal) =>
      finish(
        false,
        `QEMU ended (${signal ?? `status ${code}`}) before booting: ${stderr.trim().split("\n").at(-1) ?? ""}`,
      ),
    );
  });
}
