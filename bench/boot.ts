// npm run bench:boot — how much the regional manager adds to booting a guest.
//
// Median, over BENCH_BOOT_RUNS runs (default 5), of
//   managed: driver.start() → the instance is "ready" (the guest PUT globalvm/ready), and
//   bare:    a bare qemu-system-x86_64 command line → the guest's boot marker on its console,
// booting the same image with the same accelerator and machine shape, interleaved in the same run.
// The bare guest reaches its metadata through a one-connection-per-request busybox httpd serving
// static files, so both guests walk the same boot path. Target: managed ≤ 1.2 × bare.
// Then it starts BENCH_BOOT_INSTANCES (default 2) guests together and prints the memory the
// manager process itself holds per running instance (QEMU's own memory is not the manager's).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createComputeDriver, type QemuDriver } from "../regional-manager/compute/index.ts";
import { MetadataService } from "../regional-manager/metadata/index.ts";
import {
  BOOT_MARKER,
  ensureGuestImage,
  GUEST_IMAGE,
  guestSpec,
  PROBE_CACHE,
  PROBE_GUEST,
  waitForConsoleLine,
  waitForState,
} from "../test/support/compute.ts";
import { median } from "./stats.ts";

const RUNS = Number(process.env.BENCH_BOOT_RUNS ?? 5);
const INSTANCES = Number(process.env.BENCH_BOOT_INSTANCES ?? 2);
const MEMORY_MB = 192;
const TIMEOUT_MS = 120_000;

/** Static metadata for the bare guest: just what it reads before printing its marker. */
function writeStaticMetadata(root: string): void {
  const instance = join(root, "computeMetadata/v1/instance");
  mkdirSync(join(instance, "attributes"), { recursive: true });
  writeFileSync(join(instance, "id"), "bare");
  writeFileSync(join(instance, "name"), "bare");
}

async function bareBoot(accelerator: string, staticRoot: string): Promise<number> {
  const args = [
    ...["-machine", "pc", "-accel", accelerator, ...(accelerator === "kvm" ? ["-cpu", "host"] : [])],
    ...[
      "-smp",
      "1",
      "-m",
      String(MEMORY_MB),
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-no-reboot",
    ],
    ...["-drive", `file=${GUEST_IMAGE},format=qcow2,if=virtio,snapshot=on`],
    ...[
      "-netdev",
      `user,id=net0,net=169.254.0.0/16,restrict=on,guestfwd=tcp:169.254.169.254:80-cmd:busybox httpd -i -h ${staticRoot}`,
    ],
    ...["-device", "virtio-net-pci,netdev=net0", "-serial", "stdio"],
  ];
  const started = performance.now();
  const qemu = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("bare guest printed no marker in time")), TIMEOUT_MS);
      let output = "";
      qemu.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        output = (output + chunk).slice(-4096);
        if (output.includes(`${BOOT_MARKER} instance-id=bare`)) {
          clearTimeout(timer);
          resolve(performance.now() - started);
        }
      });
      qemu.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`bare QEMU exited (${code}) before the marker`));
      });
    });
  } finally {
    qemu.kill("SIGKILL");
    await new Promise((resolve) =>
      qemu.exitCode !== null ? resolve(undefined) : qemu.once("exit", resolve),
    );
  }
}

async function managedBoot(
  driver: QemuDriver,
  instanceId: string,
): Promise<{ ready: number; marker: number; launch: number }> {
  await driver.create(guestSpec(instanceId, { memoryMb: MEMORY_MB }));
  const ready = waitForState(driver, instanceId, "ready", TIMEOUT_MS);
  const marker = waitForConsoleLine(driver, instanceId, (line) => line.startsWith(BOOT_MARKER), TIMEOUT_MS);
  const started = performance.now();
  try {
    await driver.start(instanceId);
    const launch = performance.now() - started;
    const readyAt = (await ready).at.getTime();
    const markerAt = (await marker).at.getTime();
    const offset = Date.now() - performance.now();
    return { ready: readyAt - offset - started, marker: markerAt - offset - started, launch };
  } finally {
    await driver.delete(instanceId);
  }
}

