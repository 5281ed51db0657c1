// Resizing and deleting a VM group with a real control plane, a real manager and real guests:
// a bigger size adds instances and leaves the running ones alone; a smaller one removes the
// highest ordinals, stopping their guests and removing their overlays; deleting the group
// does the same for every instance.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { type Stack, startStack } from "../support/stack.ts";
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  instanceDir,
  listInstances,
  overlayExists,
} from "../support/vm-groups.ts";

let stack: Stack;
const DC = "eu-west-a";

beforeAll(async () => {
  stack = await startStack({ name: "resize", regions: ["eu-west"] });
}, 120_000);

afterAll(() => stack?.stop());

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function patchSize(groupId: string, size: number) {
  const answer = await stack.call("PATCH", `/v1/vm-groups/${groupId}`, stack.projectToken, { size });
  expect(answer.status).toBe(202);
  return expectSucceeded(stack, answer.body.id, 300_000);
}

describe("resizing and deleting a VM group", () => {
  it("adds instances, removes the highest ordinals with their overlays, and deletes the rest", async () => {
    const imageId = await createGuestImage(stack, "guest", "eu-west");
    const group = await createGroup(stack, { name: "web", image: imageId, region: "eu-west", size: 1 });
    await expectSucceeded(stack, group.operationId, 300_000);
    const [first] = await listInstances(stack, group.groupId);
    if (!first) throw new Error("the group has an instance");

    await patchSize(group.groupId, 3);
    const grown = await listInstances(stack, group.groupId);
    expect(grown.map((i) => [i.name, i.state])).toEqual([
      ["web-0", "ready"],
      ["web-1", "ready"],
      ["web-2", "ready"],
    ]);
    expect(grown[0]?.id).toBe(first.id);
    expect(grown[0]?.updated_at).toBe(first.updated_at);
    const pids = new Map(grown.map((i) => [i.id, readInstanceRecord(instanceDir(stack, DC, i.id)).pid]));
    for (const [id, pid] of pids) {
      expect(pid, `${id} has a process`).toBeTypeOf("number");
      expect(isRunning(pid as number)).toBe(true);
      expect(overlayExists(stack, DC, id)).toBe(true);
    }

    await patchSize(group.groupId, 1);
    const shrunk = await listInstances(stack, group.groupId);
    expect(shrunk.map((i) => [i.id, i.name, i.state])).toEqual([[first.id, "web-0", "ready"]]);
    for (const removed of grown.slice(1)) {
      expect(overlayExists(stack, DC, removed.id), `overlay of ${removed.name}`).toBe(false);
      expect(isRunning(pids.get(removed.id) as number), `guest of ${removed.name}`).toBe(false);
      expect((await stack.call("GET", `/v1/instances/${removed.id}`, stack.projectToken)).status).toBe(404);
    }
    expect(isRunning(pids.get(first.id) as number)).toBe(true);

    const removal = await stack.call("DELETE", `/v1/vm-groups/${group.groupId}`, stack.projectToken);
    expect(removal.status).toBe(202);
    const deleted = await expectSucceeded(stack, removal.body.id, 120_000);
    expect(deleted.result).toMatchObject({ deleted: true, instances: 1 });
    expect(overlayExists(stack, DC, first.id)).toBe(false);
    expect(isRunning(pids.get(first.id) as number)).toBe(false);
    expect((await stack.call("GET", `/v1/vm-groups/${group.groupId}`, stack.projectToken)).status).toBe(404);
    expect((await stack.call("GET", `/v1/instances/${first.id}`, stack.projectToken)).status).toBe(404);
  }, 600_000);
});
