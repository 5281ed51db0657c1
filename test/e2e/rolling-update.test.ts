// Flow 3, the VM half, with a real control plane, a real manager and real guests: a group that
// follows the image's newest version replaces its instances one at a time when a new version is
// uploaded (the new one ready before the old one stops), never dropping below size - 1 ready,
// while a group pinned to the old version keeps running untouched until it is moved on purpose.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../support/stack.ts";
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  type InstanceView,
  listInstances,
  overlayExists,
  uploadGuestVersion,
} from "../support/vm-groups.ts";

let stack: Stack;
const DC = "eu-west-a";

beforeAll(async () => {
  stack = await startStack({ name: "rolling", regions: ["eu-west"] });
}, 120_000);

afterAll(() => stack?.stop());

describe("rolling update to a new image version", () => {
  it("replaces a group's instances one at a time and leaves a pinned group alone", async () => {
    const imageId = await createGuestImage(stack, "guest", "eu-west");
    const fleet = await createGroup(stack, { name: "fleet", image: imageId, region: "eu-west", size: 2 });
    const pinned = await createGroup(stack, {
      name: "pinned",
      image: imageId,
      image_version: 1,
      region: "eu-west",
      size: 1,
    });
    await expectSucceeded(stack, fleet.operationId, 300_000);
    await expectSucceeded(stack, pinned.operationId, 300_000);
    const before = await listInstances(stack, fleet.groupId);
    const pinnedBefore = await listInstances(stack, pinned.groupId);
    expect(before.map((i) => [i.ordinal, i.state, i.image_version])).toEqual([
      [0, "ready", 1],
      [1, "ready", 1],
    ]);

    // Sample the group through the API from before the new version exists until its roll ends.
    const samples: InstanceView[][] = [];
    let done = false;
    const sampling = (async () => {
      while (!done) {
        samples.push(await listInstances(stack, fleet.groupId));
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
    })();

    const v2 = await uploadGuestVersion(stack, imageId, 2, "version 2");
    expect(v2.record.version).toBe(2);
    // Only the changed tail of the disk crossed the network.
    expect(v2.chunksSkipped).toBeGreaterThan(v2.chunksSent);
    const image = (await stack.call("GET", `/v1/images/${imageId}`, stack.projectToken)).body;
    expect(image.version).toBe(2);

    // The fleet follows the newest version: committing v2 started its update, with no other call.
    const operations = (await stack.call("GET", "/v1/operations?page_size=200", stack.projectToken)).body
      .items;
    const roll = operations.find(
      (o: { kind: string; target: { id: string } }) =>
        o.kind === "update-vm-group" && o.target.id === fleet.groupId,
    );
    expect(roll, "an update operation for the fleet").toBeDefined();
    expect(
      operations.some(
        (o: { kind: string; target: { id: string } }) =>
          o.kind === "update-vm-group" && o.target.id === pinned.groupId,
      ),
    ).toBe(false);
    const operation = await expectSucceeded(stack, roll.id, 300_000).finally(() => {
      done = true;
    });
    await sampling;

    expect(operation.result.replaced.sort()).toEqual(before.map((i) => i.id).sort());
    expect(samples.length).toBeGreaterThan(10);
    const readyCounts = samples.map((sample) => sample.filter((i) => i.state === "ready").length);
    console.log(
      `rolling update of 2 instances: ${Date.parse(operation.updated_at) - Date.parse(operation.created_at)} ms; ` +
        `${samples.length} samples, fewest ready ${Math.min(...readyCounts)}, ` +
        `most instances at once ${Math.max(...samples.map((sample) => sample.length))}`,
    );
    expect(Math.min(...readyCounts)).toBeGreaterThanOrEqual(2 - 1);
    // Never more than one replacement at a time: at most size + 1 instances exist at once...
    expect(Math.max(...samples.map((sample) => sample.length))).toBeLessThanOrEqual(3);
    // ...and the old instance of each ordinal was still there while its replacement started.
    for (const old of before) {
      const overlap = samples.some(
        (sample) =>
          sample.some((i) => i.id === old.id) &&
          sample.some((i) => i.ordinal === old.ordinal && i.id !== old.id && i.state !== "ready"),
      );
      expect(overlap, `${old.name} was replaced start-before-stop`).toBe(true);
    }
    // Ordinal 0 was replaced, and ready, before ordinal 1's replacement was started.
    const firstTwoNew = samples.findIndex(
      (s) => s.filter((i) => !before.some((b) => b.id === i.id)).length === 2,
    );
    const ordinalZeroNewReady = samples.findIndex((s) =>
      s.some((i) => i.ordinal === 0 && i.id !== before[0]?.id && i.state === "ready"),
    );
    expect(ordinalZeroNewReady).toBeGreaterThanOrEqual(0);
    expect(firstTwoNew === -1 || ordinalZeroNewReady <= firstTwoNew).toBe(true);

    const after = await listInstances(stack, fleet.groupId);
    expect(after.map((i) => [i.name, i.state, i.image_version])).toEqual([
      ["fleet-0", "ready", 2],
      ["fleet-1", "ready", 2],
    ]);
    for (const old of before) {
      expect(after.some((i) => i.id === old.id)).toBe(false);
      expect(overlayExists(stack, DC, old.id), `overlay of replaced ${old.id}`).toBe(false);
      expect((await stack.call("GET", `/v1/instances/${old.id}`, stack.projectToken)).status).toBe(404);
    }
    for (const fresh of after) expect(overlayExists(stack, DC, fresh.id)).toBe(true);
    const group = (await stack.call("GET", `/v1/vm-groups/${fleet.groupId}`, stack.projectToken)).body;
    // Still unpinned: it keeps following the newest version.
    expect(group).toMatchObject({ state: "ready", image_version: null });

    // The pinned group: same instance, still ready, still on version 1.
    const pinnedAfter = await listInstances(stack, pinned.groupId);
    expect(pinnedAfter.map((i) => [i.id, i.state, i.image_version])).toEqual(
      pinnedBefore.map((i) => [i.id, "ready", 1]),
    );
    expect(pinnedAfter[0]?.updated_at).toBe(pinnedBefore[0]?.updated_at);
    // Addresses: the other group's instance kept its own through the roll, and every instance
    // seen, old and new side by side, had one of its own in the default network's first subnet.
    expect(pinnedAfter[0]?.network_ip).toBe(pinnedBefore[0]?.network_ip);
    const holder = new Map<string, string>();
    for (const instance of [...samples.flat(), ...pinnedBefore]) {
      expect(instance.network_ip).toMatch(/^10\.128\.(1[0-5]|[0-9])\.\d+$/);
      expect(holder.get(instance.network_ip as string) ?? instance.id).toBe(instance.id);
      holder.set(instance.network_ip as string, instance.id);
    }
    expect(holder.size).toBe(5);

    // Moved on purpose, the pinned group rolls too.
    const move = await stack.call("PATCH", `/v1/vm-groups/${pinned.groupId}`, stack.projectToken, {
      image_version: 2,
    });
    expect(move.status).toBe(202);
    const moved = await expectSucceeded(stack, move.body.id, 300_000);
    expect(moved.result.replaced).toEqual([pinnedBefore[0]?.id]);
    const pinnedMoved = await listInstances(stack, pinned.groupId);
    expect(pinnedMoved.map((i) => [i.name, i.state, i.image_version])).toEqual([["pinned-0", "ready", 2]]);
    expect(overlayExists(stack, DC, pinnedBefore[0]?.id as string)).toBe(false);
  }, 600_000);
});
