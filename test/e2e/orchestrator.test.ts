// Flow 1 of the orchestrator with real processes and real guests: an image uploaded to
// eu-west, a VM group of 2 created in us-east with one API call, and nothing else: the
// us-east manager pulls the image (only the chunks it lacks), verifies it, boots both
// guests, and the operation ends succeeded with both instances ready. Deleting the group
// removes its instances.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { ensureGuestImage } from "../support/compute.ts";
import { type Stack, startStack } from "../support/stack.ts";

let stack: Stack;
const call: Stack["call"] = (...args) => stack.call(...args);

/** Follows an operation with long-polls; records every step seen and checks bytes never go back. */
async function follow(id: string, timeoutMs: number) {
  const steps: string[] = [];
  let bytes = 0;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { body } = await call("GET", `/v1/operations/${id}?wait=10s`, stack.projectToken);
    if (body.progress.step && steps.at(-1) !== body.progress.step) steps.push(body.progress.step);
    expect(body.progress.bytes_done).toBeGreaterThanOrEqual(bytes);
    bytes = body.progress.bytes_done;
    if (body.done) return { operation: body, steps };
  }
  throw new Error(`operation ${id} did not finish:\n${stack.logs()}`);
}

beforeAll(async () => {
  stack = await startStack({ name: "orchestrator", regions: ["eu-west", "us-east"] });
}, 120_000);

afterAll(() => stack?.stop());

describe("orchestrator, flow 1: on-demand transfer", () => {
  it("starts a group of 2 in a region lacking the image with one call, then deletes it", async () => {
    const guest = ensureGuestImage();
    const image = await call("POST", "/v1/images", stack.projectToken, {
      name: "guest",
      origin_region: "eu-west",
      format: "qcow2",
    });
    expect(image.status).toBe(201);
    await uploadImage({
      path: guest,
      managerUrl: image.body.upload.url,
      token: image.body.upload.token,
      imageId: image.body.id,
      version: 1,
      format: "qcow2",
    });

    const created = await call(
      "POST",
      "/v1/vm-groups",
      stack.projectToken,
      {
        name: "web",
        image: image.body.id,
        region: "us-east",
        size: 2,
        machine: { vcpus: 1, memory_mb: 192 },
      },
      { "idempotency-key": "web-1" },
    );
    expect(created.status).toBe(202);
    const { operation, steps } = await follow(created.body.id, 240_000);
    expect(operation).toMatchObject({ state: "succeeded", result: { datacenter: "us-east-a" } });
    // A poll may miss a short step, but the steps seen come in this order and end done.
    const order = ["placing", "starting", "transferring-image", "waiting-ready", "done"];
    const positions = steps.map((step) => order.indexOf(step));
    expect(positions).not.toContain(-1);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(steps.at(-1)).toBe("done");

    const group = (await call("GET", `/v1/vm-groups/${created.body.target.id}`, stack.projectToken)).body;
    expect(group).toMatchObject({ state: "ready", datacenter: "us-east-a" });
    const members = (await call("GET", `/v1/vm-groups/${group.id}/instances`, stack.projectToken)).body.items;
    expect(members.map((i: any) => [i.name, i.datacenter, i.state])).toEqual([
      ["web-0", "us-east-a", "ready"],
      ["web-1", "us-east-a", "ready"],
    ]);
    expect(members[0].boot_log_tail).toContain(members[0].id);

    const replicas = (await call("GET", `/v1/images/${image.body.id}`, stack.projectToken)).body.replicas;
    expect(replicas.map((r: any) => [r.datacenter, r.state])).toEqual([
      ["eu-west-a", "available"],
      ["us-east-a", "available"],
    ]);
    expect(replicas[0].local_id).not.toBe(replicas[1].local_id);

    // A retry of the same request re-attaches to the same operation: no second group.
    const retry = await call(
      "POST",
      "/v1/vm-groups",
      stack.projectToken,
      {
        name: "web",
        image: image.body.id,
        region: "us-east",
        size: 2,
        machine: { vcpus: 1, memory_mb: 192 },
      },
      { "idempotency-key": "web-1" },
    );
    expect(retry.body.id).toBe(created.body.id);

    const removal = await call("DELETE", `/v1/vm-groups/${group.id}`, stack.projectToken);
    expect(removal.status).toBe(202);
    const removed = await follow(removal.body.id, 60_000);
    expect(removed.operation.state).toBe("succeeded");
    expect((await call("GET", `/v1/vm-groups/${group.id}`, stack.projectToken)).status).toBe(404);
    expect((await call("GET", `/v1/instances/${members[0].id}`, stack.projectToken)).status).toBe(404);
  }, 360_000);
});
