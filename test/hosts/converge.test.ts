import { describe, expect, it } from "vitest";
import { planConvergence } from "../../regional-manager/host-agent/converge.ts";
import type { HostAssignment } from "../../schemas/hosts.ts";

function assignment(id: string, desired: HostAssignment["desired"], metadata = {}): HostAssignment {
  return {
    instance_id: id,
    name: id,
    vm_group: "web",
    region: "us-east",
    datacenter: "us-east-a",
    image: { image_id: "img_1", version: 1, format: "qcow2", digest: "sha256:00", size: 1 },
    vcpus: 1,
    memory_mb: 128,
    metadata,
    desired,
    generation: 0,
  };
}

describe("a host agent's convergence", () => {
  it("boots an assigned instance it does not run, once", () => {
    const a = assignment("ins_a", "running");
    expect(
      planConvergence({
        assignments: [a],
        guests: [],
        preparing: new Set(),
        lastDesired: new Map(),
        generations: new Map(),
      }),
    ).toEqual([{ kind: "boot", instanceId: "ins_a", assignment: a }]);
    // Its image is on the way (or its preparation failed): nothing more until that ends.
    expect(
      planConvergence({
        assignments: [a],
        guests: [],
        preparing: new Set(["ins_a"]),
        lastDesired: new Map(),
        generations: new Map(),
      }),
    ).toEqual([]);
  });

  it("does not boot an instance asked to stay stopped", () => {
    expect(
      planConvergence({
        assignments: [assignment("ins_a", "stopped")],
        guests: [],
        preparing: new Set(),
        lastDesired: new Map(),
        generations: new Map(),
      }),
    ).toEqual([]);
  });

  it("starts and stops only when what is asked changed, leaving a guest that stopped by itself", () => {
    const guests = [{ instanceId: "ins_a", state: "stopped" as const, metadata: {} }];
    expect(
      planConvergence({
        assignments: [assignment("ins_a", "running")],
        guests,
        preparing: new Set(),
        lastDesired: new Map([["ins_a", "running"]]),
        generations: new Map([["ins_a", 0]]),
      }),
    ).toEqual([]);
    expect(
      planConvergence({
        assignments: [assignment("ins_a", "running")],
        guests,
        preparing: new Set(),
        lastDesired: new Map([["ins_a", "stopped"]]),
        generations: new Map([["ins_a", 0]]),
      }),
    ).toEqual([{ kind: "start", instanceId: "ins_a", generation: 0 }]);
    expect(
      planConvergence({
        assignments: [assignment("ins_a", "stopped")],
        guests: [{ instanceId: "ins_a", state: "ready", metadata: {} }],
        preparing: new Set(),
        lastDesired: new Map([["ins_a", "running"]]),
        generations: new Map([["ins_a", 0]]),
      }),
    ).toEqual([{ kind: "stop", instanceId: "ins_a", generation: 0 }]);
  });

  it("adopts a guest a restarted agent finds already as asked", () => {
    expect(
      planConvergence({
        assignments: [assignment("ins_a", "running")],
        guests: [{ instanceId: "ins_a", state: "ready", metadata: {} }],
        preparing: new Set(),
        lastDesired: new Map(),
        generations: new Map(),
      }),
    ).toEqual([{ kind: "adopt", instanceId: "ins_a", desired: "running", generation: 0 }]);
  });

  it("replaces changed metadata and removes guests no longer assigned here", () => {
    expect(
      planConvergence({
        assignments: [assignment("ins_a", "running", { role: "web" })],
        guests: [
          { instanceId: "ins_a", state: "ready", metadata: { role: "old" } },
          { instanceId: "ins_stale", state: "ready", metadata: {} },
        ],
        preparing: new Set(["ins_gone"]),
        lastDesired: new Map([["ins_a", "running"]]),
        generations: new Map([["ins_a", 0]]),
      }),
    ).toEqual([
      { kind: "set-metadata", instanceId: "ins_a", metadata: { role: "web" } },
      { kind: "remove", instanceId: "ins_stale" },
      { kind: "remove", instanceId: "ins_gone" },
    ]);
  });

  it("recreates a guest whose assignment is of a newer generation", () => {
    const a = { ...assignment("ins_a", "running"), generation: 2 };
    expect(
      planConvergence({
        assignments: [a],
        guests: [{ instanceId: "ins_a", state: "stopped", metadata: {} }],
        preparing: new Set(),
        lastDesired: new Map([["ins_a", "running"]]),
        generations: new Map([["ins_a", 1]]),
      }),
    ).toEqual([{ kind: "recreate", instanceId: "ins_a", assignment: a }]);
  });
});
