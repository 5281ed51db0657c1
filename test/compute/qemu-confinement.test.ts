// Issue #12, finding 1, at boot: QEMU follows no chain a stored image's header names, runs
// sandboxed and, when the manager is root, as an unprivileged user holding only its own files.
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ComputeDriver,
  ComputeError,
  createComputeDriver,
} from "../../regional-manager/compute/index.ts";
import { SANDBOX } from "../../regional-manager/compute/qemu/command-line.ts";
import { MetadataService } from "../../regional-manager/metadata/index.ts";
import { makeBackedQcow2, makeHostileImages } from "../store/hostile-images.ts";
import { ensureGuestImage, GUEST_IMAGE, guestSpec, killRecordedVms } from "../support/compute.ts";

/** The regular files a process holds open. */
function openFiles(pid: number): string[] {
  const files: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith("/") && statSync(target).isFile()) files.push(target);
    } catch {
      // closed while we looked
    }
  }
  return [...new Set(files)].sort();
}

function statusField(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`));
  return (line ?? "").slice(field.length + 1).trim();
}

describe("a QEMU that follows no chain", () => {
  let dir: string;
  let metadata: MetadataService;
  let driver: ComputeDriver;

  beforeAll(() => {
    ensureGuestImage();
    dir = mkdtempSync(join(tmpdir(), "gvm-confine-"));
    metadata = new MetadataService();
    driver = createComputeDriver("qemu", {
      dataDir: join(dir, "manager"),
      metadata,
      capacity: { vcpus: 2, memoryMb: 1024 },
      accelerator: "tcg",
    });
  }, 600_000);
  afterAll(async () => {
    for (const instance of driver.list()) await driver.delete(instance.instanceId).catch(() => undefined);
    await metadata.close();
    killRecordedVms(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("boots from a pinned -blockdev chain, sandboxed, unprivileged, holding only its own files", async () => {
    const image = join(dir, "stored.qcow2");
    copyFileSync(GUEST_IMAGE, image);
    await driver.create(guestSpec("confined", { image: { path: image, format: "qcow2", id: "img" } }));
    const { pid } = await driver.start("confined");
    if (pid === undefined) throw new Error("no pid");
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    const valuesOf = (flag: string) =>
      argv.flatMap((arg, i) => (arg === flag ? [argv[i + 1] as string] : []));
    expect(valuesOf("-sandbox")).toEqual([SANDBOX]);
    expect(argv).not.toContain("-drive");
    const nodes = valuesOf("-blockdev").map((json) => JSON.parse(json) as Record<string, unknown>);
    expect(nodes.find((node) => node["node-name"] === "image")).toMatchObject({
      backing: null,
      "read-only": true,
    });
    expect(nodes.find((node) => node["node-name"] === "overlay")).toMatchObject({ backing: "image" });
    expect(statusField(pid, "Seccomp")).toBe("2");
    const instanceDir = join(dir, "manager/instances/confined");
    // The stored image, the overlay and QEMU's log: nothing else, and none opened by name.
    expect(openFiles(pid)).toEqual(
      [image, join(instanceDir, "overlay.qcow2"), join(instanceDir, "qemu.log")].sort(),
    );
    const uids = statusField(pid, "Uid").split(/\s+/).map(Number);
    if (process.getuid?.() === 0) {
      expect(uids).toEqual([65534, 65534, 65534, 65534]); // nobody, the default
      expect(statusField(pid, "Groups")).toBe("");
    } else {
      expect(uids[0]).toBe(process.getuid?.());
    }
  }, 120_000);

  it("refuses to create an instance over a stored image that names a backing file", async () => {
    const [absolute] = await makeHostileImages(dir);
    const create = driver.create(
      guestSpec("hostile", { image: { path: absolute?.path as string, format: "qcow2", id: "img" } }),
    );
    await expect(create).rejects.toBeInstanceOf(ComputeError);
    await expect(create).rejects.toMatchObject({
      code: "invalid-argument",
      field: "image.path",
      message: expect.stringContaining("refused: qcow2 image names a backing file '/etc/passwd'"),
    });
  });

  it("does not open the backing file of a stored image changed after the instance was created", async () => {
    const image = join(dir, "tampered.qcow2");
    copyFileSync(GUEST_IMAGE, image);
    await driver.create(guestSpec("tampered", { image: { path: image, format: "qcow2", id: "img" } }));
    // Its header now names /etc/passwd: a QEMU that followed it would hold the file open.
    const size = JSON.parse(
      execFileSync("qemu-img", ["info", "--output=json", GUEST_IMAGE], { encoding: "utf8" }),
    )["virtual-size"] as number;
    rmSync(image);
    makeBackedQcow2(image, "/etc/passwd", size);
    const { pid } = await driver.start("tampered");
    if (pid === undefined) throw new Error("no pid");
    expect(openFiles(pid)).not.toContain("/etc/passwd");
    expect(openFiles(pid)).toContain(image);
  }, 120_000);
});
