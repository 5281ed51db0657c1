// One operation's story across processes: a request's traceparent becomes the trace_id of the
// operation it creates (the API shows it), the runner's lines about the operation carry it, and
// every manager request the operation makes sends a traceparent of the same trace with a span
// of its own. The manager here is a stand-in that records what it receives.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestManager } from "../../api/orchestrator/manager-client.ts";
import { type RunningControlPlane, startControlPlane } from "../../api/server.ts";
import { createLogger } from "../../common/log.ts";
import { parseTraceparent } from "../../common/trace-context.ts";
import { ADMIN_TOKEN, prepareTenant, type Tenant, waitForOperation } from "./support.ts";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

describe("operation traces", () => {
  let dir: string;
  let controlPlane: RunningControlPlane;
  let tenant: Tenant;
  let manager: Server;
  let managerUrl: string;
  const received: IncomingHttpHeaders[] = [];
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "globalvm-traces-"));
    manager = createServer((request, response) => {
      received.push(request.headers);
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
    await new Promise<void>((resolve) => manager.listen(0, "127.0.0.1", resolve));
    const address = manager.address();
    managerUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    controlPlane = await startControlPlane({
      catalog: { dataDir: dir },
      port: 0,
      adminToken: ADMIN_TOKEN,
      logger: createLogger({
        service: "control-plane",
        level: "info",
        destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
      }),
      // A handler that asks the manager twice, as a real step does through the manager client.
      handlers: {
        "create-vm-group": async () => {
          for (const path of ["/v1/instances/a", "/v1/instances/b"]) {
            await requestManager({
              managerUrl,
              token: "an-instance-token",
              method: "GET",
              path,
              timeoutMs: 5_000,
              describe: `manager: GET ${path}`,
            });
          }
          return { asked: 2 };
        },
      },
    });
    tenant = await prepareTenant(controlPlane.url);
  }, 120_000);

  afterAll(async () => {
    await controlPlane?.close();
    await new Promise((resolve) => manager?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const createGroup = async (name: string, headers: Record<string, string> = {}) => {
    const response = await fetch(`${controlPlane.url}/v1/vm-groups`, {
      method: "POST",
      headers: { authorization: `Bearer ${tenant.token}`, "content-type": "application/json", ...headers },
      body: JSON.stringify({
        name,
        image: tenant.imageId,
        region: "eu-west",
        size: 1,
        machine: { vcpus: 1, memory_mb: 128 },
      }),
    });
    expect(response.status).toBe(202);
    return { operation: (await response.json()) as { id: string; trace_id: string | null }, response };
  };

  it("records the caller's trace on the operation and sends it to the manager, and logs it all", async () => {
    const { operation, response } = await createGroup("traced", {
      traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`,
    });
    expect(operation.trace_id).toBe(TRACE_ID);
    expect(parseTraceparent(response.headers.get("traceparent"))?.traceId).toBe(TRACE_ID);
    const done = await waitForOperation(controlPlane.url, tenant.token, operation.id, (o) => o.done, 30_000);
    expect(done).toMatchObject({ state: "succeeded", trace_id: TRACE_ID });

    // The manager got a traceparent of the same trace on each request, each a span of its own.
    const sent = received.map((headers) => parseTraceparent(headers.traceparent as string | undefined));
    expect(sent).toHaveLength(2);
    for (const context of sent) expect(context?.traceId).toBe(TRACE_ID);
    const spans = new Set([CALLER_SPAN, ...sent.map((context) => context?.spanId)]);
    expect(spans.size).toBe(3);

    // grep TRACE_ID: the request that created it, the attempt's start and end, with the operation.
    const story = lines.filter((line) => line.trace_id === TRACE_ID);
    expect(story).toContainEqual(
      expect.objectContaining({
        method: "POST",
        route: "/v1/vm-groups",
        status: 202,
        service: "control-plane",
      }),
    );
    expect(story).toContainEqual(
      expect.objectContaining({
        operation_id: operation.id,
        msg: expect.stringMatching(/attempt 1 started/),
      }),
    );
    expect(story).toContainEqual(
      expect.objectContaining({ operation_id: operation.id, msg: expect.stringMatching(/succeeded$/) }),
    );
    // The request line names the route, never a token.
    expect(JSON.stringify(lines)).not.toContain(tenant.token);
  });

  it("starts a trace for an operation whose request had none (or an invalid one)", async () => {
    received.length = 0;
    const { operation, response } = await createGroup("untraced", { traceparent: "not-a-traceparent" });
    expect(operation.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(operation.trace_id).not.toBe(TRACE_ID);
    expect(parseTraceparent(response.headers.get("traceparent"))?.traceId).toBe(operation.trace_id);
    await waitForOperation(controlPlane.url, tenant.token, operation.id, (o) => o.done, 30_000);
    for (const headers of received)
      expect(parseTraceparent(headers.traceparent as string | undefined)?.traceId).toBe(operation.trace_id);
  });
});
