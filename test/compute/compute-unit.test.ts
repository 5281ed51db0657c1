// The decisions of the compute drivers, without QEMU.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { chooseAccelerator, probeAccelerator } from "../../regional-manager/compute/accelerator.ts";
import { BoundedConsoleLog, ConsoleTail, LineSplitter } from "../../regional-manager/compute/console-log.ts";
import { classifyVmEnd } from "../../regional-manager/compute/exit.ts";
import { createComputeDriver } from "../../regional-manager/compute/index.ts";
import {
  buildOverlayArgs,
  buildQemuArgs,
  escapeOptionValue,
  qemuCommand,
} from "../../regional-manager/compute/qemu/command-line.ts";
import { tunModeChange } from "../../regional-manager/compute/qemu/tun.ts";
import { chooseQemuIdentity } from "../../regional-manager/compute/qemu/user.ts";
import { classifyQmpMessage, QmpMessageReader } from "../../regional-manager/compute/qmp.ts";
import { planReconciliation } from "../../regional-manager/compute/reconcile.ts";
import {
  ComputeError,
  type InstanceState,
  type InstanceStatus,
} from "../../regional-manager/compute/types.ts";
import { listenUnixSocket } from "../../regional-manager/compute/unix-socket.ts";
import { checkMemoryAvailable, validateInstanceSpec } from "../../regional-manager/compute/validation.ts";
import { MetadataService } from "../../regional-manager/metadata/index.ts";
import { guestSpec } from "../support/compute.ts";

const plan = {
  instanceId: "ins_1",
  vcpus: 2,
  memoryMb: 256,
  accelerator: "tcg" as const,
  image: { path: "/data/store/images/img-1.img", format: "qcow2" as const },
  overlayPath: "/data/instances/ins_1/overlay.qcow2",
  metadataEndpoint: { host: "127.0.0.1", port: 40123 },
  relayCommand: ["/bin/busybox", "nc"],
};

function optionAfter(args: string[], flag: string): string[] {
  return args.flatMap((arg, index) => (arg === flag ? [args[index + 1] as string] : []));
}

