// A manager killed between creating an instance and starting it (its network is set up in
// between) finds it, after the restart, created and never started: it starts it, since nothing
// else would (the control plane waits for it to get ready). A guest stopped on purpose stays so.
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import {
  type ComputeDriver,
  type ComputeDriverEvents,
  CREATED_REASON,
  type InstanceState,
  type InstanceStatus,
} from "../../regional-manager/compute/index.ts";
import { InstanceManager } from "../../regional-manager/instances/instance-manager.ts";
import type { ImageStore } from "../../regional-manager/store/image-store.ts";
import type { InstanceReport } from "../../schemas/manager-instances.ts";

/** What a previous manager process left: instances in the given states, with their reasons. */
class LeftBehindDriver extends EventEmitter<ComputeDriverEvents> {
  readonly kind = "fake";
  readonly started: string[] = [];
  readonly #states = new Map<string, { state: InstanceState; reason: string }>();

  constructor(left: Record<string, { state: InstanceState; reason: string }>) {
    super();
    for (const [id, entry] of Object.entries(left)) this.#states.set(id, entry);
  }

  status(instanceId: string): InstanceStatus {
    const entry = this.#states.get(instanceId);
    return {
      instanceId,
      state: entry?.state ?? "failed",
      reason: entry?.reason,
      guestAttributes: {},
      spec: { image: { path: "/nowhere/img-0000000000000000.img" } },
    } as InstanceStatus;
  }

  async reattach(): Promise<InstanceStatus[]> {
    return [...this.#states.keys()].map((id) => this.status(id));
  }

  async start(instanceId: string): Promise<InstanceStatus> {
    this.started.push(instanceId);
    const previous = this.#states.get(instanceId)?.state;
    this.#states.set(instanceId, { state: "starting", reason: "" });
    this.emit("state", { instanceId, state: "starting", previous, at: new Date() });
    return this.status(instanceId);
  }

  consoleLog(): string {
    return "";
  }
}

describe("a manager restarted between an instance's create and its start", () => {
  it("starts the instance created and never started, and only that one", async () => {
    const driver = new LeftBehindDriver({
      ins_created: { state: "stopped", reason: CREATED_REASON },
      ins_stopped: { state: "stopped", reason: "stopped by the manager" },
    });
    const reports: [string, InstanceReport][] = [];
    const logs: string[] = [];
    const manager = new InstanceManager({
      driver: driver as unknown as ComputeDriver,
      store: { findByLocalId: () => undefined } as unknown as ImageStore,
      region: "r",
      datacenter: "dc",
      ensureImageVersion: () => Promise.reject(new Error("not used")),
      capacity: () => ({ vcpus: 2, memoryMb: 1024 }),
      log: (line) => logs.push(line),
      reporter: {
        async reportInstance(id, report) {
          reports.push([id, report]);
        },
      },
    });

    const found = await manager.reattach();
    expect(found.map((status) => status.instanceId).sort()).toEqual(["ins_created", "ins_stopped"]);
    expect(driver.started).toEqual(["ins_created"]);
    expect(logs.join("\n")).toContain("ins_created was created but not started before a restart");
    // The control plane hears that it is starting, and that the other one is stopped.
    await expect
      .poll(() => reports.some(([id, r]) => id === "ins_created" && r.state === "starting"))
      .toBe(true);
    expect(reports.some(([id, r]) => id === "ins_stopped" && r.state === "stopped")).toBe(true);
    expect(reports.some(([id, r]) => id === "ins_stopped" && r.state === "starting")).toBe(false);
  });
});
