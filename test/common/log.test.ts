// The services' JSON lines: the level from GLOBALVM_LOG_LEVEL, the fields every line has, the
// trace of the work under way, secrets never written, and up's human lines and files.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import { afterAll, describe, expect, it } from "vitest";
import { upLoggers } from "../../cli/up-logs.ts";
import { traceRequests } from "../../common/http/trace.ts";
import {
  createLogger,
  humanLines,
  type LogLevel,
  lineLog,
  logFile,
  logLevelFrom,
  scrubSecrets,
} from "../../common/log.ts";
import { newTrace, parseTraceparent, withTrace } from "../../common/trace-context.ts";

function capture(level: LogLevel = "info", datacenter?: string) {
  const lines: string[] = [];
  const logger = createLogger({
    service: datacenter ? "regional-manager" : "control-plane",
    ...(datacenter ? { datacenter } : {}),
    level,
    destination: { write: (line: string) => void lines.push(line) },
  });
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines, records };
}

const scratch = mkdtempSync(join(tmpdir(), "globalvm-log-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("GLOBALVM_LOG_LEVEL", () => {
  it("is info by default and takes any pino level", () => {
    expect(logLevelFrom({})).toBe("info");
    expect(logLevelFrom({ GLOBALVM_LOG_LEVEL: "" })).toBe("info");
    expect(logLevelFrom({ GLOBALVM_LOG_LEVEL: "DEBUG" })).toBe("debug");
    expect(logLevelFrom({ GLOBALVM_LOG_LEVEL: "silent" })).toBe("silent");
  });

  it("refuses anything else, naming the variable", () => {
    expect(() => logLevelFrom({ GLOBALVM_LOG_LEVEL: "verbose" })).toThrow(
      /GLOBALVM_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, not "verbose"/,
    );
  });

  it("filters lines below it", () => {
    const { logger, records } = capture("warn");
    logger.info("quiet");
    logger.warn("loud");
    expect(records().map((r) => r.msg)).toEqual(["loud"]);
  });
});

describe("a line", () => {
  it("has level as a label, an ISO time, the service and the datacenter", () => {
    const { logger, records } = capture("info", "eu-west-a");
    logger.info({ bytes: 3 }, "pulled");
    const [record] = records();
    expect(record).toMatchObject({
      level: "info",
      service: "regional-manager",
      datacenter: "eu-west-a",
      msg: "pulled",
      bytes: 3,
    });
    expect(new Date(record?.time as string).toISOString()).toBe(record?.time);
    expect(record).not.toHaveProperty("trace_id");
  });

  it("carries the trace and operation of the work under way, and a child's fields", () => {
    const { logger, records } = capture();
    const trace = { ...newTrace(), operationId: "op_123" };
    withTrace(trace, () => logger.info("in the operation"));
    logger.child({ operation_id: "op_456" }).warn("a child");
    const [inside, child] = records();
    expect(inside).toMatchObject({ trace_id: trace.traceId, span_id: trace.spanId, operation_id: "op_123" });
    expect(child).toMatchObject({ level: "warn", operation_id: "op_456" });
  });

  it("takes the level of a component's [WARN] line", () => {
    const { logger, records } = capture("debug");
    const log = lineLog(logger);
    log("[WARN] heartbeat failed: no route");
    log("[ERROR] GET /v1/x: boom");
    log("[DEBUG] detail");
    log("pulled img@1");
    expect(records().map((r) => [r.level, r.msg])).toEqual([
      ["warn", "heartbeat failed: no route"],
      ["error", "GET /v1/x: boom"],
      ["debug", "detail"],
      ["info", "pulled img@1"],
    ]);
  });
});

describe("secrets", () => {
  const token = `gvm_${"A1b2C3d4".repeat(5)}xyz`;
  const jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz";

  it("are censored under secret-named keys, however deep", () => {
    const { logger, lines } = capture();
    logger.info(
      {
        authorization: "Bearer opaque-operator-secret-1",
        headers: { authorization: "Bearer opaque-operator-secret-2" },
        token: "opaque-operator-secret-3",
        body: { secret: "opaque-operator-secret-4", credential: "opaque-operator-secret-5" },
        req: { headers: { authorization: "opaque-operator-secret-6" } },
      },
      "a request",
    );
    expect(lines.join("")).not.toMatch(/opaque-operator-secret/);
    expect(lines.join("")).toContain("[redacted]");
  });

  it("are replaced wherever a token or a JWT hides in a line, messages and errors included", () => {
    const { logger, lines } = capture();
    lineLog(logger)(`[WARN] refused Bearer ${token} and ${jwt}`);
    logger.error({ err: new Error(`failed with ${token}`) }, "oops");
    const text = lines.join("");
    expect(text).not.toContain(token);
    expect(text).not.toContain(jwt);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(scrubSecrets(`a ${token} b`)).toBe("a [redacted] b");
    expect(scrubSecrets("op_01hz img_01 gvm_short")).toBe("op_01hz img_01 gvm_short");
  });
});

