// globalvm_network (the data source) in process, against a scripted control plane: the lookup
// by name, and a name that matches nothing failing on `name` with every network of the project,
// read across pages. Under the real terraform it runs in terraform.test.ts.

import { describe, expect, it } from "vitest";
import { CtyNumber } from "../../provider/cty/values.ts";
import { createLogger } from "../../provider/framework/logger.ts";
import { DiagnosticError } from "../../provider/index.ts";
import { createProviderData } from "../../provider/provider-data.ts";
import { networkDataSource } from "../../provider/resources/data-sources.ts";

const network = (id: string, name: string, cidr: string) => ({
  id,
  name,
  cidr,
  subnet_prefix_length: 24,
  labels: name === "default" ? {} : { team: "db" },
  created_at: "2025-01-01T00:00:00Z",
  updated_at: "2025-01-01T00:00:00Z",
});

/** GET /v1/networks with the API's name filter, and pages of at most two networks. */
function fakeControlPlane(networks: ReturnType<typeof network>[]) {
  const requests: string[] = [];
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    requests.push(`${request.method} ${url.pathname}${url.search}`);
    if (request.method !== "GET" || url.pathname !== "/v1/networks") {
      return json(404, { title: "Not Found", status: 404, code: "not_found", detail: url.pathname });
    }
    const name = url.searchParams.get("name");
    if (name !== null && !/^[a-z]([a-z0-9-]*[a-z0-9])?$/.test(name)) {
      return json(400, {
        title: "Bad Request",
        status: 400,
        code: "invalid_request",
        detail: "The request is invalid.",
        errors: [{ path: "name", message: "must be lowercase letters, digits and '-'" }],
      });
    }
    const matching = networks.filter((n) => name === null || n.name === name);
    const start = Number(url.searchParams.get("page_token") ?? 0);
    const size = Math.min(2, Number(url.searchParams.get("page_size") ?? 50));
    const end = start + size;
    return json(200, {
      items: matching.slice(start, end),
      next_page_token: end < matching.length ? String(end) : null,
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

const project = [
  network("net_1", "default", "10.128.0.0/9"),
  network("net_2", "backend", "10.20.0.0/16"),
  network("net_3", "web", "10.30.0.0/16"),
];

describe("the globalvm_network data source", () => {
  it("requires name and computes the rest", () => {
    const { attributes } = networkDataSource.schema;
    expect(attributes?.name).toMatchObject({ type: "string", required: true });
    for (const key of ["id", "cidr", "subnet_prefix_length", "labels"]) {
      expect(attributes?.[key], key).toMatchObject({ computed: true });
      expect(attributes?.[key]?.optional, key).toBeFalsy();
    }
  });

  it("finds a network by name with one filtered request", async () => {
    const fake = fakeControlPlane(project);
    const state = await networkDataSource.read({ config: { name: "backend" } }, context(fake.fetchImpl));
    expect(state).toEqual({
      id: "net_2",
      name: "backend",
      cidr: "10.20.0.0/16",
      subnet_prefix_length: new CtyNumber(24),
      labels: { team: "db" },
    });
    expect(fake.requests).toEqual(["GET /v1/networks?name=backend&page_size=1"]);

    const byDefault = await networkDataSource.read({ config: { name: "default" } }, context(fake.fetchImpl));
    expect(byDefault).toMatchObject({ id: "net_1", cidr: "10.128.0.0/9" });
  });

  it("fails on `name` naming every network of the project, across pages", async () => {
    const fake = fakeControlPlane(project);
    const failure = await networkDataSource
      .read({ config: { name: "frontend" } }, context(fake.fetchImpl))
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(DiagnosticError);
    expect(failure).toMatchObject({
      message: "No such network",
      detail: "No network named frontend; the project's networks: backend, default, web.",
      path: ["name"],
    });
    expect(fake.requests).toEqual([
      "GET /v1/networks?name=frontend&page_size=1",
      "GET /v1/networks?page_size=200",
      "GET /v1/networks?page_size=200&page_token=2",
    ]);
  });

  it("says so when the project has no network at all", async () => {
    const fake = fakeControlPlane([]);
    await expect(
      networkDataSource.read({ config: { name: "default" } }, context(fake.fetchImpl)),
    ).rejects.toMatchObject({
      detail: "No network named default; the project has none.",
      path: ["name"],
    });
  });

  it("puts the API's refusal of a malformed name on `name`", async () => {
    const fake = fakeControlPlane(project);
    await expect(
      networkDataSource.read({ config: { name: "Default" } }, context(fake.fetchImpl)),
    ).rejects.toMatchObject({ path: ["name"] });
  });
});
