// A regional VM group's exposed port with real guests: region eu-west is two datacenters, each a
// host namespace with its manager beside the control plane (regional-endpoints-process.ts runs
// the flow in a namespace standing for this machine). Each datacenter offers the port at an
// address of its own that reaches the instance it runs; the group lists one endpoint per
// datacenter, and a datacenter the group shrinks out of drops its endpoint.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VmGroupEndpoint } from "../../schemas/vm-groups.ts";
import { ensureGuestImage, REPO_ROOT } from "../support/compute.ts";
import { removeNamespaces, runFlowInWan } from "./namespaces.ts";

const tag = randomBytes(3).toString("hex");
const wan = `gvw-${tag}`;
const CONTROL_PLANE_HOST = "192.0.2.100";
const regions = [
  { name: "eu-west", netns: `gva-${tag}`, underlay: "192.0.2.2", manager: "beside" },
  { name: "eu-west", netns: `gvb-${tag}`, underlay: "192.0.2.3", manager: "beside" },
];
const created: string[] = [];

describe("a regional VM group's endpoints", () => {
  let outcome: {
    instances?: [string, string, string][];
    endpoints?: VmGroupEndpoint[];
    answers?: Record<string, string>;
    afterResize?: { instances: [string, string][]; endpoints: VmGroupEndpoint[] };
    goneAnswer?: { ok: boolean; text: string };
    error?: string;
    logs?: string;
  };

  beforeAll(() => {
    ensureGuestImage();
    outcome = runFlowInWan({
      script: join(REPO_ROOT, "test/network/regional-endpoints-process.ts"),
      wan,
      controlPlaneHost: CONTROL_PLANE_HOST,
      regions,
      created,
      timeoutMs: 800_000,
    });
  }, 900_000);

  afterAll(() => removeNamespaces(created));

  it("ran the flow", () => {
    expect(outcome.error, outcome.logs).toBeUndefined();
  });

  it("runs one instance in each datacenter, each behind its datacenter's own address", () => {
    expect(outcome.instances?.map(([, datacenter, state]) => [datacenter, state]).sort()).toEqual([
      ["eu-west-a", "ready"],
      ["eu-west-b", "ready"],
    ]);
    const endpoints = outcome.endpoints ?? [];
    expect(endpoints.map((e) => [e.port, e.protocol, e.datacenter])).toEqual([
      [80, "tcp", "eu-west-a"],
      [80, "tcp", "eu-west-b"],
    ]);
    // Both managers offer their endpoints on this machine's loopback: two ports, not one.
    expect(new Set(endpoints.map((e) => e.address)).size).toBe(2);
    for (const e of endpoints) expect(e.url).toBe(`tcp://${e.address}`);
    // Each address reaches the instance of its own datacenter (the guests serve their names).
    const nameIn = Object.fromEntries(
      (outcome.instances ?? []).map(([name, datacenter]) => [datacenter, name]),
    );
    expect(outcome.answers).toEqual(nameIn);
  });

  it("drops the endpoint of a datacenter the group shrinks out of, and keeps the other's", () => {
    const after = outcome.afterResize;
    expect(after?.instances).toHaveLength(1);
    const [[, kept] = ["", ""]] = after?.instances ?? [];
    expect(after?.endpoints).toEqual((outcome.endpoints ?? []).filter((e) => e.datacenter === kept));
    expect(outcome.goneAnswer?.ok).toBe(false);
  });
});
