// An image's lifecycle through the API: versions deprecated, made obsolete and deleted (by hand
// and on schedule), the current version set by hand (a rollback), families, and sharing with
// other projects. Versions are committed as a manager commits an upload; no orchestrator runs,
// so what the control plane decides shows as the operations it starts.
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instances, operations, vmGroups } from "../../api/catalog/schema.ts";
import { applyScheduledVersionStates } from "../../api/orchestrator/images/current-version.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";
import { replicaReport, SMALL_MACHINE } from "../support/project-fixtures.ts";

type Project = Awaited<ReturnType<TestApi["createProject"]>>;

describe.each(CATALOG_KINDS)("image lifecycle (%s)", (kind) => {
  let api: TestApi;
  let acme: Project;
  let other: Project;
  let manager: string;
  const capacity = { vcpus: 16, memory_mb: 32_768, disk_bytes: 100e9 };

  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "eu-west" } });
    const credential = await api.expectStatus(201, "POST", "/v1/manager-credentials", {
      body: { region: "eu-west", datacenter: "eu-west-a" },
    });
    manager = credential.secret;
    await api.expectStatus(200, "PUT", "/v1/datacenters/eu-west-a", {
      token: manager,
      body: { region: "eu-west", manager_url: "http://127.0.0.1:9001", capacity },
    });
    acme = await api.createProject("acme");
    other = await api.createProject("other");
  });
  afterAll(() => api.close());

  /** An image of acme with `versions` committed as the origin's manager commits uploads. */
  async function image(name: string, versions: number, extra: Record<string, unknown> = {}) {
    const created = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name, origin_region: "eu-west", ...extra },
    });
    for (let v = 1; v <= versions; v++) await commit(created.id, v);
    return created.id as string;
  }
  async function commit(imageId: string, version: number) {
    await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${imageId}/versions/${version}`, {
      token: manager,
      body: replicaReport(`eu-${imageId}-${version}`),
    });
  }
  const get = (id: string, token = acme.token) => api.expectStatus(200, "GET", `/v1/images/${id}`, { token });
  const states = async (id: string) =>
    (await api.expectStatus(200, "GET", `/v1/images/${id}/versions`, { token: acme.token })).items.map(
      (v: { version: number; state: string; current: boolean }) =>
        `${v.version}:${v.state}${v.current ? "*" : ""}`,
    );
  /** A group of acme as the orchestrator leaves it once placed in eu-west-a, with one instance per version given. */
  async function placedGroup(body: Record<string, unknown>, running: number[] = []) {
    const operation = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: { region: "eu-west", size: Math.max(1, running.length), machine: SMALL_MACHINE, ...body },
    });
    const id = operation.target.id as string;
    const { db } = api.services;
    await db
      .update(vmGroups)
      .set({ datacenter: "eu-west-a", datacenters: ["eu-west-a"], state: "ready" })
      .where(eq(vmGroups.id, id));
    await db.update(operations).set({ state: "succeeded" }).where(eq(operations.id, operation.id));
    for (const [ordinal, version] of running.entries()) {
      await db.insert(instances).values({
        id: `inst_${id}_${ordinal}`,
        vmGroupId: id,
        ordinal,
        datacenter: "eu-west-a",
        imageVersion: version,
        state: "ready",
      });
    }
    return id;
  }
  /** The reasons of the update operations started for the group, oldest first. */
  async function rolls(groupId: string): Promise<string[]> {
    const rows = await api.services.db
      .select()
      .from(operations)
      .where(and(eq(operations.targetId, groupId), eq(operations.kind, "update-vm-group")))
      .orderBy(operations.createdAt);
    return rows.map((r) => String(r.input.reason));
  }

  it("deprecating the current version moves it to the newest active one and rolls followers there", async () => {
    const id = await image("web", 3);
    const follower = await placedGroup({ name: "web-followers", image: id }, [3]);
    const pinned = await placedGroup({ name: "web-pinned", image: id, image_version: 3 }, [3]);
    expect(await states(id)).toEqual(["3:active*", "2:active", "1:active"]);

    const deprecated = await api.expectStatus(200, "PATCH", `/v1/images/${id}/versions/3`, {
      token: acme.token,
      body: { state: "deprecated" },
    });
    expect(deprecated).toMatchObject({ version: 3, state: "deprecated", current: false });
    expect(await states(id)).toEqual(["3:deprecated", "2:active*", "1:active"]);
    expect((await get(id)).version).toBe(2);
    expect(await rolls(follower)).toEqual([`version 3 of image web is now deprecated`]);
    expect(await rolls(pinned)).toEqual([]);

    // Active again: the newest active version is 3 once more.
    await api.expectStatus(200, "PATCH", `/v1/images/${id}/versions/3`, {
      token: acme.token,
      body: { state: "active" },
    });
    expect(await states(id)).toEqual(["3:active*", "2:active", "1:active"]);
    expect(await rolls(follower)).toHaveLength(2);
  });

  it("sets the current version by hand (a rollback) and back to the newest active one", async () => {
    const id = await image("api", 2);
    const follower = await placedGroup({ name: "api-followers", image: id }, [2]);
    const rolledBack = await api.expectStatus(200, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { current_version: 1 },
    });
    expect(rolledBack).toMatchObject({ version: 1, pinned_version: 1 });
    expect(await rolls(follower)).toEqual([`image api's current_version was set to 1`]);

    // A new upload does not move a version set by hand.
    await commit(id, 3);
    expect(await get(id)).toMatchObject({ version: 1, pinned_version: 1 });
    expect(await rolls(follower)).toHaveLength(1);

    const released = await api.expectStatus(200, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { current_version: null },
    });
    expect(released).toMatchObject({ version: 3, pinned_version: null });
    expect(await rolls(follower)).toHaveLength(2);

    const unknown = await api.expectStatus(422, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { current_version: 9 },
    });
    expect(unknown.errors).toEqual([{ path: "current_version", message: "unknown version" }]);
  });

  it("refuses an obsolete version for new instances, and a version set by hand from becoming obsolete", async () => {
    const id = await image("db", 2);
    await api.expectStatus(200, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { current_version: 1 },
    });
    const pinnedCurrent = await api.expectStatus(409, "PATCH", `/v1/images/${id}/versions/1`, {
      token: acme.token,
      body: { state: "obsolete" },
    });
    expect(pinnedCurrent.code).toBe("version_pinned");
    await api.expectStatus(200, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { current_version: null },
    });

    const group = await placedGroup({ name: "db-pinned", image: id, image_version: 1 }, [1]);
    await api.expectStatus(200, "PATCH", `/v1/images/${id}/versions/1`, {
      token: acme.token,
      body: { state: "obsolete" },
    });
    const created = await api.expectStatus(409, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: "db-new",
        image: id,
        image_version: 1,
        region: "eu-west",
        size: 1,
        machine: SMALL_MACHINE,
      },
    });
    expect(created).toMatchObject({ code: "version_obsolete" });
    expect(created.detail).toContain("Version 1 of image db is obsolete");
    // The running instance keeps it; growing the group would boot another.
    const grown = await api.expectStatus(409, "PATCH", `/v1/vm-groups/${group}`, {
      token: acme.token,
      body: { size: 2 },
    });
    expect(grown.code).toBe("version_obsolete");
    await api.expectStatus(202, "PATCH", `/v1/vm-groups/${group}`, {
      token: acme.token,
      body: { labels: { a: "b" } },
    });
    const rollback = await api.expectStatus(409, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { current_version: 1 },
    });
    expect(rollback.code).toBe("version_obsolete");
  });

  it("deletes a version nothing runs, refuses one in use or the last, and removes its replicas", async () => {
    const id = await image("cache", 3);
    await placedGroup({ name: "cache-old", image: id, image_version: 2 }, [2]);
    const inUse = await api.expectStatus(409, "DELETE", `/v1/images/${id}/versions/2`, { token: acme.token });
    expect(inUse).toMatchObject({ code: "version_in_use" });
    expect(inUse.detail).toContain("cache-old");

    const removal = await api.expectStatus(202, "DELETE", `/v1/images/${id}/versions/1`, {
      token: acme.token,
    });
    expect(removal).toMatchObject({ kind: "delete-image-version", target: { type: "image", id } });
    expect(await states(id)).toEqual(["3:active*", "2:active", "1:deleted"]);
    const again = await api.expectStatus(409, "DELETE", `/v1/images/${id}/versions/1`, { token: acme.token });
    expect(again.code).toBe("version_deleted");
    const revive = await api.expectStatus(409, "PATCH", `/v1/images/${id}/versions/1`, {
      token: acme.token,
      body: { state: "active" },
    });
    expect(revive.code).toBe("version_deleted");
    const boot = await api.expectStatus(409, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: "cache-one",
        image: id,
        image_version: 1,
        region: "eu-west",
        size: 1,
        machine: SMALL_MACHINE,
      },
    });
    expect(boot.code).toBe("version_deleted");

    const single = await image("lonely", 1);
    const last = await api.expectStatus(409, "DELETE", `/v1/images/${single}/versions/1`, {
      token: acme.token,
    });
    expect(last.code).toBe("last_version");
  });

  it("applies deprecate_at and obsolete_at when their time comes", async () => {
    const id = await image("batch", 2);
    const follower = await placedGroup({ name: "batch-followers", image: id }, [2]);
    const start = Date.now();
    const deprecateAt = new Date(start + 60_000).toISOString();
    const obsoleteAt = new Date(start + 120_000).toISOString();
    const scheduled = await api.expectStatus(200, "PATCH", `/v1/images/${id}/versions/2`, {
      token: acme.token,
      body: { deprecate_at: deprecateAt, obsolete_at: obsoleteAt },
    });
    expect(scheduled).toMatchObject({ state: "active", deprecate_at: deprecateAt, obsolete_at: obsoleteAt });
    const inverted = await api.expectStatus(400, "PATCH", `/v1/images/${id}/versions/2`, {
      token: acme.token,
      body: { deprecate_at: obsoleteAt, obsolete_at: deprecateAt },
    });
    expect(inverted.errors[0].path).toBe("obsolete_at");

    const realNow = api.services.now;
    try {
      api.services.now = () => new Date(start + 90_000);
      // Read as deprecated at once; the sweep makes it so and rolls the followers.
      expect(await states(id)).toEqual(["2:deprecated*", "1:active"]);
      expect(await applyScheduledVersionStates(api.services)).toContain(id);
      expect(await states(id)).toEqual(["2:deprecated", "1:active*"]);
      expect(await rolls(follower)).toEqual([`a scheduled state change of image ${id}`]);
      api.services.now = () => new Date(start + 150_000);
      await applyScheduledVersionStates(api.services);
      expect(await states(id)).toEqual(["2:obsolete", "1:active*"]);
      expect(await applyScheduledVersionStates(api.services)).not.toContain(id);
    } finally {
      api.services.now = realNow;
    }
  });

  it("resolves a family to its newest active image, and moves groups following it", async () => {
    const first = await image("base-1", 1, { family: "base" });
    expect(
      (await api.expectStatus(200, "GET", "/v1/image-families/base", { token: acme.readToken })).id,
    ).toBe(first);
    const operation = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: { name: "on-base", image_family: "base", region: "eu-west", size: 1, machine: SMALL_MACHINE },
    });
    const group = operation.target.id as string;
    expect(await api.expectStatus(200, "GET", `/v1/vm-groups/${group}`, { token: acme.token })).toMatchObject(
      {
        image: first,
        image_family: "base",
        image_version: null,
      },
    );
    await api.services.db
      .update(vmGroups)
      .set({ datacenter: "eu-west-a", datacenters: ["eu-west-a"], state: "ready" })
      .where(eq(vmGroups.id, group));

    // A newer image of the family: the group moves to it.
    const second = await image("base-2", 1, { family: "base" });
    expect((await api.expectStatus(200, "GET", "/v1/image-families/base", { token: acme.token })).id).toBe(
      second,
    );
    expect((await api.expectStatus(200, "GET", `/v1/vm-groups/${group}`, { token: acme.token })).image).toBe(
      second,
    );
    expect(await rolls(group)).toEqual([`family base now names image ${second}`]);

    // Its only version deprecated: the family skips it.
    await api.expectStatus(200, "PATCH", `/v1/images/${second}/versions/1`, {
      token: acme.token,
      body: { state: "deprecated" },
    });
    expect((await api.expectStatus(200, "GET", "/v1/image-families/base", { token: acme.token })).id).toBe(
      first,
    );
    expect((await api.expectStatus(200, "GET", `/v1/vm-groups/${group}`, { token: acme.token })).image).toBe(
      first,
    );

    const missing = await api.expectStatus(404, "GET", "/v1/image-families/nothing", { token: acme.token });
    expect(missing.detail).toBe("image family nothing does not exist");
    const notOurs = await api.expectStatus(404, "GET", "/v1/image-families/base", { token: other.token });
    expect(notOurs.detail).toBe("image family base does not exist");
    const unknown = await api.expectStatus(422, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: "on-nothing",
        image_family: "nothing",
        region: "eu-west",
        size: 1,
        machine: SMALL_MACHINE,
      },
    });
    expect(unknown.errors).toEqual([{ path: "image_family", message: "unknown family" }]);
    const both = await api.expectStatus(400, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: "x",
        image: first,
        image_family: "base",
        region: "eu-west",
        size: 1,
        machine: SMALL_MACHINE,
      },
    });
    expect(both.errors.map((e: { path: string }) => e.path)).toEqual(["image_family"]);
    const pin = await api.expectStatus(400, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: "x",
        image_family: "base",
        image_version: 1,
        region: "eu-west",
        size: 1,
        machine: SMALL_MACHINE,
      },
    });
    expect(pin.errors.map((e: { path: string }) => e.path)).toEqual(["image_version"]);
    const pinLater = await api.expectStatus(422, "PATCH", `/v1/vm-groups/${group}`, {
      token: acme.token,
      body: { image_version: 1 },
    });
    expect(pinLater.errors).toEqual([{ path: "image_version", message: "the group follows a family" }]);
  });

  it("shares an image read-only with member projects", async () => {
    const id = await image("golden", 1);
    await api.expectStatus(404, "GET", `/v1/images/${id}`, { token: other.token });
    const self = await api.expectStatus(422, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { members: [acme.id] },
    });
    expect(self.errors).toEqual([{ path: "members[0]", message: "the image's own project" }]);
    const ghost = await api.expectStatus(422, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { members: [other.id, "prj_00000000000000000000000000"] },
    });
    expect(ghost.errors).toEqual([{ path: "members[1]", message: "unknown project" }]);
    const shared = await api.expectStatus(200, "PATCH", `/v1/images/${id}`, {
      token: acme.token,
      body: { members: [other.id] },
    });
    expect(shared.members).toEqual([other.id]);

    // The member reads it (not who else it is shared with), lists it among the shared, boots from it.
    expect(await get(id, other.readToken)).toMatchObject({ id, name: "golden", members: [] });
    await api.expectStatus(200, "GET", `/v1/images/${id}/versions`, { token: other.readToken });
    const own = await api.expectStatus(200, "GET", "/v1/images", { token: other.token });
    expect(own.items).toEqual([]);
    const listed = await api.expectStatus(200, "GET", "/v1/images?shared=true", { token: other.token });
    expect(listed.items.map((i: { id: string }) => i.id)).toEqual([id]);
    const borrowed = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: other.token,
      body: { name: "borrowed", image: id, region: "eu-west", size: 1, machine: SMALL_MACHINE },
    });
    await api.services.db.insert(instances).values({
      id: `inst_${borrowed.target.id}`,
      vmGroupId: borrowed.target.id,
      ordinal: 0,
      datacenter: "eu-west-a",
      imageVersion: 1,
      state: "ready",
    });

    // It never changes or deletes it.
    for (const [method, path, body] of [
      ["PATCH", `/v1/images/${id}`, { labels: { mine: "yes" } }],
      ["DELETE", `/v1/images/${id}`, undefined],
      ["PATCH", `/v1/images/${id}/versions/1`, { state: "deprecated" }],
      ["DELETE", `/v1/images/${id}/versions/1`, undefined],
      ["POST", `/v1/images/${id}/uploads`, {}],
    ] as const) {
      const refused = await api.expectStatus(403, method, path, { token: other.token, body });
      expect(refused.detail).toContain("read-only");
    }
    // The owner cannot delete it from under the member, and learns nothing of the member's groups.
    const inUse = await api.expectStatus(409, "DELETE", `/v1/images/${id}`, { token: acme.token });
    expect(inUse.detail).toContain("1 VM group(s) of projects it is shared with");
    expect(inUse.detail).not.toContain("borrowed");
    await commit(id, 2);
    const versionInUse = await api.expectStatus(409, "DELETE", `/v1/images/${id}/versions/1`, {
      token: acme.token,
    });
    expect(versionInUse.code).toBe("version_in_use");
    expect(versionInUse.detail).toBe(
      "Version 1 of image golden is run or pinned by 1 VM group(s) of projects it is shared with; move them to another version first.",
    );
  });
});
