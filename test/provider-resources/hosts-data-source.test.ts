// globalvm_hosts (the data source) in process, against a scripted control plane: one
// datacenter's hosts read across pages into the attribute's object shape, and an unknown
// datacenter failing on `datacenter`. Under the real terraform it runs in terraform.test.ts.

import { describe, expect, it } from "vitest";
import { CtyNumber } from "../../provider/cty/values.ts";
import { createLogger } from "../../provider/framework/logger.ts";
import { DiagnosticError } from "../../provider/index.ts";
import { createProviderData } from "../../provider/provider-data.ts";
import { hostsDataSource } from "../../provider/resources/data-sources.ts";

const host = (name: string, freeVcpus: number) => ({
  name,
  datacenter: "eu-west-a",
  state: name === "host-c" ? "down" : "up",
  arch: "x86_64",
  capacity: { vcpus: 4, memory_mb: 8192, disk_bytes: 50e9 },
  free: { vcpus: freeVcpus, memory_mb: 4096, disk_bytes: 40e9 },
  instance_count: 4 - freeVcpus,
  cached_versions: 2,
  cache_bytes: 123_456,
  last_seen_at: "2026-01-01T00:00:00Z",
});

/** GET /v1/datacenters/{name}/hosts in pages of at most two hosts; 404 for another datacenter. */
function fakeControlPlane(hosts: ReturnType<typeof host>[]) {
  const requests: string[] = [];
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    requests.push(`${request.method} ${url.pathname}${url.search}`);
    if (request.method !== "GET" || url.pathname !== "/v1/datacenters/eu-west-a/hosts") {
      return json(404, {
        title: "Not Found",
        status: 404,
        code: "not_found",
        detail: `datacenter ${url.pathname.split("/")[3]} does not exist`,
      });
    }
    const start = Number(url.searchParams.get("page_token") ?? 0);
    const end = start + 2;
    return json(200, {
      items: hosts.slice(start, end),
      next_page_token: end < hosts.length ? String(end) : null,
    });
  };
  return { fetchImpl: fetchImpl as typeof fetch, requests };
}

function context(fetchImpl: typeof fetch) {
  return {
    signal: new AbortController().signal,
    log: createLogger("provider.globalvm", () => {}),
    providerData: createProviderData("http://control-plane.test", "token-0123456789abcdef", {
      fetch: fetchImpl,
    }),
  };
}

const n = (value: number) => new CtyNumber(value);

describe("the globalvm_hosts data source", () => {
  it("requires datacenter and computes hosts", () => {
    const { attributes } = hostsDataSource.schema;
    expect(attributes?.datacenter).toMatchObject({ type: "string", required: true });
    expect(attributes?.hosts).toMatchObject({ computed: true });
    expect(attributes?.hosts?.optional).toBeFalsy();
    expect(attributes?.hosts?.type).toEqual([
      "list",
      [
        "object",
        {
          name: "string",
          state: "string",
          arch: "string",
          vcpus: "number",
          memory_mb: "number",
          disk_bytes: "number",
          free_vcpus: "number",
          free_memory_mb: "number",
          instance_count: "number",
          cached_versions: "number",
        },
      ],
    ]);
  });

  it("reads every host of the datacenter, across pages", async () => {
    const fake = fakeControlPlane([host("host-a", 1), host("host-b", 4), host("host-c", 2)]);
    const state = await hostsDataSource.read(
      { config: { datacenter: "eu-west-a" } },
      context(fake.fetchImpl),
    );
    expect(state.hosts).toHaveLength(3);
    expect((state.hosts as unknown[])[0]).toEqual({
      name: "host-a",
      state: "up",
      arch: "x86_64",
      vcpus: n(4),
      memory_mb: n(8192),
      disk_bytes: n(50e9),
      free_vcpus: n(1),
      free_memory_mb: n(4096),
      instance_count: n(3),
      cached_versions: n(2),
    });
    expect((state.hosts as { name: string; state: string }[]).map((h) => [h.name, h.state])).toEqual([
      ["host-a", "up"],
      ["host-b", "up"],
      ["host-c", "down"],
    ]);
    expect(fake.requests).toEqual([
      "GET /v1/datacenters/eu-west-a/hosts?page_size=200",
      "GET /v1/datacenters/eu-west-a/hosts?page_size=200&page_token=2",
    ]);
  });

  it("a datacenter without host agents has none", async () => {
    const fake = fakeControlPlane([]);
    const state = await hostsDataSource.read(
      { config: { datacenter: "eu-west-a" } },
      context(fake.fetchImpl),
    );
    expect(state).toEqual({ hosts: [] });
  });

  it("fails on `datacenter` for one that does not exist", async () => {
    const fake = fakeControlPlane([]);
    const failure = await hostsDataSource
      .read({ config: { datacenter: "mars-a" } }, context(fake.fetchImpl))
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(DiagnosticError);
    expect(failure).toMatchObject({
      message: "No such datacenter",
      detail: 'No datacenter mars-a; data "globalvm_regions" lists them.',
      path: ["datacenter"],
    });
    expect(fake.requests).toEqual(["GET /v1/datacenters/mars-a/hosts?page_size=200"]);
  });
});
