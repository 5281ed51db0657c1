// The catalog's own constraints hold whatever code writes to it.
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Catalog } from "../../api/catalog/db.ts";
import { createDefaultNetwork, findNetworkByReference } from "../../api/catalog/networks.ts";
import {
  datacenters,
  images,
  instances,
  operations,
  projects,
  regions,
  vmGroups,
} from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { CATALOG_KINDS, openTestCatalog } from "../support/catalogs.ts";

describe.each(CATALOG_KINDS)("catalog constraints (%s)", (kind) => {
  let catalog: Catalog;
  const projectId = newId("project");
  const imageId = newId("image");
  const groupId = newId("vmGroup");
  let networkId: string;
  beforeAll(async () => {
    catalog = await openTestCatalog(kind);
    const { db } = catalog;
    await db.insert(projects).values({ id: projectId, name: "acme" });
    await createDefaultNetwork(db, projectId);
    networkId = (await findNetworkByReference(db, projectId, "default"))?.id as string;
    await db.insert(regions).values({ name: "eu-west", displayName: "eu-west" });
    await db.insert(datacenters).values({
      name: "eu-west-a",
      region: "eu-west",
      driver: "qemu",
      capacityVcpus: 4,
      capacityMemoryMb: 4096,
      capacityDiskBytes: 1e10,
    });
    await db
      .insert(images)
      .values({ id: imageId, projectId, name: "web", format: "raw", originRegion: "eu-west" });
    await db.insert(vmGroups).values({
      id: groupId,
      projectId,
      name: "web",
      imageId,
      networkId,
      region: "eu-west",
      size: 1,
      vcpus: 1,
      memoryMb: 128,
    });
  });
  afterAll(() => catalog.close());

  const rejects = (promise: Promise<unknown>) => expect(promise).rejects.toThrow();

  it("migrating twice is a no-op", async () => {
    await catalog.migrate();
    const [row] = await catalog.db
      .execute(sql`select count(*)::int as n from projects`)
      .then((r: any) => r.rows ?? r);
    expect(Number(row.n)).toBe(1);
  });

  it("refuses states outside the model", async () => {
    await rejects(
      catalog.db.insert(instances).values({
        id: newId("instance"),
        vmGroupId: groupId,
        ordinal: 0,
        datacenter: "eu-west-a",
        state: "exploded",
      }),
    );
    await rejects(
      catalog.db.insert(operations).values({
        id: newId("operation"),
        kind: "create-vm-group",
        targetType: "vm-group",
        targetId: groupId,
        state: "maybe",
      }),
    );
    await rejects(
      catalog.db.insert(images).values({
        id: newId("image"),
        projectId,
        name: "bad-format",
        format: "vmdk",
        originRegion: "eu-west",
      }),
    );
  });

  it("refuses dangling references and duplicate names per project", async () => {
    await rejects(
      catalog.db
        .insert(instances)
        .values({ id: newId("instance"), vmGroupId: groupId, ordinal: 0, datacenter: "mars-a" }),
    );
    await rejects(
      catalog.db
        .insert(images)
        .values({ id: newId("image"), projectId, name: "web", format: "raw", originRegion: "eu-west" }),
    );
    await rejects(
      catalog.db.insert(images).values({
        id: newId("image"),
        projectId: newId("project"),
        name: "x",
        format: "raw",
        originRegion: "eu-west",
      }),
    );
  });

  it("a group has exactly one of region and placement, and a sane machine", async () => {
    const base = { projectId, imageId, networkId, size: 1, vcpus: 1, memoryMb: 128 };
    await rejects(catalog.db.insert(vmGroups).values({ ...base, id: newId("vmGroup"), name: "neither" }));
    await rejects(
      catalog.db.insert(vmGroups).values({
        ...base,
        id: newId("vmGroup"),
        name: "both",
        region: "eu-west",
        placement: { regions: ["eu-west"], strategy: "spread", conditions: { require_up: true } },
      }),
    );
    await rejects(
      catalog.db
        .insert(vmGroups)
        .values({ ...base, id: newId("vmGroup"), name: "zero-cpu", region: "eu-west", vcpus: 0 }),
    );
  });

  it("deleting a group removes its instances", async () => {
    const id = newId("vmGroup");
    await catalog.db.insert(vmGroups).values({
      id,
      projectId,
      name: "doomed",
      imageId,
      networkId,
      region: "eu-west",
      size: 1,
      vcpus: 1,
      memoryMb: 128,
    });
    await catalog.db
      .insert(instances)
      .values({ id: newId("instance"), vmGroupId: id, ordinal: 0, datacenter: "eu-west-a" });
    await catalog.db.delete(vmGroups).where(sql`${vmGroups.id} = ${id}`);
    const left = await catalog.db.select().from(instances).where(sql`${instances.vmGroupId} = ${id}`);
    expect(left).toEqual([]);
  });
});
