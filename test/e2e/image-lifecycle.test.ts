// An image's lifecycle with a real control plane, a real manager and real guests: a group that
// follows a family rolls forward to a new version and back when the image's current_version is
// set to the older one (a rollback); a deprecated version is skipped by a group created later;
// an obsolete one is refused with a clear 409; a project the image is shared with boots a group
// from it and cannot delete it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../support/stack.ts";
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
  overlayExists,
  uploadGuestVersion,
} from "../support/vm-groups.ts";

let stack: Stack;
const DC = "eu-west-a";

beforeAll(async () => {
  stack = await startStack({ name: "lifecycle", regions: ["eu-west"] });
}, 120_000);

afterAll(() => stack?.stop());

/** The update operations the control plane started for a group, oldest first. */
async function rollsOf(groupId: string): Promise<{ id: string }[]> {
  const operations = (await stack.call("GET", "/v1/operations?page_size=200", stack.projectToken)).body.items;
  return operations
    .filter(
      (o: { kind: string; target: { id: string } }) =>
        o.kind === "update-vm-group" && o.target.id === groupId,
    )
    .sort((a: { created_at: string }, b: { created_at: string }) => a.created_at.localeCompare(b.created_at));
}

/** Waits for the group's next roll (one more update operation than `seen`) to succeed. */
async function nextRoll(groupId: string, seen: number) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const rolls = await rollsOf(groupId);
    if (rolls.length > seen) {
      expect(rolls).toHaveLength(seen + 1);
      return expectSucceeded(stack, (rolls.at(-1) as { id: string }).id, 300_000);
    }
    if (Date.now() > deadline) throw new Error(`no roll of ${groupId} was started`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const versionsOf = async (groupId: string) =>
  (await listInstances(stack, groupId)).map((i) => [i.name, i.state, i.image_version]);

describe("image lifecycle with real guests", () => {
  it("rolls a family's follower forward and back, skips a deprecated version, refuses an obsolete one, and shares read-only", async () => {
    const imageId = await createGuestImage(stack, "guest", "eu-west");
    const named = await stack.call("PATCH", `/v1/images/${imageId}`, stack.projectToken, {
      family: "golden",
    });
    expect(named.status).toBe(200);
    const fleet = await createGroup(stack, {
      name: "fleet",
      image_family: "golden",
      region: "eu-west",
      size: 1,
    });
    await expectSucceeded(stack, fleet.operationId, 300_000);
    expect(await versionsOf(fleet.groupId)).toEqual([["fleet-0", "ready", 1]]);

    // A new version: the follower rolls forward to it.
    await uploadGuestVersion(stack, imageId, 2, "version 2");
    await nextRoll(fleet.groupId, 0);
    const forward = await listInstances(stack, fleet.groupId);
    expect(forward.map((i) => [i.name, i.state, i.image_version])).toEqual([["fleet-0", "ready", 2]]);

    // Rollback: current_version set to 1 rolls it back, start-before-stop as a roll forward does.
    const rollback = await stack.call("PATCH", `/v1/images/${imageId}`, stack.projectToken, {
      current_version: 1,
    });
    expect(rollback.body).toMatchObject({ version: 1, pinned_version: 1 });
    const back = await nextRoll(fleet.groupId, 1);
    expect(back.result).toMatchObject({ image_version: 1, replaced: [forward[0]?.id] });
    expect(await versionsOf(fleet.groupId)).toEqual([["fleet-0", "ready", 1]]);
    expect(overlayExists(stack, DC, forward[0]?.id as string)).toBe(false);
    const group = (await stack.call("GET", `/v1/vm-groups/${fleet.groupId}`, stack.projectToken)).body;
    expect(group).toMatchObject({
      image: imageId,
      image_family: "golden",
      image_version: null,
      state: "ready",
    });

    // Version 2 deprecated, then the pin released: the newest active version is 1, so nothing
    // rolls, and a group created now on the family boots 1, skipping the deprecated 2.
    const deprecated = await stack.call("PATCH", `/v1/images/${imageId}/versions/2`, stack.projectToken, {
      state: "deprecated",
    });
    expect(deprecated.body).toMatchObject({ state: "deprecated", current: false });
    const released = await stack.call("PATCH", `/v1/images/${imageId}`, stack.projectToken, {
      current_version: null,
    });
    expect(released.body).toMatchObject({ version: 1, pinned_version: null });
    const family = await stack.call("GET", "/v1/image-families/golden", stack.projectToken);
    expect(family.body).toMatchObject({ id: imageId, version: 1 });

    // Shared with a partner project, which boots its own group from the image at the same time.
    const partner = (await stack.call("POST", "/v1/projects", stack.adminToken, { name: "partner" })).body;
    const partnerToken = (
      await stack.call("POST", `/v1/projects/${partner.id}/tokens`, stack.adminToken, { name: "partner" })
    ).body.secret as string;
    const shared = await stack.call("PATCH", `/v1/images/${imageId}`, stack.projectToken, {
      members: [partner.id],
    });
    expect(shared.body.members).toEqual([partner.id]);
    const late = await createGroup(stack, {
      name: "late",
      image_family: "golden",
      region: "eu-west",
      size: 1,
    });
    const borrowed = await stack.call("POST", "/v1/vm-groups", partnerToken, {
      name: "borrowed",
      image: imageId,
      region: "eu-west",
      size: 1,
      machine: { vcpus: 1, memory_mb: 160 },
    });
    expect(borrowed.status).toBe(202);
    await expectSucceeded(stack, late.operationId, 300_000);
    expect(await versionsOf(late.groupId)).toEqual([["late-0", "ready", 1]]);
    for (let polls = 0; ; polls++) {
      const run = await stack.call("GET", `/v1/operations/${borrowed.body.id}?wait=10s`, partnerToken);
      if (run.body.done) {
        expect(run.body.state, JSON.stringify(run.body.error)).toBe("succeeded");
        break;
      }
      if (polls > 30) throw new Error(`the partner's group did not boot: ${JSON.stringify(run.body)}`);
    }
    const partnerInstances = await stack.call(
      "GET",
      `/v1/vm-groups/${borrowed.body.target.id}/instances`,
      partnerToken,
    );
    expect(
      partnerInstances.body.items.map((i: { state: string; image_version: number }) => [
        i.state,
        i.image_version,
      ]),
    ).toEqual([["ready", 1]]);
    const refused = await stack.call("DELETE", `/v1/images/${imageId}`, partnerToken);
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toContain("read-only");
    const ownerDelete = await stack.call("DELETE", `/v1/images/${imageId}`, stack.projectToken);
    expect(ownerDelete.status).toBe(409);
    expect(ownerDelete.body.detail).not.toContain("borrowed");

    // Obsolete: refused for a new instance with a 409 that says why; running instances stay.
    const obsolete = await stack.call("PATCH", `/v1/images/${imageId}/versions/2`, stack.projectToken, {
      state: "obsolete",
    });
    expect(obsolete.body.state).toBe("obsolete");
    const pinnedToObsolete = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
      name: "too-late",
      image: imageId,
      image_version: 2,
      region: "eu-west",
      size: 1,
      machine: { vcpus: 1, memory_mb: 160 },
    });
    expect(pinnedToObsolete.status).toBe(409);
    expect(pinnedToObsolete.body).toMatchObject({ code: "version_obsolete" });
    expect(pinnedToObsolete.body.detail).toBe(
      "Version 2 of image guest is obsolete: no new instance may boot it.",
    );
    expect(await versionsOf(fleet.groupId)).toEqual([["fleet-0", "ready", 1]]);
  }, 900_000);
});
