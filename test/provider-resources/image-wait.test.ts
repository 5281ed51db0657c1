// globalvm_image in process: which replicas its state shows, how the plan re-attaches to an
// apply that timed out, and the wait for replicas against a scripted control plane (the same
// under the real terraform and real managers: image-replicas.test.ts).

import { describe, expect, it } from "vitest";
import type { Image } from "../../client/api.ts";
import { CtyNumber, isUnknown, type ObjectValue } from "../../provider/cty/values.ts";
import { Diagnostics } from "../../provider/framework/diagnostics.ts";
import { createLogger } from "../../provider/framework/logger.ts";
import { createProviderData } from "../../provider/provider-data.ts";
import { imageDataState, imageResource, imageState } from "../../provider/resources/image.ts";
import {
  replicaProgress,
  stateHoldsPolicy,
  waitForReplicas,
} from "../../provider/resources/image-replicas.ts";

const n = (value: number) => new CtyNumber(value);
type Replica = Image["replicas"][number];

function replica(datacenter: string, overrides: Partial<Replica> = {}): Replica {
  return {
    region: datacenter.replace(/-[a-z]$/, ""),
    datacenter,
    version: 2,
    local_id: `${datacenter}-local`,
    state: "available",
    reason: datacenter.startsWith("eu-west") ? "origin" : "replicate_to",
    bytes_done: 4096,
    bytes_total: 4096,
    updated_at: "2025-01-01T00:00:00Z",
    ...overrides,
  };
}

function image(replicas: Replica[], overrides: Partial<Image> = {}): Image {
  return {
    id: "img_0123456789abcdef",
    project_id: "prj_0123456789abcdef",
    name: "web",
    format: "raw",
    origin_region: "eu-west",
    state: "available",
    version: 2,
    size: 4096,
    digest: `sha256:${"ab".repeat(32)}`,
    pinned_version: null,
    family: null,
    members: [],
    labels: {},
    replicate_to: ["us-east"],
    replicas,
    created_at: "2025-01-01T00:00:00Z",
    updated_at: "2025-01-01T00:00:00Z",
    ...overrides,
  };
}

const everywhere = () => [
  replica("eu-west-a", { version: 1 }),
  replica("eu-west-a"),
  replica("us-east-a"),
  // Copies made for VM groups: on demand, in a third region and in a policy region's other datacenter.
  replica("ap-south-a", { reason: "on_demand" }),
  replica("us-east-b", { reason: "on_demand" }),
];

describe("the image's replicas", () => {
  it("in the resource: the current version's, in the origin and replicate_to regions only", () => {
    expect(imageState(image(everywhere())).replicas).toEqual([
      {
        region: "eu-west",
        datacenter: "eu-west-a",
        local_id: "eu-west-a-local",
        state: "available",
        version: n(2),
      },
      {
        region: "us-east",
        datacenter: "us-east-a",
        local_id: "us-east-a-local",
        state: "available",
        version: n(2),
      },
    ]);
  });

  it("in the data source: every replica, with its reason", () => {
    const replicas = imageDataState(image(everywhere())).replicas as ObjectValue[];
    expect(replicas.map((r) => [r.datacenter, (r.version as CtyNumber).toNumber(), r.reason])).toEqual([
      ["eu-west-a", 1, "origin"],
      ["eu-west-a", 2, "origin"],
      ["us-east-a", 2, "replicate_to"],
      ["ap-south-a", 2, "on_demand"],
      ["us-east-b", 2, "on_demand"],
    ]);
  });

  it("progress per required region: the best copy, or missing", () => {
    const progress = replicaProgress(
      image(
        [
          replica("eu-west-a"),
          replica("us-east-a", { state: "failed" }),
          replica("us-east-b", { state: "transferring", bytes_done: 100, reason: "replicate_to" }),
        ],
        { replicate_to: ["us-east", "ap-south", "eu-west"] },
      ),
    );
    expect(progress.map((p) => [p.region, p.state])).toEqual([
      ["eu-west", "available"],
      ["ap-south", "missing"],
      ["us-east", "transferring"],
    ]);
  });

  it("a state holds the policy when the current version is available in every required region", () => {
    const state = imageState(image(everywhere()));
    expect(stateHoldsPolicy(state)).toBe(true);
    expect(stateHoldsPolicy({ ...state, replicate_to: ["us-east", "ap-south"] })).toBe(false);
    const pending = imageState(image([replica("eu-west-a"), replica("us-east-a", { state: "pending" })]));
    expect(stateHoldsPolicy(pending)).toBe(false);
    expect(stateHoldsPolicy({ ...state, version: n(3) })).toBe(false);
  });
});

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });

