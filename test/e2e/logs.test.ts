// Correlated logs on real processes: a request's traceparent travels into the operation it
// creates, from the control plane to the manager the operation asks, and `grep <trace_id>` over
// both processes' log files tells the operation's story. And the check every stack makes when it
// stops (test/support/log-secrets.ts): no token or credential in any log line — shown here to
// find a secret put into a log on purpose, so that its silence elsewhere means something.
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { findSecretsInLogs, SecretRecord } from "../support/log-secrets.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { waitForOperation } from "../support/vm-groups.ts";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const scratch = mkdtempSync(join(tmpdir(), "globalvm-logs-e2e-"));
let stack: Stack;

const records = (file: string) =>
  readFileSync(join(stack.logsDir, file), "utf8")
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

beforeAll(async () => {
  stack = await startStack({ name: "logs", regions: ["eu-west"] });
}, 120_000);

afterAll(async () => {
  // stop() checks every log for the stack's secrets (it throws on a leak).
  await stack?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("one operation's story", () => {
  it("is the lines of every process that carry its trace_id", async () => {
    const created = await stack.call("POST", "/v1/images", stack.projectToken, {
      name: "traced",
      origin_region: "eu-west",
      format: "raw",
    });
    expect(created.status).toBe(201);
    const file = join(scratch, "small.raw");
    writeFileSync(file, randomBytes(1 << 20));
    await uploadImage({
      path: file,
      managerUrl: created.body.upload.url,
      token: created.body.upload.token,
      imageId: created.body.id,
      version: created.body.upload.version,
      format: "raw",
      retries: 0,
    });

    // Deleting the image is an operation that asks the manager to drop its copy.
    const deleted = await stack.call(
      "DELETE",
      `/v1/images/${created.body.id}`,
      stack.projectToken,
      undefined,
      {
        traceparent: `00-${TRACE_ID}-b7ad6b7169203331-01`,
      },
    );
    expect(deleted.status).toBe(202);
    expect(deleted.body.trace_id).toBe(TRACE_ID);
    const done = await waitForOperation(stack, deleted.body.id, 30_000);
    expect(done).toMatchObject({ state: "succeeded", trace_id: TRACE_ID });

    const controlPlane = records("control-plane.log").filter((r) => r.trace_id === TRACE_ID);
    const manager = records("eu-west.log").filter((r) => r.trace_id === TRACE_ID);
    expect(controlPlane).toContainEqual(
      expect.objectContaining({
        service: "control-plane",
        method: "DELETE",
        route: "/v1/images/:id",
        status: 202,
      }),
    );
    expect(controlPlane).toContainEqual(
      expect.objectContaining({ operation_id: deleted.body.id, msg: expect.stringMatching(/succeeded$/) }),
    );
    // The manager's request line for the drop, under the same trace, named by its datacenter.
    expect(manager).toContainEqual(
      expect.objectContaining({
        service: "regional-manager",
        datacenter: "eu-west-a",
        method: "DELETE",
        route: expect.stringMatching(/^\/v1\/replicas\//),
      }),
    );
    for (const record of [...controlPlane, ...manager]) {
      expect(record).toMatchObject({ level: expect.any(String), time: expect.any(String) });
    }
  }, 60_000);
});

describe("the secrets check", () => {
  it("passes on the stack's logs as they are, and they hold request lines", () => {
    expect(() => stack.checkLogs()).not.toThrow();
    expect(records("control-plane.log").filter((r) => "route" in r).length).toBeGreaterThan(3);
    // The admin token, the project token and the manager's credential at least.
    const labels = stack.secrets.entries().map(([, label]) => label);
    expect(labels).toContain("admin token");
    expect(labels.some((label) => label.startsWith("POST /v1/manager-credentials"))).toBe(true);
    expect(labels.some((label) => /^POST \/v1\/projects\/\S+\/tokens/.test(label))).toBe(true);
  });

  it("finds a token put in a log, and names where and what without printing it", () => {
    const path = join(stack.logsDir, "eu-west.log");
    const before = readFileSync(path, "utf8");
    appendFileSync(path, `${JSON.stringify({ level: "warn", msg: `refused ${stack.projectToken}` })}\n`);
    try {
      let message = "";
      try {
        stack.checkLogs();
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/eu-west\.log:\d+: /);
      expect(message).not.toContain(stack.projectToken);
    } finally {
      writeFileSync(path, before);
    }
  });

  it("finds token-shaped strings it was never told about", () => {
    const dir = mkdtempSync(join(scratch, "shapes-"));
    writeFileSync(
      join(dir, "clean.log"),
      '{"msg":"GET /v1/images/:id 200","trace_id":"0af7651916cd43dd8448eb211c80319c"}\n',
    );
    writeFileSync(
      join(dir, "leaky.log"),
      `ok\n{"msg":"gvm_${"x".repeat(43)}"}\n{"h":"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJpbnN0YW5jZSJ9.c2lnbmF0dXJlLWJ5dGVz"}\n`,
    );
    expect(findSecretsInLogs(dir, new SecretRecord())).toEqual([
      { file: "leaky.log", line: 2, what: "a globalvm token (gvm_…)" },
      { file: "leaky.log", line: 3, what: "a JWT" },
    ]);
  });
});
