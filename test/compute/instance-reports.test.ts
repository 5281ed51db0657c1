// Issue #12, finding 5: what a manager reports of an instance stays bounded, and a report the
// control plane refuses as it is still gets the instance's state through.
import { EventEmitter } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type ComputeDriver,
  type ComputeDriverEvents,
  ComputeError,
  type InstanceState,
  type InstanceStatus,
} from "../../regional-manager/compute/index.ts";
import {
  DeferredRecordWrites,
  type InstanceRecord,
  RECORD_FILE,
  readInstanceRecord,
} from "../../regional-manager/compute/instance-record.ts";
import { HostAgentNetworks } from "../../regional-manager/hosts/host-networks.ts";
import { HostRegistry } from "../../regional-manager/hosts/registry.ts";
import { InstanceManager } from "../../regional-manager/instances/instance-manager.ts";
import {
  boundReport,
  essentialReport,
  MAX_REPORT_BYTES,
} from "../../regional-manager/instances/report-bounds.ts";
import { EndpointPorts } from "../../regional-manager/network/endpoints.ts";
import { NetworkFirewalls } from "../../regional-manager/network/firewalls.ts";
import { GuestNetworks } from "../../regional-manager/network/guests.ts";
import type { LinuxHostNetwork } from "../../regional-manager/network/linux.ts";
import type { HostNetworkSpec } from "../../regional-manager/network/spec.ts";
import type { ImageStore } from "../../regional-manager/store/image-store.ts";
import type { InstanceReport } from "../../schemas/manager-instances.ts";

/** One instance the driver knows; the test sets its state and guest attributes. */
class OneInstanceDriver extends EventEmitter<ComputeDriverEvents> {
  readonly kind = "fake";
  state: InstanceState = "running";
  guestAttributes: Record<string, string> = {};
  status(instanceId: string): InstanceStatus {
    return {
      instanceId,
      state: this.state,
      guestAttributes: { ...this.guestAttributes },
      spec: { image: { path: "/nowhere/img-0000000000000000.img" } },
    } as InstanceStatus;
  }
  consoleLog(): string {
    return "";
  }
  async detach(): Promise<void> {}
  write(path: string, value: string) {
    this.guestAttributes[path] = value;
    this.emit("guest-attribute", { instanceId: "ins_a", path, value });
  }
  setState(state: InstanceState, more: { reason?: string; repair?: boolean; at?: Date } = {}) {
    const previous = this.state;
    this.state = state;
    this.emit("state", { instanceId: "ins_a", state, previous, at: new Date(), ...more });
  }
}

/** What every manager of these tests shares: one driver, no store, no pulls, a small capacity. */
function managerBasics(driver: OneInstanceDriver) {
  return {
    driver: driver as unknown as ComputeDriver,
    store: { findByLocalId: () => undefined } as unknown as ImageStore,
    region: "r",
    datacenter: "dc",
    ensureImageVersion: () => Promise.reject(new Error("not used")),
    capacity: () => ({ vcpus: 2, memoryMb: 1024 }),
  };
}

describe("instance reports", () => {
  it("leave out the largest guest attributes when a report would pass its bound", () => {
    const report: InstanceReport = {
      state: "ready",
      guest_attributes: { "a/small": "s", "a/big": "\u0000".repeat(100_000), "a/mid": "m".repeat(50_000) },
    };
    const bounded = boundReport(report, 200_000);
    expect(bounded.leftOut).toEqual(["a/big"]);
    expect(bounded.report.guest_attributes).toEqual({ "a/small": "s", "a/mid": "m".repeat(50_000) });
    expect(boundReport({ state: "ready" }).leftOut).toEqual([]);
    expect(essentialReport({ ...report, local_id: "ins_a", boot_log_tail: "x" })).toEqual({
      state: "ready",
      local_id: "ins_a",
    });
  });

  it("get the later state through after the control plane refused a report as it was", async () => {
    const driver = new OneInstanceDriver();
    const received: InstanceReport[] = [];
    const logs: string[] = [];
    const manager = new InstanceManager({
      ...managerBasics(driver),
      log: (line) => logs.push(line),
      reporter: {
        async reportInstance(_id, report) {
          // A control plane that refuses any report carrying guest attributes of over 1 KiB.
          if (JSON.stringify(report.guest_attributes ?? {}).length > 1024) {
            throw Object.assign(new Error("413 payload too large"), { status: 413 });
          }
          received.push(report);
        },
      },
    });
    for (let i = 0; i < 50; i++) driver.write(`flood/k${i}`, "v".repeat(100));
    driver.setState("ready");
    await manager.detach();
    expect(received.at(-1)?.state).toBe("ready");
    // One report for the burst of writes, not one per write.
    expect(received.length).toBeLessThanOrEqual(3);
    expect(
      logs.some((line) => /refused the ready report of ins_a \(sending its state alone\)/.test(line)),
    ).toBe(true);
    expect(MAX_REPORT_BYTES).toBeLessThan(1 << 20);
  });
});

