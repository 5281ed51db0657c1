// The control plane's /metrics: Prometheus' text format, a metric of each family with bounded
// labels, who may scrape it (a `metrics` or admin token; 401 without, 403 with any other), the
// opt-out, and a bounded number of series after a thousand requests naming random IDs.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../api/app.ts";
import { newId } from "../../api/ids.ts";
import { ControlPlaneMetrics } from "../../api/metrics.ts";
import { metricsPublicFrom } from "../../common/metrics.ts";
import { OPERATION_KINDS } from "../../schemas/operations.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";
import { parseExposition, samplesOf, sumOf } from "../support/metrics.ts";
import { projectFixtures } from "../support/project-fixtures.ts";

const capacity = { vcpus: 16, memory_mb: 32_768, disk_bytes: 100e9 };

describe.each(CATALOG_KINDS)("control plane /metrics (%s)", (kind) => {
  let api: TestApi;
  let project: Awaited<ReturnType<TestApi["createProject"]>>;
  let metricsToken: string;
  let manager: string;

  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "eu-west" } });
    manager = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "eu-west", datacenter: "eu-west-a" },
      })
    ).secret;
    const url = "http://127.0.0.1:9001";
    await api.expectStatus(200, "PUT", "/v1/datacenters/eu-west-a", {
      token: manager,
      body: { region: "eu-west", manager_url: url, capacity },
    });
    await api.expectStatus(200, "POST", "/v1/datacenters/eu-west-a/heartbeat", {
      token: manager,
      body: { manager_url: url, capacity, free: capacity, chunk_count: 0, image_count: 0 },
    });
    project = await api.createProject("metrics");
    const token = await api.expectStatus(201, "POST", `/v1/projects/${project.id}/tokens`, {
      body: { name: "prometheus", scopes: ["metrics"] },
    });
    expect(token.scopes).toEqual(["metrics"]);
    metricsToken = token.secret;
    // An instance in the catalog, and its group's operation still waiting (no orchestrator runs).
    await projectFixtures(api, {
      project: project.id,
      writer: project.token,
      euManager: manager,
      mark: "m",
    }).instance();
  });
  afterAll(() => api.close());

  const scrape = async (token: string | null = metricsToken) => {
    const answer = await api.app.request("/metrics", {
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: answer.status, type: answer.headers.get("content-type"), text: await answer.text() };
  };

  it("answers the text format to a metrics token and to the admin token", async () => {
    for (const token of [metricsToken, undefined]) {
      const answer = await (token === undefined ? api.call("GET", "/metrics") : scrape(token));
      expect(answer.status).toBe(200);
    }
    const answer = await scrape();
    expect(answer.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    const exposition = parseExposition(answer.text);
    expect(exposition.types.get("globalvm_http_requests_total")).toBe("counter");
    expect(exposition.types.get("globalvm_operation_duration_seconds")).toBe("histogram");
  });

  it("refuses a scrape without a token (401) and with any token lacking the scope (403)", async () => {
    expect((await scrape(null)).status).toBe(401);
    expect((await scrape("gvm_not-a-token")).status).toBe(401);
    for (const token of [project.token, project.readToken, manager]) {
      const answer = await scrape(token);
      expect(answer.status).toBe(403);
      expect(JSON.parse(answer.text)).toMatchObject({ code: "forbidden" });
    }
    // The metrics scope opens nothing else.
    expect((await api.call("GET", "/v1/images", { token: metricsToken })).status).toBe(403);
    expect((await api.call("GET", "/v1/regions", { token: metricsToken })).status).toBe(403);
  });

  it("token creation knows the metrics scope and still refuses others", async () => {
    const bad = await api.call("POST", `/v1/projects/${project.id}/tokens`, {
      body: { name: "x", scopes: ["metrics", "root"] },
    });
    expect(bad.status).toBe(400);
  });

  it("shows each family with bounded labels, read from the catalog at scrape time", async () => {
    const m = parseExposition((await scrape()).text);
    for (const operationKind of OPERATION_KINDS) {
      expect(samplesOf(m, "globalvm_operations_started_total", { kind: operationKind })).toHaveLength(1);
      expect(samplesOf(m, "globalvm_operations_waiting", { kind: operationKind })).toHaveLength(1);
    }
    expect(sumOf(m, "globalvm_operations_waiting", { kind: "create-vm-group" })).toBe(1);
    expect(
      sumOf(m, "globalvm_operation_oldest_waiting_seconds", { kind: "create-vm-group" }),
    ).toBeGreaterThanOrEqual(0);
    expect(sumOf(m, "globalvm_operations_running")).toBe(0);
    const age = samplesOf(m, "globalvm_datacenter_heartbeat_age_seconds");
    expect(age.map((s) => s.labels)).toEqual([{ region: "eu-west", datacenter: "eu-west-a" }]);
    expect(age[0]?.value).toBeGreaterThanOrEqual(0);
    expect(age[0]?.value).toBeLessThan(60);
    expect(samplesOf(m, "globalvm_instances").map((s) => [s.labels, s.value])).toEqual([
      [{ datacenter: "eu-west-a", state: "pending" }, 1],
    ]);
    const requests = samplesOf(m, "globalvm_http_requests_total", {
      method: "POST",
      route: "/v1/vm-groups",
      status: "202",
    });
    expect(requests[0]?.value).toBe(1);
    expect(
      samplesOf(m, "globalvm_http_request_duration_seconds_count", { route: "/v1/vm-groups" }),
    ).toHaveLength(1);
    expect(samplesOf(m, "globalvm_http_requests_total", { route: "/metrics", status: "401" }).length).toBe(1);
  });

  it("records an operation's end in the histogram of its kind and result", () => {
    const metrics = new ControlPlaneMetrics(api.services.db, () => new Date());
    metrics.operationStarted("create-vm-group");
    metrics.operationFinished("create-vm-group", "succeeded", new Date(Date.now() - 3000), new Date());
    return metrics.registry.metrics().then((text) => {
      const m = parseExposition(text);
      expect(
        sumOf(m, "globalvm_operation_duration_seconds_count", {
          kind: "create-vm-group",
          result: "succeeded",
        }),
      ).toBe(1);
      expect(
        sumOf(m, "globalvm_operation_duration_seconds_bucket", {
          kind: "create-vm-group",
          result: "succeeded",
          le: "2.5",
        }),
      ).toBe(0);
      expect(sumOf(m, "globalvm_operations_finished_total", { result: "succeeded" })).toBe(1);
      expect(sumOf(m, "globalvm_operations_started_total", { kind: "create-vm-group" })).toBe(1);
    });
  });

  it("keeps a bounded number of series after 1,000 requests naming random IDs", async () => {
    const before = parseExposition((await scrape()).text).samples.length;
    const paths = ["/v1/vm-groups/", "/v1/images/", "/v1/operations/", "/v1/nothing-here/"];
    for (let i = 0; i < 1000; i++) {
      const path = `${paths[i % paths.length]}${newId(i % 2 ? "image" : "vmGroup")}`;
      await api.call("GET", path, { token: project.token });
    }
    const text = (await scrape()).text;
    const m = parseExposition(text);
    // A few new route × status series (and their histogram buckets), not one per ID.
    expect(m.samples.length - before).toBeLessThan(80);
    expect(text).not.toMatch(/(img|vmg|grp)_[0-9a-z]{26}/);
    const routes = new Set(samplesOf(m, "globalvm_http_requests_total").map((s) => s.labels.route));
    expect(routes).toContain("/v1/vm-groups/:id");
    expect(routes).toContain("/v1/images/:id");
    expect(routes).toContain("unmatched");
    expect(sumOf(m, "globalvm_http_requests_total", { route: "unmatched", status: "404" })).toBe(250);
  });

  it("answers without a token when the operator opts out", async () => {
    const open = createApp(api.services, { log: () => {}, metricsPublic: true });
    const answer = await open.request("/metrics");
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(metricsPublicFrom({ GLOBALVM_METRICS_PUBLIC: "1" })).toBe(true);
    expect(metricsPublicFrom({ GLOBALVM_METRICS_PUBLIC: "0" })).toBe(false);
    expect(metricsPublicFrom({})).toBe(false);
    expect(() => metricsPublicFrom({ GLOBALVM_METRICS_PUBLIC: "ye" })).toThrow(
      'GLOBALVM_METRICS_PUBLIC must be 1, true or yes (or 0, false, no), not "ye"',
    );
  });
});