/**
 * A control plane whose image answers, read after read, the next of `script` (the last one
 * for ever); its datacenters are `datacenters`.
 */
function scripted(
  script: Image[],
  options: { datacenters?: { name: string; region: string; status: string }[]; operationError?: string } = {},
) {
  let reads = 0;
  const requests: string[] = [];
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    requests.push(`${request.method} ${url.pathname}`);
    if (url.pathname.startsWith("/v1/images/")) {
      const answer = script[Math.min(reads, script.length - 1)];
      reads++;
      return json(200, answer);
    }
    if (url.pathname === "/v1/datacenters") {
      const items = (
        options.datacenters ?? [
          { name: "eu-west-a", region: "eu-west", status: "up" },
          { name: "us-east-a", region: "us-east", status: "up" },
        ]
      ).map((dc) => ({ ...dc, manager_url: "http://127.0.0.1:1" }));
      return json(200, { items, next_page_token: null });
    }
    if (url.pathname === "/v1/regions") {
      return json(200, {
        items: ["eu-west", "us-east"].map((name) => ({ name, datacenters: [`${name}-a`] })),
        next_page_token: null,
      });
    }
    const operation = /^\/v1\/operations\/(op_\w+)$/.exec(url.pathname);
    if (operation) {
      return json(200, {
        id: operation[1],
        state: "running",
        error: options.operationError ? { code: "retrying", message: options.operationError } : null,
      });
    }
    return json(404, { title: "Not Found", status: 404, code: "not_found", detail: url.pathname });
  };
  return { fetchImpl: fetchImpl as typeof fetch, requests, reads: () => reads };
}

function context(fetchImpl: typeof fetch, lines: string[] = [], signal = new AbortController().signal) {
  return {
    signal,
    log: createLogger("provider.globalvm", (line) => lines.push(line)),
    providerData: createProviderData("http://control-plane.test", "token-0123456789abcdef", {
      fetch: fetchImpl,
    }),
  };
}

const ID = "img_0123456789abcdef";

describe("waiting for replicas", () => {
  const arriving = (state: Replica["state"], bytes = 0) =>
    image([replica("eu-west-a"), replica("us-east-a", { state, bytes_done: bytes })]);

  it("ends once every required region holds the current version, logging progress", async () => {
    const fake = scripted([
      image([replica("eu-west-a")]),
      arriving("pending"),
      arriving("transferring", 1024),
      arriving("available", 4096),
    ]);
    const lines: string[] = [];
    const done = await waitForReplicas(context(fake.fetchImpl, lines), ID, {
      timeoutMs: 10_000,
      what: "creating image web",
      maxPollMs: 5,
    });
    expect(done.replicas.map((r) => r.state)).toEqual(["available", "available"]);
    expect(fake.reads()).toBe(4);
    const progress = lines.map((line) => JSON.parse(line)).map((l) => l.progress);
    expect(progress).toContain("eu-west: available (eu-west-a), us-east: no copy yet");
    expect(progress).toContain(
      "eu-west: available (eu-west-a), us-east: transferring 1.0 KiB of 4.0 KiB (us-east-a)",
    );
  });

  it("is not fooled by copies made on demand in a required region", async () => {
    const onDemand = image([replica("eu-west-a"), replica("us-east-b", { reason: "on_demand" })]);
    const fake = scripted([onDemand, onDemand, arriving("available")]);
    await waitForReplicas(context(fake.fetchImpl), ID, { timeoutMs: 10_000, what: "x", maxPollMs: 5 });
    expect(fake.reads()).toBe(3);
  });

  it("rides out a failure the control plane retries", async () => {
    const fake = scripted([arriving("failed"), arriving("pending"), arriving("available")]);
    await waitForReplicas(context(fake.fetchImpl), ID, { timeoutMs: 10_000, what: "x", maxPollMs: 5 });
  });

  it("ends on a replica that stays failed, naming its region and the operation's reason", async () => {
    const fake = scripted([arriving("failed")], { operationError: "the pull into us-east-a failed 3 times" });
    const failing = waitForReplicas(context(fake.fetchImpl), ID, {
      timeoutMs: 10_000,
      what: "updating image web",
      operationId: "op_0123456789abcdef",
      failedGraceMs: 30,
      maxPollMs: 5,
    });
    await expect(failing).rejects.toMatchObject({
      message: "Replicating the image to us-east failed",
      detail: expect.stringMatching(
        /updating image web: the copy of version 2 in us-east-a \(region us-east\) is failed \(retrying: the pull into us-east-a failed 3 times\)/,
      ),
      path: ["replicate_to"],
    });
  });

  it("ends at once when a required region has no datacenter up to hold it", async () => {
    const fake = scripted([image([replica("eu-west-a")])], {
      datacenters: [
        { name: "eu-west-a", region: "eu-west", status: "up" },
        { name: "us-east-a", region: "us-east", status: "down" },
      ],
    });
    await expect(
      waitForReplicas(context(fake.fetchImpl), ID, { timeoutMs: 10_000, what: "creating image web" }),
    ).rejects.toMatchObject({ message: "No datacenter of us-east is up to hold the image" });
    expect(fake.reads()).toBe(1);
  });

  it("times out saying where each region stands and that the next apply waits again", async () => {
    const fake = scripted([arriving("transferring", 2048)]);
    await expect(
      waitForReplicas(context(fake.fetchImpl), ID, {
        timeoutMs: 50,
        what: "creating image web",
        maxPollMs: 5,
      }),
    ).rejects.toMatchObject({
      message: "Timed out waiting for the image's replicas",
      detail: expect.stringContaining(
        "us-east: transferring 2.0 KiB of 4.0 KiB (us-east-a)). The control plane keeps copying; apply again to wait for it",
      ),
    });
  });

  it("stops when Terraform asks the provider to stop", async () => {
    const fake = scripted([arriving("pending")]);
    const controller = new AbortController();
    const waiting = waitForReplicas(context(fake.fetchImpl, [], controller.signal), ID, {
      timeoutMs: 60_000,
      what: "x",
    });
    setTimeout(() => controller.abort(new Error("Terraform asked the provider to stop")), 50);
    // The framework reports an error after the stop as "Operation cancelled".
    await expect(waiting).rejects.toThrow(/abort|stop/);
  });
});

