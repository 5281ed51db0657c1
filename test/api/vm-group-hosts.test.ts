// VM groups over the hosts of a datacenter, as the control plane sees them: `spread_hosts`
// (created, changed in place, validated, and sent to the manager in each instance's spec) and
// the host each instance runs on, as its manager reports it.
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instances, vmGroups } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { instanceSpecOf } from "../../api/orchestrator/instance-specs.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

const machine = { vcpus: 1, memory_mb: 256 };

describe.each(CATALOG_KINDS)("VM groups and hosts (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let imageId: string;
  let managerToken: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("us-east");
    acme = await api.createProject("acme");
    const image = await api.expectStatus(201, "POST", "/v1/images", {
      token: acme.token,
      body: { name: "web", origin_region: "us-east" },
    });
    imageId = image.id;
    const credential = await api.expectStatus(201, "POST", "/v1/manager-credentials", {
      body: { region: "us-east", datacenter: "us-east-a" },
    });
    managerToken = credential.secret;
  });
  afterAll(() => api.close());

  async function createGroup(name: string, more: Record<string, unknown> = {}) {
    const created = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: { name, image: imageId, region: "us-east", size: 1, machine, ...more },
    });
    return created.target.id as string;
  }
  const getGroup = (id: string) => api.expectStatus(200, "GET", `/v1/vm-groups/${id}`, { token: acme.token });

  async function recordInstance(groupId: string, ordinal = 0) {
    const id = newId("instance");
    await api.catalog.db
      .insert(instances)
      .values({ id, vmGroupId: groupId, ordinal, datacenter: "us-east-a" });
    return id;
  }

  /** The spec the orchestrator sends the manager for the group's instance now. */
  async function specOf(groupId: string, instanceId: string) {
    const [group] = await api.catalog.db.select().from(vmGroups).where(eq(vmGroups.id, groupId));
    const [row] = await api.catalog.db.select().from(instances).where(eq(instances.id, instanceId));
    if (!group || !row) throw new Error("group or instance missing");
    return instanceSpecOf(api.services, group, row, 1, {});
  }

  describe("spread_hosts", () => {
    it("is false unless asked for, and then absent from the manager's spec", async () => {
      const id = await createGroup("plain");
      expect((await getGroup(id)).spread_hosts).toBe(false);
      const spec = await specOf(id, await recordInstance(id));
      expect(spec).not.toHaveProperty("spread_hosts");
    });

    it("is recorded at create, listed, and reaches the manager's spec of each instance", async () => {
      const id = await createGroup("spread", { spread_hosts: true, size: 2 });
      expect((await getGroup(id)).spread_hosts).toBe(true);
      const list = await api.expectStatus(200, "GET", "/v1/vm-groups?name=spread", { token: acme.readToken });
      expect(list.items[0].spread_hosts).toBe(true);
      for (const ordinal of [0, 1]) {
        const spec = await specOf(id, await recordInstance(id, ordinal));
        expect(spec).toMatchObject({ vm_group_id: id, spread_hosts: true });
      }
    });

    it("changes in place: the update's operation, and the specs sent afterwards, carry it", async () => {
      const id = await createGroup("later");
      const instanceId = await recordInstance(id);
      const on = await api.expectStatus(202, "PATCH", `/v1/vm-groups/${id}`, {
        token: acme.token,
        body: { spread_hosts: true },
      });
      expect(on.kind).toBe("update-vm-group");
      expect(await getGroup(id)).toMatchObject({ spread_hosts: true, state: "updating", size: 1 });
      expect(await specOf(id, instanceId)).toMatchObject({ spread_hosts: true });
      // Other changes leave it as it is.
      await api.expectStatus(202, "PATCH", `/v1/vm-groups/${id}`, { token: acme.token, body: { size: 2 } });
      expect((await getGroup(id)).spread_hosts).toBe(true);
      await api.expectStatus(202, "PATCH", `/v1/vm-groups/${id}`, {
        token: acme.token,
        body: { spread_hosts: false },
      });
      expect((await getGroup(id)).spread_hosts).toBe(false);
      expect(await specOf(id, instanceId)).not.toHaveProperty("spread_hosts");
    });

    it("must be a boolean, at create and at update", async () => {
      const created = await api.call("POST", "/v1/vm-groups", {
        token: acme.token,
        body: { name: "bad", image: imageId, region: "us-east", size: 1, machine, spread_hosts: "yes" },
      });
      expect([created.status, created.body.errors.map((e: { path: string }) => e.path)]).toEqual([
        400,
        ["spread_hosts"],
      ]);
      const id = await createGroup("target");
      const updated = await api.call("PATCH", `/v1/vm-groups/${id}`, {
        token: acme.token,
        body: { spread_hosts: 1 },
      });
      expect([updated.status, updated.body.errors.map((e: { path: string }) => e.path)]).toEqual([
        400,
        ["spread_hosts"],
      ]);
      expect((await getGroup(id)).spread_hosts).toBe(false);
    });
  });

  describe("an instance's host", () => {
    it("is null until its manager names one, then shown by every instance read", async () => {
      const groupId = await createGroup("hosted");
      const instanceId = await recordInstance(groupId);
      const report = (body: Record<string, unknown>) =>
        api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
          token: managerToken,
          body,
        });
      const reads = async () => [
        (await api.expectStatus(200, "GET", `/v1/instances/${instanceId}`, { token: acme.readToken })).host,
        (await api.expectStatus(200, "GET", `/v1/vm-groups/${groupId}/instances`, { token: acme.readToken }))
          .items[0].host,
        (await api.expectStatus(200, "GET", `/v1/instances?vm_group=${groupId}`, { token: acme.readToken }))
          .items[0].host,
      ];
      expect(await reads()).toEqual([null, null, null]);
      await report({ state: "starting", host: "host-2" });
      expect(await reads()).toEqual(["host-2", "host-2", "host-2"]);
      // A report that says nothing of hosts keeps the one recorded.
      await report({ state: "ready" });
      expect(await reads()).toEqual(["host-2", "host-2", "host-2"]);
      // Recreated elsewhere, then run by the manager itself (null).
      await report({ state: "starting", host: "host-3" });
      expect(await reads()).toEqual(["host-3", "host-3", "host-3"]);
      await report({ state: "running", host: null });
      expect(await reads()).toEqual([null, null, null]);
    });

    it("a repair the manager made by itself is recorded once in the group's operations", async () => {
      const groupId = await createGroup("healed");
      const instanceId = await recordInstance(groupId);
      const repair = {
        reason: "recreated on host host-3: host host-1 stopped syncing",
        at: "2026-12-04T10:00:00.000Z",
      };
      const report = { state: "starting", host: "host-3", state_reason: repair.reason, repair };
      // Sent twice, as a manager does when the answer to the first is lost.
      for (let i = 0; i < 2; i++)
        await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
          token: managerToken,
          body: report,
        });
      const repairs = async () =>
        (
          await api.expectStatus(200, "GET", `/v1/operations?target_id=${groupId}`, { token: acme.readToken })
        ).items.filter((o: { kind: string }) => o.kind === "repair-instance");
      const [recorded, ...more] = await repairs();
      expect(more).toEqual([]);
      expect(recorded).toMatchObject({
        kind: "repair-instance",
        target: { type: "vm-group", id: groupId },
        state: "succeeded",
        done: true,
        result: {
          instance: instanceId,
          name: "healed-0",
          datacenter: "us-east-a",
          host: "host-3",
          reason: repair.reason,
          repaired_at: repair.at,
        },
      });
      // Reports without a repair add none; another repair is another operation.
      await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
        token: managerToken,
        body: { state: "ready" },
      });
      expect(await repairs()).toHaveLength(1);
      await api.expectStatus(204, "PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
        token: managerToken,
        body: { ...report, repair: { ...repair, at: "2026-12-04T10:05:00.000Z" } },
      });
      expect(await repairs()).toHaveLength(2);
      // Another project never sees them.
      const other = await api.createProject("other-heal");
      const foreign = await api.expectStatus(200, "GET", `/v1/operations?target_id=${groupId}`, {
        token: other.readToken,
      });
      expect(foreign.items).toEqual([]);
    });

    it("a repair without its reason is refused, naming the field", async () => {
      const groupId = await createGroup("badrepair");
      const instanceId = await recordInstance(groupId);
      const response = await api.call("PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
        token: managerToken,
        body: { state: "starting", repair: { at: "2026-12-04T10:00:00.000Z" } },
      });
      expect([response.status, response.body.errors[0].path]).toEqual([400, "repair.reason"]);
    });

    it("a malformed host name is refused", async () => {
      const groupId = await createGroup("badhost");
      const instanceId = await recordInstance(groupId);
      const response = await api.call("PUT", `/v1/datacenters/us-east-a/instances/${instanceId}`, {
        token: managerToken,
        body: { state: "starting", host: "Not A Name" },
      });
      expect([response.status, response.body.errors[0].path]).toEqual([400, "host"]);
    });
  });
});