describe("request lines", () => {
  it("log the route template, status and duration in the caller's trace, and answer its traceparent", async () => {
    const { logger, records } = capture();
    const app = new Hono();
    app.use("*", traceRequests({ logger }));
    app.get("/v1/things/:id", (c) => {
      logger.info("inside");
      return c.json({ ok: true });
    });
    const sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const response = await app.request("/v1/things/thing_1?token=gvm_hidden_in_query_string", {
      headers: { traceparent: sent },
    });
    const answered = parseTraceparent(response.headers.get("traceparent"));
    expect(answered?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    const [inside, request] = records();
    expect(inside).toMatchObject({ msg: "inside", trace_id: answered?.traceId, span_id: answered?.spanId });
    expect(request).toMatchObject({
      level: "info",
      method: "GET",
      route: "/v1/things/:id",
      status: 200,
      trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
      parent_span_id: "00f067aa0ba902b7",
    });
    expect(typeof request?.duration_ms).toBe("number");
    expect(JSON.stringify(records())).not.toContain("thing_1?");
  });

  it("start a trace of their own for a request without a valid traceparent", async () => {
    const { logger, records } = capture();
    const app = new Hono();
    app.use("*", traceRequests({ logger }));
    app.get("/v1/regions", (c) => c.text("ok"));
    const response = await app.request("/v1/regions", { headers: { traceparent: "00-zz" } });
    const answered = parseTraceparent(response.headers.get("traceparent"));
    expect(answered).toBeDefined();
    expect(records()[0]).toMatchObject({ trace_id: answered?.traceId, route: "/v1/regions" });
    expect(records()[0]).not.toHaveProperty("parent_span_id");
  });

  it("of probes, scrapes and heartbeats are at debug; failures at error", async () => {
    const { logger, records } = capture("debug");
    const app = new Hono();
    app.use("*", traceRequests({ logger }));
    app.get("/healthz", (c) => c.text("ok"));
    app.post("/v1/datacenters/:name/heartbeat", (c) => c.json({}));
    app.get("/v1/broken", (c) => c.text("no", 503));
    await app.request("/healthz");
    await app.request("/v1/datacenters/eu-west-a/heartbeat", { method: "POST" });
    await app.request("/v1/broken");
    expect(records().map((r) => [r.level, r.route])).toEqual([
      ["debug", "/healthz"],
      ["debug", "/v1/datacenters/:name/heartbeat"],
      ["error", "/v1/broken"],
    ]);
  });
});

describe("globalvm up's logs", () => {
  it("go to 0600 files in the data dir as JSON, and to the terminal as short lines without requests", () => {
    const dataDir = join(scratch, "up");
    const terminal: string[] = [];
    const loggers = upLoggers(dataDir, (line) => terminal.push(line), "info");
    const cp = loggers.controlPlane();
    const dc = loggers.manager("eu-west-a");
    lineLog(cp)("[WARN] datacenter watch: late");
    cp.info({ method: "GET", route: "/v1/regions", status: 200 }, "GET /v1/regions 200");
    lineLog(dc)("pulled img@1");
    expect(terminal).toEqual(["[control-plane] [WARN] datacenter watch: late", "[eu-west-a] pulled img@1"]);
    const file = join(dataDir, "logs", "control-plane.log");
    const records = readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(records.map((r) => r.msg)).toEqual(["datacenter watch: late", "GET /v1/regions 200"]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, "logs")).mode & 0o777).toBe(0o700);
    const manager = JSON.parse(readFileSync(join(dataDir, "logs", "eu-west-a.log"), "utf8"));
    expect(manager).toMatchObject({
      service: "regional-manager",
      datacenter: "eu-west-a",
      msg: "pulled img@1",
    });
  });

  it("human lines show a line's own fields", () => {
    const out: string[] = [];
    const stream = humanLines("cp", (line) => out.push(line));
    stream.write(
      `${JSON.stringify({ level: "info", msg: "attempt 1 started", operation_id: "op_1", trace_id: "x" })}\n`,
    );
    expect(out).toEqual(["[cp] attempt 1 started (operation_id=op_1)"]);
  });

  it("files are appended to", () => {
    const path = join(scratch, "append", "x.log");
    const first = createLogger({ service: "t", level: "info", destination: logFile(path) });
    first.info("one");
    const second = createLogger({ service: "t", level: "info", destination: logFile(path) });
    second.info("two");
    expect(readFileSync(path, "utf8").trim().split("\n")).toHaveLength(2);
  });
});