describe("the plan after an apply that timed out", () => {
  const source = new URL(import.meta.url).pathname;
  async function plan(prior: ObjectValue) {
    const config: ObjectValue = {
      ...prior,
      id: null,
      source_hash: prior.source_hash ?? null,
      digest: null,
      size: null,
      version: null,
      replicas: null,
    };
    const planned: ObjectValue = { ...prior };
    await imageResource.modifyPlan?.(
      { config, prior, planned, requiresReplace: [], diagnostics: new Diagnostics() },
      context(scripted([]).fetchImpl),
    );
    return planned;
  }
  const stateOf = (replicas: Replica[]): ObjectValue => ({
    ...imageState(image(replicas)),
    source,
    source_hash: `sha256:${"ab".repeat(32)}`,
    timeouts: null,
  });

  it("leaves a state that holds the policy alone", async () => {
    const prior = stateOf([replica("eu-west-a"), replica("us-east-a")]);
    const planned = await plan(prior);
    expect(planned.replicas).toEqual(prior.replicas);
  });

  it("marks replicas unknown while a replicate_to region lacks the version, so the apply waits", async () => {
    const planned = await plan(stateOf([replica("eu-west-a"), replica("us-east-a", { state: "pending" })]));
    expect(isUnknown(planned.replicas)).toBe(true);
    expect(planned.version).toEqual(n(2));
  });
});

describe("create when the name is taken", () => {
  it("names the existing image to import (an earlier apply made it under other settings)", async () => {
    const requests: string[] = [];
    const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
      const request = new Request(input, init);
      const url = new URL(request.url);
      requests.push(`${request.method} ${url.pathname}${url.search}`);
      if (request.method === "POST" && url.pathname === "/v1/images") {
        return json(409, {
          title: "Conflict",
          status: 409,
          code: "already_exists",
          detail: "An image named web already exists in this project.",
        });
      }
      if (url.pathname === "/v1/images") return json(200, { items: [image([])], next_page_token: null });
      return json(404, { title: "Not Found", status: 404, code: "not_found", detail: url.pathname });
    }) as typeof fetch;
    const plan: ObjectValue = {
      ...imageState(image([])),
      id: null,
      source: new URL(import.meta.url).pathname,
      source_hash: `sha256:${"cd".repeat(32)}`,
      timeouts: null,
    };
    await expect(imageResource.create({ plan, config: plan }, context(fetchImpl))).rejects.toMatchObject({
      message: "The image already exists",
      detail: expect.stringContaining(`terraform import <address> ${ID}`),
      path: ["name"],
    });
    // One attempt, and nothing deleted: the image is not this apply's.
    expect(requests.filter((r) => r.startsWith("POST"))).toHaveLength(1);
    expect(requests.some((r) => r.startsWith("DELETE"))).toBe(false);
  });
});