describe("QEMU command line", () => {
  it("gives the instance its shape, QMP and console sockets, sandboxed, paused until attached", () => {
    const args = buildQemuArgs(plan);
    expect(optionAfter(args, "-smp")).toEqual(["2"]);
    expect(optionAfter(args, "-m")).toEqual(["256"]);
    expect(optionAfter(args, "-accel")).toEqual(["tcg"]);
    expect(args).not.toContain("-cpu");
    expect(args).toContain("-S");
    expect(args).toContain("-no-reboot");
    // Inherited listening sockets: QEMU binds nothing in the data dir.
    expect(optionAfter(args, "-chardev")).toEqual([
      "socket,id=qmp,fd=5,server=on,wait=off",
      "socket,id=console,fd=6,server=on,wait=off",
    ]);
    expect(optionAfter(args, "-serial")).toEqual(["chardev:console"]);
    expect(optionAfter(args, "-sandbox")).toEqual([
      "on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny",
    ]);
    expect(args).not.toContain("-drive");
  });

  it("pins the disk chain: the stored image read-only without backing, the overlay over it, both inherited", () => {
    const args = buildQemuArgs(plan);
    expect(optionAfter(args, "-add-fd")).toEqual([
      "fd=3,set=1,opaque=/data/store/images/img-1.img",
      "fd=4,set=2,opaque=/data/instances/ins_1/overlay.qcow2",
    ]);
    expect(optionAfter(args, "-blockdev").map((json) => JSON.parse(json))).toEqual([
      { driver: "file", "node-name": "image-file", filename: "/dev/fdset/1", "read-only": true },
      { driver: "qcow2", "node-name": "image", file: "image-file", "read-only": true, backing: null },
      { driver: "file", "node-name": "overlay-file", filename: "/dev/fdset/2" },
      { driver: "qcow2", "node-name": "overlay", file: "overlay-file", backing: "image" },
    ]);
    expect(optionAfter(args, "-device")).toContain("virtio-blk-pci,drive=overlay");
    // A raw image has no backing to deny (QEMU refuses the option for raw).
    const raw = buildQemuArgs({ ...plan, image: { path: "/s/img.raw", format: "raw" } });
    expect(JSON.parse(optionAfter(raw, "-blockdev")[1] as string)).toEqual({
      driver: "raw",
      "node-name": "image",
      file: "image-file",
      "read-only": true,
    });
  });

  it("relays only the metadata address, to the instance's own port, on a restricted network", () => {
    const [netdev] = optionAfter(buildQemuArgs(plan), "-netdev");
    expect(netdev).toBe(
      "user,id=net0,net=169.254.0.0/16,restrict=on,guestfwd=tcp:169.254.169.254:80-cmd:/bin/busybox nc 127.0.0.1 40123",
    );
  });

  it("relays to a unix socket with socat when QEMU runs in a datacenter host's namespace", () => {
    const args = buildQemuArgs({ ...plan, metadataEndpoint: { socket: "/run/globalvm/m/ins_1.sock" } });
    expect(optionAfter(args, "-netdev")[0]).toMatch(
      /guestfwd=tcp:169\.254\.169\.254:80-cmd:socat - UNIX-CONNECT:\/run\/globalvm\/m\/ins_1\.sock$/,
    );
  });

  it("relays DNS over TCP at the metadata address to the instance's DNS listener", () => {
    const [netdev] = optionAfter(
      buildQemuArgs({ ...plan, dnsEndpoint: { host: "127.0.0.1", port: 40124 } }),
      "-netdev",
    );
    expect(netdev).toBe(
      "user,id=net0,net=169.254.0.0/16,restrict=on,guestfwd=tcp:169.254.169.254:80-cmd:/bin/busybox nc 127.0.0.1 40123,guestfwd=tcp:169.254.169.254:53-cmd:/bin/busybox nc 127.0.0.1 40124",
    );
    const inNamespace = buildQemuArgs({
      ...plan,
      metadataEndpoint: { socket: "/run/globalvm/m/ins_1.sock" },
      dnsEndpoint: { socket: "/run/globalvm/m/ins_1.dns.sock" },
    });
    expect(optionAfter(inNamespace, "-netdev")[0]).toMatch(
      /guestfwd=tcp:169\.254\.169\.254:53-cmd:socat - UNIX-CONNECT:\/run\/globalvm\/m\/ins_1\.dns\.sock$/,
    );
  });

  it("enters the namespace with nsenter, which then drops to QEMU's user and groups, all below the manager's priority", () => {
    expect(qemuCommand("qemu", ["-S"], { uid: 65534, gid: 65534 }, undefined)).toEqual([
      "nice",
      "-n",
      "10",
      "qemu",
      "-S",
    ]);
    expect(qemuCommand("qemu", ["-S"], { uid: 65534, gid: 65534 }, "dc1")).toEqual([
      "nice",
      "-n",
      "10",
      "nsenter",
      "--net=/run/netns/dc1",
      "--setuid=65534",
      "--setgid=65534",
      "--",
      "qemu",
      "-S",
    ]);
    expect(qemuCommand("qemu", [], undefined, "dc1")).toEqual([
      "nice",
      "-n",
      "10",
      "nsenter",
      "--net=/run/netns/dc1",
      "--",
      "qemu",
    ]);
  });

  it("adds the private NIC second, on the manager's tap with the instance's MAC, running no script", () => {
    expect(optionAfter(buildQemuArgs(plan), "-netdev")).toHaveLength(1);
    const args = buildQemuArgs({ ...plan, privateNic: { tap: "gvtabcdefabcdef", mac: "02:11:22:33:44:55" } });
    expect(optionAfter(args, "-netdev")[1]).toBe(
      "tap,id=net1,ifname=gvtabcdefabcdef,script=no,downscript=no",
    );
    expect(optionAfter(args, "-device").filter((d) => d.startsWith("virtio-net-pci"))).toEqual([
      "virtio-net-pci,netdev=net0",
      "virtio-net-pci,netdev=net1,mac=02:11:22:33:44:55",
    ]);
  });

  it("uses the host CPU under KVM and escapes commas in paths", () => {
    const args = buildQemuArgs({ ...plan, accelerator: "kvm", overlayPath: "/data/a,b/overlay.qcow2" });
    expect(optionAfter(args, "-cpu")).toEqual(["host"]);
    expect(optionAfter(args, "-add-fd")[1]).toBe("fd=4,set=2,opaque=/data/a,,b/overlay.qcow2");
    expect(escapeOptionValue("a,b,,c")).toBe("a,,b,,,,c");
  });

  it("creates the overlay over the stored image without opening it (-u, the size given)", () => {
    expect(buildOverlayArgs("/store/img.raw", "raw", 1 << 20, "/d/overlay.qcow2")).toEqual([
      "create",
      "-q",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "/store/img.raw",
      "-F",
      "raw",
      "/d/overlay.qcow2",
      "1048576",
    ]);
  });
});

