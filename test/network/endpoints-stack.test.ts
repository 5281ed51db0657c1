// A VM group's endpoint as a user meets it, with real guests: the stack runs in a namespace
// standing for this machine (endpoints-stack-process.ts), us-east's host is another namespace
// (its manager beside the control plane, as `globalvm up` runs it), and the group's guests serve
// their names over HTTP. The endpoint is refused until a firewall rule lets the outside in, then
// reaches both instances, drops no request through a rolling update and a resize to 1, and is
// gone with the group. Its guests resolve internal names through their manager's DNS.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuestImage, REPO_ROOT } from "../support/compute.ts";
import { removeNamespaces, runFlowInWan } from "./namespaces.ts";

const tag = randomBytes(3).toString("hex");
const wan = `gvw-${tag}`;
const CONTROL_PLANE_HOST = "192.0.2.100";
const regions = [{ name: "us-east", netns: `gvb-${tag}`, underlay: "192.0.2.2", manager: "beside" }];
const created: string[] = [];

interface Answer {
  ok: boolean;
  text: string;
}

describe("a VM group's endpoint", () => {
  let outcome: {
    endpoints?: { port: number; protocol: string; address: string; url: string; datacenter: string }[];
    instances?: [string, string][];
    addresses?: Record<string, string>;
    resolved?: Record<string, Record<string, string>>;
    groupAnswer?: { rcode: number; addresses: string[] };
    withoutRule?: Answer;
    allowedAfterMs?: number;
    seen?: string[];
    underLoad?: {
      ok: number;
      failed: number;
      answers: Record<string, number>;
      failures: Record<string, number>;
    };
    afterResize?: unknown[];
    afterDelete?: Answer;
    natAfterDelete?: boolean;
    error?: string;
    logs?: string;
  };

  beforeAll(() => {
    ensureGuestImage();
    outcome = runFlowInWan({
      script: join(REPO_ROOT, "test/network/endpoints-stack-process.ts"),
      wan,
      controlPlaneHost: CONTROL_PLANE_HOST,
      regions,
      created,
      timeoutMs: 1_100_000,
    });
  }, 1_200_000);

  afterAll(() => removeNamespaces(created));

  it("ran the flow", () => {
    expect(outcome.error, outcome.logs).toBeUndefined();
    const { allowedAfterMs, underLoad, resolved } = outcome;
    console.log(
      `[endpoints] allowed ${allowedAfterMs} ms after the rule; under load ${JSON.stringify(underLoad)}; resolved ${JSON.stringify(resolved)}`,
    );
  });

  it("is reported on the group: one per exposed port, on the machine's loopback", () => {
    expect(outcome.endpoints).toEqual([
      {
        port: 80,
        protocol: "tcp",
        address: expect.stringMatching(/^127\.0\.0\.1:3\d{4}$/),
        url: expect.stringMatching(/^tcp:\/\/127\.0\.0\.1:3\d{4}$/),
        // The region's first datacenter (the stack names them <region>-a, -b, …).
        datacenter: expect.stringMatching(/-a$/),
      },
    ]);
    expect(outcome.instances).toEqual([
      ["web-0", "ready"],
      ["web-1", "ready"],
    ]);
  });

  it("lets guests resolve instances and groups of their project by name, and nothing else", () => {
    const { addresses, resolved } = outcome;
    const ready = [addresses?.["web-0"], addresses?.["web-1"]];
    expect(addresses?.["web-0"]).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    for (const guest of ["web-0", "web-1"]) {
      expect(resolved?.[guest]).toEqual({
        "web-0": addresses?.["web-0"],
        "web-1": addresses?.["web-1"],
        // A group resolves to its ready instances; a resolver picks one of them.
        group: expect.toBeOneOf(ready),
        outside: "unresolved",
        "other-project": "unresolved",
      });
    }
    expect(outcome.groupAnswer).toEqual({ rcode: 0, addresses: ready });
  });

  it("obeys the network's firewall: refused until a rule lets the outside in, within 2 s of it", () => {
    expect(outcome.withoutRule?.ok).toBe(false);
    expect(outcome.allowedAfterMs).toBeLessThan(2000);
  });

  it("reaches both instances", () => {
    expect(outcome.seen).toEqual(["web-0", "web-1"]);
  });

  it("drops no request through a rolling update and a resize to 1", () => {
    expect(outcome.underLoad?.failures).toEqual({});
    expect(outcome.underLoad?.failed).toBe(0);
    expect(outcome.underLoad?.ok).toBeGreaterThan(20);
    expect(outcome.afterResize).toHaveLength(1);
  });

  it("is gone with the group: the port closed and no NAT rule left", () => {
    expect(outcome.afterDelete?.ok).toBe(false);
    expect(outcome.afterDelete?.text).toBe("ECONNREFUSED");
    expect(outcome.natAfterDelete).toBe(false);
  });
});
