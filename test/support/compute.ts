// Shared by the compute tests and the boot benchmark: the guest image (built once, cached under
// .globalvm/), instance specs, and bounded waits on driver events.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import type {
  ComputeDriver,
  InstanceSpec,
  InstanceState,
  InstanceStateChange,
} from "../../regional-manager/compute/index.ts";
import { isInstanceProcess } from "../../regional-manager/compute/qemu/process.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const GUEST_IMAGE = join(REPO_ROOT, ".globalvm/images/guest.qcow2");
export const GUEST_KERNEL = join(REPO_ROOT, ".globalvm/images/guest-vmlinuz");
export const GUEST_INITRD = join(REPO_ROOT, ".globalvm/images/guest-initrd.gz");
export const PROBE_CACHE = join(REPO_ROOT, ".globalvm/accelerator-probe.json");
/** Printed by the guest once it has read its metadata (scripts/guest/init). */
export const BOOT_MARKER = "GLOBALVM-GUEST-BOOTED";

/** Builds the guest image unless an up-to-date one is cached (the script decides). */
export function ensureGuestImage(): string {
  execFileSync(join(REPO_ROOT, "scripts/build-guest-image"), [GUEST_IMAGE], {
    stdio: "pipe",
    timeout: 600_000,
  });
  if (!existsSync(GUEST_IMAGE)) throw new Error(`build-guest-image did not produce ${GUEST_IMAGE}`);
  return GUEST_IMAGE;
}

export const PROBE_GUEST = { kernel: GUEST_KERNEL, initrd: GUEST_INITRD };

export function guestSpec(instanceId: string, overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    instanceId,
    name: `web-${instanceId}`,
    vmGroup: "web",
    region: "eu-west",
    datacenter: "eu-west-a",
    image: { path: GUEST_IMAGE, format: "qcow2", id: "img_guest" },
    vcpus: 1,
    memoryMb: 192,
    metadata: { role: "web" },
    ...overrides,
  };
}

/**
 * A wait set up before the action that satisfies it. If that action throws first, the wait is
 * never awaited; its rejection must not surface as an unhandled one (the action's error is the
 * one that matters), while whoever does await it still sees it.
 */
function armed<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** Resolves with the first state change of the instance to `state`; rejects on timeout or on failed. */
export function waitForState(
  driver: ComputeDriver,
  instanceId: string,
  state: InstanceState,
  timeoutMs: number,
): Promise<InstanceStateChange> {
  return armed(
    new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        driver.off("state", listener);
        reject(
          new Error(
            `${instanceId} did not become ${state} within ${timeoutMs} ms (now ${driver.status(instanceId).state}); console:\n${driver.consoleLog(instanceId, { tailBytes: 2_000 })}`,
          ),
        );
      }, timeoutMs);
      const listener = (change: InstanceStateChange) => {
        if (change.instanceId !== instanceId) return;
        if (change.state === state || (change.state === "failed" && state !== "failed")) {
          clearTimeout(timer);
          driver.off("state", listener);
          if (change.state === state) resolvePromise(change);
          else
            reject(
              new Error(
                `${instanceId} failed while waiting for ${state}: ${change.reason}\n${change.consoleTail}`,
              ),
            );
        }
      };
      driver.on("state", listener);
    }),
  );
}

/** Resolves with the first console line of the instance that matches, and when it arrived. */
export function waitForConsoleLine(
  driver: ComputeDriver,
  instanceId: string,
  matches: (line: string) => boolean,
  timeoutMs: number,
): Promise<{ line: string; at: Date }> {
  return armed(
    new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        driver.off("console", listener);
        reject(
          new Error(
            `no matching console line from ${instanceId} within ${timeoutMs} ms; console:\n${driver.consoleLog(instanceId, { tailBytes: 2_000 })}`,
          ),
        );
      }, timeoutMs);
      const listener = (event: { instanceId: string; line: string; at: Date }) => {
        if (event.instanceId !== instanceId || !matches(event.line)) return;
        clearTimeout(timer);
        driver.off("console", listener);
        resolvePromise({ line: event.line, at: event.at });
      };
      driver.on("console", listener);
    }),
  );
}

/** Resolves once the instance's console log holds `text` (already or later); rejects on timeout. */
export async function waitForConsoleText(
  driver: ComputeDriver,
  instanceId: string,
  text: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!driver.consoleLog(instanceId).includes(text)) {
    if (Date.now() > deadline) {
      throw new Error(
        `${JSON.stringify(text)} not on the console of ${instanceId} within ${timeoutMs} ms; console:\n${driver.consoleLog(instanceId, { tailBytes: 2_000 })}`,
      );
    }
    await new Promise((resolveDelay) => setTimeout(resolveDelay, 100));
  }
}

/**
 * Puts the guest image into a manager's chunk store the way an upload does (chunked, each chunk
 * stored, the version assembled and verified) and returns the assembled image file to boot.
 */
export async function storeGuestImage(
  storeDir: string,
  imageId = "img_guest",
): Promise<InstanceSpec["image"]> {
  const store = await ImageStore.open(storeDir);
  try {
    const manifest = await chunkFile(GUEST_IMAGE);
    await store.beginVersion(imageId, 1, manifest, { format: "qcow2" });
    const file = await open(GUEST_IMAGE, "r");
    try {
      let offset = 0;
      for (const chunk of manifest.chunks) {
        if (!chunk.zero) {
          const data = Buffer.alloc(chunk.length);
          await file.read(data, 0, chunk.length, offset);
          await store.chunks.put(chunk.digest, data);
        }
        offset += chunk.length;
      }
    } finally {
      await file.close();
    }
    await store.chunks.flush();
    const version = await store.completeVersion(imageId, 1);
    if (!version.localId) throw new Error(`stored image ${imageId} has no local ID`);
    return { path: store.imagePath(version.localId), format: "qcow2", id: imageId };
  } finally {
    await store.close();
  }
}

/** Kills every QEMU that an instance record under `dir` names (cleanup after a failed test). */
export function killRecordedVms(dir: string): void {
  let records: string[];
  try {
    records = readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((path) =>
      path.endsWith("instance.json"),
    );
  } catch {
    return;
  }
  for (const path of records) {
    try {
      const { pid } = JSON.parse(readFileSync(join(dir, path), "utf8")) as { pid?: number };
      if (pid && isInstanceProcess(pid, join(dir, dirname(path)))) process.kill(pid, "SIGKILL");
    } catch {
      // A record being rewritten or a process already gone: nothing to clean.
    }
  }
}