describe("a repair", () => {
  it("reaches the control plane on the report of its change only, even when sent in its essentials", async () => {
    const driver = new OneInstanceDriver();
    const received: InstanceReport[] = [];
    let refused = 0;
    const manager = new InstanceManager({
      ...managerBasics(driver),
      log: () => {},
      reporter: {
        async reportInstance(_id, report) {
          // Refused whole once, as a report over the control plane's bound would be.
          if (report.boot_log_tail !== undefined && refused === 0) {
            refused += 1;
            throw Object.assign(new Error("413 payload too large"), { status: 413 });
          }
          received.push(report);
        },
      },
    });
    const at = new Date("2026-12-04T10:00:00.000Z");
    const reason = "recreated on host h2: host h1 stopped syncing";
    driver.setState("starting", { reason, repair: true, at });
    driver.setState("ready");
    await manager.detach();
    const repairs = received.filter((r) => r.repair !== undefined);
    expect(refused).toBe(1);
    expect(repairs).toEqual([
      expect.objectContaining({ state: "starting", repair: { reason, at: at.toISOString() } }),
    ]);
    expect(received.at(-1)).toMatchObject({ state: "ready" });
    expect(received.at(-1)).not.toHaveProperty("repair");
  });
});

describe("a guest in its group's endpoints", () => {
  /** The driver of one exposing guest, deletable. */
  class ExposingDriver extends OneInstanceDriver {
    deleted = false;
    override status(instanceId: string): InstanceStatus {
      if (this.deleted) throw new ComputeError("not-found", "gone");
      const status = super.status(instanceId);
      const nic = { network: "net_a", vni: 7, address: "10.9.0.2", prefixLength: 16, mtu: 1450 };
      return {
        ...status,
        spec: {
          ...status.spec,
          networkInterface: { ...nic, endpoints: { group: "vmg_a", gateway: "10.9.0.1", ports: [80] } },
        },
      } as InstanceStatus;
    }
    list(): InstanceStatus[] {
      return this.deleted ? [] : [this.status("ins_a")];
    }
    async delete(): Promise<void> {
      this.deleted = true;
    }
  }

  it("is reported ready only once it serves, and leaves the endpoints before it is deleted", async () => {
    const driver = new ExposingDriver();
    const received: InstanceReport[] = [];
    const applied: HostNetworkSpec[] = [];
    let serving = false;
    const executor = {
      reconcile: async (spec: HostNetworkSpec) => applied.push(spec),
      acceptsTcp: async () => serving,
    };
    const dir = mkdtempSync(join(tmpdir(), "globalvm-endpoints-"));
    const networks = new GuestNetworks({
      host: { underlayAddress: "192.0.2.1" },
      executor: executor as unknown as LinuxHostNetwork,
      endpointPorts: new EndpointPorts(join(dir, "ports.json")),
    });
    const manager = new InstanceManager({
      ...managerBasics(driver),
      log: () => {},
      guestNetworks: networks,
      endpointDrainMs: 50,
      reporter: {
        async reportInstance(_id, report) {
          received.push(report);
        },
      },
    });
    const backends = () => applied.at(-1)?.networks[0]?.endpoints?.[0]?.backends;
    try {
      await manager.syncNetworks();
      driver.setState("ready");
      await until(() => received.length > 0);
      expect(manager.status("ins_a")).toMatchObject({ state: "running" });
      expect(received.at(-1)?.state_reason).toMatch(/exposed port\(s\) 80/);
      expect(backends()).toEqual([]);
      serving = true;
      await until(() => received.at(-1)?.state === "ready");
      expect(backends()).toEqual(["10.9.0.2"]);
      expect(received.at(-1)?.endpoints).toEqual([{ port: 80, protocol: "tcp", address: "192.0.2.1:30000" }]);
      const specsBefore = applied.length;
      await manager.delete("ins_a");
      // Out of the backends before the guest went, then its network gone with it.
      expect(applied[specsBefore]?.networks[0]?.endpoints?.[0]?.backends).toEqual([]);
      expect(applied.at(-1)?.networks).toEqual([]);
    } finally {
      await manager.detach();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a guest whose group exposes ports, on host agents", () => {
  it("is refused, naming expose, when the manager has no guest network of its own to be their gateway", async () => {
    const dir = mkdtempSync(join(tmpdir(), "globalvm-hosts-expose-"));
    const driver = new OneInstanceDriver();
    // No such instance yet: the driver knows none.
    driver.status = (instanceId: string) => {
      throw new ComputeError("not-found", `no ${instanceId}`);
    };
    Object.assign(driver, { list: () => [] });
    const manager = new InstanceManager({
      ...managerBasics(driver),
      store: {
        findByLocalId: () => undefined,
        getVersion: () => ({ state: "available", localId: "img-1", format: "raw" }),
        imagePath: (localId: string) => `/nowhere/${localId}.img`,
      } as unknown as ImageStore,
      log: () => {},
      guestNetworks: new HostAgentNetworks({
        registry: new HostRegistry({ file: join(dir, "hosts.json"), downAfterMs: 30_000 }),
        firewalls: new NetworkFirewalls(join(dir, "firewalls.json")),
      }),
      reporter: { async reportInstance() {} },
    });
    try {
      const refused = manager.createAndStart({
        instance_id: "ins_01jd3k9x4m6q8r2t5v7w9y1z3b",
        name: "web-0",
        vm_group: "web",
        vm_group_id: "vmg_01jd3k9x4m6q8r2t5v7w9y1z3b",
        image_id: "img_01jd3k9x4m6q8r2t5v7w9y1z3b",
        image_version: 1,
        vcpus: 1,
        memory_mb: 256,
        metadata: {},
        network: {
          id: "net_01jd3k9x4m6q8r2t5v7w9y1z3b",
          vni: 7,
          address: "10.9.0.2",
          prefix_length: 16,
          gateway: "10.9.0.1",
        },
        expose: [{ port: 80, protocol: "tcp" }],
      });
      await expect(refused).rejects.toMatchObject({ field: "expose" });
      await expect(refused).rejects.toThrow(/no guest network of its own/);
    } finally {
      await manager.detach();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("deferred instance record writes", () => {
  it("write a burst of guest attribute changes once, later, and all that is pending at a flush", async () => {
    const dir = mkdtempSync(join(tmpdir(), "globalvm-record-"));
    try {
      const record = { state: "running", guestAttributes: {} } as unknown as InstanceRecord;
      const writes = new DeferredRecordWrites(100);
      for (let i = 0; i < 1000; i++) {
        record.guestAttributes = { ...record.guestAttributes, [`flood/k${i % 10}`]: String(i) };
        writes.schedule("ins_a", dir, () => record);
      }
      expect(existsSync(join(dir, RECORD_FILE))).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(readInstanceRecord(dir).guestAttributes["flood/k9"]).toBe("999");
      record.guestAttributes = { "flood/k0": "last" };
      writes.schedule("ins_a", dir, () => record);
      writes.flush();
      expect(readInstanceRecord(dir).guestAttributes).toEqual({ "flood/k0": "last" });
      // A deleted instance's pending write is dropped, and one into a removed dir is harmless.
      writes.schedule("ins_b", join(dir, "gone"), () => record);
      writes.flush();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
