// A datacenter whose manager stops heartbeating is marked down, its instances turn `unknown`,
// and an operation that needs it waits instead of failing; when the manager heartbeats again,
// its instances are reported as they are and the operation goes on. Real processes: the
// manager is frozen with SIGSTOP (alive but silent, like a partitioned host) and thawed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { ensureGuestImage } from "../support/compute.ts";
import { type Stack, startStack } from "../support/stack.ts";

const DOWN_AFTER_MS = 3_000;
let stack: Stack;
let imageId: string;
const frozen = new Set<string>();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await read();
    if (ok(last)) return last;
    await sleep(200);
  }
  throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms\n${stack.logs()}`);
}

function freeze(region: string) {
  stack.processOf(region).child.kill("SIGSTOP");
  frozen.add(region);
}

function thaw(region: string) {
  stack.processOf(region).child.kill("SIGCONT");
  frozen.delete(region);
}

const datacenterStatus = async (dc: string) =>
  (await stack.call("GET", `/v1/datacenters/${dc}`, stack.projectToken)).body.status as string;
const instancesOf = async (group: string) =>
  (await stack.call("GET", `/v1/vm-groups/${group}/instances`, stack.projectToken)).body.items as any[];
const operation = async (id: string) =>
  (await stack.call("GET", `/v1/operations/${id}`, stack.projectToken)).body;

async function createGroup(name: string, region: string) {
  const created = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
    name,
    image: imageId,
    region,
    size: 1,
    machine: { vcpus: 1, memory_mb: 160 },
  });
  expect(created.status).toBe(202);
  return { operation: created.body.id as string, group: created.body.target.id as string };
}

beforeAll(async () => {
  stack = await startStack({
    name: "dc-down",
    regions: ["eu-west", "us-east"],
    env: {
      GLOBALVM_DATACENTER_DOWN_AFTER_MS: String(DOWN_AFTER_MS),
      GLOBALVM_HEARTBEAT_INTERVAL_MS: "500",
      GLOBALVM_DATACENTER_WAIT_MS: "120000",
    },
  });
  const image = await stack.call("POST", "/v1/images", stack.projectToken, {
    name: "guest",
    origin_region: "eu-west",
    format: "qcow2",
  });
  expect(image.status).toBe(201);
  imageId = image.body.id;
  await uploadImage({
    path: ensureGuestImage(),
    managerUrl: image.body.upload.url,
    token: image.body.upload.token,
    imageId,
    version: 1,
    format: "qcow2",
  });
}, 180_000);

afterAll(async () => {
  for (const region of frozen) thaw(region);
  await stack?.stop();
});

describe("a datacenter that goes down", () => {
  it("turns its instances unknown, and reports them again when its manager is back", async () => {
    const { operation: id, group } = await createGroup("steady", "eu-west");
    await until(
      "group ready",
      () => operation(id),
      (op) => op.done,
      240_000,
    );
    expect((await operation(id)).state).toBe("succeeded");
    expect((await instancesOf(group))[0].state).toBe("ready");

    freeze("eu-west");
    const frozenAt = Date.now();
    await until(
      "eu-west-a down",
      () => datacenterStatus("eu-west-a"),
      (s) => s === "down",
      30_000,
    );
    // Not before the configured timeout: heartbeats come every 500 ms until the freeze.
    expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(DOWN_AFTER_MS - 1_000);
    const unknown = await until(
      "instance unknown",
      () => instancesOf(group),
      (rows) => rows[0]?.state === "unknown",
      30_000,
    );
    expect(unknown[0].state_reason).toContain("eu-west-a is down");
    // The other datacenter is not touched.
    expect(await datacenterStatus("us-east-a")).toBe("up");

    thaw("eu-west");
    await until(
      "eu-west-a up",
      () => datacenterStatus("eu-west-a"),
      (s) => s === "up",
      30_000,
    );
    await until(
      "instance ready again",
      () => instancesOf(group),
      (rows) => rows[0]?.state === "ready",
      30_000,
    );

    const removal = await stack.call("DELETE", `/v1/vm-groups/${group}`, stack.projectToken);
    await until(
      "group deleted",
      () => operation(removal.body.id),
      (op) => op.done,
      120_000,
    );
  }, 400_000);

  it("makes an in-flight operation wait for it rather than fail, then finish", async () => {
    const { operation: id, group } = await createGroup("waiting", "us-east");
    // Freeze the target while the operation works on it (it pulls the image or boots the guest).
    await until(
      "instance recorded",
      () => instancesOf(group),
      (rows) => rows.length === 1 && rows[0].state !== "pending",
      120_000,
    );
    freeze("us-east");
    await until(
      "us-east-a down",
      () => datacenterStatus("us-east-a"),
      (s) => s === "down",
      30_000,
    );
    await until(
      "instance unknown",
      () => instancesOf(group),
      (rows) => rows[0]?.state === "unknown",
      30_000,
    );
    // Several times the down timeout later, the operation still waits.
    await sleep(3 * DOWN_AFTER_MS);
    const waiting = await operation(id);
    expect(waiting.done).toBe(false);
    expect(["pending", "running"]).toContain(waiting.state);

    thaw("us-east");
    const done = await until(
      "operation done",
      () => operation(id),
      (op) => op.done,
      240_000,
    );
    expect(done.state).toBe("succeeded");
    const rows = await instancesOf(group);
    expect(rows.map((r) => [r.datacenter, r.state])).toEqual([["us-east-a", "ready"]]);

    const removal = await stack.call("DELETE", `/v1/vm-groups/${group}`, stack.projectToken);
    await until(
      "group deleted",
      () => operation(removal.body.id),
      (op) => op.done,
      120_000,
    );
  }, 400_000);
});