function managerMemory() {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = process.memoryUsage();
  return { rss: usage.rss, heap: usage.heapUsed + usage.external + usage.arrayBuffers };
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

ensureGuestImage();
const dataDir = mkdtempSync(join(tmpdir(), "gvm-bench-"));
const staticRoot = join(dataDir, "static");
writeStaticMetadata(staticRoot);
const metadata = new MetadataService();
const driver = createComputeDriver("qemu", {
  dataDir: join(dataDir, "manager"),
  metadata,
  capacity: { vcpus: 2, memoryMb: 4096 },
  accelerator: "auto",
  probeGuest: PROBE_GUEST,
  probeCacheFile: PROBE_CACHE,
}) as QemuDriver;

try {
  const choice = await driver.accelerator();
  console.log(`accelerator: ${choice.accelerator} (${choice.reason})`);
  const managed: number[] = [];
  const managedMarker: number[] = [];
  const bare: number[] = [];
  const launches: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    // Alternating which goes first spreads slow phases of a busy host over both.
    let boot: { ready: number; marker: number; launch: number };
    let bareMs: number;
    if (run % 2) {
      boot = await managedBoot(driver, `bench-${run}`);
      bareMs = await bareBoot(choice.accelerator, staticRoot);
    } else {
      bareMs = await bareBoot(choice.accelerator, staticRoot);
      boot = await managedBoot(driver, `bench-${run}`);
    }
    managed.push(boot.ready);
    managedMarker.push(boot.marker);
    launches.push(boot.launch);
    bare.push(bareMs);
    console.log(
      `run ${run}: managed start→ready ${boot.ready.toFixed(0)} ms (start→marker ${boot.marker.toFixed(0)} ms, start() returned after ${boot.launch.toFixed(0)} ms), bare qemu→marker ${bareMs.toFixed(0)} ms`,
    );
  }
  const ratio = median(managed) / median(bare);
  console.log(`median managed start→ready:  ${median(managed).toFixed(0)} ms`);
  console.log(`median managed start→marker: ${median(managedMarker).toFixed(0)} ms`);
  console.log(`median bare qemu→marker:     ${median(bare).toFixed(0)} ms`);
  console.log(`median start() (spawn, attach console and QMP, cont): ${median(launches).toFixed(0)} ms`);
  console.log(
    `ratio managed/bare: ${ratio.toFixed(3)} (target ≤ 1.2) ${ratio <= 1.2 ? "OK" : "OVER TARGET"}`,
  );

  // Running instances: console capture, QMP connection, metadata listener, record.
  const before = managerMemory();
  const ids = Array.from({ length: INSTANCES }, (_, index) => `bench-mem-${index}`);
  for (const id of ids) await driver.create(guestSpec(id, { memoryMb: MEMORY_MB }));
  await Promise.all(
    ids.map(async (id) => {
      const ready = waitForState(driver, id, "ready", TIMEOUT_MS);
      await driver.start(id);
      await ready;
    }),
  );
  const during = managerMemory();
  console.log(
    `manager memory per running instance (${INSTANCES} running): rss ${kib((during.rss - before.rss) / INSTANCES)}, js heap+buffers ${kib((during.heap - before.heap) / INSTANCES)} (manager rss total ${kib(during.rss)})`,
  );
  for (const id of ids) await driver.delete(id);

  // Many created instances give a steadier per-instance figure of what the manager keeps for
  // each one whether it runs or not (metadata listener, record, console buffer).
  const idleCount = 40;
  const idleBefore = managerMemory();
  const idle = Array.from({ length: idleCount }, (_, index) => `bench-idle-${index}`);
  for (const id of idle) await driver.create(guestSpec(id, { memoryMb: MEMORY_MB }));
  const idleDuring = managerMemory();
  console.log(
    `manager memory per created instance (${idleCount} created): rss ${kib((idleDuring.rss - idleBefore.rss) / idleCount)}, js heap+buffers ${kib((idleDuring.heap - idleBefore.heap) / idleCount)}`,
  );
  for (const id of idle) await driver.delete(id);
} finally {
  for (const instance of driver.list()) await driver.delete(instance.instanceId).catch(() => undefined);
  await driver.detach();
  await metadata.close();
  rmSync(dataDir, { recursive: true, force: true });
}
