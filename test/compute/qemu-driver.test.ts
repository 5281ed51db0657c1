// The qemu driver with real guests (the image of scripts/build-guest-image) under the accelerator
// the probe picks. Guests are few and small: CI machines have two cores.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ComputeDriver,
  ComputeError,
  createComputeDriver,
  type InstanceSpec,
  type InstanceStateChange,
} from "../../regional-manager/compute/index.ts";
import { readInstanceRecord, writeInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { GUEST_NICENESS } from "../../regional-manager/compute/qemu/command-line.ts";
import { isProcessRunning } from "../../regional-manager/compute/qemu/process.ts";
import { MetadataService } from "../../regional-manager/metadata/index.ts";
import {
  BOOT_MARKER,
  ensureGuestImage,
  guestSpec,
  killRecordedVms,
  PROBE_CACHE,
  PROBE_GUEST,
  REPO_ROOT,
  storeGuestImage,
  waitForConsoleLine,
  waitForConsoleText,
  waitForState,
} from "../support/compute.ts";

const BOOT_TIMEOUT_MS = 120_000;
const CAPACITY = { vcpus: 2, memoryMb: 1024 };

function newDriver(dataDir: string, metadata: MetadataService): ComputeDriver {
  return createComputeDriver("qemu", {
    dataDir,
    metadata,
    capacity: CAPACITY,
    accelerator: "auto",
    probeGuest: PROBE_GUEST,
    probeCacheFile: PROBE_CACHE,
  });
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

async function metadataAnswers(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/computeMetadata/v1/instance/id`, {
      headers: { "Metadata-Flavor": "Google" },
      signal: AbortSignal.timeout(2_000),
    });
    return true;
  } catch {
    return false;
  }
}

describe("qemu driver with real guests", () => {
  let dataDir: string;
  let metadata: MetadataService;
  let driver: ComputeDriver;
  const states: InstanceStateChange[] = [];
  const pids = new Set<number>();
  let managerProcess: ChildProcess | undefined;
  let restartedMetadata: MetadataService | undefined;
  let restartedDriver: ComputeDriver | undefined;

  let storedImage: InstanceSpec["image"];

  beforeAll(async () => {
    ensureGuestImage();
    dataDir = mkdtempSync(join(tmpdir(), "gvm-compute-"));
    storedImage = await storeGuestImage(join(dataDir, "store"));
    metadata = new MetadataService();
    driver = newDriver(dataDir, metadata);
    driver.on("state", (change) => states.push(change));
  }, 600_000);

  afterAll(async () => {
    managerProcess?.kill("SIGKILL");
    for (const active of [driver, restartedDriver]) {
      if (!active) continue;
      for (const instance of active.list()) {
        if (instance.pid) pids.add(instance.pid);
        await active.delete(instance.instanceId).catch(() => undefined);
      }
    }
    await metadata?.close();
    await restartedMetadata?.close();
    // Whatever a failing test left behind must not outlive the run.
    if (dataDir) killRecordedVms(dataDir);
    for (const pid of pids) {
      if (isProcessRunning(pid)) process.kill(pid, "SIGKILL");
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("boots guests from the stored image; each reads its own metadata and reaches ready", async () => {
    expect(storedImage.path).toContain(join(dataDir, "store"));
    const imageDigest = sha256File(storedImage.path);
    await driver.create(guestSpec("guest-a", { image: storedImage, metadata: { role: "alpha" } }));
    await driver.create(guestSpec("guest-b", { image: storedImage, metadata: { role: "beta" } }));
    const readyA = waitForState(driver, "guest-a", "ready", BOOT_TIMEOUT_MS);
    const readyB = waitForState(driver, "guest-b", "ready", BOOT_TIMEOUT_MS);
    const startedA = await driver.start("guest-a");
    const startedB = await driver.start("guest-b");
    for (const started of [startedA, startedB]) {
      expect(started.state).toBe("running");
      expect(started.pid).toBeTypeOf("number");
      pids.add(started.pid as number);
    }
    await Promise.all([readyA, readyB]);
    // Every thread of the guest's QEMU (its vCPUs too) runs below the manager's priority.
    const threads = readdirSync(`/proc/${startedA.pid}/task`);
    expect(threads.length).toBeGreaterThan(1);
    const niceOf = (tid: string) => {
      const stat = readFileSync(`/proc/${startedA.pid}/task/${tid}/stat`, "utf8");
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
    };
    expect(new Set(threads.map(niceOf))).toEqual(new Set([GUEST_NICENESS]));
    await waitForConsoleText(driver, "guest-a", "GLOBALVM-METADATA role=alpha", 20_000);
    await waitForConsoleText(driver, "guest-b", "GLOBALVM-METADATA role=beta", 20_000);

    const consoleA = driver.consoleLog("guest-a");
    const consoleB = driver.consoleLog("guest-b");
    expect(consoleA).toContain(`${BOOT_MARKER} instance-id=guest-a name=web-guest-a`);
    expect(consoleB).toContain(`${BOOT_MARKER} instance-id=guest-b name=web-guest-b`);
    expect(consoleA).not.toContain("instance-id=guest-b");
    expect(consoleB).not.toContain("instance-id=guest-a");
    expect(consoleA).toContain("GLOBALVM-METADATA role=alpha");
    expect(consoleA).not.toContain("role=beta");

    const statusA = driver.status("guest-a");
    expect(statusA.state).toBe("ready");
    expect(statusA.guestAttributes).toEqual({ "globalvm/ready": "true" });
    expect(states.filter((change) => change.instanceId === "guest-a").map((change) => change.state)).toEqual([
      "stopped",
      "starting",
      "running",
      "ready",
    ]);
    // The stored image is the shared base: the guests write only their overlays.
    expect(existsSync(join(dataDir, "instances/guest-a/overlay.qcow2"))).toBe(true);
    expect(sha256File(storedImage.path)).toBe(imageDigest);
  });

  it("delivers a metadata value set after boot through wait_for_change within a second", async () => {
    // The guest prints its attributes once read; from then on it sits in its long-poll.
    await waitForConsoleText(driver, "guest-a", "GLOBALVM-METADATA role=alpha", 20_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const changedAt = Date.now();
    const arrival = waitForConsoleLine(
      driver,
      "guest-a",
      (line) => line === "GLOBALVM-METADATA peer=10.9.8.7",
      10_000,
    );
    await driver.setMetadata("guest-a", { role: "alpha", peer: "10.9.8.7" });
    const { at } = await arrival;
    expect(at.getTime() - changedAt).toBeLessThan(1_000);
    // The other guest never sees it.
    expect(driver.consoleLog("guest-b")).not.toContain("peer=");
  });

  it("runs the startup-script once after boot; the script publishes guest attributes", async () => {
    const script = [
      "echo computing",
      'guest-attribute demo/answer "$((6 * 7))"',
      'guest-attribute demo/runs "$(($(cat /tmp/runs 2>/dev/null || echo 0) + 1))"',
      "echo 1 >/tmp/runs",
      "exit 3",
    ].join("\n");
    await driver.create(guestSpec("guest-s", { image: storedImage, metadata: { "startup-script": script } }));
    const started = await driver.start("guest-s");
    pids.add(started.pid as number);
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    while (driver.status("guest-s").guestAttributes["globalvm/startup-script-exit"] === undefined) {
      if (Date.now() > deadline) throw new Error(`no startup-script exit:\n${driver.consoleLog("guest-s")}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(driver.status("guest-s").guestAttributes).toMatchObject({
      "demo/answer": "42",
      "demo/runs": "1",
      "globalvm/startup-script-exit": "3",
    });
    expect(driver.consoleLog("guest-s")).toContain("GLOBALVM-STARTUP computing");
    await driver.delete("guest-s");
  });

  it("stops and deletes a guest leaving no process, socket, overlay or metadata listener", async () => {
    const { pid } = driver.status("guest-b");
    const port = metadata.endpointOf("guest-b")?.port;
    expect(pid).toBeTypeOf("number");
    expect(port).toBeTypeOf("number");
    const stopped = await driver.stop("guest-b");
    expect(stopped.state).toBe("stopped");
    expect(stopped.reason).toBe("stopped by the manager");
    expect(isProcessRunning(pid as number)).toBe(false);
    expect(existsSync(join(dataDir, "instances/guest-b/qmp.sock"))).toBe(false);
    expect(existsSync(join(dataDir, "instances/guest-b/console.sock"))).toBe(false);

    await driver.delete("guest-b");
    expect(existsSync(join(dataDir, "instances/guest-b"))).toBe(false);
    expect(await metadataAnswers(port as number)).toBe(false);
    expect(driver.list().map((instance) => instance.instanceId)).toEqual(["guest-a"]);
    expect(() => driver.status("guest-b")).toThrow(ComputeError);
  });

  it("reports a guest that crashes as failed, with the reason and its console tail", async () => {
    const failed = waitForState(driver, "guest-a", "failed", 60_000);
    await driver.setMetadata("guest-a", { role: "alpha", peer: "10.9.8.7", "guest-action": "panic" });
    const change = await failed;
    expect(change.previous).toBe("ready");
    expect(change.reason).toMatch(/reset|panic/);
    expect(change.consoleTail).toContain("Kernel panic");
    expect(driver.status("guest-a")).toMatchObject({ state: "failed", consoleTail: change.consoleTail });
    expect(driver.status("guest-a").pid).toBeUndefined();
    await driver.delete("guest-a");
    expect(readdirSync(join(dataDir, "instances"))).toEqual([]);
  });

  it("reattaches to a running guest after its manager was killed", async () => {
    const restartDir = join(dataDir, "restart");
    managerProcess = spawn(
      process.execPath,
      [join(REPO_ROOT, "test/compute/manager-process.ts"), restartDir, "guest-r"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const manager = managerProcess;
    let stderr = "";
    manager.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const qemuPid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`manager process not ready in time: ${stderr}`)),
        BOOT_TIMEOUT_MS,
      );
      let stdout = "";
      manager.stdout?.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /READY (\d+)/.exec(stdout);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
      manager.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`manager process exited (${code}): ${stderr}`));
      });
    });
    pids.add(qemuPid);
    manager.kill("SIGKILL");
    await new Promise((resolve) => manager.once("exit", resolve));
    expect(isProcessRunning(qemuPid)).toBe(true);

    restartedMetadata = new MetadataService();
    restartedDriver = newDriver(restartDir, restartedMetadata);
    const found = await restartedDriver.reattach();
    expect(found.map(({ instanceId, state, pid }) => ({ instanceId, state, pid }))).toEqual([
      { instanceId: "guest-r", state: "ready", pid: qemuPid },
    ]);
    // The guest still reaches its metadata (same listener port) and its console is read again.
    const arrival = waitForConsoleLine(
      restartedDriver,
      "guest-r",
      (line) => line === "GLOBALVM-METADATA peer=after-restart",
      10_000,
    );
    await restartedDriver.setMetadata("guest-r", { role: "survivor", peer: "after-restart" });
    await arrival;

    await restartedDriver.delete("guest-r");
    expect(isProcessRunning(qemuPid)).toBe(false);
    expect(existsSync(join(restartDir, "instances/guest-r"))).toBe(false);
  });

  it("reports failed, with the console tail, a guest whose VM ended while no manager watched it", async () => {
    const downDir = join(dataDir, "down");
    const firstMetadata = new MetadataService();
    const first = newDriver(downDir, firstMetadata);
    await first.create(guestSpec("guest-d", { image: storedImage }));
    const ready = waitForState(first, "guest-d", "ready", BOOT_TIMEOUT_MS);
    const { pid } = await first.start("guest-d");
    pids.add(pid as number);
    await ready;
    // The manager shuts down for a restart, leaving the VM running; the VM then dies.
    await first.detach();
    await firstMetadata.close();
    expect(isProcessRunning(pid as number)).toBe(true);
    process.kill(pid as number, "SIGKILL");
    const deadline = Date.now() + 10_000;
    while (isProcessRunning(pid as number) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));

    const secondMetadata = new MetadataService();
    const second = newDriver(downDir, secondMetadata);
    try {
      const [found] = await second.reattach();
      expect(found).toMatchObject({
        instanceId: "guest-d",
        state: "failed",
        reason: "the VM process ended while the manager was not running",
      });
      expect(found?.consoleTail).toContain(`${BOOT_MARKER} instance-id=guest-d`);
      expect(found?.guestAttributes).toEqual({});
      await second.delete("guest-d");
      expect(readdirSync(join(downDir, "instances"))).toEqual([]);
    } finally {
      await secondMetadata.close();
    }
  });

  it("starts again a guest whose start a manager crash cut short, stopping a QEMU it never recorded", async () => {
    const crashDir = join(dataDir, "crash");
    const firstMetadata = new MetadataService();
    const first = newDriver(crashDir, firstMetadata);
    await first.create(guestSpec("guest-c", { image: storedImage }));
    await first.detach();
    await firstMetadata.close();
    // What a crash between "starting" and the recorded pid leaves: the record says starting, with
    // no pid, and a QEMU may already run (here a stand-in whose command line names the overlay).
    const instanceDir = join(crashDir, "instances/guest-c");
    writeInstanceRecord(instanceDir, { ...readInstanceRecord(instanceDir), state: "starting" });
    const stray = spawn(
      process.execPath,
      ["-e", "setInterval(() => {}, 1000)", `fd=4,set=2,opaque=${join(instanceDir, "overlay.qcow2")}`],
      { stdio: "ignore" },
    );
    pids.add(stray.pid as number);
    await new Promise((resolve) => stray.once("spawn", resolve));

    const secondMetadata = new MetadataService();
    const second = newDriver(crashDir, secondMetadata);
    try {
      const ready = waitForState(second, "guest-c", "ready", BOOT_TIMEOUT_MS);
      const [found] = await second.reattach();
      expect(found).toMatchObject({
        instanceId: "guest-c",
        state: "stopped",
        reason: "its start was interrupted by a manager restart",
      });
      const deadline = Date.now() + 10_000;
      while (isProcessRunning(stray.pid as number) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(isProcessRunning(stray.pid as number)).toBe(false);
      await ready;
      const { pid } = second.status("guest-c");
      pids.add(pid as number);
      expect(pid).not.toBe(stray.pid);
      await second.delete("guest-c");
      expect(readdirSync(join(crashDir, "instances"))).toEqual([]);
    } finally {
      await secondMetadata.close();
    }
  });

  it("refuses bad input with clear errors", async () => {
    await expect(driver.start("no-such-instance")).rejects.toMatchObject({
      code: "not-found",
      message: "unknown instance no-such-instance",
    });
    await expect(driver.stop("no-such-instance")).rejects.toMatchObject({ code: "not-found" });
    await expect(driver.delete("../etc")).rejects.toMatchObject({
      code: "invalid-argument",
      field: "instanceId",
    });
    await expect(driver.create(guestSpec("zero-cpu", { vcpus: 0 }))).rejects.toMatchObject({
      code: "invalid-argument",
      field: "vcpus",
      message: expect.stringContaining("vcpus must be a whole number of at least 1"),
    });
    await expect(driver.create(guestSpec("huge", { memoryMb: 4096 }))).rejects.toMatchObject({
      code: "capacity-exceeded",
      field: "memoryMb",
    });
    await expect(
      driver.create(
        guestSpec("no-image", { image: { path: "/nonexistent/image.qcow2", format: "qcow2", id: "x" } }),
      ),
    ).rejects.toMatchObject({ code: "invalid-argument", field: "image.path" });
    expect(() => createComputeDriver("vmware", { dataDir, metadata, capacity: CAPACITY })).toThrow(
      /unknown compute driver "vmware"; known: qemu/,
    );
    // Nothing was left behind by the refused requests.
    expect(existsSync(join(dataDir, "instances/zero-cpu"))).toBe(false);
    expect(existsSync(join(dataDir, "instances/huge"))).toBe(false);
    expect(existsSync(join(dataDir, "instances/no-image"))).toBe(false);
  });

  it("refuses to start an instance whose memory does not fit beside the started ones", async () => {
    await driver.create(guestSpec("big-1", { memoryMb: 640 }));
    await driver.create(guestSpec("big-2", { memoryMb: 640 }));
    const ready = waitForState(driver, "big-1", "running", BOOT_TIMEOUT_MS);
    await driver.start("big-1");
    await ready;
    await expect(driver.start("big-2")).rejects.toMatchObject({
      code: "capacity-exceeded",
      message: expect.stringContaining("640 of 1024 MiB are used"),
    });
    expect(driver.status("big-2").state).toBe("stopped");
    await driver.delete("big-1");
    await driver.delete("big-2");
  });
});