describe("the user QEMU runs as", () => {
  const nobody = { uid: 65534, gid: 65534 };
  it("is the unprivileged user when the manager is root, with /dev/kvm's group under KVM", () => {
    expect(chooseQemuIdentity({ managerUid: 0, user: "nobody", account: nobody })).toEqual(nobody);
    expect(chooseQemuIdentity({ managerUid: 0, user: "nobody", account: nobody, kvmGid: 108 })).toEqual({
      uid: 65534,
      gid: 108,
    });
  });
  it("stays the manager's own when the manager is not root, or root is asked for", () => {
    expect(chooseQemuIdentity({ managerUid: 1000, user: "nobody", account: nobody })).toBeUndefined();
    expect(chooseQemuIdentity({ managerUid: 0, user: "root", account: { uid: 0, gid: 0 } })).toBeUndefined();
  });
  it("refuses, when root, a user the host does not know", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "gvm-user-"));
    const create = () =>
      createComputeDriver("qemu", {
        dataDir,
        metadata: new MetadataService(),
        capacity: { vcpus: 1, memoryMb: 256 },
        qemuUser: "no-such-user-gvm",
      });
    try {
      if (process.getuid?.() === 0) {
        expect(create).toThrow('the QEMU user "no-such-user-gvm" does not exist on this host');
      } else {
        expect(create).not.toThrow();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
  it("refuses a user name that is root under another name", () => {
    expect(() => chooseQemuIdentity({ managerUid: 0, user: "toor", account: { uid: 0, gid: 0 } })).toThrow(
      "the QEMU user toor has uid 0; name an unprivileged user",
    );
  });
});

describe("QMP messages", () => {
  it("classifies greetings, replies, errors and events", () => {
    expect(classifyQmpMessage({ QMP: { version: { qemu: { major: 7 } }, capabilities: [] } }).kind).toBe(
      "greeting",
    );
    expect(classifyQmpMessage({ return: {}, id: "gvm-1" })).toEqual({
      kind: "return",
      id: "gvm-1",
      value: {},
    });
    expect(
      classifyQmpMessage({ error: { class: "CommandNotFound", desc: "no such command" }, id: "gvm-2" }),
    ).toEqual({
      kind: "error",
      id: "gvm-2",
      errorClass: "CommandNotFound",
      description: "no such command",
    });
    expect(
      classifyQmpMessage({ event: "SHUTDOWN", data: { guest: true, reason: "guest-reset" }, timestamp: {} }),
    ).toEqual({ kind: "event", event: "SHUTDOWN", data: { guest: true, reason: "guest-reset" } });
    expect(classifyQmpMessage(42).kind).toBe("unknown");
  });

  it("reassembles messages split across chunks and skips garbage lines", () => {
    const reader = new QmpMessageReader();
    expect(reader.push('{"return": {}, "id": "gvm-1"}\r\n{"event": "STOP", "da')).toEqual([
      { kind: "return", id: "gvm-1", value: {} },
    ]);
    expect(reader.push('ta": {}}\r\nnot json\r\n')).toEqual([
      { kind: "event", event: "STOP", data: {} },
      { kind: "unknown", raw: "not json" },
    ]);
  });
});

describe("end of a VM", () => {
  const end = { requested: false, shutdownReason: undefined, panicked: false, exitCode: 0, signal: null };

  it("is a stop when asked for or when the guest powered off", () => {
    expect(classifyVmEnd({ ...end, requested: true, shutdownReason: "host-qmp-quit" }).state).toBe("stopped");
    expect(classifyVmEnd({ ...end, shutdownReason: "guest-shutdown" })).toEqual({
      state: "stopped",
      reason: "the guest powered off",
    });
  });

  it("is a failure on a reset, a panic, a signal or an unexplained exit", () => {
    expect(classifyVmEnd({ ...end, shutdownReason: "guest-reset" }).state).toBe("failed");
    expect(classifyVmEnd({ ...end, panicked: true }).reason).toBe("the guest kernel panicked");
    expect(classifyVmEnd({ ...end, exitCode: null, signal: "SIGKILL" }).reason).toContain("SIGKILL");
    expect(classifyVmEnd({ ...end, exitCode: 1 }).reason).toContain("status 1");
    expect(classifyVmEnd(end).state).toBe("failed");
  });
});

describe("console capture", () => {
  it("keeps only the last bytes and the last lines", () => {
    const tail = new ConsoleTail(10);
    for (let i = 0; i < 100; i++) tail.append(`line ${i}\n`);
    expect(tail.tail()).toHaveLength(10);
    expect(tail.tail()).toBe("8\nline 99\n");
    const lines = new ConsoleTail(1_000, "a\r\nb\nc\n");
    expect(lines.lastLines(2)).toBe("b\nc");
  });

  it("keeps the console file under twice its limit, ending with the latest output", () => {
    const dir = mkdtempSync(join(tmpdir(), "gvm-console-"));
    try {
      const path = join(dir, "console.log");
      const log = new BoundedConsoleLog(path, 1_000);
      for (let i = 0; i < 500; i++) {
        log.append(`boot line ${i}\n`);
        expect(statSync(path).size).toBeLessThanOrEqual(2_000);
      }
      expect(readFileSync(path, "utf8").endsWith("boot line 499\n")).toBe(true);
      // A manager that restarts reads the tail back from the file.
      expect(new BoundedConsoleLog(path, 1_000).lastLines(1)).toBe("boot line 499");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("splits a stream into lines, holding back the incomplete one", () => {
    const splitter = new LineSplitter();
    expect(splitter.push("GLOBALVM-MET")).toEqual([]);
    expect(splitter.push("ADATA a=1\r\nnext")).toEqual(["GLOBALVM-METADATA a=1"]);
    expect(splitter.push("\n")).toEqual(["next"]);
  });
});

describe("instance spec checks", () => {
  const capacity = { vcpus: 4, memoryMb: 2048 };

  it("accepts a sound spec", () => {
    expect(() => validateInstanceSpec(guestSpec("ins_ok"), capacity)).not.toThrow();
    const networkInterface = {
      network: "net_1",
      vni: 4096,
      address: "10.0.0.3",
      prefixLength: 16,
      mtu: 1450,
    };
    expect(() => validateInstanceSpec(guestSpec("ins_ok", { networkInterface }), capacity)).not.toThrow();
  });

  it.each([
    [{ vcpus: 0 }, "invalid-argument", "vcpus"],
    [{ vcpus: 1.5 }, "invalid-argument", "vcpus"],
    [{ vcpus: 8 }, "capacity-exceeded", "vcpus"],
    [{ memoryMb: 16 }, "invalid-argument", "memoryMb"],
    [{ memoryMb: 4096 }, "capacity-exceeded", "memoryMb"],
    [{ instanceId: "../x" }, "invalid-argument", "instanceId"],
    [{ name: "" }, "invalid-argument", "name"],
    [{ metadata: { "bad key": "v" } }, "invalid-argument", "metadata.bad key"],
    [
      {
        networkInterface: { network: "net_1", vni: 4096, address: "10.0.0.300", prefixLength: 24, mtu: 1450 },
      },
      "invalid-argument",
      "networkInterface.address",
    ],
    [
      { networkInterface: { network: "net_1", vni: 4096, address: "10.0.0.3", prefixLength: 31, mtu: 1450 } },
      "invalid-argument",
      "networkInterface.prefixLength",
    ],
    [
      { networkInterface: { network: "net_1", vni: 4096, address: "10.0.0.3", prefixLength: 24, mtu: 100 } },
      "invalid-argument",
      "networkInterface.mtu",
    ],
    [
      { networkInterface: { network: "", vni: 4096, address: "10.0.0.3", prefixLength: 24, mtu: 1450 } },
      "invalid-argument",
      "networkInterface.network",
    ],
    [
      { image: { path: "relative.qcow2", format: "qcow2" as const, id: "i" } },
      "invalid-argument",
      "image.path",
    ],
  ])("refuses %o", (override, code, field) => {
    const attempt = () => validateInstanceSpec({ ...guestSpec("ins_ok"), ...override }, capacity);
    expect(attempt).toThrow(ComputeError);
    try {
      attempt();
    } catch (error) {
      expect(error).toMatchObject({ code, field });
    }
  });

  it("refuses memory beyond what started instances leave", () => {
    expect(() => checkMemoryAvailable(1024, 1024, capacity)).not.toThrow();
    expect(() => checkMemoryAvailable(1025, 1024, capacity)).toThrow(/1024 of 2048 MiB are used/);
  });
});

describe("accelerator choice", () => {
  it("picks KVM only when the probe guest booted under it", () => {
    expect(chooseAccelerator({ available: false, booted: false, detail: "no device" }).accelerator).toBe(
      "tcg",
    );
    expect(chooseAccelerator({ available: true, booted: false, detail: "hung" }).accelerator).toBe("tcg");
    expect(chooseAccelerator({ available: true, booted: true, detail: "1 s" }).accelerator).toBe("kvm");
  });

  it("falls back to TCG without a KVM device or without a probe guest", async () => {
    const noDevice = await probeAccelerator({
      qemuBinary: "qemu-system-x86_64",
      kvmDevice: "/nonexistent/kvm",
    });
    expect(noDevice).toMatchObject({
      accelerator: "tcg",
      reason: expect.stringContaining("KVM unavailable"),
    });
  });
});

describe("reconciliation after a restart", () => {
  const found = (instanceId: string, state: InstanceState, reason?: string): InstanceStatus => ({
    instanceId,
    state,
    ...(reason ? { reason } : {}),
    guestAttributes: {},
    spec: guestSpec(instanceId),
  });

  it("removes what the catalog forgot, starts what is missing, stops what should not run", () => {
    const plan = planReconciliation(
      [
        found("kept", "ready"),
        found("orphan", "running"),
        found("halted", "stopped"),
        found("idle", "running"),
        found("crashed", "failed", "the guest reset itself"),
      ],
      [
        { instanceId: "kept", shouldRun: true },
        { instanceId: "halted", shouldRun: true },
        { instanceId: "idle", shouldRun: false },
        { instanceId: "crashed", shouldRun: true },
        { instanceId: "new", shouldRun: true },
        { instanceId: "parked", shouldRun: false },
      ],
    );
    expect(plan.remove).toEqual(["orphan"]);
    expect(plan.start).toEqual(["halted", "new"]);
    expect(plan.stop).toEqual(["idle"]);
    expect(plan.report).toContainEqual({
      instanceId: "crashed",
      state: "failed",
      reason: "the guest reset itself",
    });
    expect(plan.report.map((entry) => entry.instanceId)).not.toContain("orphan");
  });
});

describe("sockets handed to QEMU", () => {
  it("a data dir whose console socket path is 107 bytes, the most a unix socket takes, is accepted", async () => {
    const root = mkdtempSync(join(tmpdir(), "gv-sock-"));
    const instanceId = "ins_01m8xkhj4303cdgap9h2p93h66";
    const tail = `/instances/${instanceId}/console.sock`;
    const dataDir = join(root, "d".repeat(107 - root.length - 1 - tail.length));
    const driver = createComputeDriver("qemu", {
      dataDir,
      metadata: new MetadataService(),
      capacity: { vcpus: 1, memoryMb: 256 },
      accelerator: "tcg",
    });
    try {
      expect(Buffer.byteLength(`${dataDir}${tail}`)).toBe(107);
      await driver.create(guestSpec(instanceId));
      const socket = await listenUnixSocket(`${dataDir}${tail}`);
      socket.close();
      expect(statSync(`${dataDir}${tail}`).isSocket()).toBe(true);
      await driver.delete(instanceId);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("the tun clone device", () => {
  it("is given the mode distributions ship (0666, other bits kept) only when it lacks it", () => {
    expect(tunModeChange(0o20600)).toBe(0o666);
    expect(tunModeChange(0o20666)).toBeUndefined();
    expect(tunModeChange(0o24660)).toBe(0o4666);
  });
});
