// A regional VM group with real processes and real guests: one region of two datacenters, each
// its own manager. A group of 4 with `even` distribution runs 2 in each, the image is moved to
// the datacenter that lacked it with no other call, a rolling update replaces every instance in
// its own datacenter, and a resize to 6 keeps 3/3.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../support/stack.ts";
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
  uploadGuestVersion,
} from "../support/vm-groups.ts";

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    name: "regional",
    regions: ["eu-west"],
    datacentersPerRegion: 2,
    // Room for 3 one-vCPU guests in each (a manager offers this machine's cores by default).
    env: { GLOBALVM_MANAGER_VCPUS: "4" },
  });
}, 120_000);

afterAll(() => stack?.stop());

/** How many of the group's (non-retired) instances each datacenter runs. */
async function perDatacenter(groupId: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const i of await listInstances(stack, groupId)) counts[i.datacenter] = (counts[i.datacenter] ?? 0) + 1;
  return counts;
}

describe("a regional VM group over the two datacenters of eu-west", () => {
  it("runs even/2+2, pulls the image where it was missing, updates in place per datacenter, and resizes to 3/3", async () => {
    const imageId = await createGuestImage(stack, "guest", "eu-west");
    const before = (await stack.call("GET", `/v1/images/${imageId}/versions/1`, stack.projectToken)).body;
    const held = before.replicas.map((r: { datacenter: string }) => r.datacenter);
    expect(held, "the upload lands in one datacenter of the region").toHaveLength(1);

    const group = await createGroup(stack, {
      name: "web",
      image: imageId,
      region: "eu-west",
      distribution: "even",
      size: 4,
      machine: { vcpus: 1, memory_mb: 128 },
    });
    const created = await expectSucceeded(stack, group.operationId, 300_000);
    expect(created.result.datacenters).toEqual(["eu-west-a", "eu-west-b"]);
    const instances = await listInstances(stack, group.groupId);
    expect(instances.map((i) => [i.name, i.datacenter, i.state])).toEqual([
      ["web-0", expect.any(String), "ready"],
      ["web-1", expect.any(String), "ready"],
      ["web-2", expect.any(String), "ready"],
      ["web-3", expect.any(String), "ready"],
    ]);
    expect(await perDatacenter(group.groupId)).toEqual({ "eu-west-a": 2, "eu-west-b": 2 });
    const shown = (await stack.call("GET", `/v1/vm-groups/${group.groupId}`, stack.projectToken)).body;
    expect(shown).toMatchObject({
      distribution: "even",
      datacenter: null,
      datacenters: ["eu-west-a", "eu-west-b"],
      state: "ready",
    });
    // The datacenter that lacked the image pulled it to boot its share.
    const after = (await stack.call("GET", `/v1/images/${imageId}/versions/1`, stack.projectToken)).body;
    expect(
      after.replicas
        .filter((r: { state: string }) => r.state === "available")
        .map((r: { datacenter: string }) => r.datacenter)
        .sort(),
    ).toEqual(["eu-west-a", "eu-west-b"]);

    // A new version rolls the group forward one instance at a time, each in its datacenter.
    await uploadGuestVersion(stack, imageId, 2, "version 2");
    const operations = (await stack.call("GET", "/v1/operations?page_size=200", stack.projectToken)).body
      .items;
    const roll = operations.find(
      (o: { kind: string; target: { id: string } }) =>
        o.kind === "update-vm-group" && o.target.id === group.groupId,
    );
    expect(roll, "an update operation for the group").toBeDefined();
    const rolled = await expectSucceeded(stack, roll.id, 600_000);
    expect(rolled.result.replaced.sort()).toEqual(instances.map((i) => i.id).sort());
    const updated = await listInstances(stack, group.groupId);
    expect(updated.map((i) => [i.name, i.datacenter, i.image_version, i.state])).toEqual(
      instances.map((i) => [i.name, i.datacenter, 2, "ready"]),
    );

    const resized = await stack.call("PATCH", `/v1/vm-groups/${group.groupId}`, stack.projectToken, {
      size: 6,
    });
    expect(resized.status).toBe(202);
    await expectSucceeded(stack, resized.body.id, 300_000);
    expect(await perDatacenter(group.groupId)).toEqual({ "eu-west-a": 3, "eu-west-b": 3 });
    const grown = await listInstances(stack, group.groupId);
    expect(grown.filter((i) => i.ordinal < 4).map((i) => i.id)).toEqual(updated.map((i) => i.id));
    expect(grown.every((i) => i.state === "ready")).toBe(true);

    // Back to 4: the highest ordinals go, one from each datacenter.
    const shrunk = await stack.call("PATCH", `/v1/vm-groups/${group.groupId}`, stack.projectToken, {
      size: 4,
    });
    await expectSucceeded(stack, shrunk.body.id, 300_000);
    expect(await perDatacenter(group.groupId)).toEqual({ "eu-west-a": 2, "eu-west-b": 2 });

    const removal = await stack.call("DELETE", `/v1/vm-groups/${group.groupId}`, stack.projectToken);
    const deleted = await expectSucceeded(stack, removal.body.id, 120_000);
    expect(deleted.result).toMatchObject({ deleted: true, instances: 4 });
  }, 900_000);
});
